"""ActorSystem: turns and group commit for one actor id within a process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from durable_state import (
    ActorSystem,
    Machine,
    Outcome,
    SessionOptions,
    assign,
)
from durable_state.errors import ActorNotFound, LockLost, UnknownMachine
from durable_state.storage import MemoryStorage

from ._machines import counter_machine
from .conftest import Backend


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts the writes of actors (not of the due index)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def _write(self, key: str, data: bytes, if_version: Any, write_id: str) -> str:
        self.writes += 1
        return await super()._write(key, data, if_version, write_id)


def ledger_machine() -> Machine:
    """``ADD`` appends ``n`` to ``seen``; ``FAIL`` raises in an assign; ``NOOP`` does nothing."""

    def add(context: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
        return {"seen": [*context["seen"], event["n"]]}

    def fail(context: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError(f"refused {event.get('n')}")

    return Machine(
        {
            "id": "ledger",
            "initial": "open",
            "context": {"seen": []},
            "states": {
                "open": {
                    "on": {
                        "ADD": {"actions": "add"},
                        "FAIL": {"actions": "fail"},
                        "NOOP": {},
                        "CLOSE": "closed",
                    }
                },
                "closed": {"type": "final"},
            },
        },
        actions={"add": assign(add), "fail": assign(fail)},
    )


async def test_concurrent_sends_are_group_committed_in_arrival_order(backend: Backend) -> None:
    system = ActorSystem([ledger_machine()], storage=backend.storage, lock=backend.lock)
    results = await asyncio.gather(
        *(system.send("l", {"type": "ADD", "n": i}, machine="ledger") for i in range(100))
    )
    assert all(r.outcome is Outcome.APPLIED for r in results)
    assert [r.snapshot.context["seen"][-1] for r in results] == list(range(100))
    async with system.actor("l") as actor:
        assert actor.snapshot.context["seen"] == list(range(100))
    # Far fewer saves than events: each batch is one load-lease-save cycle.
    versions = {r.version for r in results}
    assert 1 <= len(versions) < 20
    assert await backend.make_lock().peek("l") is None


async def test_one_batch_mixes_outcomes_and_errors() -> None:
    storage = CountingStorage()
    system = ActorSystem([ledger_machine()], storage=storage)
    await system.send("l", {"type": "ADD", "n": 0}, machine="ledger")
    writes = storage.writes
    calls = [
        system.send("l", {"type": "ADD", "n": 1}, event_id="e1"),
        system.send("l", {"type": "FAIL", "n": 2}),
        system.send("l", {"type": "ADD", "n": 3}, event_id="e1"),  # a duplicate in the batch
        system.send("l", {"type": "NOPE"}),
        system.send("l", {"type": "NOOP"}),
        system.send("l", {"type": "ADD", "n": 4}),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    applied, failed, duplicate, unhandled, noop, last = results
    assert applied.outcome is Outcome.APPLIED  # type: ignore[union-attr]
    assert isinstance(failed, ValueError)
    assert str(failed) == "refused 2"
    assert duplicate.outcome is Outcome.DUPLICATE  # type: ignore[union-attr]
    assert not duplicate
    assert unhandled.outcome is Outcome.UNHANDLED  # type: ignore[union-attr]
    # A transition without target and actions does nothing (xstate's can() says no).
    assert noop.outcome is Outcome.UNHANDLED  # type: ignore[union-attr]
    assert last.outcome is Outcome.APPLIED  # type: ignore[union-attr]
    assert last.snapshot.context["seen"] == [0, 1, 4]  # type: ignore[union-attr]
    assert storage.writes == writes + 1  # the failure was rolled back alone, one save
    assert applied.version == last.version  # type: ignore[union-attr]


async def test_an_action_that_raises_after_its_step_is_rolled_back_alone() -> None:
    system = ActorSystem([counter_machine()], storage=MemoryStorage())
    results = await asyncio.gather(
        system.send("c", "INC", machine="counter"),
        system.send("c", "INC_BOOM", event_id="boom-1"),  # increments, then raises
        system.send("c", "INC"),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    async with system.actor("c") as actor:
        assert actor.snapshot.context["count"] == 2
    # The rolled-back event's id was not remembered: a redelivery is tried again.
    with pytest.raises(RuntimeError):
        await system.send("c", "INC_BOOM", event_id="boom-1")


async def test_a_done_actor_leaves_events_unhandled() -> None:
    system = ActorSystem([ledger_machine()], storage=MemoryStorage())
    assert (await system.send("l", "CLOSE", machine="ledger")).applied
    result = await system.send("l", {"type": "ADD", "n": 1})
    assert result.unhandled
    assert result.snapshot.status == "done"


async def test_a_cancelled_waiting_caller_is_left_out() -> None:
    gate = asyncio.Event()

    async def slow(context: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        await gate.wait()

    machine = Machine(
        {
            "id": "slow",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"WAIT": {"actions": "wait"}, "INC": {"actions": "inc"}}}},
        },
        actions={"wait": slow, "inc": assign(lambda c, e: {"n": c["n"] + 1})},
    )
    system = ActorSystem([machine], storage=MemoryStorage())
    first = asyncio.ensure_future(system.send("s", "WAIT", machine="slow"))
    await asyncio.sleep(0.01)  # the first batch is running, held by its action
    waiting = [asyncio.ensure_future(system.send("s", "INC")) for _ in range(3)]
    await asyncio.sleep(0.01)
    waiting[1].cancel()
    gate.set()
    await first
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    async with system.actor("s") as actor:
        assert actor.snapshot.context["n"] == 2


async def test_a_lease_lost_mid_batch_fails_every_caller_and_saves_nothing(
    backend: Backend,
) -> None:
    stolen = asyncio.Event()
    holding = asyncio.Event()

    async def hold(context: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        holding.set()
        await stolen.wait()
        await asyncio.sleep(30)  # cancelled by the loss of the lease

    machine = Machine(
        {
            "id": "holder",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"HOLD": {"actions": "hold"}, "INC": {"actions": "inc"}}}},
        },
        actions={"hold": hold, "inc": assign(lambda c, e: {"n": c["n"] + 1})},
    )
    system = ActorSystem([machine], storage=backend.storage, lock=backend.lock, lock_ttl=3.0)
    await system.send("h", "INC", machine="holder")
    calls = [
        asyncio.ensure_future(system.send("h", "INC")),
        asyncio.ensure_future(system.send("h", "HOLD")),
        asyncio.ensure_future(system.send("h", "INC")),
    ]
    await holding.wait()
    thief = await backend.steal_lease("h")
    stolen.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, LockLost) for r in results), results
    await backend.make_lock().release(thief)
    async with system.actor("h") as actor:
        assert actor.snapshot.context["n"] == 1


async def test_session_bodies_take_turns_in_order() -> None:
    system = ActorSystem([counter_machine()], storage=MemoryStorage(), lock=None)
    inside = 0
    order: list[int] = []

    async def body(i: int) -> None:
        nonlocal inside
        async with system.actor("c", "counter") as actor:
            inside += 1
            assert inside == 1, "two bodies of one actor overlapped"
            order.append(i)
            await asyncio.sleep(0.001)
            await actor.send("INC")
            inside -= 1

    tasks = []
    for i in range(20):
        tasks.append(asyncio.ensure_future(body(i)))
        await asyncio.sleep(0)  # arrival order is creation order
    await asyncio.gather(*tasks)
    assert order == list(range(20))
    result = await system.send("c", "NOOP")
    assert result.snapshot.context["count"] == 20


async def test_sends_wait_behind_a_session_body_and_are_not_lost() -> None:
    system = ActorSystem([counter_machine()], storage=MemoryStorage())
    async with system.actor("c", "counter") as actor:
        pending = [asyncio.ensure_future(system.send("c", "INC")) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert not any(p.done() for p in pending)  # they wait for the body's turn
        await actor.send("INC")
    results = await asyncio.gather(*pending)
    assert results[-1].snapshot.context["count"] == 6


async def test_machines_are_found_by_id_and_unknown_ids_are_typed() -> None:
    system = ActorSystem([counter_machine()], storage=MemoryStorage())
    with pytest.raises(UnknownMachine, match="'nope'"):
        await system.send("c", "INC", machine="nope")
    with pytest.raises(ActorNotFound):
        await system.send("c", "INC")  # no machine to create it with
    with pytest.raises(ValueError, match="another machine"):
        system.register(counter_machine())
    assert (await system.send("c", "INC", machine="counter")).applied
    assert (await system.send("c", "INC")).snapshot.context["count"] == 2


def test_options_are_checked_once() -> None:
    with pytest.raises(ValueError, match="locking"):
        ActorSystem(storage=MemoryStorage(), locking="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown session option"):
        SessionOptions().merged(lock_tll=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="batch_size"):
        SessionOptions(batch_size=0)
    system = ActorSystem(storage=MemoryStorage(), options=SessionOptions(lock_ttl=5), lock_wait=1)
    assert (system.options.lock_ttl, system.options.lock_wait) == (5, 1)
