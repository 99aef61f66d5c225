"""Actor systems: many persisted actors on one storage, served in turns, woken when due.

An :class:`ActorSystem` holds what every session of an application shares:
the machines (a stored snapshot names its machine by id), the storage, the
lock manager and the :class:`~durable_state.SessionOptions`. On top of the
persisted actor it adds three things:

* **Turns.** Within one process, every use of one actor id -- a
  :meth:`~ActorSystem.send`, an ``async with system.actor(...)`` body, a
  waker's visit -- waits in one first-in, first-out queue, so they take turns
  instead of racing for the lease (which would make all but one fail with
  ``LockTimeout`` or retry blindly).
* **Group commit.** Sends waiting in that queue are served together: one
  load, one lease, one compare-and-set save for as many queued events as are
  waiting (at most ``batch_size``). Each caller still gets its own outcome,
  after the save that holds its event: applied, unhandled, duplicate, or its
  own error (an event whose step raises is rolled back alone; the others
  still commit).
* **A waker.** Every save that changes an actor's next due time records it in
  the storage's due index; :meth:`~ActorSystem.fire_due` reads the entries
  that are due and steps those actors, so timers fire with nobody sending.
  Any number of wakers may run at once (threads, processes, a cron Lambda):
  the lease and the compare-and-set decide, so each timer fires once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from ._clock import Clock, SystemClock
from ._mailbox import MAX_OUTBOX, SPAWN, STOP
from ._options import SessionArgs, SessionOptions, Unpack
from .errors import (
    ActorNotFound,
    DurableStateError,
    LockTimeout,
    SnapshotCorrupt,
    SnapshotIncompatible,
    StatechartError,
    UnknownMachine,
    VersionConflict,
)
from .persisted import Outcome, PersistedActor
from .statechart import Machine, SendTo, Snapshot, to_event
from .storage._base import MAX_DUE_MS
from .storage._protocol import DueEntry

if TYPE_CHECKING:
    from .locks import LockManager
    from .storage import Storage

__all__ = ("ActorSystem", "SendResult", "WakerStats")

logger: logging.Logger = logging.getLogger("durable_state.system")


class _Retry:
    """A delivery that failed for now: the message stays in the outbox."""


_RETRY = _Retry()

#: Messages from one actor to others being delivered at once in a process,
#: beyond which the callers' new sends to that actor wait (back-pressure),
#: so that a fast sender does not fill its outbox (``MAX_OUTBOX``).
_HIGH_WATER = MAX_OUTBOX // 2


@dataclass(frozen=True)
class SendResult:
    """What :meth:`ActorSystem.send` did, known once the save that holds the event committed.

    Truthy unless the event was a duplicate.

    Attributes:
        outcome: applied, unhandled or duplicate (:class:`~durable_state.Outcome`).
        snapshot: the actor's snapshot right after this event (later events of
            the same batch are not in it).
        version: the storage version of the save that holds the event
            (``None`` when nothing needed saving).
    """

    outcome: Outcome
    snapshot: Snapshot
    version: str | None

    @property
    def applied(self) -> bool:
        """Whether a transition was taken."""
        return self.outcome is Outcome.APPLIED

    @property
    def unhandled(self) -> bool:
        """Whether no transition was enabled (nothing changed)."""
        return self.outcome is Outcome.UNHANDLED

    @property
    def duplicate(self) -> bool:
        """Whether the event id had been applied before (the event was skipped)."""
        return self.outcome is Outcome.DUPLICATE

    def __bool__(self) -> bool:
        return bool(self.outcome)


@dataclass
class WakerStats:
    """Counters of an actor system's waker, for logs and metrics.

    Attributes:
        passes: :meth:`ActorSystem.fire_due` passes run.
        stepped: actors whose due work was done and saved.
        busy: visits skipped because another holder had the actor's lease.
        unknown_machine: visits to snapshots naming a machine nobody registered.
        failed: visits that failed otherwise (corrupt snapshots, backend
            errors, an action that raised); their entries are kept.
        stale: index entries removed because they no longer matched the actor.
    """

    passes: int = 0
    stepped: int = 0
    busy: int = 0
    unknown_machine: int = 0
    failed: int = 0
    stale: int = 0


# --------------------------------------------------------------------------- #
# The per-actor queue
# --------------------------------------------------------------------------- #

_Kind = Literal["send", "message", "tick", "turn"]


@dataclass(eq=False)
class _Request:
    kind: _Kind
    future: asyncio.Future[Any]
    event: Mapping[str, Any] | None = None
    event_id: str | None = None
    machine: Machine | None = None
    input: Any = None
    create: bool = False
    released: asyncio.Event | None = None  # turns: set when the body is done
    # messages: who sent it, its number there, how many sends led to it
    sender: str | None = None
    seq: int = 0
    hops: int = 1
    # messages: the in-order chain (one sender to one receiver) it belongs to
    chain: _Chain | None = None
    # visits: the index entries that led to it (removed if stale, see retire_due)
    entries: tuple[DueEntry, ...] = ()


class _Chain:
    """Messages from one sender to one receiver, queued at once and applied in order.

    Once one of them fails, the later ones are not applied (they stay in the
    outbox for a waker): the receiver remembers only the highest number it
    applied from a sender, so a later message applied first would make the
    earlier one look like a redelivery.
    """

    __slots__ = ("broken",)

    def __init__(self) -> None:
        self.broken = False


class _ChainBroken(Exception):
    """An earlier message of the same chain failed: this one was not applied."""


@dataclass(frozen=True)
class _Tick:
    """What a waker's visit found: whether it saved something, and the next due time."""

    stepped: bool
    due: int | None


class _Lane:
    """The FIFO queue of one actor id, and the task serving it."""

    def __init__(self, system: ActorSystem, actor_id: str) -> None:
        self.system = system
        self.actor_id = actor_id
        self.queue: deque[_Request] = deque()
        self.worker: asyncio.Task[None] | None = None
        # Set when there may be something to serve again (see _serve).
        self.wake = asyncio.Event()

    def submit(self, request: _Request) -> None:
        self.queue.append(request)
        self.wake.set()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(
                self._serve(), name=f"durable_state lane {self.actor_id!r}"
            )

    async def _serve(self) -> None:
        try:
            while self.queue:
                head = self.queue[0]
                if head.future.done():  # its caller stopped waiting before its turn
                    self.queue.popleft()
                    continue
                if head.kind in ("send", "turn") and self.system._throttled(self.actor_id):
                    # Back-pressure: the messages this actor sent are still
                    # being delivered. New work from callers waits; messages
                    # to this actor and visits do not (a delivery may wait
                    # for them).
                    batch = self._take_batch(internal_only=True)
                    if batch:
                        await self.system._run_batch(self.actor_id, batch)
                    else:
                        self.wake.clear()
                        await self.wake.wait()
                    continue
                if head.kind == "turn":
                    head.future.set_result(None)
                    assert head.released is not None
                    await head.released.wait()
                    self.queue.popleft()
                    continue
                batch = self._take_batch()
                await self.system._run_batch(self.actor_id, batch)
        except BaseException as exc:
            # Closed with the system: nobody will serve what is left.
            for request in self.queue:
                if not request.future.done():
                    request.future.set_exception(
                        RuntimeError(f"the actor system stopped serving {self.actor_id!r}")
                    )
            self.queue.clear()
            if not isinstance(exc, asyncio.CancelledError):
                logger.exception("the queue of actor %s failed", self.actor_id)
            raise
        finally:
            self.worker = None
            if self.system._lanes.get(self.actor_id) is self and not self.queue:
                del self.system._lanes[self.actor_id]

    def _take_batch(self, *, internal_only: bool = False) -> list[_Request]:
        """The sends and visits at the head of the queue that one session can serve.

        With ``internal_only``: the messages and visits waiting anywhere in
        the queue (in their order), passing the callers' sends and turns.
        """
        limit = self.system.options.batch_size
        if internal_only:
            batch: list[_Request] = []
            kept: deque[_Request] = deque()
            for request in self.queue:
                if request.future.done():
                    continue
                if (
                    len(batch) < limit
                    and request.kind in ("message", "tick")
                    and _compatible(batch, request)
                ):
                    batch.append(request)
                else:
                    kept.append(request)
            self.queue = kept
            return batch
        first = self.queue.popleft()
        batch = [first]
        while self.queue and len(batch) < limit:
            nxt = self.queue[0]
            if nxt.future.done():
                self.queue.popleft()
                continue
            if nxt.kind == "turn" or not _compatible(batch, nxt):
                break
            batch.append(self.queue.popleft())
        return batch


# --------------------------------------------------------------------------- #
# The background waker
# --------------------------------------------------------------------------- #

#: How far past an entry's due time the waker wakes up, so that a loop timer
#: firing a hair early never finds the timer not yet due.
_DUE_MARGIN_S = 0.001


def _by_key(entries: list[DueEntry]) -> dict[str, list[DueEntry]]:
    """Index entries grouped by actor, in the order their actors first appear."""
    by_key: dict[str, list[DueEntry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    return by_key


def _check_waker(poll_interval: float, limit: int, concurrency: int) -> None:
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {concurrency!r}")


class _Waker:
    """The background waker: visits each actor at its due time.

    Each poll reads the index up to one poll interval ahead and gives every
    actor found a visit that sleeps until its earliest due time, then waits
    for one of ``concurrency`` places. A timer therefore fires at its due
    time (plus the time its turn takes), not at the first poll after it. An
    actor with a visit planned or running is not planned again; at most
    ``limit`` visits are planned at once.
    """

    def __init__(self, system: ActorSystem, poll_interval: float, limit: int, concurrency: int):
        self.system = system
        self.ahead_ms = int(poll_interval * 1000)
        self.limit = limit
        self.places = asyncio.Semaphore(concurrency)
        self.visits: dict[str, asyncio.Task[None]] = {}
        self.changed = asyncio.Event()
        #: Whether the last poll read ``limit`` entries (more may be due).
        self.full = False
        #: How far the last poll read (epoch ms).
        self.horizon = 0

    async def poll(self) -> None:
        system = self.system
        horizon = min(int(system.clock.now_ms()) + self.ahead_ms, MAX_DUE_MS)
        entries = await system.storage.list_due(horizon, limit=self.limit)
        self.horizon = horizon
        system.stats.passes += 1
        self.full = len(entries) >= self.limit
        loop = asyncio.get_running_loop()
        for key, found in _by_key(entries).items():
            if key in self.visits or len(self.visits) >= self.limit:
                continue
            visit = loop.create_task(self._visit_when_due(key, found), name=f"wake {key}")
            self.visits[key] = visit
            visit.add_done_callback(partial(self._visited, key))

    async def _visit_when_due(self, key: str, found: list[DueEntry]) -> None:
        clock = self.system.clock
        due = min(entry.due_ms for entry in found)
        while True:
            wait = (due - clock.now_ms()) / 1000
            if wait > 0:
                await asyncio.sleep(wait + _DUE_MARGIN_S)
                if clock.now_ms() < due:
                    return  # a clock that the loop's does not drive: the next poll comes back
            async with self.places:
                tick = await self.system._visit(key, found)
            # A step that moved the actor's next due time within what the
            # last poll read (a chain of short timers) plans the next visit
            # now instead of at the next poll.
            if tick is None or not tick.stepped or tick.due is None:
                return
            if not due < tick.due <= self.horizon:
                return
            due, found = tick.due, [DueEntry(tick.due, key)]

    def _visited(self, key: str, visit: asyncio.Task[None]) -> None:
        self.visits.pop(key, None)
        self.changed.set()
        if not visit.cancelled() and visit.exception() is not None:  # pragma: no cover
            logger.error("waker: the visit of %s failed", key, exc_info=visit.exception())

    async def progressed(self, since: int) -> None:
        """Return once no visit is left and the visits changed something since ``since``.

        (Visits that changed nothing, such as those to unloadable snapshots
        whose entries stay, must not make the waker read the same entries
        again at once.)
        """
        stats = self.system.stats
        while self.visits or stats.stepped + stats.stale == since:
            self.changed.clear()
            await self.changed.wait()

    async def stop(self) -> None:
        """Cancel every planned or running visit; return once all have ended."""
        visits = list(self.visits.values())
        for visit in visits:
            visit.cancel()
        if visits:
            await asyncio.wait(visits)


def _machines_sent_to(machine: Machine) -> set[str]:
    """The machine ids a machine's ``send_to(..., machine=...)`` actions name.

    Found among its ``actions=`` implementations and inline in its config;
    what an ``enqueue_actions`` function sends is known only when it runs.
    """
    found: set[str] = set()
    stack: list[Any] = [*machine.actions.values(), machine.config]
    while stack:
        value = stack.pop()
        if isinstance(value, SendTo):
            if value.machine is not None:
                found.add(value.machine)
        elif isinstance(value, Mapping):
            stack.extend(v for k, v in value.items() if k != "context")  # data, no actions
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return found


def _spawned_by(creator: _Request | None) -> tuple[str, str] | None:
    """For a child actor its parent's spawn message creates: (parent id, child id)."""
    if creator is None or creator.kind != "message" or creator.event is None:
        return None
    if creator.event.get("type") != SPAWN or creator.sender is None:
        return None
    return creator.sender, str(creator.event.get("childId"))


def _compatible(batch: list[_Request], request: _Request) -> bool:
    """Whether ``request`` may share the session of ``batch``."""
    for other in batch:
        if (
            request.machine is not None
            and other.machine is not None
            and request.machine is not other.machine
        ):
            return False
        if request.create and other.create and request.input is not other.input:
            return False
    return True


# --------------------------------------------------------------------------- #
# The system
# --------------------------------------------------------------------------- #


class ActorSystem:
    """The machines, backends and session options of an application, and its waker.

    Args:
        machines: the machines actors may run; a stored snapshot names its
            machine by id, so every machine whose actors are stored must be
            here for the waker (and for :meth:`send` without ``machine=``).
        storage: where snapshots (and the due index) are kept.
        lock: a lock manager, or ``None`` for optimistic sessions.
        options: the session options (:class:`~durable_state.SessionOptions`).
        **overrides: session options to change: ``locking``, ``lock_ttl``,
            ``lock_wait``, ``processed_limit``, ``clock``, ``save_on_error``,
            ``batch_size``.

    Raises:
        ValueError: two machines share an id, or an option is out of range.
        TypeError: an unknown option.

    Example:
        >>> import asyncio
        >>> from durable_state import ActorSystem, Machine, MemoryStorage
        >>> door = Machine({"id": "door", "initial": "shut",
        ...                 "states": {"shut": {"on": {"OPEN": "open"}}, "open": {}}})
        >>> async def main():
        ...     system = ActorSystem([door], storage=MemoryStorage())
        ...     result = await system.send("door-1", "OPEN", machine="door")
        ...     return result.outcome.value, result.snapshot.value
        >>> asyncio.run(main())
        ('applied', 'open')
    """

    def __init__(
        self,
        machines: Iterable[Machine] = (),
        *,
        storage: Storage,
        lock: LockManager | None = None,
        options: SessionOptions | None = None,
        **overrides: Unpack[SessionArgs],
    ) -> None:
        self.storage = storage
        self.lock = lock
        self.options: SessionOptions = (options or SessionOptions()).merged(**overrides)
        self.stats: WakerStats = WakerStats()
        self._machines: dict[str, Machine] = {}
        self._lanes: dict[str, _Lane] = {}
        # Outbox messages delivered (or buried) but not yet settled in their
        # sender's stored outbox: sender -> seq -> None or the reason.
        self._delivered: dict[str, dict[int, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Messages being delivered to other actors, per sender (back-pressure).
        self._in_flight: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        for machine in machines:
            self.register(machine)
        # A message that may create its receiver needs the receiver's machine
        # here: refused now, not dead-lettered at the first send.
        for machine in self._machines.values():
            for wanted in _machines_sent_to(machine):
                if wanted not in self._machines:
                    raise UnknownMachine(wanted, known=tuple(self._machines), sender=machine.id)

    def __repr__(self) -> str:
        return (
            f"ActorSystem(machines={list(self._machines)!r}, storage={self.storage!r}, "
            f"lock={self.lock!r})"
        )

    @property
    def machines(self) -> Mapping[str, Machine]:
        """The registered machines, by id (read-only)."""
        return dict(self._machines)

    @property
    def clock(self) -> Clock:
        """The clock timers and due times are read from."""
        return self.options.clock if self.options.clock is not None else _SYSTEM_CLOCK

    def register(self, machine: Machine) -> Machine:
        """Add a machine to the registry, with the child machines it invokes or spawns.

        A child machine (a :class:`Machine` in ``actors=``) runs as a
        persisted actor of its own, so it is registered too, by its id.

        Returns:
            The machine.

        Raises:
            TypeError: ``machine`` is not a :class:`Machine`.
            ValueError: another machine with the same id is registered (also
                for a child machine).
        """
        if not isinstance(machine, Machine):
            raise TypeError(f"expected a Machine, not {type(machine).__name__}")
        found: dict[str, Machine] = {}
        todo = [machine]
        while todo:
            m = todo.pop()
            if found.setdefault(m.id, m) is not m:
                raise ValueError(
                    f"two different machines with id {m.id!r} are among {machine.id!r} "
                    "and its child machines"
                )
            todo.extend(
                c for c in m.actors.values() if isinstance(c, Machine) and found.get(c.id) is not c
            )
        for m in found.values():
            known = self._machines.get(m.id)
            if known is not None and known is not m:
                raise ValueError(f"another machine with id {m.id!r} is registered")
        self._machines.update(found)
        return machine

    def machine(self, machine: Machine | str) -> Machine:
        """A machine given itself or by id.

        Raises:
            UnknownMachine: no registered machine has that id.
        """
        if isinstance(machine, Machine):
            return machine
        found = self._machines.get(machine)
        if found is None:
            raise UnknownMachine(machine, known=tuple(self._machines))
        return found

    # ------------------------------------------------------------------ #
    # Sessions
    # ------------------------------------------------------------------ #

    @asynccontextmanager
    async def actor(
        self,
        actor_id: str,
        machine: Machine | str | None = None,
        *,
        input: Any = None,
        create: bool = True,
        **overrides: Unpack[SessionArgs],
    ) -> AsyncIterator[PersistedActor]:
        """Open an actor for a body, as :func:`~durable_state.persisted_actor` does.

        Same semantics (lease, load, save on success, release always), with
        this system's options, and in turn: bodies for the same actor id in
        this process run one after the other, in the order they asked.

        Args:
            actor_id: the actor's id.
            machine: its machine or machine id; ``None`` takes the machine
                the stored snapshot names (the actor must then exist).
            input: machine input for a newly created actor.
            create: create a missing actor (else ``ActorNotFound``).
            **overrides: session options to change for this session.

        Yields:
            The loaded :class:`~durable_state.PersistedActor`.

        Raises:
            Exception: as :func:`~durable_state.persisted_actor`;
                :class:`~durable_state.errors.UnknownMachine` for a machine id
                nobody registered.
        """
        chosen = self.machine(machine) if machine is not None else None
        pa, delivered = self._open(
            actor_id, chosen, input=input, create=create, options=self.options.merged(**overrides)
        )
        lane = self._lane(actor_id)
        request = _Request("turn", asyncio.get_running_loop().create_future())
        request.released = asyncio.Event()
        lane.submit(request)
        try:
            await request.future
            async with pa.session():
                yield pa
            self._committed(pa, delivered)
        finally:
            request.released.set()

    async def send(
        self,
        actor_id: str,
        event: Mapping[str, Any] | str,
        *,
        machine: Machine | str | None = None,
        event_id: str | None = None,
        input: Any = None,
        create: bool = True,
    ) -> SendResult:
        """Send one event to an actor in a session of its own, or in a shared one.

        Sends to the same actor id from concurrent tasks wait in one queue
        and are served together (group commit): one load, lease and save
        for all the events waiting, in arrival order. The call returns once
        the save that holds its event has committed. A caller cancelled
        while its send waits is left out of the batch; once its batch has
        started, its event is applied with the others (like a write whose
        caller was cancelled in flight).

        Args:
            actor_id: the actor's id.
            event: a mapping with a string ``"type"``, or a bare type string.
            machine: the actor's machine (or id), needed when the send
                creates the actor; ``None`` takes the one the snapshot names.
            event_id: an id for idempotent delivery.
            input: machine input if the actor is created.
            create: create a missing actor (else ``ActorNotFound``).

        Returns:
            The :class:`SendResult`: applied, unhandled or duplicate.

        Raises:
            InvalidEvent: the event is malformed (raised before queueing).
            ValueError: ``event_id`` is not a non-empty string.
            UnknownMachine: ``machine`` is an id nobody registered.
            Exception: the event's own error (it was rolled back, the other
                events of the batch were saved), or the session's error
                (``LockTimeout``, ``LockLost``, ``VersionConflict``,
                ``StorageError`` ...: nothing of the batch was saved).
        """
        ev = to_event(event)
        if event_id is not None and (not isinstance(event_id, str) or not event_id):
            raise ValueError("event_id must be a non-empty string")
        request = _Request(
            "send",
            asyncio.get_running_loop().create_future(),
            event=ev,
            event_id=event_id,
            machine=self.machine(machine) if machine is not None else None,
            input=input,
            create=create,
        )
        self._lane(actor_id).submit(request)
        result: SendResult = await request.future
        return result

    def _lane(self, actor_id: str) -> _Lane:
        lane = self._lanes.get(actor_id)
        if lane is None:
            lane = self._lanes[actor_id] = _Lane(self, actor_id)
        return lane

    async def _run_batch(self, actor_id: str, batch: list[_Request]) -> None:
        """One load-lease-save cycle for the requests of ``batch``; settles their futures."""
        machine = next((r.machine for r in batch if r.machine is not None), None)
        creator = next((r for r in batch if r.create), None)
        events = [r for r in batch if r.kind in ("send", "message")]
        # A waker's visit never waits for a busy actor: it comes back later.
        overrides: SessionArgs = {} if events else {"lock_wait": None}
        for attempt in (1, 2):
            pa, delivered = self._open(
                actor_id,
                machine,
                input=creator.input if creator is not None else None,
                create=creator is not None and machine is not None,
                options=self.options.merged(**overrides),
                parent=_spawned_by(creator),
            )
            for request in batch:
                if request.entries:
                    pa.retire_due(list(request.entries))
            answers: list[tuple[Outcome, Snapshot] | Exception] = []
            stepped = False
            try:
                async with pa.session():
                    stepped = pa.changed
                    for request in events:
                        answers.append(await self._apply(pa, request))
                    stepped = stepped or pa.changed
            except VersionConflict as conflict:
                if attempt == 1 and pa.read_cached:
                    # Started from the version cache and somebody else wrote
                    # meanwhile: the failed write dropped the entry; once more
                    # from the backend (custom actions of the first try have
                    # run, as for any optimistic step that lost its race).
                    continue
                self._fail(batch, conflict)
                return
            except StatechartError as exc:
                if len(events) > 1:
                    # The save failed for one event's doing (it left a value
                    # JSON cannot hold, say): each request in a session of
                    # its own, so that the others still commit.
                    for request in batch:
                        await self._run_batch(actor_id, [request])
                    return
                self._fail(batch, exc)
                return
            except BaseException as exc:
                self._fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            finally:
                self.stats.stale += pa.retired_due
            break
        self._committed(pa, delivered)
        version = pa.version
        for request, answer in zip(events, answers, strict=True):
            if request.future.done():
                continue  # its caller was cancelled while the batch ran
            if isinstance(answer, Exception):
                request.future.set_exception(answer)
            else:
                request.future.set_result(SendResult(answer[0], answer[1], version))
        tick = _Tick(stepped, pa.stored_due)
        for request in batch:
            if request.kind == "tick" and not request.future.done():
                request.future.set_result(tick)

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException | None) -> None:
        """Nothing of the batch was saved: every caller gets the reason (or is cancelled)."""
        for request in batch:
            if request.chain is not None:
                request.chain.broken = True  # before the lane serves the next batch
            if request.future.done():
                continue
            if isinstance(exc, Exception):
                request.future.set_exception(exc)
            else:
                request.future.cancel()

    def _open(
        self,
        actor_id: str,
        machine: Machine | None,
        *,
        input: Any,
        create: bool,
        options: SessionOptions,
        parent: tuple[str, str] | None = None,
    ) -> tuple[PersistedActor, dict[int, str | None]]:
        """A session's actor, told which of its messages were delivered meanwhile."""
        delivered = dict(self._delivered.get(actor_id, {}))
        pa = PersistedActor(
            actor_id,
            machine,
            storage=self.storage,
            lock=self.lock,
            input=input,
            create=create,
            machines=self._machines,
            options=options,
            delivered=delivered or None,
            parent=parent,
        )
        return pa, delivered

    def _committed(self, pa: PersistedActor, delivered: Mapping[int, str | None]) -> None:
        """After a session committed: forget settled messages, deliver the outbox."""
        if delivered:
            settled = self._delivered.get(pa.actor_id, {})
            for seq in delivered:
                settled.pop(seq, None)
            if not settled:
                self._delivered.pop(pa.actor_id, None)
        outbox = [
            e for e in pa.mailbox.outbox if e["seq"] not in self._delivered.get(pa.actor_id, {})
        ]
        if outbox:
            self._spawn(self._deliver(pa.actor_id, outbox))

    async def _apply(
        self, pa: PersistedActor, request: _Request
    ) -> tuple[Outcome, Snapshot] | Exception:
        """One send or message of a batch: its outcome, or its own error (rolled back)."""
        assert request.event is not None
        chain = request.chain
        if chain is not None and chain.broken:
            return _ChainBroken()
        try:
            if request.kind == "send":
                outcome = await pa.send(
                    request.event, event_id=request.event_id, rollback_on_error=True
                )
            else:
                assert request.sender is not None
                outcome = await self._receive(pa, request)
        except Exception as exc:  # noqa: BLE001 - handed to its own caller
            if chain is not None:
                chain.broken = True
            return exc
        return outcome, pa.snapshot

    async def _receive(self, pa: PersistedActor, request: _Request) -> Outcome:
        """A message: the control messages of child actors, or an event, exactly once."""
        assert request.sender is not None
        assert request.event is not None
        kind = request.event.get("type")
        if kind == SPAWN and not pa.mailbox.seen(request.sender, request.seq):
            # The parent started this child (or starts it over).
            await pa.start_as_child(
                request.sender, str(request.event.get("childId")), request.event.get("input")
            )
            pa.mailbox.received(request.sender, request.seq)
            return Outcome.APPLIED
        if kind == STOP and not pa.mailbox.seen(request.sender, request.seq):
            pa.stop_by_parent()
            pa.mailbox.received(request.sender, request.seq)
            return Outcome.APPLIED
        return await pa.receive(request.sender, request.seq, request.event, hops=request.hops)

    # ------------------------------------------------------------------ #
    # Messages between actors
    # ------------------------------------------------------------------ #

    async def _deliver(self, sender: str, outbox: list[dict[str, Any]]) -> None:
        """Deliver a committed outbox: per receiver in order, receivers side by side.

        Each message is applied by its receiver exactly once (the receiver
        remembers the highest sequence number it applied from the sender).
        A message that cannot ever be delivered is buried with its reason;
        one that failed for now (a busy receiver, a backend error) stops its
        receiver's queue and stays in the outbox for a waker. What happened
        is then settled in the sender's outbox by its next session in this
        process (a queued one if it is busy, else one of its own).
        """
        by_receiver: dict[str, list[dict[str, Any]]] = {}
        for entry in outbox:
            by_receiver.setdefault(entry["to"], []).append(entry)
        outcomes: dict[int, str | None] = {}
        # Messages to itself are served by its own queue and need no account.
        to_others = len(outbox) - len(by_receiver.get(sender, ()))
        if to_others:
            self._in_flight[sender] = self._in_flight.get(sender, 0) + to_others
        try:
            await self._deliver_all(sender, by_receiver, outcomes)
        finally:
            if to_others:
                left = self._in_flight[sender] - to_others
                if left:
                    self._in_flight[sender] = left
                else:
                    del self._in_flight[sender]
                lane = self._lanes.get(sender)
                if lane is not None and left < _HIGH_WATER:
                    lane.wake.set()
        if not outcomes:
            return
        self._delivered.setdefault(sender, {}).update(outcomes)
        request = _Request("tick", asyncio.get_running_loop().create_future())
        self._lane(sender).submit(request)
        with suppress(Exception):
            await request.future  # a failed settle is retried by the next session

    def _throttled(self, actor_id: str) -> bool:
        """Whether the actor's messages to others wait for delivery beyond the high-water mark."""
        return self._in_flight.get(actor_id, 0) >= _HIGH_WATER

    async def _deliver_all(
        self,
        sender: str,
        by_receiver: Mapping[str, list[dict[str, Any]]],
        outcomes: dict[int, str | None],
    ) -> None:
        """Deliver to every receiver side by side; record each message's outcome."""

        async def deliver_to(receiver: str, entries: list[dict[str, Any]]) -> None:
            # All queued at once (the receiver's lane serves them in order,
            # as many per session as it batches), then awaited in order.
            chain = _Chain()
            queued = [self._queue_message(sender, receiver, entry, chain) for entry in entries]
            try:
                for entry, request in zip(entries, queued, strict=True):
                    reason = await self._outcome(sender, receiver, entry, request)
                    if isinstance(reason, _Retry):
                        return  # keep this one and every later one, in order
                    outcomes[entry["seq"]] = reason
            finally:
                chain.broken = True  # nothing after a failure, or after this task ended
                for request in queued:
                    if isinstance(request, _Request) and not request.future.done():
                        request.future.cancel()

        await asyncio.gather(*(deliver_to(r, e) for r, e in by_receiver.items()))

    def _queue_message(
        self, sender: str, receiver: str, entry: Mapping[str, Any], chain: _Chain
    ) -> _Request | str:
        """Queue one message at its receiver, or the reason it can never go (a dead letter)."""
        event = entry["event"]
        spawning = event.get("type") == SPAWN
        machine_id = entry.get("machine") or (event.get("machine") if spawning else None)
        try:
            machine = self.machine(machine_id) if machine_id is not None else None
        except UnknownMachine as exc:
            return str(exc)
        request = _Request(
            "message",
            asyncio.get_running_loop().create_future(),
            event=event,
            machine=machine,
            input=event.get("input") if spawning else None,
            create=machine is not None,
            sender=sender,
            seq=int(entry["seq"]),
            hops=int(entry.get("hops", 1)),
            chain=chain,
        )
        self._lane(receiver).submit(request)
        return request

    async def _outcome(
        self, sender: str, receiver: str, entry: Mapping[str, Any], request: _Request | str
    ) -> str | _Retry | None:
        """How one queued message went: ``None`` when applied, a reason to bury it, or ``_RETRY``."""
        if isinstance(request, str):
            return request
        try:
            await request.future
        except _ChainBroken:
            return _RETRY

        except ActorNotFound:
            return f"no actor {receiver!r}, and no machine= to create it with"
        except (UnknownMachine, SnapshotCorrupt, SnapshotIncompatible) as exc:
            return str(exc)
        except DurableStateError as exc:
            if isinstance(exc, StatechartError):
                return f"{type(exc).__name__}: {exc}"
            logger.info("message %d from %s to %s waits: %s", entry["seq"], sender, receiver, exc)
            return _RETRY
        except Exception as exc:  # noqa: BLE001 - any failure of the step buries the message
            return f"the receiver's step raised {type(exc).__name__}: {exc}"
        return None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("delivering messages failed", exc_info=task.exception())
        if not self._tasks:
            self._idle.set()

    async def idle(self) -> None:
        """Wait until every message sent so far in this process was delivered (or buried).

        Messages that wait for a waker (a busy receiver, a backend error) do
        not count: this returns once nothing is being delivered right now.
        """
        while self._tasks:
            await self._idle.wait()

    # ------------------------------------------------------------------ #
    # The waker
    # ------------------------------------------------------------------ #

    async def fire_due(self, *, limit: int = 1000, concurrency: int = 16) -> int:
        """One pass of the waker: step every actor whose due time has come.

        Reads the due index up to now, visits each actor found (at most
        ``concurrency`` at a time): loading fires its due timers, and the
        session saves the result. A busy actor (its lease held elsewhere) is
        skipped and comes back at the next pass; a snapshot that cannot be
        loaded (corrupt, incompatible, an unregistered machine) is logged
        with its id and left untouched, and the waker goes on with the
        others. Index entries that no longer match their actor are removed.

        Args:
            limit: the most index entries read in this pass.
            concurrency: the most actors visited at the same time.

        Returns:
            The number of actors stepped (whose due work was saved).

        Raises:
            StorageError: the due index could not be read.
            ValueError: ``limit`` or ``concurrency`` is not positive.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency!r}")
        now = int(self.clock.now_ms())
        entries = await self.storage.list_due(now, limit=limit)
        self.stats.passes += 1
        by_key = _by_key(entries)
        limiter = asyncio.Semaphore(concurrency)
        stepped = 0

        async def visit(key: str, found: list[DueEntry]) -> None:
            nonlocal stepped
            async with limiter:
                tick = await self._visit(key, found)
                if tick is not None and tick.stepped:
                    stepped += 1

        await asyncio.gather(*(visit(key, found) for key, found in by_key.items()))
        self._last_pass_full = len(entries) >= limit
        return stepped

    @property
    def more_due(self) -> bool:
        """Whether the last :meth:`fire_due` pass read ``limit`` entries (more may be due)."""
        return self._last_pass_full

    _last_pass_full = False

    async def _visit(self, key: str, entries: list[DueEntry]) -> _Tick | None:
        """Step one due actor; what the visit found, or ``None`` if it failed.

        The session removes those of ``entries`` that no longer match the
        actor's next due time (see :meth:`PersistedActor.retire_due`).
        """
        request = _Request(
            "tick", asyncio.get_running_loop().create_future(), entries=tuple(entries)
        )
        self._lane(key).submit(request)
        try:
            tick: _Tick = await request.future
        except ActorNotFound:
            await self._remove_orphans(entries)
            return None
        except LockTimeout:
            self.stats.busy += 1
            logger.debug("waker: actor %s is busy; it is visited again later", key)
            return None
        except UnknownMachine as exc:
            self.stats.unknown_machine += 1
            logger.error("waker: actor %s: %s; its index entry is kept", key, exc)
            return None
        except (SnapshotCorrupt, SnapshotIncompatible) as exc:
            self.stats.failed += 1
            logger.error("waker: actor %s cannot be loaded (left untouched): %s", key, exc)
            return None
        except DurableStateError as exc:
            self.stats.failed += 1
            logger.warning("waker: actor %s was not stepped: %s", key, exc)
            return None
        except Exception:
            self.stats.failed += 1
            logger.exception("waker: stepping actor %s failed; it is tried again later", key)
            return None
        if tick.stepped:
            self.stats.stepped += 1
        return tick

    async def _remove_orphans(self, entries: list[DueEntry]) -> None:
        """Remove the entries of an actor that does not exist (deleted since): nothing to wake."""
        for entry in entries:
            try:
                await self.storage.remove_due(entry)
            except DurableStateError as exc:
                logger.warning("waker: could not remove the index entry %s: %s", entry, exc)
            else:
                self.stats.stale += 1

    @asynccontextmanager
    async def waker(
        self, poll_interval: float = 1.0, *, limit: int = 1000, concurrency: int = 16
    ) -> AsyncIterator[ActorSystem]:
        """Run the waker in the background while the block runs.

        Every ``poll_interval`` seconds the waker reads the due index one
        poll interval ahead and plans a visit to each actor found at its
        earliest due time, so that timers fire when they fall due rather
        than at the next poll. Leaving the block cancels the planned and
        running visits (leases are released, nothing half-done is saved).

        Args:
            poll_interval: seconds from the start of one read of the index
                to the start of the next, and how far ahead each reads (a
                read that returned ``limit`` entries is followed by the next
                one as soon as its visits changed something).
            limit: the most index entries read at once, and the most visits
                planned at once.
            concurrency: the most actors visited at the same time.

        Yields:
            The system itself.

        Raises:
            ValueError: ``poll_interval``, ``limit`` or ``concurrency`` is not positive.
        """
        _check_waker(poll_interval, limit, concurrency)
        task = asyncio.get_running_loop().create_task(
            self._wake_forever(poll_interval, limit, concurrency, asyncio.Event()),
            name="durable_state waker",
        )
        try:
            yield self
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def run_waker(
        self, poll_interval: float = 1.0, *, limit: int = 1000, concurrency: int = 16
    ) -> None:
        """Run the waker until cancelled, or until SIGTERM (a worker process).

        The same waker as :meth:`waker`. On SIGTERM (when called from the
        main thread) the planned and running visits are cancelled -- leases
        are released, nothing half-done is saved -- and the call returns. On
        cancellation it stops the same way and the cancellation propagates.

        Args:
            poll_interval: seconds between reads of the due index, and how
                far ahead each reads.
            limit: the most index entries read at once (and visits planned).
            concurrency: the most actors visited at the same time.

        Raises:
            ValueError: ``poll_interval``, ``limit`` or ``concurrency`` is not positive.
        """
        _check_waker(poll_interval, limit, concurrency)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = False
        if threading.current_thread() is threading.main_thread():
            with suppress(NotImplementedError, RuntimeError):  # no signals here
                loop.add_signal_handler(signal.SIGTERM, stop.set)
                installed = True
        try:
            await self._wake_forever(poll_interval, limit, concurrency, stop)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGTERM)

    async def _wake_forever(
        self, poll_interval: float, limit: int, concurrency: int, stop: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        waker = _Waker(self, poll_interval, limit, concurrency)
        try:
            while not stop.is_set():
                began = loop.time()
                progress = self.stats.stepped + self.stats.stale
                polling = asyncio.ensure_future(waker.poll())
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait((polling, stopping), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    if not polling.done():
                        polling.cancel()
                        await asyncio.wait((polling,))
                failure = None if polling.cancelled() else polling.exception()
                if stop.is_set():
                    return
                if isinstance(failure, DurableStateError):
                    # The index could not be read (visits handle their own
                    # errors): try again at the next poll.
                    logger.warning("waker: reading the due index failed: %s", failure)
                elif failure is not None:
                    raise failure
                # Polls start every poll_interval, however long the visits take;
                # after a read that hit ``limit``, the next one starts as soon
                # as the visits of this one are done (if they changed anything).
                wake_up: list[asyncio.Task[Any]] = [loop.create_task(stop.wait())]
                if waker.full:
                    wake_up.append(loop.create_task(waker.progressed(progress)))
                pause = poll_interval - (loop.time() - began)
                try:
                    await asyncio.wait(
                        wake_up, timeout=max(pause, 0), return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for task in wake_up:
                        task.cancel()
        finally:
            await waker.stop()

    async def aclose(self) -> None:
        """Stop serving queued requests (their callers get ``RuntimeError``).

        Deliveries in progress stop too; their messages stay in their
        senders' outboxes, for a waker. The storage and the lock manager are
        not closed: they belong to the caller.
        """
        for task in list(self._tasks):
            task.cancel()
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    async def __aenter__(self) -> ActorSystem:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_SYSTEM_CLOCK = SystemClock()
