"""The in-memory Actor: lifecycle, events, listeners, durable timers, invoked work."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from durable_state import (
    Actor,
    ActorStopped,
    InvalidEvent,
    Machine,
    ManualClock,
    Snapshot,
    SystemClock,
    SystemIdTaken,
    UnknownActor,
    assign,
    cancel,
    emit,
    log,
    send_parent,
    send_to,
    spawn_child,
    stop_child,
)
from durable_state.statechart import SendEffect, SpawnEffect, StopChildEffect


def log_action() -> Any:
    return assign(
        lambda context, event, tag=None: {"log": [*context.get("log", []), tag or event["type"]]}
    )


def counter() -> Machine:
    return Machine(
        {
            "id": "counter",
            "initial": "idle",
            "context": {"n": 0},
            "states": {
                "idle": {"on": {"INC": {"actions": "inc"}, "FINISH": "done"}},
                "done": {"type": "final"},
            },
            "output": lambda context, event: {"n": context["n"]},
        },
        actions={"inc": assign(lambda context, event: {"n": context["n"] + event.get("by", 1)})},
    )


# --------------------------------------------------------------------------- #
# Lifecycle and events
# --------------------------------------------------------------------------- #


async def test_start_send_snapshot_stop() -> None:
    actor = Actor(counter())
    assert actor.status == "not-started"
    with pytest.raises(ActorStopped):
        _ = actor.snapshot
    with pytest.raises(ActorStopped):
        await actor.send("INC")
    await actor.start()
    assert actor.status == "running"
    await actor.send("INC")
    await actor.send({"type": "INC", "by": 5})
    assert actor.snapshot.context == {"n": 6}
    assert isinstance(actor.snapshot, Snapshot)
    await actor.send("FINISH")
    assert actor.snapshot.status == "done"
    assert actor.snapshot.output == {"n": 6}
    await actor.stop()
    await actor.stop()  # idempotent
    assert actor.status == "stopped"
    with pytest.raises(ActorStopped):
        await actor.send("INC")
    with pytest.raises(ActorStopped):
        await actor.start()


async def test_async_with_starts_and_stops() -> None:
    async with Actor(counter()) as actor:
        assert actor.status == "running"
        await actor.send("INC")
    assert actor.status == "stopped"
    # The snapshot survives the stop and can still be persisted.
    assert actor.snapshot.context == {"n": 1}
    assert actor.snapshot.status == "active"
    assert actor.persisted_snapshot()["context"] == {"n": 1}


async def test_invalid_event_is_refused() -> None:
    async with Actor(counter()) as actor:
        with pytest.raises(InvalidEvent):
            await actor.send({"no": "type"})
        assert actor.snapshot.context == {"n": 0}


async def test_input_reaches_the_context_function() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "context": lambda input: {"who": input}, "states": {"a": {}}}
    )
    async with Actor(m, input="ann") as actor:
        assert actor.snapshot.context == {"who": "ann"}


async def test_subscribe_sees_every_macrostep_and_can_unsubscribe() -> None:
    seen: list[Any] = []
    actor = Actor(counter())
    sub = actor.subscribe(lambda snap: seen.append(snap.context["n"]))
    async with actor:
        await actor.send("INC")
        await actor.send("UNHANDLED")  # nothing changes: no notification
        await actor.send("INC")
        sub.unsubscribe()
        await actor.send("INC")
    assert seen == [0, 1, 2]


async def test_persisted_snapshot_restores_into_a_new_actor() -> None:
    async with Actor(counter()) as actor:
        await actor.send({"type": "INC", "by": 3})
        data = json.loads(json.dumps(actor.persisted_snapshot()))
    async with Actor(counter(), snapshot=data) as again:
        await again.send("INC")
        assert again.snapshot.context == {"n": 4}


async def test_exception_in_an_assign_propagates_and_the_actor_keeps_its_snapshot() -> None:
    def boom(context: Any, event: Any) -> Any:
        raise ValueError("bad input")

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {"on": {"INC": {"actions": "inc"}, "BAD": {"target": "b", "actions": "boom"}}},
                "b": {},
            },
        },
        actions={"inc": assign(lambda c, e: {"n": c["n"] + 1}), "boom": assign(boom)},
    )
    async with Actor(m) as actor:
        await actor.send("INC")
        before = actor.snapshot
        with pytest.raises(ValueError, match="bad input"):
            await actor.send("BAD")
        assert actor.snapshot is before
        assert actor.snapshot.status == "active"
        await actor.send("INC")  # still usable
        assert actor.snapshot.context == {"n": 2}


# --------------------------------------------------------------------------- #
# Custom actions and emitted events
# --------------------------------------------------------------------------- #


async def test_custom_actions_run_after_the_macrostep_with_their_context() -> None:
    calls: list[Any] = []
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {
                    "on": {
                        "GO": {
                            "actions": ["note", "inc", {"type": "note", "params": {"tag": "after"}}]
                        }
                    }
                }
            },
        },
        actions={
            "inc": assign(lambda c, e: {"n": c["n"] + 1}),
            "note": lambda context, event, tag="before": calls.append(
                (tag, dict(context), event["type"])
            ),
        },
    )
    async with Actor(m) as actor:
        await actor.send("GO")
    assert calls == [("before", {"n": 0}, "GO"), ("after", {"n": 1}, "GO")]


async def test_async_custom_actions_are_awaited_before_send_returns() -> None:
    done: list[str] = []

    async def slow(context: Any, event: Any) -> None:
        await asyncio.sleep(0.01)
        done.append(event["type"])

    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": {"actions": "slow"}}}}},
        actions={"slow": slow},
    )
    async with Actor(m) as actor:
        await actor.send("GO")
        assert done == ["GO"]


async def test_emitted_events_reach_listeners_after_the_macrostep_only() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "on": {
                        "GO": {"target": "b", "actions": ["ping", "log"]},
                        "PING": {"actions": "log"},
                    }
                },
                "b": {"entry": "report", "on": {"PING": {"actions": "log"}}},
            },
        },
        actions={
            "ping": emit({"type": "PING", "x": 1}),
            "report": emit(lambda context, event: {"type": "REPORT", "log": list(context["log"])}),
            "log": log_action(),
        },
    )
    got: list[tuple[str, Any]] = []
    seen_value: list[Any] = []
    actor = Actor(m)
    actor.on(
        "PING", lambda e: (got.append(("ping", dict(e))), seen_value.append(actor.snapshot.value))
    )
    actor.on("*", lambda e: got.append(("*", e["type"])))
    unsub = actor.on("REPORT", lambda e: got.append(("report", e["log"])))
    async with actor:
        await actor.send("GO")
        # The machine never received PING; the listener ran after the step.
        assert actor.snapshot.context["log"] == ["GO"]
        assert seen_value == ["b"]
        unsub()
        await actor.send("GO")
    assert got == [
        ("ping", {"type": "PING", "x": 1}),
        ("*", "PING"),
        ("report", ["GO"]),
        ("*", "REPORT"),
    ]


async def test_async_listeners_are_awaited() -> None:
    got: list[str] = []

    async def listener(event: Any) -> None:
        await asyncio.sleep(0)
        got.append(event["type"])

    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": {"actions": "e"}}}}},
        actions={"e": emit("OUT")},
    )
    async with Actor(m) as actor:
        actor.on("OUT", listener)
        await actor.send("GO")
        assert got == ["OUT"]


# --------------------------------------------------------------------------- #
# Timers
# --------------------------------------------------------------------------- #


def timed() -> Machine:
    return Machine(
        {
            "id": "t",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "after": {
                        "100": {
                            "target": "b",
                            "actions": {"type": "log", "params": {"tag": "a100"}},
                        },
                        "short": {"actions": {"type": "log", "params": {"tag": "short"}}},
                    },
                    "on": {"X": "c"},
                },
                "b": {"entry": {"type": "log", "params": {"tag": "en:b"}}, "after": {"50": "a"}},
                "c": {"entry": {"type": "log", "params": {"tag": "en:c"}}, "after": {"long": "a"}},
            },
        },
        actions={"log": log_action()},
        delays={"short": 10, "long": 100},
    )


async def test_after_timers_fire_as_the_manual_clock_advances() -> None:
    # The steps and logs were verified against xstate with SimulatedClock.
    clock = ManualClock(start_ms=1_000)
    async with Actor(timed(), clock=clock) as actor:
        assert [t.due_ms for t in actor.snapshot.timers] == [1_010.0, 1_100.0]
        assert actor.next_timer_at == 1_010.0
        await clock.advance(5)
        assert actor.snapshot.context["log"] == []
        await clock.advance(5)
        assert actor.snapshot.context["log"] == ["short"]
        await clock.advance(90)
        assert actor.snapshot.value == "b"
        await clock.advance(49)
        assert actor.snapshot.value == "b"
        await clock.advance(1)
        assert actor.snapshot.value == "a"
        await actor.send("X")
        await clock.advance(60)
        assert actor.snapshot.value == "c"
        await clock.advance(40)
        assert actor.snapshot.value == "a"
        # One big jump: everything due by then fires in due order, and the
        # timers started while firing count from the new time.
        await clock.advance(250)
        assert actor.snapshot.value == "b"
        assert actor.snapshot.context["log"] == [
            "short",
            "a100",
            "en:b",
            "en:c",
            "short",
            "a100",
            "en:b",
        ]
        assert [t.due_ms for t in actor.snapshot.timers] == [clock.now_ms() + 50]
    assert clock.pending == 0  # stopping disarmed everything


async def test_manual_clock_fires_ties_in_scheduling_order() -> None:
    clock = ManualClock()
    fired: list[str] = []
    clock.call_at(20, lambda: fired.append("late"))
    clock.call_at(10, lambda: fired.append("first"))
    clock.call_at(10, lambda: fired.append("second"))
    handle = clock.call_at(15, lambda: fired.append("cancelled"))
    handle.cancel()
    clock.call_at(
        10, lambda: clock.call_at(clock.now_ms() + 1, lambda: fired.append("from new time"))
    )
    await clock.advance(19)
    # The timer scheduled by a callback counts from the new time (19 + 1),
    # not from its own due time (10 + 1), so it has not fired yet.
    assert fired == ["first", "second"]
    assert clock.now_ms() == 19
    await clock.advance(1)
    assert fired == ["first", "second", "late", "from new time"]
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        await clock.set(0)
    assert clock.time() == 0.02


async def test_parallel_timers_at_the_same_time() -> None:
    # Verified against xstate: both regions' 10 ms timers fire at 10 (A's was
    # scheduled first); B's 20 ms timer is cancelled when b exits; a2's timer
    # counts from the new time (30) and has not fired.
    m = Machine(
        {
            "id": "m",
            "type": "parallel",
            "context": {"log": []},
            "states": {
                "A": {
                    "initial": "a",
                    "states": {
                        "a": {"after": {"10": {"target": "a2", "actions": "log"}}},
                        "a2": {"after": {"10": {"actions": "log"}}},
                    },
                },
                "B": {
                    "initial": "b",
                    "states": {
                        "b": {
                            "after": {
                                "10": {"target": "b2", "actions": "log"},
                                "20": {"actions": "log"},
                            }
                        },
                        "b2": {},
                    },
                },
            },
        },
        actions={"log": log_action()},
    )
    clock = ManualClock()
    async with Actor(m, clock=clock) as actor:
        await clock.advance(30)
        assert actor.snapshot.context["log"] == ["xstate.after.10.m.A.a", "xstate.after.10.m.B.b"]
        assert actor.snapshot.value == {"A": "a2", "B": "b2"}
        assert [t.due_ms for t in actor.snapshot.timers] == [40.0]


async def test_timers_are_persisted_as_absolute_times_and_rearmed_on_restore() -> None:
    clock = ManualClock(start_ms=1_000_000)
    async with Actor(timed(), clock=clock) as actor:
        await clock.advance(10)
        data = json.loads(json.dumps(actor.persisted_snapshot()))
    assert data["$durable"]["timers"] == [
        {
            "id": "xstate.after.100.t.a",
            "event": {"type": "xstate.after.100.t.a"},
            "due": 1_000_100.0,
        }
    ]
    # A new process: the same wall time, a fresh clock.
    clock2 = ManualClock(start_ms=1_000_050)
    async with Actor(timed(), snapshot=data, clock=clock2) as actor:
        await clock2.advance(49)
        assert actor.snapshot.value == "a"
        await clock2.advance(1)
        assert actor.snapshot.value == "b"
        assert actor.snapshot.context["log"] == ["short", "a100", "en:b"]


async def test_overdue_timers_fire_at_start_in_due_order() -> None:
    clock = ManualClock(start_ms=0)
    async with Actor(timed(), clock=clock) as actor:
        data = actor.persisted_snapshot()
    # Restored long after both timers were due: short (10) then a100 (100)
    # fire during start(), in due order; b's timer counts from now.
    late = ManualClock(start_ms=5_000)
    restored = Actor(timed(), snapshot=data, clock=late)
    await restored.start()
    try:
        assert restored.snapshot.value == "b"
        assert restored.snapshot.context["log"] == ["short", "a100", "en:b"]
        assert [t.due_ms for t in restored.snapshot.timers] == [5_050.0]
    finally:
        await restored.stop()


async def test_a_timer_of_an_exited_state_never_fires() -> None:
    clock = ManualClock()
    async with Actor(timed(), clock=clock) as actor:
        await actor.send("X")
        assert [t.id for t in actor.snapshot.timers] == ["xstate.after.long.t.c"]
        await clock.advance(99)
        assert actor.snapshot.context["log"] == ["en:c"]


async def test_a_failure_in_a_timer_step_sets_status_error() -> None:
    def boom(context: Any, event: Any) -> Any:
        raise RuntimeError("timer work failed")

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"after": {"10": {"target": "b", "actions": "boom"}}}, "b": {}},
        },
        actions={"boom": assign(boom)},
    )
    clock = ManualClock()
    async with Actor(m, clock=clock) as actor:
        await clock.advance(10)
        assert actor.snapshot.status == "error"
        assert isinstance(actor.snapshot.error, RuntimeError)
        assert actor.snapshot.value == "a"


async def test_system_clock_fires_a_short_after_on_the_running_loop() -> None:
    m = Machine({"id": "m", "initial": "a", "states": {"a": {"after": {"20": "b"}}, "b": {}}})
    reached = asyncio.Event()
    async with Actor(m, clock=SystemClock()) as actor:
        actor.subscribe(lambda snap: reached.set() if snap.value == "b" else None)
        assert actor.snapshot.value == "a"
        await asyncio.wait_for(reached.wait(), timeout=5)
        assert actor.snapshot.value == "b"


# --------------------------------------------------------------------------- #
# Invoked work
# --------------------------------------------------------------------------- #


def fetching(fetch: Any, *, on_error: bool = True) -> Machine:
    invoke: dict[str, Any] = {
        "id": "fetch",
        "src": "fetch",
        "input": lambda context, event: {"user": event.get("user")},
        "onDone": {"target": "ready", "actions": "store"},
    }
    if on_error:
        invoke["onError"] = {"target": "failed", "actions": "store_error"}
    return Machine(
        {
            "id": "m",
            "initial": "idle",
            "context": {},
            "states": {
                "idle": {"on": {"LOAD": "loading"}},
                "loading": {"invoke": invoke, "on": {"CANCEL": "idle"}},
                "ready": {},
                "failed": {},
            },
        },
        actors={"fetch": fetch},
        actions={
            "store": assign(
                lambda context, event: {"data": event["output"], "from": event["type"]}
            ),
            "store_error": assign(
                lambda context, event: {"error": str(event["error"]), "from": event["type"]}
            ),
        },
    )


async def wait_for(actor: Actor, predicate: Any, timeout: float = 5.0) -> None:
    """Wait until a snapshot the actor publishes satisfies ``predicate``."""
    reached = asyncio.Event()
    sub = actor.subscribe(lambda snap: reached.set() if predicate(snap) else None)
    try:
        if not predicate(actor.snapshot):
            await asyncio.wait_for(reached.wait(), timeout)
    finally:
        sub.unsubscribe()


async def test_invoked_work_gets_its_input_and_its_result_is_the_done_event() -> None:
    calls: list[Any] = []

    async def fetch(input: Any) -> Any:
        calls.append(input)
        await asyncio.sleep(0)
        return {"name": input["user"].upper()}

    async with Actor(fetching(fetch)) as actor:
        await actor.send({"type": "LOAD", "user": "ann"})
        assert set(actor.snapshot.children) == {"fetch"}
        await wait_for(actor, lambda s: s.value != "loading")
        assert actor.snapshot.value == "ready"
        assert actor.snapshot.context == {
            "data": {"name": "ANN"},
            "from": "xstate.done.actor.fetch",
        }
        assert calls == [{"user": "ann"}]
        assert actor.snapshot.children == {}


async def test_an_exception_of_invoked_work_is_the_error_event() -> None:
    async def fetch(input: Any) -> Any:
        raise LookupError("no such user")

    async with Actor(fetching(fetch)) as actor:
        await actor.send("LOAD")
        await wait_for(actor, lambda s: s.value != "loading")
        assert actor.snapshot.value == "failed"
        assert actor.snapshot.context == {
            "error": "no such user",
            "from": "xstate.error.actor.fetch",
        }


async def test_an_unhandled_error_event_sets_status_error() -> None:
    async def fetch(input: Any) -> Any:
        raise LookupError("no such user")

    async with Actor(fetching(fetch, on_error=False)) as actor:
        await actor.send("LOAD")
        await wait_for(actor, lambda s: s.status != "active")
        assert actor.snapshot.status == "error"
        assert isinstance(actor.snapshot.error, LookupError)
        assert actor.persisted_snapshot()["error"] == {
            "name": "LookupError",
            "message": "no such user",
        }
        # The machine takes no more events; the actor accepts them and
        # nothing changes.
        before = actor.snapshot
        await actor.send("LOAD")
        assert actor.snapshot is before


async def test_invoked_work_is_cancelled_when_its_state_exits() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def fetch(input: Any) -> Any:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Actor(fetching(fetch)) as actor:
        await actor.send("LOAD")
        await asyncio.wait_for(started.wait(), 5)
        await actor.send("CANCEL")
        await asyncio.wait_for(cancelled.wait(), 5)
        assert actor.snapshot.value == "idle"
        assert actor.snapshot.children == {}


async def test_stop_cancels_running_work() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def fetch(input: Any) -> Any:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    actor = Actor(fetching(fetch))
    await actor.start()
    await actor.send("LOAD")
    await asyncio.wait_for(started.wait(), 5)
    await actor.stop()
    assert cancelled.is_set()
    # The snapshot still says the work is running, so a restored actor reruns it.
    assert set(actor.persisted_snapshot()["children"]) == {"fetch"}


async def test_a_restored_actor_restarts_active_children() -> None:
    runs: list[Any] = []
    gate = asyncio.Event()

    async def fetch(input: Any) -> Any:
        runs.append(input)
        await gate.wait()
        return "fresh"

    first = Actor(fetching(fetch))
    await first.start()
    await first.send({"type": "LOAD", "user": "ann"})
    await asyncio.sleep(0)
    data = json.loads(json.dumps(first.persisted_snapshot()))
    await first.stop()
    assert data["children"] == {
        "fetch": {"src": "fetch", "snapshot": {"status": "active", "input": {"user": "ann"}}}
    }
    async with Actor(fetching(fetch), snapshot=data) as again:
        await asyncio.sleep(0)
        gate.set()
        await wait_for(again, lambda s: s.value != "loading")
        assert again.snapshot.value == "ready"
        assert again.snapshot.context["data"] == "fresh"
    # At-least-once: the work ran once in each process, with the same input.
    assert runs == [{"user": "ann"}, {"user": "ann"}]


async def test_synchronous_actor_functions_work_too() -> None:
    async with Actor(fetching(lambda input: 42)) as actor:
        await actor.send("LOAD")
        await wait_for(actor, lambda s: s.value != "loading")
        assert actor.snapshot.context["data"] == 42


async def test_a_failing_custom_action_still_lets_the_step_and_its_other_effects_happen() -> None:
    # Custom actions run after the step was taken: the exception reaches the
    # sender, but subscribers see the new snapshot and the other effects
    # (here an emitted event and an async action) are still carried out.
    def bad(context: Any, event: Any) -> None:
        raise RuntimeError("side effect failed")

    awaited: list[str] = []

    async def later(context: Any, event: Any) -> None:
        awaited.append(event["type"])

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {"on": {"GO": {"target": "b", "actions": ["later", "bad", "ping"]}}},
                "b": {},
            },
        },
        actions={"bad": bad, "ping": emit("PING"), "later": later},
    )
    got: list[Any] = []
    seen: list[Any] = []
    async with Actor(m) as actor:
        actor.on("PING", got.append)
        actor.subscribe(lambda snap: seen.append(snap.value))
        with pytest.raises(RuntimeError, match="side effect failed"):
            await actor.send("GO")
        assert actor.snapshot.value == "b"
        assert seen == ["b"]
        assert got == [{"type": "PING"}]
        assert awaited == ["GO"]


async def test_reentering_a_state_restarts_its_invoked_work() -> None:
    # Verified against xstate: a reentering transition stops the running
    # child and starts it again with the new input; only the new one's
    # result arrives.
    runs: list[int] = []
    cancelled: list[int] = []

    async def job(input: Any) -> int:
        runs.append(input["n"])
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            cancelled.append(input["n"])
            raise
        return int(input["n"])

    m = Machine(
        {
            "id": "m",
            "initial": "loading",
            "context": {"n": 0},
            "states": {
                "loading": {
                    "invoke": {
                        "id": "job",
                        "src": "job",
                        "input": lambda context, event: {"n": context["n"]},
                        "onDone": {"target": "done", "actions": "got"},
                    },
                    "on": {"RETRY": {"target": "loading", "reenter": True, "actions": "inc"}},
                },
                "done": {},
            },
        },
        actors={"job": job},
        actions={
            "got": assign(lambda context, event: {"got": event["output"]}),
            "inc": assign(lambda context, event: {"n": context["n"] + 1}),
        },
    )
    async with Actor(m) as actor:
        await asyncio.sleep(0)  # the first run starts
        await actor.send("RETRY")
        await wait_for(actor, lambda s: s.value == "done")
        assert actor.snapshot.context == {"n": 1, "got": 1}
    assert runs == [0, 1]
    assert cancelled == [0]


async def test_a_restarted_timer_fires_after_timers_scheduled_before_it() -> None:
    # Verified against xstate: p's timer is restarted at time 0 with the same
    # due time as q's, so it now comes second in scheduling order.
    def region(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "initial": "a",
            "states": {
                "a": {
                    "after": {
                        "100": {"target": "b", "actions": {"type": "log", "params": {"tag": name}}}
                    },
                    **extra,
                },
                "b": {},
            },
        }

    m = Machine(
        {
            "id": "m",
            "type": "parallel",
            "context": {"log": []},
            "states": {
                "p": region("p", on={"E": {"target": "a", "reenter": True}}),
                "q": region("q"),
            },
        },
        actions={"log": log_action()},
    )
    clock = ManualClock()
    async with Actor(m, clock=clock) as actor:
        await actor.send("E")
        await clock.advance(100)
        assert actor.snapshot.context["log"] == ["q", "p"]


# --------------------------------------------------------------------------- #
# Child machines and messages (the in-process actor system)
# --------------------------------------------------------------------------- #


def note() -> Any:
    """An assign that appends the event type (and its ``n``, if any) to ``log``."""
    return assign(
        lambda context, event: {
            "log": [
                *context["log"],
                f"{event['type']}:{event['n']}" if "n" in event else event["type"],
            ]
        }
    )


def worker(*, later: bool = False) -> Machine:
    """A child: says hello, answers PING with PONG (its count), finishes on STOP."""
    return Machine(
        {
            "id": "worker",
            "initial": "idle",
            "context": lambda input: {"n": (input or {}).get("n", 0), "log": []},
            "entry": "hello",
            "output": lambda context, event: {"n": context["n"]},
            "states": {
                "idle": {
                    "on": {
                        "PING": {"actions": ["note", "count", "pong"]},
                        "STOP": "done",
                        "FORWARD": {"actions": "forward"},
                        "LATER": {"actions": "pong_later"},
                    }
                },
                "done": {"type": "final"},
            },
        },
        actions={
            "note": note(),
            "hello": send_parent({"type": "HELLO"}),
            "count": assign(lambda context, event: {"n": context["n"] + 1}),
            "pong": send_parent(lambda context, event: {"type": "PONG", "n": context["n"]}),
            "pong_later": send_parent({"type": "PONG", "n": -1}, delay=100, id="later"),
            "forward": send_to(lambda context, event: event["to"], {"type": "PING"}),
        },
    )


def boss(**states: Any) -> Machine:
    """A parent of ``worker`` children that logs what they tell it."""
    return Machine(
        {
            "id": "boss",
            "initial": "working",
            "context": {"log": []},
            "on": {"HELLO": {"actions": "note"}, "PONG": {"actions": "note"}},
            "states": states
            or {
                "working": {
                    "invoke": {
                        "src": "worker",
                        "id": "w",
                        "input": {"n": 10},
                        "systemId": "the-worker",
                        "onDone": {"target": "finished", "actions": "note_output"},
                    },
                    "on": {
                        "PING": {"actions": send_to("w", {"type": "PING"})},
                        "STOP": {"actions": send_to("w", {"type": "STOP"})},
                        "SPAWN": {"actions": spawn_child("worker", id="s", input={"n": 100})},
                        "KILL": {"actions": stop_child("s")},
                        "PING_S": {"actions": send_to("s", {"type": "PING"})},
                        "PING_SYS": {"actions": send_to("the-worker", {"type": "PING"})},
                        "PING_NOBODY": {"actions": send_to("nobody", {"type": "PING"})},
                        "LATER": {"actions": send_to("w", {"type": "LATER"})},
                        "RELAY": {"actions": send_to("s", {"type": "FORWARD", "to": "the-worker"})},
                    },
                },
                "finished": {},
            },
        },
        actions={
            "note": note(),
            "note_output": assign(
                lambda context, event: {"log": [*context["log"], f"done:{event['output']['n']}"]}
            ),
        },
        actors={"worker": worker()},
    )


async def test_an_invoked_machine_runs_as_a_child_actor_that_talks() -> None:
    async with Actor(boss()) as actor:
        assert actor.snapshot.context["log"] == ["HELLO"]
        w = actor.children["w"]
        assert (w.parent, w.id, w.system_id, w.snapshot.context["n"]) == (
            actor,
            "w",
            "the-worker",
            10,
        )
        assert actor.find("the-worker") is w
        await actor.send("PING")
        # The child's answer was taken before send() returned.
        assert actor.snapshot.context["log"] == ["HELLO", "PONG:11"]
        assert w.snapshot.context == {"n": 11, "log": ["PING"]}
        await actor.send("STOP")
        assert actor.snapshot.value == "finished"
        assert actor.snapshot.context["log"][-1] == "done:11"
        assert actor.children == {}
        assert w.status == "stopped"
        assert actor.find("the-worker") is None


async def test_spawned_children_and_system_ids_in_the_tree() -> None:
    async with Actor(boss()) as actor:
        await actor.send("SPAWN")
        s = actor.children["s"]
        assert s.snapshot.context["n"] == 100
        await actor.send("PING_S")
        await actor.send("PING_SYS")  # by systemId
        await actor.send("RELAY")  # s sends to the invoked child by its systemId
        assert actor.snapshot.context["log"] == ["HELLO", "HELLO", "PONG:101", "PONG:11", "PONG:12"]
        await actor.send("KILL")
        assert "s" not in actor.children
        assert s.status == "stopped"
        with pytest.raises(UnknownActor):
            await actor.send("PING_S")


async def test_a_message_for_nobody_is_refused_and_the_step_not_taken() -> None:
    async with Actor(boss()) as actor:
        before = actor.snapshot
        with pytest.raises(UnknownActor) as info:
            await actor.send("PING_NOBODY")
        assert (info.value.target, info.value.machine_id, info.value.event_type) == (
            "nobody",
            "boss",
            "PING",
        )
        assert actor.snapshot is before


async def test_send_parent_from_an_actor_without_a_parent_is_refused() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": {"actions": send_parent("UP")}}}}}
    )
    async with Actor(m) as actor:
        with pytest.raises(UnknownActor, match="has no parent"):
            await actor.send("GO")


async def test_a_timer_step_that_sends_to_nobody_fails_the_actor_as_in_xstate() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"after": {"10": {"actions": send_to("x", "Y")}}}},
        }
    )
    clock = ManualClock()
    async with Actor(m, clock=clock) as actor:
        await clock.advance(10)
        assert actor.snapshot.status == "error"
        assert isinstance(actor.snapshot.error, UnknownActor)


async def test_a_taken_system_id_refuses_the_spawn() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": {"actions": "spawn"}}}}},
        actions={
            "spawn": spawn_child("worker", id=lambda context, event: event["id"], system_id="one")
        },
        actors={"worker": worker()},
    )
    async with Actor(m) as actor:
        await actor.send({"type": "GO", "id": "a"})
        with pytest.raises(SystemIdTaken, match="'one'"):
            await actor.send({"type": "GO", "id": "b"})
        assert set(actor.children) == {"a"}


async def test_a_child_that_fails_reports_its_error() -> None:
    def boom(context: Any, event: Any) -> Any:
        raise RuntimeError("boom")

    child = Machine(
        {"id": "c", "initial": "a", "states": {"a": {"on": {"GO": {"actions": "boom"}}}}},
        actions={"boom": assign(boom)},
    )
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "invoke": {
                        "src": "c",
                        "id": "c",
                        "onError": {"target": "b", "actions": "seen"},
                    },
                    "on": {"GO": {"actions": send_to("c", "GO")}},
                },
                "b": {},
            },
        },
        actions={"seen": assign(lambda context, event: {"log": [type(event["error"]).__name__]})},
        actors={"c": child},
    )
    async with Actor(m) as actor:
        c = actor.children["c"]
        await actor.send("GO")  # the failure is the child's, not the sender's
        assert actor.snapshot.value == "b"
        assert actor.snapshot.context["log"] == ["RuntimeError"]
        assert c.snapshot.status == "error"


async def test_a_child_that_cannot_even_start_reports_its_error() -> None:
    child = Machine(
        {"id": "c", "initial": "a", "entry": send_to("nobody", "X"), "states": {"a": {}}}
    )
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"invoke": {"src": "c", "id": "c", "onError": "b"}}, "b": {}},
        },
        actors={"c": child},
    )
    async with Actor(m) as actor:
        assert actor.snapshot.value == "b"


async def test_children_are_nested_in_the_persisted_snapshot_and_restored() -> None:
    clock = ManualClock(start_ms=1_000)
    async with Actor(boss(), clock=clock) as actor:
        await actor.send("SPAWN")
        await actor.send("PING")
        await actor.send("LATER")  # a delayed sendParent, pending in the child
        data = json.loads(json.dumps(actor.persisted_snapshot()))
    w = data["children"]["w"]
    assert (w["src"], w["systemId"], w["input"]) == ("worker", "the-worker", {"n": 10})
    assert w["snapshot"]["context"] == {"n": 11, "log": ["PING"]}
    assert w["snapshot"]["$durable"]["timers"][0]["send"] == {"to": "", "parent": True}
    assert data["children"]["s"]["snapshot"]["context"]["n"] == 100

    later = ManualClock(start_ms=1_050)
    async with Actor(boss(), snapshot=data, clock=later) as again:
        # Restored, not started afresh: no second hello.
        assert again.snapshot.context["log"] == ["HELLO", "HELLO", "PONG:11"]
        assert again.children["w"].snapshot.context["n"] == 11
        assert again.find("the-worker") is again.children["w"]
        await later.advance(50)  # the child's delayed send survived
        assert again.snapshot.context["log"][-1] == "PONG:-1"
        await again.send("PING")
        assert again.snapshot.context["log"][-1] == "PONG:12"


async def test_a_delayed_send_survives_persist_and_restore_and_cancel_removes_it() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "invoke": {"src": "worker", "id": "w"},
                    "on": {
                        "ARM": {"actions": send_to("w", {"type": "PING"}, delay=100, id="p")},
                        "DISARM": {"actions": cancel("p")},
                        "PONG": {"actions": "note"},
                        "HELLO": {},
                    },
                }
            },
        },
        actions={"note": note()},
        actors={"worker": worker()},
    )
    clock = ManualClock()
    async with Actor(m, clock=clock) as actor:
        await actor.send("ARM")
        data = json.loads(json.dumps(actor.persisted_snapshot()))
    assert data["$durable"]["timers"][0]["send"] == {"to": "w", "child": True}
    async with Actor(m, snapshot=data, clock=clock) as again:
        await clock.advance(100)
        assert again.snapshot.context["log"] == ["PONG:1"]
        await again.send("ARM")
        await clock.advance(50)
        await again.send("DISARM")
        await clock.advance(100)
        assert again.snapshot.context["log"] == ["PONG:1"]


async def test_stopping_the_parent_stops_the_tree() -> None:
    actor = Actor(boss())
    await actor.start()
    await actor.send("SPAWN")
    w, s = actor.children["w"], actor.children["s"]
    await actor.stop()
    assert (w.status, s.status) == ("stopped", "stopped")
    assert actor.find("the-worker") is None


async def test_relay_hands_messages_and_children_to_another_shell() -> None:
    relayed: list[Any] = []
    async with Actor(boss(), relay=relayed.append) as actor:
        await actor.send("PING")
        await actor.send("PING_NOBODY")  # not this actor's business: no refusal
        await actor.send("SPAWN")
        await actor.send("KILL")
        assert actor.children == {}
        assert actor.persisted_snapshot()["children"]["w"]["snapshot"] == {"status": "active"}
    assert relayed == [
        SpawnEffect("w", "worker", actor.machine.actors["worker"], {"n": 10}, "the-worker"),
        SendEffect("w", {"type": "PING"}, False, True, None),
        SendEffect("nobody", {"type": "PING"}, False, False, None),
        SpawnEffect("s", "worker", actor.machine.actors["worker"], {"n": 100}, None),
        StopChildEffect("s"),
    ]


async def test_log_actions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": {"actions": log("hi")}}}}}
    )
    with caplog.at_level("INFO", logger="durable_state.actor"):
        async with Actor(m, id="logger") as actor:
            await actor.send("GO")
    assert "actor logger: hi" in caplog.text


async def test_a_child_spawned_and_stopped_in_one_step_never_runs() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "on": {"HELLO": {"actions": "note"}},
            "states": {
                "a": {
                    "on": {
                        "GO": {
                            "actions": [
                                spawn_child("worker", id="k"),
                                send_to("k", "PING"),
                                stop_child("k"),
                            ]
                        }
                    }
                }
            },
        },
        actions={"note": note()},
        actors={"worker": worker()},
    )
    async with Actor(m) as actor:
        await actor.send("GO")
        assert actor.snapshot.context["log"] == []  # no hello, no answer
        assert actor.children == {}
