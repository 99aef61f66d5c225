"""The in-memory actor: a machine's snapshot brought to life on an event loop.

:class:`Actor` is the imperative shell around the pure core. It keeps the
current :class:`~durable_state.Snapshot`, feeds it events one macrostep at a
time, and carries out the effects the core returns: custom actions, emitted
events, durable timers, invoked async work, and messages between actors.

Timers are part of the snapshot as absolute due times (epoch ms of the
actor's clock). An actor restored from a persisted snapshot re-arms them and
delivers the overdue ones, in due order, when it starts.

Child machines (``invoke`` of a :class:`Machine`, :func:`spawn_child`) run as
child actors of their parent, the way xstate's in-process actor system runs
them: a message to a child goes to its mailbox, :func:`send_parent` to the
parent's, a ``systemId`` names an actor anywhere in the tree, and delivery is
synchronous, so that by the time :meth:`Actor.send` returns every actor of
the tree is at rest again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeAlias

from ._await import await_all as _await_all
from ._await import close_all as _close_all
from ._clock import Clock, SystemClock, TimerHandle
from .errors import ActorStopped, SnapshotIncompatible, StatechartError
from .statechart import (
    ActionEffect,
    ChildRecord,
    Effect,
    EmitEffect,
    LogEffect,
    Machine,
    ScheduleTimerEffect,
    SendEffect,
    Snapshot,
    SpawnEffect,
    StopChildEffect,
    Timer,
    to_event,
)

__all__ = (
    "Actor",
    "Listener",
    "Message",
    "Subscription",
    "SystemIdTaken",
    "UnknownActor",
)

logger: logging.Logger = logging.getLogger("durable_state.actor")

Listener = Callable[[Mapping[str, Any]], Any]
"""A listener of emitted events: ``fn(event)``; may be a coroutine function."""

Message: TypeAlias = SendEffect | SpawnEffect | StopChildEffect
"""What an actor hands to ``relay=`` instead of carrying it out in process."""

ActorStatus = Literal["not-started", "running", "stopped"]

_PARENT = "#_parent"


class UnknownActor(StatechartError, LookupError):
    """A message for an actor the in-process actor system does not know.

    Its target is no child of the sender, no ``systemId`` in the sender's
    actor tree, or (for :func:`send_parent`) the sender has no parent. As in
    xstate, the step that sent it fails: :meth:`Actor.send` raises this and
    the actor keeps its snapshot; a step nobody waits for (a timer, a message
    from another actor) puts the actor in status ``"error"``.

    Attributes:
        target: the target as resolved (``"#_parent"`` for a parent).
        machine_id: the id of the sender's machine.
        event_type: the type of the event that was sent.
    """

    def __init__(self, target: str, machine_id: str, event_type: str) -> None:
        self.target = target
        self.machine_id = machine_id
        self.event_type = event_type
        why = (
            "the actor has no parent"
            if target == _PARENT
            else "it is no child of the actor and no systemId in its actor system"
        )
        super().__init__(
            f"unable to send event {event_type!r} to actor {target!r} from machine "
            f"{machine_id!r}: {why}"
        )


class SystemIdTaken(StatechartError, ValueError):
    """A child was to be registered under a ``systemId`` another running actor holds.

    As in xstate, the step that started it fails.

    Attributes:
        system_id: the name that is taken.
    """

    def __init__(self, system_id: str) -> None:
        self.system_id = system_id
        super().__init__(
            f"an actor with systemId {system_id!r} already exists in this actor system"
        )


class _System:
    """The in-process actor system of one actor tree: its actors by ``systemId``."""

    __slots__ = ("actors",)

    def __init__(self) -> None:
        self.actors: dict[str, Actor] = {}

    def register(self, system_id: str, actor: Actor) -> None:
        held = self.actors.get(system_id)
        if held is not None and held is not actor:
            raise SystemIdTaken(system_id)
        self.actors[system_id] = actor

    def unregister(self, actor: Actor) -> None:
        sid = actor.system_id
        if sid is not None and self.actors.get(sid) is actor:
            del self.actors[sid]


class _Plan:
    """How the child effects of one step play out (see :meth:`Actor._plan`).

    Positions are indexes in the step's effects. ``stillborn``: spawns whose
    child is stopped again in the same step, and those stops; xstate starts a
    spawned child only after the macrostep, and a child stopped before it
    started never runs. ``targets``: for each send to a child, which one it
    is: the position of the spawn that started it in this step, ``-1`` for a
    child that was running before the step, ``None`` for one that is gone
    (as xstate resolves the target when the send action runs, or, from the
    entry actions of a state, the child that state invokes next). ``early``:
    events for a child sent before its spawn, by the spawn's position.
    """

    __slots__ = ("early", "stillborn", "targets")

    def __init__(self) -> None:
        self.stillborn: set[int] = set()
        self.targets: dict[int, int | None] = {}
        self.early: dict[int, list[Mapping[str, Any]]] = {}


class _Early:
    """A child started by an actor's initial step before that step's other effects."""

    __slots__ = ("child", "error", "initial")

    def __init__(
        self, child: Actor, initial: tuple[Snapshot, list[Effect]] | None, error: Exception | None
    ) -> None:
        self.child = child
        # Its initial step, when it finished in it: it starts at its place.
        self.initial = initial
        # Its failure (raised by its initial step, or by the effects of it).
        self.error = error


class Subscription:
    """Returned by :meth:`Actor.subscribe` and :meth:`Actor.on`; call to cancel."""

    __slots__ = ("_cancel",)

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    def unsubscribe(self) -> None:
        """Stop receiving notifications (idempotent)."""
        self._cancel()

    __call__ = unsubscribe


class Actor:
    """A running instance of a :class:`Machine`.

    Args:
        machine: the machine.
        snapshot: where to start: ``None`` for the initial state, a
            :class:`Snapshot` of this machine, or a persisted snapshot
            (the dict :meth:`persisted_snapshot` returns) to restore. A
            persisted snapshot's child machines are restored with it.
        clock: the time source for timers (default: wall clock on the
            running asyncio loop). Pass a :class:`ManualClock` in tests.
        input: the machine input, used only when starting fresh.
        id: a name for logs; a child actor's id is its id among its
            parent's children.
        emit: where emitted events go: ``emit(event)``, called when the step
            that emitted them has been taken. Default: delivered to the
            listeners registered with :meth:`on`. A persisted actor passes a
            buffer here, so that events are delivered only after a save.
        system_id: registers this actor under that name in its actor
            system, so that the actors of its tree can send to it.
        relay: where messages and child lifecycles go (:class:`SendEffect`,
            :class:`SpawnEffect`, :class:`StopChildEffect`, in step order)
            when another shell carries them out, e.g. a persisted actor
            system that keeps them in an outbox. Default: this actor carries
            them out in process, running child machines as child actors.

    Raises:
        SnapshotIncompatible: if ``snapshot`` does not fit the machine.

    Example:
        >>> import asyncio
        >>> from durable_state import Actor, Machine
        >>> m = Machine({"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}})
        >>> async def main():
        ...     async with Actor(m) as actor:
        ...         await actor.send("GO")
        ...         return actor.snapshot.value
        >>> asyncio.run(main())
        'b'
    """

    # Slots: an application may hold many thousands of actors.
    __slots__ = (
        "_armed",
        "_background",
        "_child_records",
        "_children",
        "_emit",
        "_input",
        "_listeners",
        "_mailbox",
        "_parent",
        "_processing",
        "_relay",
        "_reported",
        "_snapshot",
        "_started",
        "_status",
        "_subscribers",
        "_system",
        "_tasks",
        "clock",
        "id",
        "machine",
        "system_id",
    )

    def __init__(
        self,
        machine: Machine,
        snapshot: Snapshot | Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        input: Any = None,
        id: str | None = None,
        emit: Callable[[Mapping[str, Any]], None] | None = None,
        system_id: str | None = None,
        relay: Callable[[Message], None] | None = None,
    ) -> None:
        self.machine: Machine = machine
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.id: str = id or machine.id
        self._input = input
        self._snapshot: Snapshot | None
        if snapshot is None:
            self._snapshot = None
        elif isinstance(snapshot, Snapshot):
            if snapshot.machine is not machine:
                raise SnapshotIncompatible(
                    f"snapshot of machine {snapshot.machine.id!r} given to an actor of "
                    f"machine {machine.id!r}"
                )
            self._snapshot = snapshot
        else:
            self._snapshot = machine.restore_snapshot(snapshot)
        self._status: ActorStatus = "not-started"
        # Mostly empty and short: a list costs a tenth of a deque per actor.
        # (kind, item, where to record whether an event was handled)
        self._mailbox: list[tuple[str, Any, list[bool] | None]] = []
        self._processing = False
        # One clock callback, for the earliest timer (the snapshot Timer it was
        # armed for): when it fires, the timers due by then fire in the
        # snapshot's order and the next one is armed. The cost per step does
        # not grow with the timers pending. A timer that is scheduled again
        # gets a new Timer (even with the same due time), so it is re-armed.
        self._armed: tuple[Timer, TimerHandle] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The snapshot record each child was started for. A state that is
        # re-entered records a new ChildRecord under the same id: the running
        # work is then cancelled and started again, as xstate restarts it. An
        # entry outlives its task until the snapshot drops the child, so that
        # work whose result is still queued is not started a second time.
        self._started: dict[str, ChildRecord] = {}
        # Child machines running as child actors, and the record each was
        # started for. A child that finished stays until the parent's
        # snapshot drops it (when the parent takes its done or error event).
        self._children: dict[str, Actor] = {}
        self._child_records: dict[str, ChildRecord | None] = {}
        self._parent: Actor | None = None
        self._reported = False
        self._system: _System | None = None
        self.system_id: str | None = system_id
        if system_id is not None:
            self._sys().register(system_id, self)
        self._relay = relay
        self._background: set[asyncio.Task[Any]] | None = None  # made on first use
        self._listeners: dict[str, list[Listener]] = {}
        self._subscribers: list[Callable[[Snapshot], Any]] = []
        self._emit = emit

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #

    @property
    def status(self) -> ActorStatus:
        """``"not-started"``, ``"running"`` or ``"stopped"`` (of the actor, not the machine).

        A child actor whose machine finished (status ``"done"`` or
        ``"error"``) is stopped, as in xstate; a top-level actor keeps running
        so that its snapshot can still be read and persisted as it is.
        """
        return self._status

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot.

        Raises:
            ActorStopped: if the actor was never started and has no snapshot.
        """
        if self._snapshot is None:
            raise ActorStopped(self.machine.id, "not started")
        return self._snapshot

    @property
    def next_timer_at(self) -> float | None:
        """The due time (epoch ms) of the earliest pending timer, or None."""
        return self._snapshot.next_timer_at if self._snapshot is not None else None

    @property
    def children(self) -> Mapping[str, Actor]:
        """The child machines running in this process as child actors, by child id (read-only)."""
        return MappingProxyType(self._children)

    @property
    def parent(self) -> Actor | None:
        """The actor that started this one as a child machine, if any."""
        return self._parent

    def find(self, system_id: str) -> Actor | None:
        """The actor registered under ``system_id`` in this actor's tree, if any."""
        system = self._system
        return system.actors.get(system_id) if system is not None else None

    async def start(self) -> None:
        """Start: enter the initial state, or resume the restored snapshot.

        A restored actor restarts its child machines (from their nested
        snapshots) and its invoked async work (at-least-once: work that was
        running when the snapshot was taken runs again), re-arms its pending
        timers and fires the overdue ones in due order before returning.

        Raises:
            ActorStopped: if the actor was stopped.
            UnknownActor: the initial step sent to an actor that does not exist.
            SystemIdTaken: the initial step started a child under a taken systemId.
            Exception: whatever an implementation raised while starting.
        """
        if self._status == "running":
            return
        if self._status == "stopped":
            raise ActorStopped(self.machine.id, "stopped")
        pending: list[Awaitable[Any]] = []
        try:
            error = self._start_now(pending)
        except BaseException:
            _close_all(pending)
            raise
        await _await_all(pending, error)

    def _initial(self) -> tuple[Snapshot, list[Effect]]:
        """The initial step, refused as a step would be (see :meth:`_check`)."""
        snap, effects = self.machine.initial_transition(self._input, now_ms=self.clock.now_ms())
        if effects and self._relay is None:
            self._check(snap, effects)
        return snap, effects

    def _start_now(
        self,
        pending: list[Awaitable[Any]],
        initial: tuple[Snapshot, list[Effect]] | None = None,
    ) -> Exception | None:
        """Start synchronously; coroutines to await go to ``pending``.

        ``initial`` is the initial step when it was taken already. Returns
        the first failure of a custom action or listener; a failure of the
        machine itself propagates (and a fresh actor stays not started).
        """
        self._status = "running"
        error: Exception | None = None
        self._processing = True
        try:
            if self._snapshot is None:
                snap, effects = initial if initial is not None else self._initial()
                self._snapshot = snap
                early = self._start_children_first(effects, pending) if effects else None
                error = self._carry_out(effects, pending, early)
            else:
                # Restored: as xstate, the children start before the parent
                # fires anything.
                self._reconcile_children(pending)
            if error is None:
                error = self._fire_overdue(pending)
            self._reconcile()
            self._notify(self.snapshot)
        except BaseException:
            if self._snapshot is None:
                self._status = "not-started"
            raise
        finally:
            self._processing = False
        # Events sent to this actor while it started (by its children, or
        # before it started): processed now, in order.
        if self._mailbox and self._status == "running":
            more, exc = self._drain()
            pending.extend(more)
            if error is None:
                error = exc
        if self._parent is not None and self.snapshot.status != "active":
            self._report(pending)  # a child machine that finished as it started
        return error

    async def stop(self) -> None:
        """Stop: disarm timers, cancel invoked work and stop child machines. Idempotent.

        The snapshot is left as it was (its ``status`` is the machine's), so
        that it can still be persisted after the actor stopped.
        """
        if self._status == "stopped" and not self._tasks and not self._background:
            return
        tasks = self._halt()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _halt(self) -> list[asyncio.Task[Any]]:
        """Stop synchronously, children first; returns the tasks that were cancelled."""
        self._status = "stopped"
        self._mailbox.clear()
        if self._armed is not None:
            self._armed[1].cancel()
            self._armed = None
        tasks = [*self._tasks.values(), *(self._background or ())]
        self._tasks.clear()
        self._started.clear()
        self._background = None
        for t in tasks:
            t.cancel()
        for child in self._children.values():
            tasks.extend(child._halt())
        self._children.clear()
        self._child_records.clear()
        if self._system is not None:
            self._system.unregister(self)
        return tasks

    async def __aenter__(self) -> Actor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ #
    # Events
    # ------------------------------------------------------------------ #

    async def send(self, event: Mapping[str, Any] | str) -> bool:
        """Process an event to completion (one macrostep), then run its effects.

        Custom actions run after the macrostep, in order; emitted events are
        delivered to listeners after that. Messages to child machines and
        other actors of the tree are delivered synchronously, in order, so
        the whole tree is at rest when ``send`` returns. Coroutines returned
        by custom actions or listeners (of this actor and of the actors its
        messages reached) are awaited before ``send`` returns.

        Args:
            event: a mapping with a string ``"type"``, or a bare type string.

        Returns:
            Whether the event was handled: False when no transition was
            enabled for it (or the machine is done), so that nothing changed
            and no action ran. As for xstate's ``can()``, a transition with
            no target and no actions does nothing, so it counts as not
            handled. An event sent from inside an action is queued behind the
            current step and counts as handled.

        Raises:
            InvalidEvent: if the event is malformed.
            ActorStopped: if the actor is not running.
            MicrostepLimitExceeded: if the macrostep does not settle.
            UnknownActor: the step sent to an actor that is no child, no
                ``systemId`` of the tree, or a parent it does not have.
            SystemIdTaken: the step started a child under a ``systemId``
                another actor holds.
            Exception: whatever an implementation raised. When the machine
                raised (an assign, a guard, a raise or emit function), the actor
                keeps the snapshot it had before this event. When a custom
                action or a listener raised, the step was taken and its other
                effects were still carried out. A failure inside a child
                actor is the child's: it reaches this actor as the child's
                ``xstate.error.actor.<id>`` event.
        """
        ev = to_event(event)
        if self._status != "running":
            raise ActorStopped(self.machine.id, self._status.replace("-", " "))
        handled: list[bool] = []
        self._mailbox.append(("event", ev, handled))
        if self._processing:
            return True
        pending, error = self._drain()
        if pending or error is not None:
            await _await_all(pending, error)
        return not handled or handled[0]

    def rewind(self, snapshot: Snapshot) -> None:
        """Go back to ``snapshot`` (taken from this actor earlier), as if later steps never ran.

        Timers, invoked work and child machines are made to match it again
        (a child machine it lists that is not running is started again from
        its record), and events not processed yet are dropped. Effects that
        already ran (custom actions, emitted events, messages other actors
        processed) are not undone: that is the caller's business.

        Raises:
            SnapshotIncompatible: ``snapshot`` belongs to another machine.
            ActorStopped: the actor is not running.
        """
        if snapshot.machine is not self.machine:
            raise SnapshotIncompatible(
                f"snapshot of machine {snapshot.machine.id!r} given to an actor of "
                f"machine {self.machine.id!r}"
            )
        if self._status != "running":
            raise ActorStopped(self.machine.id, self._status.replace("-", " "))
        self._mailbox.clear()
        self._snapshot = snapshot
        self._reconcile()
        pending: list[Awaitable[Any]] = []
        self._reconcile_children(pending)
        if pending:
            self._spawn(_await_all(pending))

    def persisted_snapshot(self) -> dict[str, Any]:
        """The JSON-able persisted form of the current snapshot.

        Each child machine running in this process is nested under
        ``children.<id>.snapshot`` with its own persisted snapshot, as
        xstate's ``getPersistedSnapshot()`` nests its children; restoring
        re-creates them.

        Raises:
            NotSerializable: if the context holds a value JSON cannot hold.
        """
        data = self.machine.persisted_snapshot(self.snapshot)
        if self._children:
            entries = data["children"]  # built fresh for this call: ours to fill
            for cid, child in self._children.items():
                entry = entries.get(cid)
                if entry is not None and child._snapshot is not None:
                    entry["snapshot"] = child.persisted_snapshot()
        return data

    def subscribe(self, fn: Callable[[Snapshot], Any]) -> Subscription:
        """Call ``fn(snapshot)`` after every macrostep (and once on start)."""
        self._subscribers.append(fn)
        return Subscription(lambda: _discard(self._subscribers, fn))

    def on(self, emitted_type: str, fn: Listener) -> Subscription:
        """Call ``fn(event)`` for every emitted event of this type (``"*"``: all)."""
        self._listeners.setdefault(emitted_type, []).append(fn)
        return Subscription(lambda: _discard(self._listeners.get(emitted_type, []), fn))

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    def _sys(self) -> _System:
        system = self._system
        if system is None:
            system = self._system = _System()
        return system

    def _drain(self) -> tuple[list[Awaitable[Any]], Exception | None]:
        """Process the mailbox synchronously.

        Returns the coroutines to await and the first failure. Processing stops
        at a failure: when the machine raised, the snapshot is the one before
        that event; when a custom action or a listener raised, the step was
        already taken and every other effect of it was still carried out.
        The coroutines collected so far are returned either way, so that none
        is left un-awaited.
        """
        pending: list[Awaitable[Any]] = []
        error: Exception | None = None
        self._processing = True
        try:
            while self._mailbox and self._status == "running":
                kind, item, handled = self._mailbox.pop(0)
                snap = self._snapshot
                assert snap is not None  # running actors always have one
                now = self.clock.now_ms()
                try:
                    if kind == "due":
                        # Deliver the earliest due timer, then look again: the
                        # timers due by the one whose clock callback woke us go
                        # in the snapshot's order (due time, then scheduling
                        # order). Later ones wait for their own callbacks, so
                        # that the timers of the actors of a tree fire in one
                        # due order, as in xstate. A callback that came early
                        # finds nothing due and the timer is simply armed again.
                        bound = now if item is None else min(now, item)
                        first = snap.timers[0] if snap.timers else None
                        if first is None or first.due_ms > bound or snap.status != "active":
                            self._reconcile()
                            continue
                        nxt, effects = self.machine.fire_timer(snap, first.id, now_ms=now)
                        self._mailbox.insert(0, ("due", item, None))
                        # A delayed send was checked when it was scheduled;
                        # a receiver gone since is the receiver's business.
                        checked = first.send is not None
                    else:
                        if kind == "report":
                            item, child = item
                            current = self._children.get(child.id)
                            if current is not None and current is not child:
                                # A child that finished before its parent
                                # replaced it: the parent takes its event (as
                                # in xstate), but the record under its id is
                                # the new child's, which the event must not
                                # mark finished: it goes without its actorId.
                                item = {k: v for k, v in item.items() if k != "actorId"}
                        nxt, effects = self.machine.transition(snap, item, now_ms=now)
                        checked = False
                    if effects and not checked and self._relay is None:
                        self._check(nxt, effects)
                except Exception as exc:  # noqa: BLE001 - returned, raised to the sender
                    error = exc
                    break
                if handled is not None:
                    handled.append(nxt is not snap or bool(effects))
                if nxt is snap and not effects:
                    continue
                self._snapshot = nxt
                if effects:
                    error = self._carry_out(effects, pending)
                if nxt.timers is not snap.timers or nxt.children is not snap.children:
                    self._reconcile()
                if self._children and nxt.children is not snap.children:
                    self._sweep_children(nxt, pending)
                if self._subscribers:
                    self._notify(nxt)
                if nxt.status != "active" and self._parent is not None:
                    self._report(pending)
                if error is not None:
                    break
        finally:
            self._processing = False
            if self._mailbox and self._status == "running":
                asyncio.get_running_loop().call_soon(self._drain_in_background)
        return pending, error

    def _drain_in_background(self) -> None:
        """Process events that arrived with no caller (timers, invoked work)."""
        if self._processing or self._status != "running":
            return
        pending: list[Awaitable[Any]] = []
        self._drain_detached(pending)
        if pending:
            # Owned by the top of the tree: a child stopped meanwhile must
            # not cancel work that other actors of the tree started.
            root = self
            while root._parent is not None:
                root = root._parent
            root._spawn(_await_all(pending))

    def _drain_detached(self, pending: list[Awaitable[Any]]) -> None:
        """Process the mailbox for no caller: a failure sets status ``"error"``, as in xstate."""
        more, exc = self._drain()
        pending.extend(more)
        if exc is not None:
            self._fail(exc, pending)

    def _fail(self, exc: Exception, pending: list[Awaitable[Any]]) -> None:
        # No caller to raise to: like xstate, the actor's snapshot goes to
        # status "error", and the failure is logged.
        logger.error(
            "actor %s failed while processing an event nobody waits for",
            self.id,
            exc_info=exc,
        )
        self._snapshot = self.machine.fail(self.snapshot, exc)
        self._mailbox.clear()
        self._reconcile()
        self._reconcile_children(pending)
        self._notify(self._snapshot)
        if self._parent is not None:
            self._report(pending)

    def _report(self, pending: list[Awaitable[Any]]) -> None:
        """A child whose machine finished tells its parent, once, and stops taking events."""
        parent = self._parent
        snap = self._snapshot
        if parent is None or snap is None or self._reported:
            return
        self._reported = True
        self._status = "stopped"
        self._mailbox.clear()
        if self._system is not None:
            self._system.unregister(self)
        if snap.status == "done":
            event: dict[str, Any] = {
                "type": f"xstate.done.actor.{self.id}",
                "output": snap.output,
                "actorId": self.id,
            }
        else:
            event = {
                "type": f"xstate.error.actor.{self.id}",
                "error": snap.error,
                "actorId": self.id,
            }
        parent._mailbox.append(("report", (event, self), None))
        if parent._status == "running" and not parent._processing:
            parent._drain_detached(pending)

    def _receive(self, event: Mapping[str, Any], pending: list[Awaitable[Any]]) -> None:
        """An event from another actor of the tree: processed now unless this actor is busy."""
        if self._status == "stopped":
            # xstate warns and drops an event sent to a stopped actor.
            logger.debug("actor %s is stopped: dropped %s", self.id, event.get("type"))
            return
        self._mailbox.append(("event", event, None))
        if self._status == "running" and not self._processing:
            self._drain_detached(pending)

    def _fire_overdue(self, pending: list[Awaitable[Any]]) -> Exception | None:
        """Deliver every timer already due, in due order, synchronously.

        Returns the first failure of a custom action or listener (firing stops
        there); an exception of the machine itself propagates.
        """
        now = self.clock.now_ms()
        while True:
            snap = self.snapshot
            if snap.status != "active" or not snap.timers or snap.timers[0].due_ms > now:
                return None
            first = snap.timers[0]
            nxt, effects = self.machine.fire_timer(snap, first.id, now_ms=now)
            if effects and first.send is None and self._relay is None:
                self._check(nxt, effects)
            self._snapshot = nxt
            error = self._carry_out(effects, pending)
            if self._children and nxt.children is not snap.children:
                self._sweep_children(nxt, pending)
            if error is not None:
                return error

    # -- effects ---------------------------------------------------------- #

    def _check(self, snap: Snapshot, effects: list[Effect]) -> None:
        """Refuse a step whose messages cannot be delivered, before it is taken (as xstate).

        Raises:
            UnknownActor: a message for an actor the tree does not know.
            SystemIdTaken: a child to be registered under a taken ``systemId``.
        """
        system = self._system
        names: dict[str, object] = dict(system.actors) if system is not None else {}
        spawned: dict[str, str | None] = {}
        for eff in effects:
            kind = type(eff)
            if kind is SendEffect:
                assert isinstance(eff, SendEffect)
                self._check_target(eff, names)
            elif kind is SpawnEffect:
                assert isinstance(eff, SpawnEffect)
                sid = eff.system_id
                spawned[eff.child_id] = sid
                if sid is not None:
                    if sid in names:
                        raise SystemIdTaken(sid)
                    names[sid] = eff
            elif kind is StopChildEffect:
                assert isinstance(eff, StopChildEffect)
                cid = eff.child_id
                if cid in spawned:
                    sid = spawned.pop(cid)
                else:
                    child = self._children.get(cid)
                    sid = child.system_id if child is not None else None
                if sid is not None:
                    names.pop(sid, None)
            elif kind is ScheduleTimerEffect:
                assert isinstance(eff, ScheduleTimerEffect)
                timer = snap.timers.get(eff.id)
                if timer is not None and timer.send is not None:
                    self._check_target(timer.send, names)

    def _check_target(self, eff: SendEffect, names: Mapping[str, object]) -> None:
        if eff.to_child:
            return
        if eff.to_parent:
            if self._parent is None:
                raise UnknownActor(_PARENT, self.machine.id, eff.event["type"])
        elif eff.target not in names:
            raise UnknownActor(eff.target, self.machine.id, eff.event["type"])

    def _start_children_first(
        self, effects: list[Effect], pending: list[Awaitable[Any]]
    ) -> dict[int, _Early] | None:
        """Start the child machines of the initial step that are active once started.

        As in xstate, an actor that starts first starts the children its
        initial step left running, then carries out that step's effects (the
        messages to them, custom actions). A child that finished or failed
        in its own initial step starts (and reports) only at its place among
        those effects. Returns what is left to do at each spawn's place.
        """
        if self._relay is not None or not any(type(e) is SpawnEffect for e in effects):
            return None
        plan = self._plan(effects)
        early: dict[int, _Early] = {}
        for i, eff in enumerate(effects):
            if type(eff) is not SpawnEffect or i in plan.stillborn:
                continue
            assert isinstance(eff, SpawnEffect)
            child = self._new_child(
                eff.child_id,
                eff.machine,
                eff.input,
                eff.system_id,
                None,
                self.snapshot.children.get(eff.child_id),
            )
            try:
                initial = child._initial()
            except Exception as exc:  # noqa: BLE001 - the child's failure, reported at its place
                early[i] = _Early(child, None, exc)
                continue
            if initial[0].status == "active":
                error = child._start_now(pending, initial)
                early[i] = _Early(child, None, error)
            else:
                early[i] = _Early(child, initial, None)
        return early

    def _carry_out(
        self,
        effects: list[Effect],
        pending: list[Awaitable[Any]],
        early: dict[int, _Early] | None = None,
    ) -> Exception | None:
        """Carry out the effects of a step, in order.

        Custom actions run, emitted events are delivered, timers armed and
        disarmed, messages delivered and child machines started and stopped.
        Coroutines they return are appended to ``pending``. Every effect runs
        even when an earlier one raised (they are independent side effects of
        a step that was already taken); the first failure is returned.
        """
        error: Exception | None = None
        plan: _Plan | None = None
        for i, eff in enumerate(effects):
            try:
                kind = type(eff)
                if kind is ActionEffect:
                    assert isinstance(eff, ActionEffect)
                    result = eff.run()
                    if inspect.isawaitable(result):
                        pending.append(result)
                elif kind is EmitEffect:
                    assert isinstance(eff, EmitEffect)
                    if self._emit is not None:
                        self._emit(eff.event)
                    else:
                        pending.extend(self._deliver(eff.event))
                elif kind is ScheduleTimerEffect:
                    # Armed at its place in the step when it is the earliest,
                    # so that the timers of the actors of a tree due at the
                    # same time mostly fire in the order they were set.
                    self._arm()
                elif kind is LogEffect:
                    assert isinstance(eff, LogEffect)
                    logger.info("actor %s: %s", self.id, eff.message)
                elif kind is SendEffect or kind is SpawnEffect or kind is StopChildEffect:
                    assert isinstance(eff, SendEffect | SpawnEffect | StopChildEffect)
                    if self._relay is not None:
                        # A child started and stopped again in one step never
                        # runs (xstate starts a child after the macrostep).
                        if plan is None:
                            plan = self._plan(effects)
                        if i not in plan.stillborn:
                            self._relay(eff)
                    elif early is not None and i in early:
                        self._resume_child(early[i], pending)
                    else:
                        if plan is None:
                            plan = self._plan(effects)
                        self._message(i, eff, effects, plan, pending)
                # Invoked async work is reconciled from the snapshot itself.
            except Exception as exc:
                if error is None:
                    error = exc
                else:
                    logger.error("actor %s: another action failed as well", self.id, exc_info=exc)
        return error

    def _plan(self, effects: list[Effect]) -> _Plan:
        plan = _Plan()
        # Per child id, as the effects go: the spawn position of the child
        # running there (-1: started before this step), or None when gone.
        current: dict[str, int | None] = dict.fromkeys(self._children, -1)
        forward: list[tuple[int, str]] = []
        for i, eff in enumerate(effects):
            kind = type(eff)
            if kind is SpawnEffect:
                assert isinstance(eff, SpawnEffect)
                current[eff.child_id] = i
            elif kind is StopChildEffect:
                assert isinstance(eff, StopChildEffect)
                j = current.get(eff.child_id)
                current[eff.child_id] = None
                if j is not None and j >= 0:
                    plan.stillborn.update((i, j))
            elif kind is SendEffect:
                assert isinstance(eff, SendEffect)
                if eff.to_child:
                    j = current.get(eff.target)
                    plan.targets[i] = j
                    if j is None:
                        forward.append((i, eff.target))
        if forward:
            spawns = [
                (j, eff.child_id) for j, eff in enumerate(effects) if isinstance(eff, SpawnEffect)
            ]
            for i, cid in forward:
                # Sent before the child it names was started: its next spawn.
                plan.targets[i] = next((j for j, c in spawns if j > i and c == cid), None)
        return plan

    def _message(
        self,
        i: int,
        eff: Message,
        effects: list[Effect],
        plan: _Plan,
        pending: list[Awaitable[Any]],
    ) -> None:
        """Carry out one message or child lifecycle effect in process."""
        if isinstance(eff, SendEffect):
            event = eff.event
            if eff.to_child:
                j = plan.targets.get(i)
                child = None
                if j is not None and j not in plan.stillborn:
                    child = self._children.get(eff.target)
                    if j > i and child is None:
                        # Its child starts later in this step (xstate queues
                        # the event until the child starts).
                        plan.early.setdefault(j, []).append(event)
                        return
                if child is None:
                    logger.debug(
                        "actor %s: child %s is gone: dropped %s", self.id, eff.target, event
                    )
                elif child._status == "not-started":
                    child._mailbox.append(("event", event, None))  # taken once it starts
                else:
                    child._receive(event, pending)
                return
            receiver = self._parent if eff.to_parent else self.find(eff.target)
            if receiver is None:
                # Checked before the step was taken; the receiver stopped since.
                logger.warning(
                    "actor %s: no actor %r any more: dropped %s",
                    self.id,
                    _PARENT if eff.to_parent else eff.target,
                    event.get("type"),
                )
                return
            receiver._receive(event, pending)
        elif isinstance(eff, SpawnEffect):
            if i in plan.stillborn:
                return
            record = self.snapshot.children.get(eff.child_id)
            early = plan.early.pop(i, ())
            self._start_child(
                eff.child_id, eff.machine, eff.input, eff.system_id, None, record, early, pending
            )
        else:
            if i in plan.stillborn:
                return
            self._stop_child(eff.child_id, pending)

    def _start_child(
        self,
        cid: str,
        machine: Machine,
        child_input: Any,
        system_id: str | None,
        nested: Mapping[str, Any] | None,
        record: ChildRecord | None,
        early: Iterable[Mapping[str, Any]],
        pending: list[Awaitable[Any]],
    ) -> None:
        """Create and start child machine ``cid``; a failure to start is the child's error."""
        old = self._children.pop(cid, None)
        if old is not None:
            pending.extend(_gathered(old._halt()))
        child = self._new_child(cid, machine, child_input, system_id, nested, record)
        for event in early:
            child._mailbox.append(("event", event, None))
        try:
            error = child._start_now(pending)
        except Exception as exc:  # noqa: BLE001 - a child that cannot start has failed
            error = exc
        child._settle_start(error, pending)

    def _new_child(
        self,
        cid: str,
        machine: Machine,
        child_input: Any,
        system_id: str | None,
        nested: Mapping[str, Any] | None,
        record: ChildRecord | None,
    ) -> Actor:
        """A child actor of this one, registered, not started."""
        child = Actor(machine, snapshot=nested, clock=self.clock, input=child_input, id=cid)
        child._parent = self
        child._system = self._sys()
        child.system_id = system_id
        if system_id is not None:
            child._system.register(system_id, child)
        self._children[cid] = child
        self._child_records[cid] = record
        return child

    def _settle_start(self, error: Exception | None, pending: list[Awaitable[Any]]) -> None:
        """A child whose start failed has failed: its parent hears of it."""
        if error is None or self._reported:
            return
        if self._snapshot is None:
            # Not even an initial state (xstate's snapshot of such a child is
            # status "error" and nothing else).
            self._snapshot = self.machine._failed_start(error)
        self._status = "running"
        self._fail(error, pending)

    def _resume_child(self, early: _Early, pending: list[Awaitable[Any]]) -> None:
        """At its spawn's place: start a child the initial step left for later (see above)."""
        child = early.child
        if child._status == "stopped" or self._children.get(child.id) is not child:
            return  # stopped meanwhile
        error = early.error
        if early.initial is not None:
            try:
                error = child._start_now(pending, early.initial)
            except Exception as exc:  # noqa: BLE001 - a child that cannot start has failed
                error = exc
        child._settle_start(error, pending)

    def _stop_child(self, cid: str, pending: list[Awaitable[Any]]) -> None:
        child = self._children.pop(cid, None)
        self._child_records.pop(cid, None)
        if child is not None:
            pending.extend(_gathered(child._halt()))

    def _sweep_children(self, snap: Snapshot, pending: list[Awaitable[Any]]) -> None:
        """Drop child actors the snapshot no longer lists (finished, or failed with the parent)."""
        for cid in [c for c in self._children if c not in snap.children]:
            self._stop_child(cid, pending)

    def _reconcile_children(self, pending: list[Awaitable[Any]]) -> None:
        """Make the running child machines match the snapshot (restore, rewind, failure)."""
        if self._relay is not None:
            return
        snap = self.snapshot
        for cid in [c for c, rec in self._child_records.items() if snap.children.get(c) is not rec]:
            self._stop_child(cid, pending)
        if snap.status != "active":
            return  # a machine that finished runs no children (xstate may still list them)
        actors = self.machine.actors
        for cid, rec in snap.children.items():
            child_machine = actors.get(rec.src)
            if (
                isinstance(child_machine, Machine)
                and rec.status == "active"
                and cid not in self._children
            ):
                self._start_child(
                    cid, child_machine, rec.input, rec.system_id, rec.snapshot, rec, (), pending
                )

    def _arm(self) -> None:
        """Arm the clock for the snapshot's earliest timer (disarm it when there is none)."""
        first = self.snapshot.timers.first
        armed = self._armed
        if armed is None or armed[0] is not first:
            if armed is not None:
                armed[1].cancel()
            self._armed = (
                None
                if first is None
                else (first, self.clock.call_at(first.due_ms, partial(self._on_timer, first)))
            )

    def _deliver(self, event: Mapping[str, Any]) -> list[Awaitable[Any]]:
        pending: list[Awaitable[Any]] = []
        for fn in (*self._listeners.get(event["type"], ()), *self._listeners.get("*", ())):
            result = fn(event)
            if inspect.isawaitable(result):
                pending.append(result)
        return pending

    def _notify(self, snapshot: Snapshot) -> None:
        for fn in tuple(self._subscribers):
            fn(snapshot)

    def _reconcile(self) -> None:
        """Make armed timers and running invoked work match the snapshot."""
        snap = self.snapshot
        self._arm()
        for cid in [k for k, rec in self._started.items() if snap.children.get(k) is not rec]:
            del self._started[cid]
            task = self._tasks.pop(cid, None)
            if task is not None:
                task.cancel()
        actors = self.machine.actors
        for cid, child in snap.children.items():
            if cid not in self._started:
                fn = actors[child.src]
                if isinstance(fn, Machine):
                    continue  # a child machine: a child actor, not a task
                task = asyncio.get_running_loop().create_task(
                    self._run_child(cid, fn, child.input), name=f"{self.id}:{cid}"
                )
                self._tasks[cid] = task
                self._started[cid] = child

    def _on_timer(self, timer: Timer) -> None:
        armed = self._armed
        if armed is None or armed[0] is not timer:
            return
        self._armed = None
        self._mailbox.append(("due", timer.due_ms, None))
        self._drain_in_background()

    async def _run_child(self, cid: str, fn: Callable[..., Any], child_input: Any) -> None:
        me = asyncio.current_task()
        event: dict[str, Any]
        try:
            result = fn(child_input)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of invoked work is its error event
            event = {"type": f"xstate.error.actor.{cid}", "error": exc, "actorId": cid}
        else:
            event = {"type": f"xstate.done.actor.{cid}", "output": result, "actorId": cid}
        if self._tasks.get(cid) is not me:
            return  # stopped (the state exited) while finishing: drop the result
        del self._tasks[cid]
        if self._status != "running":
            return
        self._mailbox.append(("event", event, None))
        self._drain_in_background()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                logger.exception("actor %s: an async action or listener failed", self.id)

        task = asyncio.get_running_loop().create_task(run())
        if self._background is None:
            self._background = set()
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _gathered(tasks: list[asyncio.Task[Any]]) -> list[Awaitable[Any]]:
    """The cancelled tasks of a stopped child, as one awaitable that never raises."""
    return [asyncio.gather(*tasks, return_exceptions=True)] if tasks else []


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)
