"""Messages between persisted actors: outbox in the sender's save, exactly once at the receiver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from durable_state import ActorSystem, Machine, ManualClock, OutboxFull, assign, send_to
from durable_state._mailbox import MAX_HOPS, OUTBOX_GRACE_MS, SPAWN, STOP
from durable_state.storage import MemoryStorage

from .conftest import Backend

START = 1_800_000_000_000


def tally() -> Machine:
    """``ADD`` appends ``n`` to ``got``; ``FAIL`` raises; a finished tally is ``done``."""

    def fail(context: Any, event: Any) -> dict[str, Any]:
        raise ValueError("refused")

    return Machine(
        {
            "id": "tally",
            "initial": "open",
            "context": {"got": []},
            "output": {"total": 3},
            "states": {
                "open": {
                    "on": {
                        "ADD": {"actions": "add"},
                        "FAIL": {"actions": "fail"},
                        "FINISH": "closed",
                        "xstate.done.actor.kid": {"actions": "kid_done"},
                    }
                },
                "closed": {"type": "final"},
            },
        },
        actions={
            "add": assign(lambda c, e: {"got": [*c["got"], e["n"]]}),
            "fail": assign(fail),
            "kid_done": assign(lambda c, e: {"got": [*c["got"], ("kid", e["output"]["total"])]}),
        },
    )


async def stored(system: ActorSystem, actor_id: str) -> dict[str, Any]:
    found = await system.storage.read(actor_id)
    assert found is not None
    data: dict[str, Any] = json.loads(found.data)
    return data


async def test_a_message_leaves_with_the_save_and_arrives_once(backend: Backend) -> None:
    system = ActorSystem([tally()], storage=backend.storage, lock=backend.lock)
    async with system.actor("a", "tally") as a:
        await a.send({"type": "ADD", "n": 0})
        for n in range(1, 6):
            a.post("b", {"type": "ADD", "n": n}, machine="tally")
        # Nothing has left yet: the messages ride in this session's save.
        assert await system.storage.read("b") is None
    await system.idle()
    assert (await stored(system, "b"))["context"]["got"] == [1, 2, 3, 4, 5]  # in order
    sender = await stored(system, "a")
    assert "outbox" not in sender["$durable"]  # settled by a later save of the sender
    assert sender["$durable"]["seq"] == 6
    assert (await stored(system, "b"))["$durable"]["inbox"] == {"a": 5}


async def test_a_rolled_back_step_sends_nothing() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())

    async def body() -> None:
        async with system.actor("a", "tally") as a:
            a.post("b", {"type": "ADD", "n": 1}, machine="tally")
            raise RuntimeError("body failed")

    with pytest.raises(RuntimeError, match="body failed"):
        await body()
    await system.idle()
    assert await system.storage.read("b") is None
    assert await system.storage.read("a") is None


async def test_a_redelivered_message_is_skipped_however_much_came_between() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())
    async with system.actor("b", "tally") as b:
        assert await b.receive("a", 1, {"type": "ADD", "n": 1})
        await b.send({"type": "ADD", "n": 2})
        await b.receive("z", 9, {"type": "ADD", "n": 3})
    async with system.actor("b") as b:
        assert not await b.receive("a", 1, {"type": "ADD", "n": 1})  # a duplicate
        assert b.snapshot.context["got"] == [1, 2, 3]


async def test_undeliverable_messages_are_buried_with_the_reason() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())
    async with system.actor("a", "tally") as a:
        a.post("nobody", {"type": "ADD", "n": 1})  # does not exist, no machine to create it
        a.post("b", {"type": "ADD", "n": 2}, machine="nope")  # unknown machine
        a.post("", {"type": "ADD", "n": 3})  # not a key: buried at once
        a.post("c", {"type": "FAIL"}, machine="tally")  # the receiver's step raises
    await system.idle()
    dead = {d["seq"]: d["reason"] for d in (await stored(system, "a"))["$durable"]["dead"]}
    assert "no actor 'nobody'" in dead[1]
    assert "'nope'" in dead[2]
    assert "must not be empty" in dead[3]
    assert "ValueError: refused" in dead[4]
    assert "outbox" not in (await stored(system, "a"))["$durable"]
    assert (await stored(system, "c"))["context"]["got"] == []  # created, the step rolled back


async def test_a_busy_receiver_gets_its_messages_from_the_waker(backend: Backend) -> None:
    clock = ManualClock(start_ms=START)
    system = ActorSystem([tally()], storage=backend.storage, lock=backend.lock, clock=clock)
    await system.send("b", {"type": "ADD", "n": 0}, machine="tally")
    other = backend.make_lock()
    lease = await other.acquire("b", ttl=60)
    async with system.actor("a", "tally") as a:
        a.post("b", {"type": "ADD", "n": 1})
        a.post("b", {"type": "ADD", "n": 2})
    await system.idle()
    assert (await stored(system, "b"))["context"]["got"] == [0]
    assert len((await stored(system, "a"))["$durable"]["outbox"]) == 2  # kept, in order
    await other.release(lease)
    # The sender's index entry comes due after the grace period: a waker
    # (here, another system: another process) delivers what is left.
    waker = ActorSystem([tally()], storage=backend.storage, lock=backend.make_lock(), clock=clock)
    await clock.advance(OUTBOX_GRACE_MS)
    await waker.fire_due()
    await waker.idle()
    assert (await stored(system, "b"))["context"]["got"] == [0, 1, 2]
    assert "outbox" not in (await stored(system, "a"))["$durable"]


async def test_a_cycle_of_sends_is_cut_off_and_buried() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())
    async with system.actor("a", "tally") as a:
        a._hops = MAX_HOPS  # as if this event were the end of a long chain of sends
        entry = a.post("b", {"type": "ADD", "n": 1}, machine="tally")
    assert "cycle" in (await stored(system, "a"))["$durable"]["dead"][0]["reason"]
    assert entry["hops"] == MAX_HOPS + 1


async def test_an_outbox_has_a_limit() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())

    async def body() -> None:
        async with system.actor("a", "tally") as a:
            for n in range(2000):
                a.post("b", {"type": "ADD", "n": n}, machine="tally")

    with pytest.raises(OutboxFull):
        await body()


async def test_a_child_knows_its_parent_and_reports_its_end_once(backend: Backend) -> None:
    system = ActorSystem([tally()], storage=backend.storage, lock=backend.lock)
    async with system.actor("p", "tally") as parent:
        parent.post("p/kid", {"type": SPAWN, "machine": "tally", "childId": "kid", "input": None})
        parent.post("p/kid", {"type": "ADD", "n": 1})
    await system.idle()
    child = await stored(system, "p/kid")
    assert (child["$durable"]["parent"], child["$durable"]["child"]) == ("p", "kid")
    await system.send("p/kid", "FINISH")
    await system.idle()
    assert (await stored(system, "p"))["context"]["got"] == [["kid", 3]]
    assert (await stored(system, "p/kid"))["$durable"]["reported"] is True


async def test_a_stopped_child_takes_no_more_events() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())
    async with system.actor("p", "tally") as parent:
        parent.post("p/kid", {"type": SPAWN, "machine": "tally", "childId": "kid"})
        parent.post("p/kid", {"type": STOP})
        parent.post("p/kid", {"type": "ADD", "n": 1})
    await system.idle()
    child = await stored(system, "p/kid")
    assert child["$durable"]["stopped"] is True
    assert child["context"]["got"] == []
    assert (await system.send("p/kid", {"type": "ADD", "n": 2})).unhandled


async def test_concurrent_senders_each_keep_their_order() -> None:
    system = ActorSystem([tally()], storage=MemoryStorage())

    async def sender(name: str) -> None:
        for n in range(10):
            async with system.actor(name, "tally") as s:
                s.post("sink", {"type": "ADD", "n": f"{name}{n}"}, machine="tally")

    await asyncio.gather(*(sender(f"s{i}") for i in range(5)))
    await system.idle()
    got = (await stored(system, "sink"))["context"]["got"]
    assert len(got) == 50
    for i in range(5):
        assert [g for g in got if g.startswith(f"s{i}")] == [f"s{i}{n}" for n in range(10)]


def forwarder() -> Machine:
    """``FWD`` counts and forwards an ``ADD`` to ``to``; ``ADD`` counts what arrived."""
    return Machine(
        {
            "id": "forwarder",
            "initial": "on",
            "context": {"sent": 0, "got": 0},
            "states": {
                "on": {"on": {"FWD": {"actions": ["sent", "forward"]}, "ADD": {"actions": "got"}}}
            },
        },
        actions={
            "sent": assign(lambda c, e: {"sent": c["sent"] + 1}),
            "got": assign(lambda c, e: {"got": c["got"] + 1}),
            "forward": send_to(lambda c, e: e["to"], {"type": "ADD"}, machine="forwarder"),
        },
    )


async def test_a_burst_waits_for_its_messages_instead_of_filling_the_outbox() -> None:
    # More sends at once than an outbox may hold: the callers' sends wait
    # while the messages are delivered (back-pressure), none fails.
    system = ActorSystem([forwarder()], storage=MemoryStorage())
    await asyncio.gather(
        *(system.send("a", {"type": "FWD", "to": "b"}, machine="forwarder") for _ in range(3000))
    )
    await system.idle()
    assert (await stored(system, "a"))["context"]["sent"] == 3000
    assert (await stored(system, "b"))["context"]["got"] == 3000


async def test_two_actors_flooding_each_other_do_not_deadlock() -> None:
    system = ActorSystem([forwarder()], storage=MemoryStorage())
    sends = [
        system.send(actor, {"type": "FWD", "to": other}, machine="forwarder")
        for _ in range(1500)
        for actor, other in (("a", "b"), ("b", "a"))
    ]
    await asyncio.wait_for(asyncio.gather(*sends), timeout=120)
    await asyncio.wait_for(system.idle(), timeout=120)
    for actor in ("a", "b"):
        context = (await stored(system, actor))["context"]
        assert context == {"sent": 1500, "got": 1500}
