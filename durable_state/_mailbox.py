"""The messages a persisted actor keeps in its own snapshot: outbox, inbox, dead letters.

Actors talk through their snapshots (the transactional outbox): a message
sent in a step is appended to the sender's **outbox**, in ``$durable``, and
saved in the same compare-and-set as the state change that sent it. Nothing
leaves before that save commits, so a step that is rolled back sends
nothing. After the commit the system delivers the outbox; a message whose
delivery failed stays there, and the sender's due-index entry brings a waker
back to deliver it.

Exactly once at the receiver: every message carries the sender's id and a
sequence number that grows with every message the sender sends. The
receiver keeps, in its own ``$durable.inbox``, the highest number it applied
from each sender, in the same save as the state change the message caused:
a redelivery (after any crash, however many other events came between) has
a number it has seen and is skipped. One entry per sender, not per event.
Messages from one sender to one receiver are delivered in order.

A message that cannot be delivered -- an unknown machine, a receiver that
does not exist and cannot be created, an event whose step fails, a chain of
sends longer than :data:`MAX_HOPS` (a cycle that never settles) -- is kept
as a **dead letter** in the sender's ``$durable.dead`` with the reason,
visible in ``durable-state show``, never dropped silently.

The persisted layout (every key is omitted while empty)::

    "$durable": {
        "outbox": [{"seq": 7, "to": "inventory", "event": {...}, "at": 1800000000000,
                    "machine": "inventory", "hops": 2}, ...],
        "seq": 8,                          # the next sequence number
        "inbox": {"order-42": 3, ...},     # highest sequence number applied, per sender
        "dead": [{"seq": 5, "to": "x", "event": {...}, "reason": "..."}],
        "parent": "order-42",              # for a child actor: its parent's id
        "child": "pay",                    # ... and its id among the parent's children
        "reported": true,                  # the child's done/error went to the parent
        "stopped": true,                   # stopped by its parent: takes no more events
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import _json
from ._keys import check_key
from .errors import InvalidKey, OutboxFull, SnapshotCorrupt

__all__ = (
    "MAX_DEAD",
    "MAX_HOPS",
    "MAX_OUTBOX",
    "OUTBOX_GRACE_MS",
    "SPAWN",
    "STOP",
    "Mailbox",
    "child_actor_id",
)

#: The message that makes a child actor: its parent's first message to it,
#: ``{"type": "$spawn", "childId": ..., "input": ...}`` (with the child's
#: machine id in the outbox entry).
SPAWN: Final = "$spawn"
#: The message that stops a child actor (its invoking state was left, or
#: :func:`~durable_state.stop_child`); it stops the child's children too.
STOP: Final = "$stop"

#: The most undelivered messages one actor may hold; a step that would send
#: more raises :class:`~durable_state.errors.OutboxFull` and is rolled back.
MAX_OUTBOX: Final = 1_000
#: A message that is the result of this many sends in a row is dead-lettered:
#: a cycle of sends that never settles stops there.
MAX_HOPS: Final = 100
#: The dead letters kept per actor (the oldest are dropped beyond that).
MAX_DEAD: Final = 100
#: How long after a message is written a waker takes over its delivery: the
#: sending process delivers it at once; a waker only after this grace period,
#: so that the two do not deliver the same message side by side.
OUTBOX_GRACE_MS: Final = 5_000
#: Storage keys are at most this long (every bundled backend's limit).
_MAX_KEY_BYTES: Final = 1024
#: The keys of ``$durable`` the mailbox is kept under.
_KEYS: Final = frozenset(
    ("outbox", "seq", "inbox", "dead", "parent", "child", "reported", "stopped")
)


def child_actor_id(parent_id: str, child_id: str, system_id: str | None = None) -> str:
    """The actor id of a child actor: its ``systemId`` if it has one, else ``parent/child``."""
    return system_id if system_id else f"{parent_id}/{child_id}"


@dataclass
class Mailbox:
    """The outbox, inbox and dead letters of one actor, as loaded and as they will be saved."""

    outbox: list[dict[str, Any]] = field(default_factory=list)
    next_seq: int = 1
    inbox: dict[str, int] = field(default_factory=dict)
    dead: list[dict[str, Any]] = field(default_factory=list)
    parent: str | None = None
    child: str | None = None
    reported: bool = False
    stopped: bool = False
    #: Bumped by every change, so that a session knows it has something to save.
    changes: int = 0

    @classmethod
    def load(cls, meta: Mapping[str, Any], key: str) -> Mailbox:
        """Read the mailbox from a snapshot's ``$durable``.

        Raises:
            SnapshotCorrupt: a mailbox key holds something of the wrong shape.
        """
        box = cls()
        if meta.keys().isdisjoint(_KEYS):
            return box  # the common case: an actor that never sent or received a message
        try:
            box.outbox = [_entry(e) for e in meta.get("outbox") or ()]
            box.next_seq = int(meta.get("seq") or 1)
            box.inbox = {str(k): int(v) for k, v in (meta.get("inbox") or {}).items()}
            box.dead = [dict(e) for e in meta.get("dead") or ()]
        except (TypeError, ValueError, AttributeError) as exc:
            raise SnapshotCorrupt(key, f"$durable mailbox is malformed: {exc}") from exc
        parent, child = meta.get("parent"), meta.get("child")
        box.parent = parent if isinstance(parent, str) else None
        box.child = child if isinstance(child, str) else None
        box.reported = meta.get("reported") is True
        box.stopped = meta.get("stopped") is True
        return box

    def dump(self, meta: dict[str, Any]) -> None:
        """Write the mailbox into a snapshot's ``$durable`` (empty parts are left out)."""
        if self.outbox:
            meta["outbox"] = [dict(e) for e in self.outbox]
        if self.next_seq > 1:
            meta["seq"] = self.next_seq
        if self.inbox:
            meta["inbox"] = dict(self.inbox)
        if self.dead:
            meta["dead"] = [dict(e) for e in self.dead]
        if self.parent is not None:
            meta["parent"] = self.parent
        if self.child is not None:
            meta["child"] = self.child
        if self.reported:
            meta["reported"] = True
        if self.stopped:
            meta["stopped"] = True

    # -- sending ------------------------------------------------------------- #

    def post(
        self,
        to: str,
        event: Mapping[str, Any],
        *,
        now_ms: float,
        hops: int,
        machine: str | None = None,
        undeliverable: str | None = None,
    ) -> dict[str, Any]:
        """Append a message to the outbox (or, when it cannot go anywhere, to the dead letters).

        Args:
            to: the receiving actor's id.
            event: the event.
            now_ms: the time of the send (epoch ms).
            hops: how many sends in a row led to this one.
            machine: the receiver's machine id, for a message that creates it.
            undeliverable: a reason the sender knows already why the message
                can go nowhere: it is numbered and buried at once.

        Returns:
            The entry.

        Raises:
            OutboxFull: the outbox already holds :data:`MAX_OUTBOX` messages.
            NotSerializable: the event holds a value JSON cannot hold.
        """
        if len(self.outbox) >= MAX_OUTBOX:
            raise OutboxFull(to, MAX_OUTBOX)
        _json.check_json(event, "message event")
        entry: dict[str, Any] = {
            "seq": self.next_seq,
            "to": to,
            "event": dict(event),
            "at": int(now_ms),
        }
        if machine is not None:
            entry["machine"] = machine
        if hops > 1:
            entry["hops"] = hops
        self.next_seq += 1
        self.changes += 1
        reason = undeliverable or _undeliverable(to, hops)
        if reason is not None:
            self.bury(entry, reason)
        else:
            self.outbox.append(entry)
        return entry

    def bury(self, entry: Mapping[str, Any], reason: str) -> None:
        """Keep a message that cannot be delivered as a dead letter."""
        dead = {k: v for k, v in entry.items() if k in ("seq", "to", "event", "machine")}
        dead["reason"] = reason
        self.dead.append(dead)
        del self.dead[:-MAX_DEAD]
        self.changes += 1

    def settle(self, outcomes: Mapping[int, str | None]) -> None:
        """Drop delivered messages; bury those whose delivery failed for good.

        Args:
            outcomes: sequence number -> ``None`` (delivered) or the reason
                it never will be.
        """
        kept: list[dict[str, Any]] = []
        for entry in self.outbox:
            seq = entry["seq"]
            if seq not in outcomes:
                kept.append(entry)
            elif outcomes[seq] is not None:
                self.bury(entry, str(outcomes[seq]))
        if len(kept) != len(self.outbox):
            self.outbox = kept
            self.changes += 1

    def due(self) -> int | None:
        """When a waker should deliver the outbox (epoch ms), or ``None`` when it is empty."""
        if not self.outbox:
            return None
        return int(min(e["at"] for e in self.outbox)) + OUTBOX_GRACE_MS

    # -- receiving ----------------------------------------------------------- #

    def seen(self, sender: str, seq: int) -> bool:
        """Whether the message ``seq`` of ``sender`` was applied already."""
        return self.inbox.get(sender, 0) >= seq

    def received(self, sender: str, seq: int) -> None:
        """Record that the message ``seq`` of ``sender`` was applied."""
        if self.inbox.get(sender, 0) < seq:
            self.inbox[sender] = seq
            self.changes += 1

    # -- rolling back one step ----------------------------------------------- #

    def mark(self) -> tuple[int, int, int, int]:
        """What :meth:`rewind` needs to undo everything after this point."""
        return len(self.outbox), len(self.dead), self.next_seq, self.changes

    def rewind(self, mark: tuple[int, int, int, int]) -> None:
        """Forget the messages sent (and buried) since ``mark``."""
        outbox, dead, next_seq, changes = mark
        del self.outbox[outbox:]
        del self.dead[dead:]
        self.next_seq = next_seq
        self.changes = changes


def _entry(raw: Any) -> dict[str, Any]:
    entry = dict(raw)
    if not isinstance(entry.get("seq"), int) or not isinstance(entry.get("to"), str):
        raise ValueError(f"outbox entry without seq/to: {raw!r}")
    if not isinstance(entry.get("event"), Mapping):
        raise ValueError(f"outbox entry without an event: {raw!r}")
    entry.setdefault("at", 0)
    return entry


def _undeliverable(to: str, hops: int) -> str | None:
    """Why a message cannot be delivered at all, or ``None``."""
    if hops > MAX_HOPS:
        return (
            f"this message is the {hops}th send in a row caused by one event "
            f"(more than {MAX_HOPS}): a cycle of sends that never settles?"
        )
    try:
        check_key(to, max_bytes=_MAX_KEY_BYTES, what="target actor id")
    except InvalidKey as exc:
        return str(exc)
    return None
