"""The immutable snapshot of a machine's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ._algorithm import _order
from ._timers import TimerQueue

if TYPE_CHECKING:
    from ._algorithm import ConfigInfo
    from ._machine import Machine
    from ._nodes import StateNode

__all__ = ("ChildRecord", "ChildStatus", "Snapshot", "Status", "context_is_json")

_object_setattr = object.__setattr__

Status = Literal["active", "done", "error", "stopped"]
ChildStatus = Literal["active", "done", "error"]


class ChildRecord:
    """A child of a machine: invoked async work, or a child machine.

    Invoked async work is listed while it runs. A child machine is listed
    from its start until it is stopped (its invoking state exits,
    :func:`stop_child`, the parent finishes): one that finished first stays,
    with ``status`` ``"done"`` or ``"error"``, as in xstate.

    Attributes:
        src: its name in the machine's ``actors=``.
        input: the input it was started with.
        system_id: the ``systemId`` it is registered under, if any.
        snapshot: for a restored child machine, its own persisted snapshot
            (the dict a shell restores the child from); ``None`` for a child
            started in this process, or one whose snapshot was not nested in
            the parent's. Not part of equality: two records of the same child
            are equal whether or not they carry it.
        status: ``"active"``, or for a child machine that finished (the
            parent took its ``xstate.done.actor.<id>`` or
            ``xstate.error.actor.<id>`` event) ``"done"`` or ``"error"``.
    """

    __slots__ = ("input", "snapshot", "src", "status", "system_id")

    def __init__(
        self,
        src: str,
        input: Any,
        system_id: str | None = None,
        snapshot: Mapping[str, Any] | None = None,
        status: ChildStatus = "active",
    ) -> None:
        self.src: str = src
        self.input: Any = input
        self.system_id: str | None = system_id
        self.snapshot: Mapping[str, Any] | None = snapshot
        self.status: ChildStatus = status

    def finished(self, status: ChildStatus) -> ChildRecord:
        """This record with another status (records are never changed in place)."""
        return ChildRecord(self.src, self.input, self.system_id, self.snapshot, status)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChildRecord)
            and other.src == self.src
            and other.input == self.input
            and other.system_id == self.system_id
            and other.status == self.status
        )

    def __hash__(self) -> int:
        return hash(self.src)

    def __repr__(self) -> str:
        sid = f", system_id={self.system_id!r}" if self.system_id is not None else ""
        status = f", status={self.status!r}" if self.status != "active" else ""
        return f"ChildRecord(src={self.src!r}, input={self.input!r}{sid}{status})"


class Snapshot:
    """The state of a machine at rest, between two macrosteps. Immutable.

    A snapshot is produced by :meth:`Machine.initial_snapshot`,
    :meth:`Machine.transition` and :meth:`Machine.restore_snapshot`; it is never
    changed in place. Its ``context`` is shared with the next snapshot when an
    event does not assign to it, so treat it as read-only.

    Attributes:
        machine: the machine this snapshot belongs to.
        context: the extended state (a JSON-able mapping).
        status: ``"active"``, ``"done"`` (a top-level final state was reached),
            ``"error"`` (an invoked actor failed with no ``onError``) or
            ``"stopped"``.
        output: the machine's output once ``status == "done"``.
        error: the error once ``status == "error"``.
        timers: pending delayed events, sorted by due time.
    """

    __slots__ = (
        "_checked",
        "_history",
        "_info",
        "_order",
        "children",
        "context",
        "error",
        "machine",
        "output",
        "status",
        "timers",
    )

    machine: Machine
    _info: ConfigInfo
    _history: Mapping[str, tuple[StateNode, ...]]
    context: Mapping[str, Any]
    status: Status
    output: Any
    error: Any
    timers: TimerQueue
    children: Mapping[str, ChildRecord]
    # The active atomic states in the order they were entered, when that is
    # not the document order (None): it decides which eventless transitions
    # of different regions run first, as in xstate.
    _order: tuple[StateNode, ...] | None
    # A context whose values are known to be JSON (this snapshot's, an
    # earlier one's in its line, or None): a value of this context that is
    # still there, the same object, is not checked again when persisted.
    _checked: Mapping[str, Any] | None

    def __init__(
        self,
        machine: Machine,
        info: ConfigInfo,
        context: Mapping[str, Any],
        status: Status,
        output: Any,
        error: Any,
        history: Mapping[str, tuple[StateNode, ...]],
        timers: TimerQueue,
        children: Mapping[str, ChildRecord],
        order: tuple[StateNode, ...] | None = None,
        checked: Mapping[str, Any] | None = None,
    ) -> None:
        setattr_ = _object_setattr
        setattr_(self, "machine", machine)
        setattr_(self, "_info", info)
        setattr_(self, "context", context)
        setattr_(self, "status", status)
        setattr_(self, "output", output)
        setattr_(self, "error", error)
        setattr_(self, "_history", history)
        setattr_(self, "timers", timers)
        setattr_(self, "children", children)
        setattr_(self, "_order", order)
        setattr_(self, "_checked", checked)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Snapshot is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Snapshot is immutable (cannot delete {name!r})")

    # -- views ---------------------------------------------------------- #

    @property
    def value(self) -> str | dict[str, Any]:
        """The state value in xstate's shape: ``"cart"`` or ``{"checkout": "paying"}``."""
        v = self._info.value
        return v if isinstance(v, str) else _copy_value(v)

    @property
    def tags(self) -> frozenset[str]:
        """The tags of all active states."""
        return self._info.tags

    @property
    def active_state_ids(self) -> tuple[str, ...]:
        """The ids of all active states, in document order."""
        return tuple(n.id for n in sorted(self._info.nodes, key=_order))

    @property
    def entry_order(self) -> tuple[str, ...]:
        """The ids of the active atomic states, in the order they were entered.

        It decides which eventless (``always``) transitions of different
        parallel regions are taken first, as in xstate; it is persisted so
        that a restored snapshot continues as this one would.
        """
        order = self._order if self._order is not None else self._info.atomics
        return tuple(n.id for n in order)

    @property
    def history_value(self) -> dict[str, tuple[str, ...]]:
        """Recorded history: history state id -> ids of the states it remembers."""
        return {k: tuple(n.id for n in v) for k, v in self._history.items()}

    @property
    def next_timer_at(self) -> float | None:
        """The due time (epoch ms) of the earliest pending timer, if any."""
        first = self.timers.first
        return first.due_ms if first is not None else None

    def meta(self) -> dict[str, Any]:
        """The ``meta`` of every active state that has one, by state id."""
        return {n.id: n.meta for n in sorted(self._info.nodes, key=_order) if n.meta is not None}

    def has_tag(self, tag: str) -> bool:
        """Whether an active state carries ``tag``."""
        return tag in self._info.tags

    def matches(self, value: str | Mapping[str, Any]) -> bool:
        """Whether the state matches a (partial) state value.

        Args:
            value: ``"a.b"`` (a dotted path), ``"a"`` or ``{"a": "b"}``.

        Returns:
            True when every state named in ``value`` is active.
        """
        return _matches(value, self._info.value)

    def can(self, event: Mapping[str, Any] | str) -> bool:
        """Whether sending ``event`` would take a transition (guards evaluated).

        Raises:
            InvalidEvent: if ``event`` is not a valid event.
        """
        return self.machine.can(self, event)

    def __repr__(self) -> str:
        return (
            f"Snapshot(value={self._info.value!r}, status={self.status!r}, "
            f"context={self.context!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (
            self.machine is other.machine
            and self._info.nodes == other._info.nodes
            and self._order == other._order
            and self.context == other.context
            and self.status == other.status
            and self.output == other.output
            and self.error == other.error
            and dict(self._history) == dict(other._history)
            and [(t.id, t.event, t.due_ms, t.send) for t in self.timers]
            == [(t.id, t.event, t.due_ms, t.send) for t in other.timers]
            and dict(self.children) == dict(other.children)
        )

    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # equal by value: not hashable


def context_is_json(snapshot: Snapshot) -> None:
    """Record that the values of the snapshot's context are plain JSON data.

    For a shell that restored the snapshot from JSON text it decoded itself
    (text without ``NaN`` or infinities): persisting the snapshot, or one
    that follows from it, then checks only the context values that changed
    (what snapshots hold is never changed in place, so a value that is the
    same object is the same value). It sets a private field of an otherwise
    immutable snapshot: call it on one that nothing else holds yet.
    """
    _object_setattr(snapshot, "_checked", snapshot.context)


def _copy_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    return v


def _to_value(value: str | Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        parts = value.split(".")
        out: Any = parts[-1]
        for p in reversed(parts[:-1]):
            out = {p: out}
        return out
    return value


def _matches(test: str | Mapping[str, Any], actual: Any) -> bool:
    t = _to_value(test)
    if isinstance(actual, str):
        return isinstance(t, str) and t == actual
    if isinstance(t, str):
        return t in actual
    if not isinstance(t, Mapping):
        return False
    for k, sub in t.items():
        if k not in actual:
            return False
        if not _matches(sub, actual[k]):
            return False
    return True
