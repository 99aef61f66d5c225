"""Messages and child machines of persisted actors: the core's actor actions through the outbox.

In process, :class:`~durable_state.Actor` runs child machines as child
actors and delivers messages synchronously (checked against xstate by the
differential suite). Persisted, each child machine is an actor of its own
and every message rides in its sender's save: these tests check that the
persisted boundary gives the same results, exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from durable_state import (
    Actor,
    ActorSystem,
    Machine,
    ManualClock,
    assign,
    cancel,
    enqueue_actions,
    log,
    persisted_actor,
    send_parent,
    send_to,
    spawn_child,
    stop_child,
)
from durable_state._mailbox import OUTBOX_GRACE_MS, child_actor_id
from durable_state.storage import MemoryStorage

from .conftest import Backend

START = 1_800_000_000_000


async def stored(system: ActorSystem, actor_id: str) -> dict[str, Any] | None:
    found = await system.storage.read(actor_id)
    return None if found is None else dict(json.loads(found.data))


async def must(system: ActorSystem, actor_id: str) -> dict[str, Any]:
    return await must_in(system.storage, actor_id)


async def must_in(storage: Any, actor_id: str) -> dict[str, Any]:
    found = await storage.read(actor_id)
    assert found is not None, f"{actor_id} is not stored"
    return dict(json.loads(found.data))


def note(key: str) -> Any:
    """An assign that appends ``key`` (or the event's payload under it) to ``context.log``."""
    return assign(lambda c, e: {"log": [*c["log"], e.get(key, e["type"])]})


def payment() -> Machine:
    """A child: greets its parent, charges on CHARGE (or fails on DECLINE), ends with output."""

    def decline(context: Any, event: Any) -> dict[str, Any]:
        raise RuntimeError("card declined")

    return Machine(
        {
            "id": "payment",
            "initial": "waiting",
            "context": lambda input, **_: {"amount": input["amount"], "log": []},
            "output": lambda context, event, **_: {"charged": context["amount"]},
            "states": {
                "waiting": {
                    "entry": "hello",
                    "on": {"CHARGE": "charged", "DECLINE": {"actions": "decline"}},
                },
                "charged": {"type": "final"},
            },
        },
        actions={
            "hello": send_parent({"type": "HELLO"}),
            "decline": assign(decline),
        },
    )


def order(pay: Machine | None = None) -> Machine:
    """Invokes a payment child while ``paying``; its end decides the order's fate."""
    return Machine(
        {
            "id": "order",
            "initial": "new",
            "context": {"log": []},
            "states": {
                "new": {"on": {"PAY": "paying"}},
                "paying": {
                    # An entry action sends to the child the state invokes:
                    # xstate queues it until the child has started.
                    "entry": "charge",
                    "invoke": {
                        "id": "pay",
                        "src": "payment",
                        "input": {"amount": 30},
                        "onDone": {"target": "paid", "actions": "got"},
                        "onError": {"target": "failed", "actions": "got_error"},
                    },
                    "on": {"HELLO": {"actions": "hello"}, "CANCEL": "cancelled"},
                },
                "paid": {"type": "final"},
                "failed": {},
                "cancelled": {"on": {"PAY": "paying"}},
            },
        },
        actions={
            "charge": send_to("pay", lambda c, e: {"type": e.get("how", "CHARGE")}),
            "hello": note("HELLO"),
            "got": note("output"),
            "got_error": assign(lambda c, e: {"log": [*c["log"], "error"]}),
        },
        actors={"payment": pay or payment()},
    )


async def run_in_process(machine: Machine, events: list[Any]) -> Actor:
    actor = Actor(machine)
    await actor.start()
    for ev in events:
        await actor.send(ev)
    return actor


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_an_invoked_child_machine_is_an_actor_of_its_own(backend: Backend) -> None:
    system = ActorSystem([order()], storage=backend.storage, lock=backend.lock)
    result = await system.send("o1", "PAY", machine="order")
    assert result.snapshot.value == "paying"  # the child runs in its own sessions
    await system.idle()
    parent = await must(system, "o1")
    child = await must(system, child_actor_id("o1", "pay"))
    # Greeted by the child's first step, charged by the parent's entry
    # action (sent before the child existed), its output came back as
    # xstate.done.actor.pay: the same as in process.
    assert parent["value"] == "paid"
    assert parent["context"]["log"] == ["HELLO", {"charged": 30}]
    assert child["value"] == "charged"
    assert child["$durable"]["parent"] == "o1"
    assert child["$durable"]["child"] == "pay"
    in_process = await run_in_process(order(), ["PAY"])
    assert in_process.snapshot.value == parent["value"]
    assert in_process.snapshot.context == parent["context"]
    # A child that finished needs no stop message: only spawn and charge went.
    assert child["$durable"]["inbox"] == {"o1": 2}
    assert "stopped" not in child["$durable"]
    assert "outbox" not in parent["$durable"]
    assert "dead" not in parent["$durable"]


async def test_a_child_error_reaches_the_parent_as_xstate_error_actor() -> None:
    system = ActorSystem([order()], storage=MemoryStorage())
    await system.send("o1", {"type": "PAY", "how": "DECLINE"}, machine="order")
    await system.idle()
    # The child's step raised: it is rolled back alone, the message is buried
    # with the reason, and the child keeps waiting. (In process, xstate puts
    # the child in error; a persisted receiver never stores a half step.)
    sender = await must(system, "o1")
    assert "card declined" in sender["$durable"]["dead"][0]["reason"]
    child = await must(system, "o1/pay")
    assert child["value"] == "waiting"


async def test_a_child_that_fails_reports_its_error() -> None:
    async def charge(input: Any) -> None:
        raise RuntimeError("no funds")

    failing = Machine(
        {
            "id": "payment",
            "initial": "charging",
            # Invoked work that fails with no onError: the machine fails.
            "states": {"charging": {"invoke": {"id": "card", "src": "charge"}}},
        },
        actors={"charge": charge},
    )
    system = ActorSystem([order(failing)], storage=MemoryStorage())
    await system.send("o1", {"type": "PAY", "how": "NOTHING"}, machine="order")
    await system.idle()
    # Invoked work runs while a session holds its actor: here, a worker's.
    async with system.actor("o1/pay") as child_session:
        failed = asyncio.Event()
        child_session.subscribe(lambda snap: failed.set() if snap.status == "error" else None)
        await failed.wait()
    await system.idle()
    parent = await must(system, "o1")
    assert parent["value"] == "failed"
    assert parent["context"]["log"] == ["error"]
    child = await must(system, "o1/pay")
    assert child["status"] == "error"
    assert child["$durable"]["reported"] is True
    in_process = await run_in_process(order(failing), [{"type": "PAY", "how": "NOTHING"}])
    await asyncio.sleep(0.01)
    assert in_process.snapshot.value == "failed"


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_leaving_the_invoking_state_stops_the_child_once(backend: Backend) -> None:
    system = ActorSystem([order()], storage=backend.storage, lock=backend.lock)
    await system.send("o1", {"type": "PAY", "how": "WAIT"}, machine="order")
    await system.idle()
    assert (await system.send("o1", "CANCEL")).applied
    await system.idle()
    child = await must(system, "o1/pay")
    assert child["$durable"]["stopped"] is True
    assert child["$durable"]["inbox"] == {"o1": 3}  # spawn, WAIT, stop: each once
    # A stopped child takes nothing more, from anybody.
    assert (await system.send("o1/pay", "CHARGE")).unhandled


async def test_invoking_again_restarts_the_child_with_its_inbox_kept() -> None:
    system = ActorSystem([order()], storage=MemoryStorage())
    await system.send("o1", {"type": "PAY", "how": "WAIT"}, machine="order")
    await system.idle()
    await system.send("o1", "CANCEL")
    await system.idle()
    await system.send("o1", "PAY")  # a new spawn under the same id: starts over
    await system.idle()
    parent = await must(system, "o1")
    child = await must(system, "o1/pay")
    assert parent["value"] == "paid"
    assert parent["context"]["log"] == ["HELLO", "HELLO", {"charged": 30}]
    assert child["value"] == "charged"
    assert "stopped" not in child["$durable"]
    assert child["$durable"]["inbox"] == {"o1": 5}  # numbers go on across the restart


def counter() -> Machine:
    return Machine(
        {
            "id": "counter",
            "initial": "on",
            "context": lambda input, **_: {"n": (input or {}).get("start", 0)},
            "states": {"on": {"on": {"ADD": {"actions": "add"}}}},
        },
        actions={"add": assign(lambda c, e: {"n": c["n"] + e.get("by", 1)})},
    )


def spawner() -> Machine:
    return Machine(
        {
            "id": "spawner",
            "initial": "on",
            "context": {"log": []},
            "states": {
                "on": {
                    "on": {
                        "START": {"actions": "start"},
                        "BUMP": {"actions": "bump"},
                        "KILL": {"actions": "kill"},
                        "TELL": {"actions": "tell"},
                        "ORPHAN": {"actions": "orphan"},
                    }
                }
            },
        },
        actions={
            "start": spawn_child(
                "counter", id="c", input=lambda c, e: {"start": e["start"]}, system_id="ledger"
            ),
            "bump": send_to("c", {"type": "ADD", "by": 10}),
            "kill": stop_child("c"),
            "tell": send_to("ledger", {"type": "ADD", "by": 100}),
            "orphan": send_parent({"type": "NOBODY"}),
        },
        actors={"counter": counter()},
    )


async def test_spawn_child_with_a_system_id_and_stop_child() -> None:
    system = ActorSystem([spawner()], storage=MemoryStorage())
    assert "counter" in system.machines  # registered with the machine that spawns it
    await system.send("s", {"type": "START", "start": 5}, machine="spawner")
    await system.send("s", "BUMP")
    await system.idle()
    ledger = await must(system, "ledger")  # the child's actor id is its systemId
    assert ledger["context"]["n"] == 15
    # Any actor may send to a systemId: it is an actor id.
    await system.send("s", "TELL")
    await system.send("other", {"type": "ADD", "by": 1000}, machine="counter")
    async with system.actor("other") as other:
        other.post("ledger", {"type": "ADD", "by": 1})
    await system.idle()
    assert (await must(system, "ledger"))["context"]["n"] == 116
    await system.send("s", "KILL")
    await system.send("s", "BUMP")  # no such child any more
    await system.idle()
    ledger = await must(system, "ledger")
    assert ledger["$durable"]["stopped"] is True
    assert ledger["context"]["n"] == 116
    # Not a child, so an actor id: none is stored under "c". (xstate refuses
    # the send; persisted, it is kept with the reason, never dropped.)
    (dead,) = (await must(system, "s"))["$durable"]["dead"]
    assert dead["to"] == "c"
    assert "no actor 'c'" in dead["reason"]


async def test_send_parent_without_a_parent_is_a_dead_letter() -> None:
    system = ActorSystem([spawner()], storage=MemoryStorage())
    await system.send("s", "ORPHAN", machine="spawner")
    dead = (await must(system, "s"))["$durable"]["dead"]
    assert dead == [
        {
            "seq": 1,
            "to": "#_parent",
            "event": {"type": "NOBODY"},
            "reason": "send_parent from an actor that has no parent",
        }
    ]


def relay_machine() -> Machine:
    """Sends to other actors by id, now or later; a delayed send can be cancelled."""
    return Machine(
        {
            "id": "relay",
            "initial": "on",
            "context": {"log": []},
            "states": {
                "on": {
                    "on": {
                        "NOW": {"actions": "now"},
                        "LATER": {"actions": "later"},
                        "NEVER": {"actions": ["later", "cancel_it"]},
                        "UNKNOWN": {"actions": "unknown"},
                        "DECIDE": {"actions": "decide"},
                        "SAY": {"actions": "say"},
                    }
                }
            },
        },
        actions={
            "now": send_to(lambda c, e: e["to"], {"type": "ADD", "by": 1}, machine="counter"),
            "later": send_to(
                "late", {"type": "ADD", "by": 2}, machine="counter", delay=5000, id="t"
            ),
            "cancel_it": cancel("t"),
            # What an enqueue_actions function sends is known only when it runs.
            "unknown": enqueue_actions(
                lambda q, context, event: q.send_to("x", {"type": "ADD"}, machine="no-such-machine")
            ),
            "decide": enqueue_actions(
                lambda q, context, event: q.send_to(
                    "big" if q.check(lambda c, e: e["n"] > 10) else "small",
                    {"type": "ADD", "by": event["n"]},
                    machine="counter",
                )
            ),
            "say": log(lambda c, e: f"said {e['what']}"),
        },
    )


async def test_send_to_an_id_creates_the_receiver_with_its_machine() -> None:
    system = ActorSystem([relay_machine(), counter()], storage=MemoryStorage())
    for to in ("a", "b", "a"):
        await system.send("r", {"type": "NOW", "to": to}, machine="relay")
    await system.idle()
    assert (await must(system, "a"))["context"]["n"] == 2
    assert (await must(system, "b"))["context"]["n"] == 1


async def test_a_delayed_send_is_a_durable_timer_and_cancel_removes_it() -> None:
    clock = ManualClock(start_ms=START)
    system = ActorSystem([relay_machine(), counter()], storage=MemoryStorage(), clock=clock)
    await system.send("r", "NEVER", machine="relay")
    await system.send("r2", "LATER", machine="relay")
    await system.idle()
    assert await stored(system, "late") is None
    await clock.advance(5000)
    # Nobody sends anything: the waker fires the timer, the message leaves.
    assert await system.fire_due() >= 1
    await system.idle()
    assert (await must(system, "late"))["context"]["n"] == 2  # once: r's send was cancelled


async def test_a_message_to_an_unknown_machine_is_a_dead_letter() -> None:
    system = ActorSystem([relay_machine(), counter()], storage=MemoryStorage())
    await system.send("r", "UNKNOWN", machine="relay")
    await system.idle()
    dead = (await must(system, "r"))["$durable"]["dead"]
    assert len(dead) == 1
    assert "no-such-machine" in dead[0]["reason"]
    assert await stored(system, "x") is None


async def test_enqueue_actions_decides_where_a_message_goes() -> None:
    system = ActorSystem([relay_machine(), counter()], storage=MemoryStorage())
    await system.send("r", {"type": "DECIDE", "n": 50}, machine="relay")
    await system.send("r", {"type": "DECIDE", "n": 3})
    await system.idle()
    assert (await must(system, "big"))["context"]["n"] == 50
    assert (await must(system, "small"))["context"]["n"] == 3


async def test_log_goes_to_the_actor_logger(caplog: pytest.LogCaptureFixture) -> None:
    system = ActorSystem([relay_machine(), counter()], storage=MemoryStorage())
    with caplog.at_level(logging.INFO, logger="durable_state.actor"):
        await system.send("r", {"type": "SAY", "what": "hi"}, machine="relay")
    assert any(r.getMessage() == "actor r: said hi" for r in caplog.records)


async def test_a_step_that_raises_sends_nothing_and_spawns_nothing() -> None:
    def refuse(context: Any, event: Any) -> dict[str, Any]:
        raise ValueError("no")

    machine = Machine(
        {
            "id": "m",
            "initial": "on",
            "context": {},
            "states": {"on": {"on": {"GO": {"actions": ["start", "bump", "refuse"]}}}},
        },
        actions={
            "start": spawn_child("counter", id="c"),
            "bump": send_to("c", {"type": "ADD"}),
            "refuse": assign(refuse),
        },
        actors={"counter": counter()},
    )
    system = ActorSystem([machine], storage=MemoryStorage())
    with pytest.raises(ValueError, match="no"):
        await system.send("m1", "GO", machine="m")
    await system.idle()
    assert await stored(system, "m1/c") is None
    data = await stored(system, "m1")
    assert data is None or "outbox" not in data["$durable"]


async def test_grandchildren_stop_with_their_parent() -> None:
    leaf = Machine({"id": "leaf", "initial": "on", "states": {"on": {"on": {"X": "on"}}}})
    middle = Machine(
        {
            "id": "middle",
            "initial": "on",
            "states": {"on": {"invoke": {"id": "leaf", "src": "leaf"}}},
        },
        actors={"leaf": leaf},
    )
    top = Machine(
        {
            "id": "top",
            "initial": "on",
            "states": {
                "on": {"invoke": {"id": "mid", "src": "middle"}, "on": {"OFF": "off"}},
                "off": {},
            },
        },
        actors={"middle": middle},
    )
    system = ActorSystem([top], storage=MemoryStorage())
    assert set(system.machines) == {"top", "middle", "leaf"}
    await system.send("t", "OFF", machine="top")
    await system.idle()
    assert (await must(system, "t/mid"))["$durable"]["stopped"] is True
    assert (await must(system, "t/mid/leaf"))["$durable"]["stopped"] is True


async def test_the_waker_delivers_what_a_dead_sender_left_in_its_outbox() -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    # A session without an actor system saves the outbox and delivers
    # nothing: as a process that died right after its save.
    async with persisted_actor("o1", order(), storage=storage, clock=clock) as o:
        await o.send({"type": "PAY", "how": "WAIT"})
    assert len((await must_in(storage, "o1"))["$durable"]["outbox"]) == 2
    assert await storage.read("o1/pay") is None  # nothing left the sender
    waker = ActorSystem([order()], storage=storage, clock=clock)
    await clock.advance(OUTBOX_GRACE_MS)
    await waker.fire_due()
    await waker.idle()
    child = await must(waker, "o1/pay")
    assert child["$durable"]["inbox"] == {"o1": 2}  # spawn and WAIT, once each


def test_two_different_child_machines_with_one_id_are_refused() -> None:
    other = Machine({"id": "payment", "initial": "x", "states": {"x": {}}})
    both = Machine(
        {"id": "both", "initial": "x", "states": {"x": {}}},
        actors={"a": payment(), "b": other},
    )
    with pytest.raises(ValueError, match="two different machines with id 'payment'"):
        ActorSystem([both], storage=MemoryStorage())
    with pytest.raises(ValueError, match="another machine with id 'payment'"):
        ActorSystem([other, order()], storage=MemoryStorage())


async def test_a_child_started_and_stopped_in_one_step_never_runs() -> None:
    # As in xstate (and in process): a child starts after the step that
    # spawned it, so one stopped again within that step never runs.
    hello = Machine(
        {"id": "hello", "initial": "on", "entry": "hello", "states": {"on": {}}},
        actions={"hello": send_parent({"type": "HELLO"})},
    )
    parent = Machine(
        {
            "id": "parent",
            "initial": "idle",
            "context": {"n": 0},
            "on": {"HELLO": {"actions": "count"}},
            "states": {
                "idle": {"on": {"GO": "b"}},
                "b": {"invoke": {"id": "k", "src": "hello"}, "always": "c"},
                "c": {},
            },
        },
        actions={"count": assign(lambda c, e: {"n": c["n"] + 1})},
        actors={"hello": hello},
    )
    system = ActorSystem([parent], storage=MemoryStorage())
    await system.send("p", "GO", machine="parent")
    await system.idle()
    assert (await must(system, "p"))["context"] == {"n": 0}
    assert await stored(system, "p/k") is None
    in_process = await run_in_process(parent, ["GO"])
    assert in_process.snapshot.context == {"n": 0}


async def test_a_message_that_breaks_the_save_is_refused_alone() -> None:
    # Group commit: one message leaves a value JSON cannot hold; the batch's
    # save fails, so each message gets a session of its own and the others
    # still commit.
    sink = Machine(
        {
            "id": "sink",
            "initial": "on",
            "context": {"got": []},
            "states": {"on": {"on": {"PUT": {"actions": "put"}}}},
        },
        actions={"put": assign(lambda c, e: {"got": [*c["got"], e["v"] if e["v"] else {1}]})},
    )
    system = ActorSystem([sink], storage=MemoryStorage(), batch_size=10)
    results = await asyncio.gather(
        *(system.send("s", {"type": "PUT", "v": v}, machine="sink") for v in (1, 2, 0, 3)),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == [
        "SendResult",
        "SendResult",
        "NotSerializable",
        "SendResult",
    ]
    assert (await must(system, "s"))["context"]["got"] == [1, 2, 3]


def test_a_send_to_a_machine_the_system_lacks_is_refused_when_it_is_built() -> None:
    from durable_state import UnknownMachine

    sender = Machine(
        {"id": "sender", "initial": "on", "states": {"on": {"on": {"GO": {"actions": "go"}}}}},
        actions={"go": send_to("x", {"type": "ADD"}, machine="counter")},
    )
    with pytest.raises(UnknownMachine, match="machine 'sender' sends to it") as caught:
        ActorSystem([sender], storage=MemoryStorage())
    assert caught.value.machine_id == "counter"
    ActorSystem([sender, counter()], storage=MemoryStorage())  # with it: fine
    inline = Machine(
        {
            "id": "inline",
            "initial": "on",
            "states": {"on": {"entry": send_to("x", {"type": "ADD"}, machine="nope")}},
        }
    )
    with pytest.raises(UnknownMachine, match="'nope'"):
        ActorSystem([inline], storage=MemoryStorage())
