"""The pending timers of a snapshot: an immutable queue with cheap updates.

Snapshots are immutable and a step that schedules one timer must not copy or
sort all the others. :class:`TimerQueue` keeps the timers in two persistent
treaps (balanced search trees whose updates copy only the path they change,
so every version stays valid): one ordered by due time (ties in scheduling
order), one by id. Scheduling, cancelling and finding a timer cost
O(log n); the earliest timer is O(1) once looked up; a step that touches
no timer shares the queue unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, overload

from ._builtins import Event, SendEffect, Timer

__all__ = ("TimerQueue",)

# A tree key: (due_ms, seq) in the due tree, the timer id in the id tree.
_Key = Any


class _Node:
    """A treap node; never changed once it is reachable from a published queue."""

    __slots__ = ("key", "left", "prio", "right", "timer")

    def __init__(
        self, key: _Key, timer: Timer, prio: int, left: _Node | None, right: _Node | None
    ) -> None:
        self.key: _Key = key
        self.timer: Timer = timer
        self.prio: int = prio
        self.left: _Node | None = left
        self.right: _Node | None = right


def _insert(node: _Node | None, key: _Key, timer: Timer, prio: int) -> _Node:
    """A new tree with ``key`` added (the key is not in the tree)."""
    if node is None:
        return _Node(key, timer, prio, None, None)
    # Nodes on the path are fresh copies, so rotating them in place is safe.
    if key < node.key:
        left = _insert(node.left, key, timer, prio)
        if left.prio > node.prio:
            return _Node(
                left.key,
                left.timer,
                left.prio,
                left.left,
                _Node(node.key, node.timer, node.prio, left.right, node.right),
            )
        return _Node(node.key, node.timer, node.prio, left, node.right)
    right = _insert(node.right, key, timer, prio)
    if right.prio > node.prio:
        return _Node(
            right.key,
            right.timer,
            right.prio,
            _Node(node.key, node.timer, node.prio, node.left, right.left),
            right.right,
        )
    return _Node(node.key, node.timer, node.prio, node.left, right)


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    """One tree of two, every key of ``a`` below every key of ``b``."""
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        return _Node(a.key, a.timer, a.prio, a.left, _merge(a.right, b))
    return _Node(b.key, b.timer, b.prio, _merge(a, b.left), b.right)


def _delete(node: _Node | None, key: _Key) -> _Node | None:
    """A new tree without ``key`` (which is in the tree)."""
    assert node is not None
    if key == node.key:
        return _merge(node.left, node.right)
    if key < node.key:
        return _Node(node.key, node.timer, node.prio, _delete(node.left, key), node.right)
    return _Node(node.key, node.timer, node.prio, node.left, _delete(node.right, key))


def _find(node: _Node | None, key: _Key) -> Timer | None:
    while node is not None:
        if key == node.key:
            return node.timer
        node = node.left if key < node.key else node.right
    return None


def _build(items: Sequence[tuple[_Key, Timer]]) -> _Node | None:
    """A perfectly balanced treap of items already sorted by key, in O(n).

    Its priorities follow the heights (a parent's is above its children's)
    and are above every hashed priority, so later insertions settle below it.
    """

    def build(lo: int, hi: int) -> tuple[_Node | None, int]:
        if lo >= hi:
            return None, 0
        mid = (lo + hi) // 2
        left, lh = build(lo, mid)
        right, rh = build(mid + 1, hi)
        height = max(lh, rh) + 1
        key, timer = items[mid]
        return _Node(key, timer, _BUILT + height, left, right), height

    return build(0, len(items))[0]


# Above any hash value (hashes are machine words).
_BUILT = 1 << 80


def _priority(key: _Key) -> int:
    # Any well-mixed number keeps the tree balanced in expectation; hashing
    # the key needs no state.
    return hash(key)


def _walk(node: _Node | None) -> Iterator[Timer]:
    stack: list[_Node] = []
    while stack or node is not None:
        while node is not None:
            stack.append(node)
            node = node.left
        node = stack.pop()
        yield node.timer
        node = node.right


class TimerQueue(Sequence[Timer]):
    """The pending timers of a snapshot, in due order (ties in scheduling order).

    An immutable sequence: ``len``, iteration, ``queue[0]`` (the next timer
    due), indexing and comparison with any sequence of timers behave as for a
    tuple. Every change returns a new queue and leaves this one as it was.

    A queue made from a list of timers (a restored snapshot) keeps them as a
    sorted tuple and builds its trees on its first change, so that loading
    a snapshot whose timers are then left alone costs no more than before.
    """

    __slots__ = ("_by_due", "_by_id", "_first", "_ids", "_len", "_next_seq", "_tuple")

    def __init__(self) -> None:
        self._by_due: _Node | None = None
        self._by_id: _Node | None = None
        self._len = 0
        self._next_seq = 0
        self._first: Timer | None = None
        # The timers in due order, when known; while the trees are not built
        # (a queue made by of()), the only representation.
        self._tuple: tuple[Timer, ...] | None = None
        self._ids: dict[str, Timer] | None = None

    @classmethod
    def of(cls, timers: Sequence[Timer]) -> TimerQueue:
        """A queue of ``timers`` (any order; their ``seq`` breaks due-time ties)."""
        ordered = tuple(sorted(timers, key=_due_key))
        ids = {t.id: t for t in ordered}
        if len(ids) != len(ordered):
            seen: set[str] = set()
            for t in ordered:
                if t.id in seen:
                    raise ValueError(f"two pending timers with the id {t.id!r}")
                seen.add(t.id)
        queue = cls()
        queue._tuple = ordered
        queue._ids = ids
        queue._len = len(ordered)
        queue._next_seq = max((t.seq for t in ordered), default=-1) + 1
        queue._first = ordered[0] if ordered else None
        return queue

    def _trees(self) -> tuple[_Node | None, _Node | None]:
        """Both trees, built from the sorted tuple the first time they are needed."""
        if self._ids is not None:
            assert self._tuple is not None
            self._by_due = _build([(_due_key(t), t) for t in self._tuple])
            self._by_id = _build(sorted(self._ids.items(), key=_first_item))
            self._ids = None
        return self._by_due, self._by_id

    def _derive(
        self, by_due: _Node | None, by_id: _Node | None, length: int, next_seq: int
    ) -> TimerQueue:
        queue = TimerQueue()
        queue._by_due = by_due
        queue._by_id = by_id
        queue._len = length
        queue._next_seq = next_seq
        return queue

    # -- queries --------------------------------------------------------- #

    def get(self, timer_id: str) -> Timer | None:
        """The pending timer with this id, if any. O(log n)."""
        if self._ids is not None:
            return self._ids.get(timer_id)
        return _find(self._by_id, timer_id)

    @property
    def first(self) -> Timer | None:
        """The timer due next, if any."""
        if self._first is None and self._by_due is not None:
            node = self._by_due
            while node.left is not None:
                node = node.left
            self._first = node.timer
        return self._first

    # -- updates (each returns a new queue) ------------------------------ #

    def schedule(
        self, timer_id: str, event: Event, due_ms: float, *, send: SendEffect | None = None
    ) -> tuple[TimerQueue, bool]:
        """A queue with the timer ``timer_id`` (re)scheduled at ``due_ms``.

        Args:
            timer_id: the timer's id.
            event: the event it delivers.
            due_ms: when it is due (epoch ms).
            send: for a delayed send, the effect it produces when it fires.

        Returns:
            The new queue, and whether a pending timer with that id was
            replaced. The new timer goes behind the timers already due at the
            same time.
        """
        by_due, by_id = self._trees()
        length = self._len
        old = _find(by_id, timer_id)
        if old is not None:
            by_due = _delete(by_due, _due_key(old))
            by_id = _delete(by_id, timer_id)
            length -= 1
        timer = Timer(timer_id, event, due_ms, self._next_seq, send)
        key = _due_key(timer)
        by_due = _insert(by_due, key, timer, _priority(key))
        by_id = _insert(by_id, timer_id, timer, _priority(timer_id))
        return self._derive(by_due, by_id, length + 1, self._next_seq + 1), old is not None

    def cancel(self, timer_id: str) -> TimerQueue:
        """A queue without the timer ``timer_id`` (this queue if there is none)."""
        old = self.get(timer_id)
        if old is None:
            return self
        by_due, by_id = self._trees()
        return self._derive(
            _delete(by_due, _due_key(old)),
            _delete(by_id, timer_id),
            self._len - 1,
            self._next_seq,
        )

    # -- the sequence protocol ------------------------------------------- #

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[Timer]:
        if self._tuple is not None:
            return iter(self._tuple)
        return _walk(self._by_due)

    @overload
    def __getitem__(self, index: int) -> Timer: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Timer, ...]: ...

    def __getitem__(self, index: int | slice) -> Timer | tuple[Timer, ...]:
        if index == 0 and self._len:
            first = self.first
            assert first is not None
            return first
        if self._tuple is None:
            self._tuple = tuple(_walk(self._by_due))
        return self._tuple[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TimerQueue):
            return self._len == other._len and list(self) == list(other)
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # equal by value: not hashable

    def __repr__(self) -> str:
        return f"TimerQueue({list(self)!r})"


EMPTY = TimerQueue()
"""The queue of a snapshot with no pending timers."""


def _due_key(t: Timer) -> tuple[float, int]:
    return (t.due_ms, t.seq)


def _first_item(item: tuple[str, Timer]) -> str:
    return item[0]
