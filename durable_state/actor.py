"""The in-memory actor: a machine's snapshot brought to life on an event loop.

:class:`Actor` is the imperative shell around the pure core. It keeps the
current :class:`~durable_state.Snapshot`, feeds it events one macrostep at a
time, and carries out the effects the core returns: custom actions, emitted
events, durable timers and invoked async work.

Timers are part of the snapshot as absolute due times (epoch ms of the
actor's clock). An actor restored from a persisted snapshot re-arms them and
delivers the overdue ones, in due order, when it starts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Literal

from ._await import await_all as _await_all
from ._await import close_all as _close_all
from ._clock import Clock, SystemClock, TimerHandle
from .errors import ActorStopped, SnapshotIncompatible
from .statechart import (
    ActionEffect,
    ChildRecord,
    Effect,
    EmitEffect,
    Machine,
    Snapshot,
    Timer,
    to_event,
)

__all__ = ("Actor", "Listener", "Subscription")

logger: logging.Logger = logging.getLogger("durable_state.actor")

Listener = Callable[[Mapping[str, Any]], Any]
"""A listener of emitted events: ``fn(event)``; may be a coroutine function."""

ActorStatus = Literal["not-started", "running", "stopped"]


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
            (the dict :meth:`persisted_snapshot` returns) to restore.
        clock: the time source for timers (default: wall clock on the
            running asyncio loop). Pass a :class:`ManualClock` in tests.
        input: the machine input, used only when starting fresh.
        id: a name for logs.
        emit: where emitted events go: ``emit(event)``, called when the step
            that emitted them has been taken. Default: delivered to the
            listeners registered with :meth:`on`. A persisted actor passes a
            buffer here, so that events are delivered only after a save.

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
        "_emit",
        "_input",
        "_listeners",
        "_mailbox",
        "_processing",
        "_snapshot",
        "_started",
        "_status",
        "_subscribers",
        "_tasks",
        "clock",
        "id",
        "machine",
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
        # The snapshot Timer each clock callback was armed for. A timer that
        # is scheduled again gets a new Timer (even with the same due time):
        # it is re-armed, so that it fires after the timers scheduled before
        # it, in the order of the snapshot's (due time, scheduling order).
        self._armed: tuple[Timer, TimerHandle] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The snapshot record each child was started for. A state that is
        # re-entered records a new ChildRecord under the same id: the running
        # work is then cancelled and started again, as xstate restarts it. An
        # entry outlives its task until the snapshot drops the child, so that
        # work whose result is still queued is not started a second time.
        self._started: dict[str, ChildRecord] = {}
        self._background: set[asyncio.Task[Any]] | None = None  # made on first use
        self._listeners: dict[str, list[Listener]] = {}
        self._subscribers: list[Callable[[Snapshot], Any]] = []
        self._emit = emit

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #

    @property
    def status(self) -> ActorStatus:
        """``"not-started"``, ``"running"`` or ``"stopped"`` (of the actor, not the machine)."""
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

    async def start(self) -> None:
        """Start: enter the initial state, or resume the restored snapshot.

        A restored actor re-arms its pending timers, fires the overdue ones in
        due order before returning, and restarts its invoked children
        (at-least-once: work that was running when the snapshot was taken
        runs again).

        Raises:
            ActorStopped: if the actor was stopped.
            Exception: whatever an implementation raised while starting.
        """
        if self._status == "running":
            return
        if self._status == "stopped":
            raise ActorStopped(self.machine.id, "stopped")
        self._status = "running"
        pending: list[Awaitable[Any]] = []
        error: Exception | None = None
        try:
            if self._snapshot is None:
                snap, effects = self.machine.initial_transition(
                    self._input, now_ms=self.clock.now_ms()
                )
                self._snapshot = snap
                error = self._carry_out(effects, pending)
            if error is None:
                error = self._fire_overdue(pending)
            self._reconcile()
            self._notify(self.snapshot)
        except BaseException:
            self._status = "not-started" if self._snapshot is None else self._status
            _close_all(pending)
            raise
        await _await_all(pending, error)

    async def stop(self) -> None:
        """Stop: disarm timers and cancel invoked children. Idempotent.

        The snapshot is left as it was (its ``status`` is the machine's), so
        that it can still be persisted after the actor stopped.
        """
        if self._status == "stopped":
            return
        self._status = "stopped"
        if self._armed is not None:
            self._armed[1].cancel()
            self._armed = None
        tasks = [*self._tasks.values(), *(self._background or ())]
        self._tasks.clear()
        self._started.clear()
        self._background = None
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

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
        delivered to listeners after that. Coroutines returned by custom
        actions or listeners are awaited before ``send`` returns.

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
            Exception: whatever an implementation raised. When the machine
                raised (an assign, a guard, a raise or emit function), the actor
                keeps the snapshot it had before this event. When a custom
                action or a listener raised, the step was taken and its other
                effects were still carried out.
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

        Timers and invoked work are made to match it again, and events not
        processed yet are dropped. Effects that already ran (custom actions,
        emitted events) are not undone: that is the caller's business.

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

    def persisted_snapshot(self) -> dict[str, Any]:
        """The JSON-able persisted form of the current snapshot.

        Raises:
            NotSerializable: if the context holds a value JSON cannot hold.
        """
        return self.machine.persisted_snapshot(self.snapshot)

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
                        # Deliver the earliest due timer, then look again: all
                        # timers due by now go in the snapshot's order (due time,
                        # then scheduling order), whichever clock callback woke
                        # us. A callback that came early finds nothing due and
                        # the timer is simply armed again.
                        first = snap.timers[0] if snap.timers else None
                        if first is None or first.due_ms > now or snap.status != "active":
                            self._reconcile()
                            continue
                        nxt, effects = self.machine.fire_timer(snap, first.id, now_ms=now)
                        self._mailbox.insert(0, ("due", None, None))
                    else:
                        nxt, effects = self.machine.transition(snap, item, now_ms=now)
                except Exception as exc:  # noqa: BLE001 - returned, raised to the sender
                    error = exc
                    break
                if handled is not None:
                    handled.append(nxt is not snap or bool(effects))
                if nxt is snap and not effects:
                    continue
                self._snapshot = nxt
                if nxt.timers is not snap.timers or nxt.children is not snap.children:
                    self._reconcile()
                if effects:
                    error = self._carry_out(effects, pending)
                if self._subscribers:
                    self._notify(nxt)
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
        pending, exc = self._drain()
        if pending:
            self._spawn(_await_all(pending))
        if exc is not None:
            # No caller to raise to: like xstate, the actor's snapshot goes to
            # status "error", and the failure is logged.
            logger.error(
                "actor %s failed while processing a timer or child event",
                self.id,
                exc_info=exc,
            )
            self._snapshot = self.machine.fail(self.snapshot, exc)
            self._mailbox.clear()
            self._reconcile()
            self._notify(self._snapshot)

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
            nxt, effects = self.machine.fire_timer(snap, snap.timers[0].id, now_ms=now)
            self._snapshot = nxt
            error = self._carry_out(effects, pending)
            if error is not None:
                return error

    def _carry_out(self, effects: list[Effect], pending: list[Awaitable[Any]]) -> Exception | None:
        """Run custom actions and deliver emitted events, in order.

        Coroutines they return are appended to ``pending``. Every effect runs
        even when an earlier one raised (they are independent side effects of
        a step that was already taken); the first failure is returned.
        """
        error: Exception | None = None
        for eff in effects:
            try:
                if isinstance(eff, ActionEffect):
                    result = eff.run()
                    if inspect.isawaitable(result):
                        pending.append(result)
                elif isinstance(eff, EmitEffect):
                    if self._emit is not None:
                        self._emit(eff.event)
                    else:
                        pending.extend(self._deliver(eff.event))
                # Timers and children are reconciled from the snapshot itself.
            except Exception as exc:
                if error is None:
                    error = exc
                else:
                    logger.error("actor %s: another action failed as well", self.id, exc_info=exc)
        return error

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
        """Make armed timers and running children match the snapshot."""
        snap = self.snapshot
        # One clock callback, for the earliest timer: when it fires, every
        # timer due by then fires in the snapshot's order and the next one is
        # armed. The cost per step does not grow with the timers pending.
        first = snap.timers.first
        armed = self._armed
        if armed is None or armed[0] is not first:
            if armed is not None:
                armed[1].cancel()
            self._armed = (
                None
                if first is None
                else (first, self.clock.call_at(first.due_ms, partial(self._on_timer, first)))
            )
        for cid in [k for k, rec in self._started.items() if snap.children.get(k) is not rec]:
            del self._started[cid]
            task = self._tasks.pop(cid, None)
            if task is not None:
                task.cancel()
        for cid, child in snap.children.items():
            if cid not in self._started:
                fn = self.machine.actors[child.src]
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
        self._mailbox.append(("due", None, None))
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


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)
