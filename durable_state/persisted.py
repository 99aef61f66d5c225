"""Persisted actors: load, lease, drive, fenced save, release.

This is where the statechart core, a :class:`~durable_state.storage.Storage`
and an optional :class:`~durable_state.locks.LockManager` meet::

    async with persisted_actor("order-42", machine, storage=storage, lock=locks) as actor:
        await actor.send("ADD", event_id="sqs-msg-7f3a")

The save at the end is a compare-and-set on the storage version that was read,
in every locking mode. A lease keeps other holders out while the body runs; the
version check makes sure that a holder that lost its lease (frozen process, GC
pause, a Lambda frozen between invocations) can never overwrite newer state.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _json
from ._await import await_all as _await_all
from ._clock import Clock, SystemClock
from ._mailbox import SPAWN, STOP, Mailbox, child_actor_id
from ._options import Locking, SessionArgs, SessionOptions, Unpack
from ._shield import BodyCanceller
from .actor import Actor, Listener, Message, Subscription
from .errors import (
    ActorNotFound,
    DurableStateError,
    LockLost,
    SnapshotCorrupt,
    SnapshotIncompatible,
    UnknownMachine,
    VersionConflict,
)
from .statechart import DURABLE_KEY, Machine, SendEffect, Snapshot, SpawnEffect, to_event
from .statechart._snapshot import context_is_json

if TYPE_CHECKING:
    from .locks._hold import HeldLease
    from .locks._lease import Lease
    from .locks._protocol import LockManager
    from .storage._protocol import DueEntry, Storage, Stored

__all__ = (
    "Locking",
    "Outcome",
    "PersistedActor",
    "SessionArgs",
    "SessionOptions",
    "fire_due_timers",
    "persisted_actor",
    "with_persisted_actor",
)

logger: logging.Logger = logging.getLogger("durable_state.persisted")

T = TypeVar("T")

_DEFAULTS = SessionOptions()

# The events a child machine's end sends its parent: xstate.done.actor.<id>,
# xstate.error.actor.<id>.
_CHILD_ENDED = ("xstate.done.actor.", "xstate.error.actor.")


class Outcome(str, enum.Enum):
    """What :meth:`PersistedActor.send` did with an event.

    Truthy unless the event was a duplicate, so code written for the boolean
    ``send`` of earlier releases keeps working.
    """

    #: A transition was taken: the state or context changed, or actions ran.
    APPLIED = "applied"
    #: No transition that does something was enabled for the event (or the
    #: actor is done): nothing changed. (A transition without target and
    #: actions does nothing, as for xstate's ``can()``.)
    UNHANDLED = "unhandled"
    #: The ``event_id`` was seen before: the event was skipped.
    DUPLICATE = "duplicate"

    def __bool__(self) -> bool:
        return self is not Outcome.DUPLICATE


class PersistedActor:
    """An actor whose snapshot lives in a storage, guarded by an optional lease.

    Most code uses :func:`persisted_actor` or an
    :class:`~durable_state.ActorSystem`. This class keeps durable-x-state's
    explicit lifecycle for code that cannot use ``async with``::

        pa = PersistedActor("order-42", machine, storage=storage, lock=locks)
        await pa.init()
        try:
            await pa.send("ADD")
            await pa.save()
        finally:
            await pa.close()

    ``init()`` and ``close()`` enter no cancel scope and start no task group:
    they may run in different tasks and under different timeouts. In this
    form a lost lease cancels nothing; :meth:`save` refuses to write with
    :class:`LockLost` instead. ``async with PersistedActor(...)`` (and
    :func:`persisted_actor`) also cancel the body when the lease is lost.
    ``close()`` does not save.

    Args:
        actor_id: the actor's id, also its storage key and lock key.
        machine: the machine the actor runs; ``None`` to take it from
            ``machines`` by the machine id the stored snapshot names (a
            missing actor then cannot be created).
        storage: where snapshots are kept.
        lock: a lock manager; ``None`` runs optimistic (compare-and-set only),
            whatever ``locking`` says.
        input: machine input, used only when the actor is created.
        create: create a missing actor from the initial state; when False a
            missing actor raises :class:`ActorNotFound`.
        machines: machines by id, for ``machine=None``.
        options: the session options (:class:`~durable_state.SessionOptions`).
        delivered: outbox messages known to be delivered since the actor was
            stored (sequence number -> ``None``, or the reason a message can
            never be delivered): dropped from the outbox on load. An
            :class:`~durable_state.ActorSystem` passes what it delivered.
        parent: for an actor this session creates as a child actor: its
            parent's actor id and its id among the parent's children, known
            before its initial step (which may already send to the parent).
        **overrides: session options to change (``locking``, ``lock_ttl``,
            ``lock_wait``, ``processed_limit``, ``clock`` ...; see
            :class:`~durable_state.SessionOptions`).

    Raises:
        ValueError: an option is out of range, or ``actor_id`` is empty.
        TypeError: an unknown option.
    """

    def __init__(
        self,
        actor_id: str,
        machine: Machine | None,
        *,
        storage: Storage,
        lock: LockManager | None = None,
        input: Any = None,
        create: bool = True,
        machines: Mapping[str, Machine] | None = None,
        options: SessionOptions | None = None,
        delivered: Mapping[int, str | None] | None = None,
        parent: tuple[str, str] | None = None,
        **overrides: Unpack[SessionArgs],
    ) -> None:
        if not isinstance(actor_id, str) or not actor_id:
            raise ValueError("actor_id must be a non-empty string")
        opts = (options or _DEFAULTS).merged(**overrides)
        if machine is None and not machines:
            raise ValueError("a PersistedActor needs a machine, or machines to choose from")
        self.actor_id = actor_id
        self.storage = storage
        # With DynamoDB for both, the lease lives in the snapshot's item, and
        # a locked step is two requests: take the lease and read, write and
        # release (see durable_state._item_leases).
        self.lock: LockManager | None = _lock_for(storage, lock)
        self._fused = getattr(self.lock, "storage", None) is storage and hasattr(
            self.lock, "taken_item"
        )
        self.options = opts
        self.locking: Locking = opts.locking if lock is not None else None
        self.lock_ttl: float = opts.lock_ttl
        self.lock_wait: float | None = opts.lock_wait
        self._machine = machine
        self._machines = machines or {}
        self._input = input
        self._create = create
        self._clock: Clock = opts.clock if opts.clock is not None else SystemClock()
        self._processed_limit = opts.processed_limit
        self._started = False
        self._canceller: BodyCanceller | None = None
        self._held: HeldLease | None = None
        self._actor: Actor | None = None
        self._version: str | None = None
        self._saved: Snapshot | None = None
        # Recently applied event ids, oldest first: the list as loaded, made
        # into a dict (an ordered set with O(1) membership) only when an
        # event id is looked up or added. A step without event ids (most
        # steps) neither hashes nor copies thousands of ids.
        self._loaded_ids: list[str] = []
        self._processed: dict[str, None] | None = None
        self._processed_changes = 0
        self._saved_processed_changes = 0
        # Outbox, inbox and dead letters (see durable_state._mailbox).
        self.mailbox: Mailbox = Mailbox()
        self._saved_mailbox_changes = 0
        self._delivered = delivered
        self._parent = parent
        # How many sends in a row led to the event being processed now.
        self._hops = 0
        # The child machines of this actor: child id -> the child's actor id.
        # A send to a child whose spawn comes later in the same step (an
        # entry action of the invoking state) waits in _early for the spawn.
        self._children: dict[str, str] = {}
        self._early: dict[str, list[Mapping[str, Any]]] = {}
        # This session created the actor and its parent's spawn message has
        # not been taken yet (see start_as_child).
        self._awaiting_spawn = False
        # The due time the stored snapshot is indexed under (epoch ms).
        self._stored_due: int | None = None
        # Index entries of this actor to remove at the end (see retire_due).
        self._retiring: list[DueEntry] = []
        self._retired = 0
        # Emitted events wait here for the save that commits their step.
        self._emitted: list[Mapping[str, Any]] = []
        self._listeners: dict[str, list[Listener]] = {}
        self._created = False
        self._closed = False
        # Read through the storage's version cache (optimistic steps).
        self._from_cache = False

    def __repr__(self) -> str:
        machine = self._machine.id if self._machine is not None else None
        return (
            f"PersistedActor({self.actor_id!r}, machine={machine!r}, "
            f"version={self._version!r}, locking={self.locking!r})"
        )

    # ------------------------------------------------------------------ #
    # Read-only views
    # ------------------------------------------------------------------ #

    @property
    def machine(self) -> Machine:
        """The machine the actor runs.

        Raises:
            RuntimeError: ``machine=None`` was given and the actor is not loaded yet.
        """
        if self._machine is None:
            raise RuntimeError("the machine is known once the actor is loaded: call init() first")
        return self._machine

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot.

        Raises:
            RuntimeError: before :meth:`init`.
        """
        return self._live().snapshot

    @property
    def version(self) -> str | None:
        """The storage version last read or written (``None``: not stored yet)."""
        return self._version

    @property
    def created(self) -> bool:
        """Whether this session created the actor (it did not exist in storage)."""
        return self._created

    @property
    def lease(self) -> Lease | None:
        """The lease held right now (read-write mode), or ``None``."""
        return self._held.lease if self._held is not None else None

    @property
    def next_timer_at(self) -> float | None:
        """When the earliest pending timer is due (epoch ms), for a scheduler to wake the actor.

        Raises:
            RuntimeError: before :meth:`init`.
        """
        return self._live().next_timer_at

    @property
    def changed(self) -> bool:
        """Whether there is anything to save."""
        return (
            self._created
            or self._processed_changes != self._saved_processed_changes
            or self.mailbox.changes != self._saved_mailbox_changes
            or (self._actor is not None and self._actor.snapshot is not self._saved)
        )

    def persisted_snapshot(self) -> dict[str, Any]:
        """The persisted form of the current snapshot, as it would be saved.

        Raises:
            NotSerializable: if the context holds a value JSON cannot hold.
            RuntimeError: before :meth:`init`.
        """
        data = self._live().persisted_snapshot()
        meta = data[DURABLE_KEY]
        ids = self._processed
        meta["processed"] = list(ids) if ids is not None else list(self._loaded_ids)
        self.mailbox.dump(meta)
        return data

    def on(self, emitted_type: str, fn: Listener) -> Subscription:
        """Listen to emitted events; they are delivered only after a successful save.

        Args:
            emitted_type: the emitted event type to listen to (``"*"``: all).
            fn: ``fn(event)``; may return an awaitable, awaited by the save.

        Returns:
            A subscription; call it (or its ``unsubscribe()``) to stop.
        """
        listeners = self._listeners.setdefault(emitted_type, [])
        listeners.append(fn)
        return Subscription(lambda: listeners.remove(fn) if fn in listeners else None)

    def subscribe(self, fn: Callable[[Snapshot], Any]) -> Subscription:
        """Call ``fn(snapshot)`` after every macrostep.

        Returns:
            A subscription; call it (or its ``unsubscribe()``) to stop.

        Raises:
            RuntimeError: before :meth:`init`.
        """
        return self._live().subscribe(fn)

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #

    async def init(self) -> None:
        """Take the lease (read-write mode), load or create the actor, fire due timers.

        Timers that came due while nobody held the actor fire now, in due
        order, before any event is sent.

        Raises:
            LockTimeout: the lease is held elsewhere (after ``lock_wait``).
            ActorNotFound: the actor does not exist and ``create`` is False
                (or no machine was given to create it with).
            SnapshotCorrupt: the stored bytes are not a snapshot.
            SnapshotIncompatible: the snapshot belongs to another machine, a
                newer version, or names states the machine does not have.
            UnknownMachine: ``machine=None`` and the stored snapshot names a
                machine that is not among ``machines``.
            StorageError: the storage failed.
            RuntimeError: ``init()`` was already called, or ``close()`` was.
        """
        if self._closed:
            # close() is final: a lease taken now would never be released.
            raise RuntimeError("the PersistedActor is closed; make a new one")
        if self._started:
            raise RuntimeError("PersistedActor.init() was already called")
        self._started = True
        try:
            # Clients first: a lease's time must not be spent connecting.
            connect = getattr(self.storage, "connect", None)
            if connect is not None:
                await connect()
            if self.locking == "read-write":
                assert self.lock is not None
                held = self.lock.hold(self.actor_id, ttl=self.lock_ttl, wait=self.lock_wait)
                # No await between taking the lease and recording it: a
                # cancellation cannot land where nobody would release it.
                self._held = await held.start()
            await self._load()
        except BaseException:
            await self._finish(None, report_loss=False)
            raise

    async def _load(self) -> None:
        stored = await self._read()
        snapshot: Snapshot | None = None
        if stored is None:
            if not self._create or self._machine is None:
                raise ActorNotFound(self.actor_id)
            self._version = None
            self._created = True
            if self._parent is not None:
                self.mailbox.parent, self.mailbox.child = self._parent
                self._awaiting_spawn = True
        else:
            raw = stored.data
            data = _decode(raw, self.actor_id)
            if self._machine is None:
                self._machine = self._choose_machine(data)
            try:
                snapshot = self._machine.restore_snapshot(data, key=self.actor_id, from_json=True)
            except SnapshotIncompatible as exc:
                if exc.key is None:
                    raise SnapshotIncompatible(exc.reason, key=self.actor_id) from exc
                raise
            if (
                type(raw) is bytes
                and b"NaN" not in raw
                and b"Infinity" not in raw
                and data[DURABLE_KEY].get("version") == self._machine.version
            ):
                # Decoded here from JSON without the constants json.loads
                # lets through, and not migrated: the context holds plain
                # JSON, which the save does not walk again.
                context_is_json(snapshot)
            processed = data[DURABLE_KEY].get("processed") or []
            if not isinstance(processed, list) or not _strings(processed):
                raise SnapshotCorrupt(self.actor_id, "$durable.processed is not a list of strings")
            if self._processed_limit:
                self._loaded_ids = processed[-self._processed_limit :]
            self.mailbox = Mailbox.load(data[DURABLE_KEY], self.actor_id)
            self._saved_mailbox_changes = self.mailbox.changes
            self._version = stored.version
            self._stored_due = _due_of(snapshot, self.mailbox)
            if self._delivered:
                # Messages delivered since this snapshot was saved leave the
                # outbox now, riding on this session's save.
                self.mailbox.settle(self._delivered)
            actors = self.machine.actors
            for cid, record in snapshot.children.items():
                if record.status == "active" and isinstance(actors.get(record.src), Machine):
                    self._children[cid] = child_actor_id(self.actor_id, cid, record.system_id)
        self._saved = snapshot
        self._actor = self._new_actor(snapshot, self._input)
        if self.mailbox.stopped:
            return  # stopped by its parent: no timers fire, no work restarts
        await self._actor.start()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "loaded actor %s (version %s, %s, lease token %s)",
                self.actor_id,
                self._version,
                "created" if self._created else "restored",
                self.lease.token if self.lease else None,
            )

    def _new_actor(self, snapshot: Snapshot | None, input: Any) -> Actor:
        return Actor(
            self.machine,
            snapshot,
            clock=self._clock,
            input=input,
            id=self.actor_id,
            emit=self._emitted.append,  # held until the save that commits the step
            relay=self._relay,  # messages and children go through the outbox
        )

    async def _read(self) -> Stored | None:
        """The stored snapshot; without a lease, from the storage's version cache if it has one.

        Optimistic and ``"write"`` steps end with a compare-and-set on the
        version read, which checks whatever the cache cannot know: a stale
        entry costs a ``VersionConflict`` (and the entry), never a lost
        update. With ``cache=True`` on the storage, such a step is then one
        request. A leased step reads the backend.
        """
        if self._held is not None and self._fused:
            item = self.lock.taken_item(self._held.lease)  # type: ignore[union-attr]
            if item is not None:
                # The request that took the lease brought the snapshot along.
                found: Stored | None = await self.storage.stored_from_item(  # type: ignore[attr-defined]
                    self.actor_id, item
                )
                return found
        if self.locking != "read-write":
            cached_read = getattr(self.storage, "cached_read", None)
            if cached_read is not None:
                stored: Stored | None = await cached_read(self.actor_id)
                self._from_cache = True
                return stored
        return await self.storage.read(self.actor_id)

    def _choose_machine(self, data: Mapping[str, Any]) -> Machine:
        machine_id = data[DURABLE_KEY].get("machine")
        machine = self._machines.get(machine_id) if isinstance(machine_id, str) else None
        if machine is None:
            raise UnknownMachine(machine_id, key=self.actor_id, known=tuple(self._machines))
        return machine

    async def send(
        self,
        event: Mapping[str, Any] | str,
        *,
        event_id: str | None = None,
        rollback_on_error: bool = False,
    ) -> Outcome:
        """Send an event; with ``event_id``, at most once per id.

        Args:
            event: a mapping with a string ``"type"``, or a bare type string.
            event_id: an id for idempotent delivery (e.g. an SQS message id).
                An id among the recently applied ones is skipped.
            rollback_on_error: when the step raises, put the actor back where
                it was before this event (snapshot, held emitted events,
                remembered ids), so that the session can go on and save the
                other events. Side effects that already ran are not undone.

        Returns:
            :attr:`Outcome.APPLIED` when a transition was taken,
            :attr:`Outcome.UNHANDLED` when none was enabled (nothing changed),
            :attr:`Outcome.DUPLICATE` when ``event_id`` was a redelivery and
            the event was skipped. (Truthy unless a duplicate.)

        Raises:
            InvalidEvent: the event is malformed.
            ValueError: ``event_id`` is not a non-empty string.
            RuntimeError: before :meth:`init`.
            Exception: whatever an implementation raised. Without
                ``rollback_on_error``: if a custom action or a listener
                raised, the step was taken and ``event_id`` is remembered; if
                the machine raised (an assign, a guard), it was not and the id
                is not.
        """
        actor = self._live()
        ev = to_event(event)
        if event_id is not None:
            if not isinstance(event_id, str) or not event_id:
                raise ValueError("event_id must be a non-empty string")
            if event_id in self._event_ids():
                logger.info("actor %s: skipped redelivered event %s", self.actor_id, event_id)
                return Outcome.DUPLICATE
        if self.mailbox.stopped:
            return Outcome.UNHANDLED  # stopped by its parent
        before = actor.snapshot
        emitted = len(self._emitted)
        mark = self.mailbox.mark()
        children = dict(self._children)
        try:
            handled = await actor.send(ev)
        except BaseException:
            self._early.clear()
            if rollback_on_error:
                actor.rewind(before)
                del self._emitted[emitted:]
                self.mailbox.rewind(mark)
                self._children = children
            elif event_id is not None and actor.snapshot is not before:
                # A custom action or a listener that raises does so after the
                # step was taken: the event was applied (and save_on_error
                # may save it), so a redelivery must still be skipped.
                self._remember(event_id)
            raise
        self._drop_early()
        if event_id is not None:
            self._remember(event_id)
        return Outcome.APPLIED if handled else Outcome.UNHANDLED

    async def receive(
        self, sender: str, seq: int, event: Mapping[str, Any] | str, *, hops: int = 1
    ) -> Outcome:
        """Apply a message from another actor, exactly once.

        A message whose sequence number this actor has applied from
        ``sender`` before is skipped, however many other events came
        between; otherwise it is sent like an event (rolled back alone if its
        step raises) and its number is remembered in the same save.

        Args:
            sender: the sending actor's id.
            seq: the message's sequence number at the sender.
            event: the event.
            hops: how many sends in a row led to this message.

        Returns:
            The outcome (:attr:`Outcome.DUPLICATE` for a redelivery).

        Raises:
            Exception: whatever the step raised (it was rolled back).
        """
        if self.mailbox.seen(sender, seq):
            logger.info("actor %s: skipped message %d from %s again", self.actor_id, seq, sender)
            return Outcome.DUPLICATE
        self._hops = hops
        children = self._children
        kind = event if isinstance(event, str) else event.get("type")
        if isinstance(kind, str) and kind.startswith(_CHILD_ENDED):
            cid = kind.split(".", 3)[3]
            if children.get(cid) == sender:
                # Its child finished: leaving the invoking state now needs no
                # stop message.
                self._children = {c: a for c, a in children.items() if c != cid}
        try:
            outcome = await self.send(event, rollback_on_error=True)
        except BaseException:
            self._children = children
            raise
        finally:
            self._hops = 0
        self.mailbox.received(sender, seq)
        return outcome

    def post(
        self,
        to: str,
        event: Mapping[str, Any],
        *,
        machine: str | None = None,
        undeliverable: str | None = None,
    ) -> dict[str, Any]:
        """Put a message in the outbox; it leaves after the save that holds it commits.

        Args:
            to: the receiving actor's id.
            event: the event.
            machine: the receiver's machine id, for a message that creates it.
            undeliverable: why the message can go nowhere, when that is known
                already: it is kept as a dead letter at once.

        Returns:
            The outbox entry (or dead letter).

        Raises:
            OutboxFull: too many messages wait for delivery already.
            NotSerializable: the event cannot be stored.
        """
        return self.mailbox.post(
            to,
            event,
            now_ms=self._clock.now_ms(),
            hops=self._hops + 1,
            machine=machine,
            undeliverable=undeliverable,
        )

    def stop_by_parent(self) -> None:
        """Mark the actor stopped (its parent stopped it): it takes no more events.

        Its own child machines are stopped as well (a stop message to each).
        """
        if self.mailbox.stopped:
            return
        self.mailbox.stopped = True
        self.mailbox.changes += 1
        for to in self._children.values():
            self.post(to, {"type": STOP})
        self._children.clear()

    async def start_as_child(self, parent: str, child_id: str, input: Any) -> None:
        """Take the spawn message of a parent: become its child ``child_id``.

        The actor created by this session for that message only records its
        parent (it started from its initial state with ``input`` already). An
        actor that existed -- the parent invokes a child under the same id
        again, after the earlier one finished or was stopped -- starts over
        from its initial state with ``input``, as xstate restarts a child;
        what it received and sent before (inbox, outbox, sequence numbers)
        stays, so that exactly-once holds across the restart.
        """
        box = self.mailbox
        box.parent, box.child = parent, child_id
        box.changes += 1
        if self._awaiting_spawn:
            self._awaiting_spawn = False
            return
        old = self._live()
        await old.stop()
        for to in self._children.values():
            self.post(to, {"type": STOP})
        self._children.clear()
        box.stopped = False
        box.reported = False
        self._input = input
        self._actor = self._new_actor(None, input)
        await self._actor.start()

    def _relay(self, message: Message) -> None:
        """A step's message or child lifecycle, into the outbox (it leaves with the save).

        Child machines are child actors of their own, under
        :func:`~durable_state._mailbox.child_actor_id`: a spawn is their
        first message (:data:`~durable_state._mailbox.SPAWN`, which creates
        them with their input), a stop their last.
        """
        if isinstance(message, SpawnEffect):
            to = child_actor_id(self.actor_id, message.child_id, message.system_id)
            self._children[message.child_id] = to
            spawn = {"type": SPAWN, "childId": message.child_id, "input": message.input}
            self.post(to, spawn, machine=message.machine.id)
            for event in self._early.pop(message.child_id, ()):
                self.post(to, event)
        elif not isinstance(message, SendEffect):  # StopChildEffect
            stopped = self._children.pop(message.child_id, None)
            if stopped is not None:
                self.post(stopped, {"type": STOP})
        elif message.to_parent:
            parent = self.mailbox.parent
            self.post(
                parent or "#_parent",
                message.event,
                undeliverable=None if parent else "send_parent from an actor that has no parent",
            )
        elif message.to_child:
            child = self._children.get(message.target)
            if child is not None:
                self.post(child, message.event)
            else:
                # Its invoking state's entry actions send before the spawn.
                self._early.setdefault(message.target, []).append(message.event)
        else:
            self.post(message.target, message.event, machine=message.machine)

    def _drop_early(self) -> None:
        """Sends to a child that did not start in the step: dropped, as xstate drops them."""
        for child, events in self._early.items():
            for event in events:
                logger.debug("actor %s: child %s is gone: dropped %s", self.actor_id, child, event)
        self._early.clear()

    def _event_ids(self) -> dict[str, None]:
        """The remembered event ids (made from the loaded list on first use)."""
        ids = self._processed
        if ids is None:
            ids = self._processed = dict.fromkeys(self._loaded_ids)
            self._loaded_ids = []
        return ids

    def _remember(self, event_id: str) -> None:
        if not self._processed_limit:
            return
        ids = self._event_ids()
        ids[event_id] = None
        if len(ids) > self._processed_limit:
            del ids[next(iter(ids))]
        self._processed_changes += 1

    async def save(self) -> str | None:
        """Save the snapshot if it changed: a compare-and-set on the version read.

        In ``"write"`` mode the lease is taken for the duration of the write.
        When the next due time (the earliest timer) changed, the storage's
        due index gets an entry for it first, so that a waker finds the actor
        even if the process dies right after the write. After a successful
        save, emitted events held since the last save are delivered to
        listeners.

        Returns:
            The new storage version, or ``None`` if nothing changed.

        Raises:
            VersionConflict: someone else saved since this actor was read;
                nothing was written and the newer state stays.
            LockLost: the lease was found lost, or had run out on the local
                clock, before the write; nothing was written. (A loss found
                while the write is in flight cancels it; like any interrupted
                write its outcome is then unknown, and either outcome is
                consistent because the write is a compare-and-set.)
            LockTimeout: (``"write"`` mode) the lease could not be taken.
            NotSerializable: the context holds a value JSON cannot hold;
                nothing was written (the error names the value's path).
            StorageError: the storage failed.
            RuntimeError: before :meth:`init`.
        """
        return await self._save(release=False)

    async def _save(self, *, release: bool) -> str | None:
        """:meth:`save`; with ``release``, a lease kept in the snapshot's item is given
        back by the write itself (the session's last save: one request, not two)."""
        actor = self._live()
        self._drop_early()
        if not self.changed:
            return None
        # What is encoded now is what the write stores; timers or invoked
        # work may move the actor on while the write is in flight, and those
        # later changes must stay "unsaved".
        snapshot = actor.snapshot
        self._report_to_parent(snapshot)
        processed_changes = self._processed_changes
        mailbox_changes = self.mailbox.changes
        payload = _json.dumps(self.persisted_snapshot())
        due = _due_of(snapshot, self.mailbox)
        # Likewise only the events emitted up to now are delivered after this
        # write; events emitted during it wait for the next save.
        emitted, self._emitted[:] = list(self._emitted), []
        try:
            if due is not None and due != self._stored_due:
                # Index first, snapshot second: a crash in between leaves an
                # entry that costs one load, never a timer nobody fires.
                await self.storage.add_due(self.actor_id, due)
            if self.locking == "write":
                assert self.lock is not None
                async with self.lock.hold(
                    self.actor_id, ttl=self.lock_ttl, wait=self.lock_wait
                ) as held:
                    version = await self._write(payload, held.token)
            else:
                held_now = self._held
                if held_now is not None:
                    # Fenced by the storage version anyway; this turns what
                    # the holder can see for itself into LockLost without a
                    # round trip.
                    held_now.check("before saving")
                if release and held_now is not None and self._fused and not self._stale(due):
                    version = await self._write_and_release(payload, held_now)
                else:
                    version = await self._write(payload, held_now.token if held_now else None)
        except BaseException:
            # Not delivered: the save failed. Kept (in order) for a retry.
            self._emitted[:0] = emitted
            raise
        self._version = version
        self._saved = snapshot
        self._stored_due = due
        self._created = False
        self._saved_processed_changes = processed_changes
        self._saved_mailbox_changes = mailbox_changes
        await _await_all(self._deliver(emitted))
        return version

    def _report_to_parent(self, snapshot: Snapshot) -> None:
        """A child that finished tells its parent, in the save that finishes it."""
        box = self.mailbox
        if box.parent is None or box.child is None or box.reported or box.stopped:
            return
        if snapshot.status == "done":
            event: dict[str, Any] = {
                "type": f"xstate.done.actor.{box.child}",
                "output": snapshot.output,
                "actorId": box.child,
            }
        elif snapshot.status == "error":
            error = snapshot.error
            event = {
                "type": f"xstate.error.actor.{box.child}",
                "error": f"{type(error).__name__}: {error}" if error is not None else None,
                "actorId": box.child,
            }
        else:
            return
        box.reported = True
        self.post(box.parent, event)

    def _deliver(self, events: list[Mapping[str, Any]]) -> list[Awaitable[Any]]:
        pending: list[Awaitable[Any]] = []
        for ev in events:
            for fn in (*self._listeners.get(ev["type"], ()), *self._listeners.get("*", ())):
                result = fn(ev)
                if inspect.isawaitable(result):
                    pending.append(result)
        return pending

    async def _write_and_release(self, payload: bytes, held: HeldLease) -> str:
        """Save and give back the lease kept in the snapshot's item, in one request."""
        lease = held.lease
        assert self.lock is not None
        version: str = await self.storage.write_and_release(  # type: ignore[attr-defined]
            self.actor_id,
            payload,
            if_version=self._version,
            owner=lease.owner,
            token=lease.token,
            now=self.lock.clock(),
        )
        held.released_elsewhere()
        logger.info(
            "saved actor %s: version %s -> %s, lease token %s released",
            self.actor_id,
            self._version,
            version,
            lease.token,
        )
        return version

    async def _write(self, payload: bytes, token: int | None) -> str:
        expected = self._version
        try:
            version = await self.storage.write(self.actor_id, payload, if_version=expected)
        except VersionConflict as exc:
            logger.warning(
                "refused to save actor %s (lease token %s): %s", self.actor_id, token, exc
            )
            raise
        logger.info(
            "saved actor %s: version %s -> %s (lease token %s)",
            self.actor_id,
            expected,
            version,
            token,
        )
        return version

    async def close(self) -> None:
        """Stop the actor and release the lease. Does not save. Idempotent.

        May be called from another task than :meth:`init`. The release
        finishes even if the caller is cancelled meanwhile.

        Raises:
            LockLost: the lease was found lost while the actor was held.
        """
        await self._finish(None)

    async def _finish(self, exc: BaseException | None, *, report_loss: bool = True) -> None:
        """Stop the actor, release the lease, report a loss (unless the body failed)."""
        if self._closed:
            return
        self._closed = True
        held, self._held = self._held, None
        actor = self._actor
        self._emitted.clear()
        try:
            if actor is not None:
                # Cancels timers and invoked work at once; a cancellation of
                # this task while it waits for them to end only skips the wait.
                await actor.stop()
        finally:
            if held is not None:
                await self._release(held, exc, report_loss=report_loss)

    async def _release(
        self, held: HeldLease, exc: BaseException | None, *, report_loss: bool
    ) -> None:
        if not held.lost:
            # A body that blocked the event loop past the expiry gave the
            # renewal no chance to run; the lease was lost all the same.
            try:
                held.check("before the session ended")
            except LockLost:
                pass
        await held.stop()
        if held.lost and report_loss:
            try:
                held.check()
            except LockLost as lost:
                if exc is None:
                    raise
                logger.warning(
                    "actor %s: the lease was lost while the body failed; the body's %s "
                    "propagates: %s",
                    self.actor_id,
                    type(exc).__name__,
                    lost,
                )

    def session(self) -> AbstractAsyncContextManager[PersistedActor]:
        """Open the actor for a body and save it when the body succeeds.

        What :func:`persisted_actor` does with this actor: take the lease,
        load, run the body (cancelled if the lease is lost), save if the body
        succeeded and something changed (or, with ``save_on_error``, if it
        failed), stop the actor and release the lease in every case.

        Returns:
            An async context manager yielding this actor (single use).
        """
        return _Session(self)

    @property
    def read_cached(self) -> bool:
        """Whether the snapshot came through the storage's version cache (it may be stale)."""
        return self._from_cache

    @property
    def stored_due(self) -> int | None:
        """The due time (epoch ms) the stored snapshot is indexed under, or ``None``.

        The earliest pending timer of the snapshot as last read or saved,
        rounded up to a millisecond: a waker finds the actor then.
        """
        return self._stored_due

    def retire_due(self, entries: list[DueEntry]) -> None:
        """Remove these due-index entries of this actor when the session ends well.

        Entries that a waker found for this actor and that no longer match
        its next due time cost a load each time they are read; the session
        removes them after its last save (or after finding nothing to save),
        keeping one that matches the due time it leaves stored. In
        ``read-write`` mode this happens while the lease is still held, so
        that no other writer can index the same due time in between and
        lose it to the removal (with a lease kept in the snapshot's item,
        the last write then leaves the lease to a release of its own). A
        lease found lost by then leaves the entries for a later visit. A
        failed removal is logged; the entry stays.

        Args:
            entries: entries of the due index whose key is this actor's id.
        """
        self._retiring.extend(e for e in entries if e.key == self.actor_id)

    @property
    def retired_due(self) -> int:
        """How many index entries :meth:`retire_due` removed."""
        return self._retired

    def _stale(self, due: int | None) -> bool:
        """Whether an entry to retire does not match ``due``: it is removed under the lease."""
        return any(entry.due_ms != due for entry in self._retiring)

    async def _retire_due(self) -> None:
        entries, self._retiring = self._retiring, []
        held = self._held
        if held is not None:
            try:
                held.check("before removing stale index entries")
            except LockLost:
                return  # no longer ours to clean up: a later visit removes them
        keep = self._stored_due
        for entry in dict.fromkeys(entries):
            if entry.due_ms == keep:
                continue
            try:
                await self.storage.remove_due(entry)
            except DurableStateError as exc:
                logger.warning(
                    "actor %s: could not remove index entry %s: %s", self.actor_id, entry, exc
                )
            else:
                self._retired += 1

    @property
    def lease_lost(self) -> bool:
        """Whether the lease held by this session was found lost."""
        return self._held is not None and self._held.lost

    async def __aenter__(self) -> PersistedActor:
        """Load the actor and hold it; a lost lease cancels the body.

        Raises:
            Exception: as :meth:`init`.
        """
        await self.init()
        if self._held is not None:
            canceller = BodyCanceller()
            self._canceller = canceller
            self._held.on_lost(canceller.cancel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the actor and release the lease (no save: see :func:`persisted_actor`).

        Raises:
            LockLost: the lease was lost and the body ended because of it (or
                finished anyway).
        """
        if self._exit_scope(exc_type, exc, tb):
            exc = None  # the body was cancelled by the loss: report the loss
        await self._finish(exc)

    def _exit_scope(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """End the body; True when it ended because the loss cancelled it."""
        canceller, self._canceller = self._canceller, None
        return canceller is not None and canceller.exit(exc_type)

    def _live(self) -> Actor:
        if self._actor is None:
            raise RuntimeError("the persisted actor is not loaded: call init() first")
        return self._actor


def persisted_actor(
    actor_id: str,
    machine: Machine,
    *,
    storage: Storage,
    lock: LockManager | None = None,
    input: Any = None,
    create: bool = True,
    options: SessionOptions | None = None,
    **overrides: Unpack[SessionArgs],
) -> AbstractAsyncContextManager[PersistedActor]:
    """Load an actor, hold it while the body runs, save it if the body succeeds.

    ``locking="read-write"`` takes the lease, reads, runs the body, saves and
    releases; ``"write"`` reads without the lease and takes it only to save;
    ``None`` (or no ``lock``) takes no lease at all. In every mode the save is
    a compare-and-set on the version that was read.

    While the body runs, the lease is renewed in the background; if it is lost
    the body is cancelled, nothing is saved and :class:`LockLost` is raised.
    A loss noticed only after the save succeeded is logged, not raised: the
    save was a compare-and-set on the version read, so the commit stands.
    The snapshot is saved when the body exits normally and something changed
    (a created actor counts as a change). An exception in the body discards
    the body's events unless ``save_on_error`` is set. The lease is released
    in every case, even when the task is cancelled.

    This is an :class:`~durable_state.ActorSystem` session of one machine,
    without the system's turn-taking between tasks of one process.

    Args:
        actor_id: the actor's id (its storage key and lock key).
        machine: the machine the actor runs.
        storage: where snapshots are kept.
        lock: a lock manager, or ``None`` for optimistic mode.
        input: machine input for a newly created actor.
        create: create a missing actor (else :class:`ActorNotFound`).
        options: the session options (:class:`~durable_state.SessionOptions`).
        **overrides: session options to change: ``locking``, ``lock_ttl``,
            ``lock_wait``, ``processed_limit``, ``clock``, ``save_on_error``.

    Returns:
        An async context manager yielding the loaded :class:`PersistedActor`
        (single use; the arguments are checked when it is entered).

    Raises:
        LockTimeout: the lease is held elsewhere.
        LockLost: the lease was lost while the body ran or before the save.
        VersionConflict: someone else saved first; the newer state stays.
        ActorNotFound: the actor does not exist and ``create`` is False.
        SnapshotCorrupt: the stored bytes are not a snapshot (left untouched).
        SnapshotIncompatible: the snapshot does not fit the machine (untouched).
        NotSerializable: the context cannot be stored; nothing was written.
    """
    return _Session(
        None,
        partial(
            PersistedActor,
            actor_id,
            machine,
            storage=storage,
            lock=lock,
            input=input,
            create=create,
            options=options,
            **overrides,
        ),
    )


class _Session:
    """A body run on an actor: open it, save on success, release in every case.

    A plain async context manager (not a generator): a session is opened
    for every step, and what it costs is paid on every step.
    """

    __slots__ = ("_make", "_pa")

    def __init__(
        self, pa: PersistedActor | None, make: Callable[[], PersistedActor] | None = None
    ) -> None:
        self._pa = pa
        self._make = make

    async def __aenter__(self) -> PersistedActor:
        pa = self._pa
        if pa is None:
            assert self._make is not None
            pa = self._pa = self._make()
            self._make = None
        await pa.__aenter__()
        return pa

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        pa = self._pa
        assert pa is not None
        if exc_type is not None:
            await _ended_badly(pa, exc if exc is not None else exc_type(), body_done=False)
            return False  # the body's exception propagates
        try:
            # Still inside the body's cancel scope: a loss found while the
            # write is in flight cancels it. (Stale index entries to retire
            # need the lease after the write: then the write keeps it.)
            version = await pa._save(release=True)
        except BaseException as error:
            await _ended_badly(pa, error, body_done=True)
            raise
        pa._exit_scope(None, None, None)
        if pa._retiring:
            try:
                await pa._retire_due()
            except BaseException:
                await pa._finish(None, report_loss=False)
                raise
        try:
            await pa._finish(None)
        except LockLost as lost:
            if version is None:
                raise
            # The loss was noticed only after the write had succeeded: the
            # write was a compare-and-set on the version read, so it
            # overwrote nothing newer, and the commit stands. Raising now
            # would invite a retry that applies the body's events twice.
            logger.warning(
                "actor %s: saved as version %s, then found the lease lost: %s",
                pa.actor_id,
                version,
                lost,
            )
        return False


async def _ended_badly(pa: PersistedActor, exc: BaseException, *, body_done: bool) -> None:
    """The body (or the save after it) raised ``exc``: stop and release; the caller re-raises.

    Raises:
        LockLost: the body was cancelled by the loss of the lease (the loss
            is the error then).
    """
    if pa._exit_scope(type(exc), exc, exc.__traceback__):
        # Cancelled by the loss of the lease: the loss is the error.
        try:
            await pa._finish(None)
        except LockLost as lost:
            raise lost from lost.__cause__
        return
    try:
        if (
            pa.options.save_on_error
            and not body_done
            and isinstance(exc, Exception)
            and not pa.lease_lost
        ):
            try:
                await pa.save()
            except Exception:
                # The save (or a listener of its emitted events) failing
                # too must not hide why the body failed; it is logged.
                logger.warning(
                    "actor %s: saving after a failed body failed too",
                    pa.actor_id,
                    exc_info=True,
                )
    finally:
        # Whatever the save did (even if cancelled), the actor is stopped
        # and the lease released.
        await pa._finish(exc)


async def with_persisted_actor(
    params: Mapping[str, Any], callback: Callable[[PersistedActor], Awaitable[T]]
) -> T:
    """Run ``callback(actor)`` inside :func:`persisted_actor` and return its result.

    durable-x-state's ``withPersistedActor``: the actor is always closed (the
    lease released), even when the callback raises; it is saved only when the
    callback succeeds.

    Args:
        params: the arguments of :func:`persisted_actor` as a mapping, with
            ``actor_id`` and ``machine`` among them.
        callback: an async function of the actor.

    Returns:
        What the callback returned.

    Raises:
        TypeError: if ``actor_id`` or ``machine`` is missing from ``params``.
        Exception: whatever :func:`persisted_actor` or the callback raised.
    """
    kwargs = dict(params)
    try:
        actor_id = kwargs.pop("actor_id")
        machine = kwargs.pop("machine")
    except KeyError as exc:
        raise TypeError(f"with_persisted_actor params need {exc.args[0]!r}") from None
    async with persisted_actor(actor_id, machine, **kwargs) as actor:
        return await callback(actor)


async def fire_due_timers(
    actor_id: str,
    machine: Machine,
    *,
    storage: Storage,
    lock: LockManager | None = None,
    **kwargs: Any,
) -> float | None:
    """Load an actor only to fire the timers that came due, and save it.

    Kept for code written before :class:`~durable_state.ActorSystem`, whose
    waker (:meth:`~durable_state.ActorSystem.fire_due`) finds due actors by
    itself. A missing actor is not created.

    Args:
        actor_id: the actor's id.
        machine: its machine.
        storage: where it is stored.
        lock: its lock manager (or ``None``).
        **kwargs: further arguments of :func:`persisted_actor`.

    Returns:
        When the next pending timer is due (epoch ms), or ``None``.

    Raises:
        ActorNotFound: the actor does not exist.
        Exception: as :func:`persisted_actor`.
    """
    kwargs.setdefault("create", False)
    async with persisted_actor(actor_id, machine, storage=storage, lock=lock, **kwargs) as actor:
        return actor.next_timer_at


def _lock_for(storage: Storage, lock: LockManager | None) -> LockManager | None:
    """The lock manager for ``storage``: with DynamoDB for both, leases in the snapshot items."""
    if lock is None or type(storage).__name__ != "DynamoDBStorage":
        return lock
    from ._item_leases import leases_for

    managed: LockManager = leases_for(storage, lock)
    return managed


def _due_of(snapshot: Snapshot, mailbox: Mailbox) -> int | None:
    """The due-index time of an actor: its earliest timer or undelivered message.

    A timer's time is rounded up to a ms, so that an actor is never woken
    before its timer is due.
    """
    timer = snapshot.next_timer_at if snapshot.status == "active" and not mailbox.stopped else None
    due = math.ceil(timer) if timer is not None else None
    outbox = mailbox.due() if mailbox.outbox else None
    if outbox is None:
        return due
    return outbox if due is None else min(due, outbox)


def _strings(items: list[Any]) -> bool:
    """Whether every item is a str.

    ``str.join`` checks thousands of ids in C (a quarter of the time of
    comparing their types in Python) and refuses any item that is not one.
    """
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def _decode(raw: bytes, key: str) -> dict[str, Any]:
    try:
        data = _json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotCorrupt(key, f"not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SnapshotCorrupt(key, f"expected a JSON object, found {type(data).__name__}")
    meta = data.get(DURABLE_KEY)
    if not isinstance(meta, dict):
        raise SnapshotCorrupt(key, f"no {DURABLE_KEY!r} metadata: not a durable_state snapshot")
    return data


async def read_persisted(storage: Storage, actor_id: str) -> Mapping[str, Any]:
    """Read an actor's stored snapshot without its machine, for tools that inspect it.

    The stored document is decoded and its ``"$durable"`` metadata checked,
    but nothing is restored, migrated or run (that needs the machine; see
    :func:`persisted_actor`), no lease is taken and nothing is written. This
    is what ``durable-state ls -l`` and ``show`` print.

    Args:
        storage: where the actor is stored.
        actor_id: the actor's id (its storage key).

    Returns:
        A read-only mapping with the keys ``"actor_id"``; ``"version"`` (the
        storage version read); ``"document"`` (the persisted snapshot as
        stored: xstate's shape plus ``"$durable"``); ``"machine"`` and
        ``"machine_version"`` (the machine id and version that wrote it, or
        ``None``); ``"status"``, ``"value"``, ``"context"``, ``"output"``,
        ``"error"`` (as stored); ``"timers"`` (the pending timers as
        :class:`~durable_state.statechart.Timer`, by due time);
        ``"processed"`` (the remembered event ids, oldest first);
        ``"next_timer_at"`` (the earliest due time in epoch ms, or ``None``)
        and ``"mailbox"`` (the outbox, inbox and dead letters, a
        :class:`~durable_state._mailbox.Mailbox`).

    Raises:
        ActorNotFound: nothing is stored under ``actor_id``.
        SnapshotCorrupt: the stored bytes are not a durable_state snapshot, or
            its timers or processed ids are malformed.
        StorageError: the storage failed.
    """
    from types import MappingProxyType

    from .statechart import Timer

    stored = await storage.read(actor_id)
    if stored is None:
        raise ActorNotFound(actor_id)
    data = _decode(stored.data, actor_id)
    meta: Mapping[str, Any] = data[DURABLE_KEY]
    timers: list[Timer] = []
    raw_timers = meta.get("timers") or []
    if not isinstance(raw_timers, list):
        raise SnapshotCorrupt(actor_id, f"{DURABLE_KEY}.timers is not a list")
    for i, t in enumerate(raw_timers):
        event = t.get("event") if isinstance(t, Mapping) else None
        due = t.get("due") if isinstance(t, Mapping) else None
        if (
            not isinstance(t, Mapping)
            or not isinstance(t.get("id"), str)
            or not isinstance(event, Mapping)
            or not isinstance(event.get("type"), str)
            or not isinstance(due, int | float)
            or isinstance(due, bool)
        ):
            raise SnapshotCorrupt(actor_id, f"{DURABLE_KEY}.timers[{i}] is malformed: {t!r}")
        timers.append(Timer(t["id"], dict(event), float(due), i))
    timers.sort(key=lambda t: (t.due_ms, t.seq))
    processed = meta.get("processed") or []
    if not isinstance(processed, list) or not all(isinstance(p, str) for p in processed):
        raise SnapshotCorrupt(actor_id, f"{DURABLE_KEY}.processed is not a list of strings")
    machine = meta.get("machine")
    version = meta.get("version")
    mailbox = Mailbox.load(meta, actor_id)
    return MappingProxyType(
        {
            "actor_id": actor_id,
            "version": stored.version,
            "document": data,
            "machine": machine if isinstance(machine, str) else None,
            "machine_version": (
                version if isinstance(version, int) and not isinstance(version, bool) else None
            ),
            "status": data.get("status"),
            "value": data.get("value"),
            "context": data.get("context"),
            "output": data.get("output"),
            "error": data.get("error"),
            "timers": tuple(timers),
            "processed": tuple(processed),
            "next_timer_at": timers[0].due_ms if timers else None,
            "mailbox": mailbox,
        }
    )
