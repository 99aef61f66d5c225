"""Durable timers: pending ``after`` timers stored as due times, fired when next loaded.

Most tests drive time with a :class:`ManualClock` given to the actor (lease
expiry stays on the wall clock); one uses a short real delay end to end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from durable_state import ActorNotFound, ManualClock, fire_due_timers, persisted_actor

from ._machines import timer_machine
from .conftest import Backend

T0 = 1_700_000_000_000.0  # epoch ms


async def stored_json(backend: Backend, actor_id: str) -> dict[str, Any]:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    data: dict[str, Any] = json.loads(stored.data)
    return data


async def test_a_timer_due_while_nobody_held_the_actor_fires_on_load(
    backend: Backend, actor_id: str
) -> None:
    clock, machine = ManualClock(T0), timer_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ) as actor:
        assert actor.snapshot.value == "waiting"
        assert actor.next_timer_at == T0 + 1000
    timers = (await stored_json(backend, actor_id))["$durable"]["timers"]
    assert [t["due"] for t in timers] == [T0 + 1000]

    await clock.set(T0 + 1500)  # time passes with the actor at rest
    assert (await stored_json(backend, actor_id))["value"] == "waiting"

    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ) as actor:
        # Before the body's first event: the overdue timer has fired.
        assert actor.snapshot.value == "ringing"
        # The next timer counts from when the first one fired (now).
        assert actor.next_timer_at == T0 + 2500
    data = await stored_json(backend, actor_id)
    assert data["value"] == "ringing"
    assert [t["due"] for t in data["$durable"]["timers"]] == [T0 + 2500]


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_overdue_timers_fire_in_due_order_before_the_first_event(
    backend: Backend, actor_id: str
) -> None:
    clock, machine = ManualClock(T0), timer_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ) as actor:
        await actor.send("RACE")  # "slow" (2000 ms) is first in document order
    await clock.advance(5000)
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ) as actor:
        await actor.send("LOOK")
        assert actor.snapshot.context["seen"] == ["fast", "slow"]
        assert actor.snapshot.value == {"racing": {"slow": "over", "fast": "over"}}
        assert actor.next_timer_at is None


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_timer_that_fires_during_the_body_is_saved(backend: Backend, actor_id: str) -> None:
    clock, machine = ManualClock(T0), timer_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ) as actor:
        await clock.advance(1000)
        assert actor.snapshot.value == "ringing"
    assert (await stored_json(backend, actor_id))["value"] == "ringing"


async def test_fire_due_timers_moves_the_actor_on_without_a_body(
    backend: Backend, actor_id: str
) -> None:
    clock, machine = ManualClock(T0), timer_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    ):
        pass
    before = await backend.storage.read(actor_id)

    # Not due yet: nothing fires, nothing is written.
    nxt = await fire_due_timers(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    )
    assert nxt == T0 + 1000
    assert await backend.storage.read(actor_id) == before

    await clock.set(T0 + 1200)
    nxt = await fire_due_timers(
        actor_id, machine, storage=backend.storage, lock=backend.lock, clock=clock
    )
    assert nxt == T0 + 2200
    assert (await stored_json(backend, actor_id))["value"] == "ringing"
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_fire_due_timers_does_not_create_a_missing_actor(
    backend: Backend, actor_id: str
) -> None:
    with pytest.raises(ActorNotFound):
        await fire_due_timers(actor_id, timer_machine(), storage=backend.storage, lock=backend.lock)
    assert await backend.storage.read(actor_id) is None


async def test_a_short_real_delay_end_to_end(backend: Backend, actor_id: str) -> None:
    """Wall clock: a 400 ms timer saved, left alone past its due time, fired by a scheduler."""
    machine = timer_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        await actor.send("SHORT")
        due = actor.next_timer_at
    assert due is not None
    assert (await stored_json(backend, actor_id))["value"] == "short"
    await anyio.sleep(max(0.0, due / 1000 - time.time()) + 0.1)
    assert (await stored_json(backend, actor_id))["value"] == "short"  # nobody held it
    assert (
        await fire_due_timers(actor_id, machine, storage=backend.storage, lock=backend.lock) is None
    )
    data = await stored_json(backend, actor_id)
    assert data["value"] == "rang"
    assert data["$durable"]["timers"] == []
