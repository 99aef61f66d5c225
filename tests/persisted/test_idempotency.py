"""Idempotent delivery: ``send(event, event_id=...)`` applies each recent id once."""

from __future__ import annotations

import json

import pytest

from durable_state import Outcome, PersistedActor, persisted_actor
from durable_state.errors import SnapshotCorrupt
from durable_state.storage import MemoryStorage

from ._machines import counter_machine
from .conftest import Backend


async def stored_durable(backend: Backend, actor_id: str) -> dict[str, object]:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    data = json.loads(stored.data)
    return {"count": data["context"]["count"], **data["$durable"]}


async def test_a_redelivered_event_id_is_applied_once(backend: Backend, actor_id: str) -> None:
    machine = counter_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        assert await actor.send("INC", event_id="msg-1") is Outcome.APPLIED
        assert await actor.send("INC", event_id="msg-1") is Outcome.DUPLICATE  # same session
    first = await backend.storage.read(actor_id)

    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        assert await actor.send("INC", event_id="msg-1") is Outcome.DUPLICATE  # a later session
        assert not actor.changed
    assert await backend.storage.read(actor_id) == first  # nothing to write

    durable = await stored_durable(backend, actor_id)
    assert durable["count"] == 1
    assert durable["processed"] == ["msg-1"]


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_an_id_is_recorded_even_when_the_event_changes_nothing(
    backend: Backend, actor_id: str
) -> None:
    machine = counter_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        pass
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        assert await actor.send("NOOP", event_id="n-1")
        assert actor.changed  # the id itself must be saved
    assert (await stored_durable(backend, actor_id))["processed"] == ["n-1"]


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_the_remembered_ids_are_bounded(backend: Backend, actor_id: str) -> None:
    machine = counter_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, processed_limit=3
    ) as actor:
        for i in range(1, 6):
            assert await actor.send("INC", event_id=f"m{i}")
    durable = await stored_durable(backend, actor_id)
    assert durable["processed"] == ["m3", "m4", "m5"]  # oldest first, oldest dropped

    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, processed_limit=3
    ) as actor:
        assert await actor.send("INC", event_id="m5") is Outcome.DUPLICATE
        assert await actor.send("INC", event_id="m1") is Outcome.APPLIED  # forgotten: applied again
    durable = await stored_durable(backend, actor_id)
    assert durable["count"] == 6
    assert durable["processed"] == ["m4", "m5", "m1"]


async def test_a_smaller_limit_keeps_the_newest_ids() -> None:
    storage, machine = MemoryStorage(), counter_machine()
    async with persisted_actor("a", machine, storage=storage, processed_limit=10) as actor:
        for i in range(6):
            await actor.send("INC", event_id=f"m{i}")
    async with persisted_actor("a", machine, storage=storage, processed_limit=2) as actor:
        assert actor.persisted_snapshot()["$durable"]["processed"] == ["m4", "m5"]
        assert await actor.send("INC", event_id="m3") is Outcome.APPLIED


async def test_limit_zero_remembers_nothing() -> None:
    storage, machine = MemoryStorage(), counter_machine()
    async with persisted_actor("a", machine, storage=storage, processed_limit=0) as actor:
        assert await actor.send("INC", event_id="m1")
        assert await actor.send("INC", event_id="m1")
    stored = await storage.read("a")
    assert stored is not None
    data = json.loads(stored.data)
    assert data["context"]["count"] == 2
    assert data["$durable"]["processed"] == []


async def test_an_event_the_machine_rejected_is_not_remembered() -> None:
    pa = PersistedActor("a", counter_machine(), storage=MemoryStorage())
    await pa.init()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await pa.send("BOOM", event_id="b-1")  # nothing changed: not applied
        assert pa.persisted_snapshot()["$durable"]["processed"] == []
        with pytest.raises(ValueError, match="event_id"):
            await pa.send("INC", event_id="")
    finally:
        await pa.close()


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_step_taken_before_an_action_failed_is_remembered(
    backend: Backend, actor_id: str
) -> None:
    """INC_BOOM increments, then a custom action raises: with save_on_error the
    increment is saved, and so is the id, so a redelivery cannot apply it twice."""
    machine = counter_machine()

    async def deliver() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock, save_on_error=True
        ) as actor:
            await actor.send("INC_BOOM", event_id="ib-1")

    with pytest.raises(RuntimeError, match="boom"):
        await deliver()
    assert await stored_durable(backend, actor_id) == {
        "count": 1,
        "machine": "counter",
        "version": 1,
        "timers": [],
        "processed": ["ib-1"],
    }
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, save_on_error=True
    ) as actor:
        assert await actor.send("INC_BOOM", event_id="ib-1") is Outcome.DUPLICATE
    assert (await stored_durable(backend, actor_id))["count"] == 1


@pytest.mark.parametrize("processed", [[1, "m2"], ["m1", None], "m1", {"m1": 1}])
async def test_remembered_ids_that_are_not_strings_are_corrupt(processed: object) -> None:
    storage, machine = MemoryStorage(), counter_machine()
    async with persisted_actor("a", machine, storage=storage) as actor:
        await actor.send("INC")
    stored = await storage.read("a")
    assert stored is not None
    data = json.loads(stored.data)
    data["$durable"]["processed"] = processed
    raw = json.dumps(data).encode()
    await storage.write("a", raw)
    with pytest.raises(SnapshotCorrupt, match="processed"):
        async with persisted_actor("a", machine, storage=storage):
            pass
    after = await storage.read("a")
    assert after is not None
    assert after.data == raw  # untouched


async def test_a_step_without_event_ids_saves_the_remembered_ids_as_they_were() -> None:
    storage, machine = MemoryStorage(), counter_machine()
    async with persisted_actor("a", machine, storage=storage) as actor:
        for i in range(5):
            await actor.send("INC", event_id=f"m{i}")
    async with persisted_actor("a", machine, storage=storage) as actor:
        await actor.send("INC")
        shown = actor.persisted_snapshot()["$durable"]["processed"]
        shown.append("changed by the caller")  # a copy: the actor's ids stay
    async with persisted_actor("a", machine, storage=storage) as actor:
        assert actor.persisted_snapshot()["$durable"]["processed"] == [f"m{i}" for i in range(5)]
        assert await actor.send("INC", event_id="m0") is Outcome.DUPLICATE
        assert await actor.send("INC", event_id="m5") is Outcome.APPLIED
