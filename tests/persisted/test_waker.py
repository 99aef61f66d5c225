"""The due index and the waker: timers fire with nobody sending."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anyio
import pytest

from durable_state import ActorSystem, Machine, ManualClock, PersistedActor, assign
from durable_state.storage import DueEntry, MemoryStorage

from ._machines import counter_machine, timer_machine
from .conftest import Backend

START = 1_800_000_000_000


class CountingIndex(MemoryStorage):
    """A MemoryStorage that counts due-index writes."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[DueEntry] = []

    async def _add_due(self, key: str, due_ms: int) -> None:
        self.added.append(DueEntry(due_ms, key))
        await super()._add_due(key, due_ms)


def alarm_machine() -> Machine:
    """``armed`` rings after ``delay`` ms (from the input) and counts the rings."""
    return Machine(
        {
            "id": "alarm",
            "initial": "armed",
            "context": {"rings": 0, "touched": 0},
            "states": {
                "armed": {
                    "after": {"1000": {"target": "rung", "actions": "ring"}},
                    "on": {"TOUCH": {"actions": "touch"}},
                },
                "rung": {"on": {"TOUCH": {"actions": "touch"}}},
            },
        },
        actions={
            "ring": assign(lambda c, e: {"rings": c["rings"] + 1}),
            "touch": assign(lambda c, e: {"touched": c["touched"] + 1}),
        },
    )


async def _value(system: ActorSystem, actor_id: str) -> Any:
    stored = await system.storage.read(actor_id)
    assert stored is not None
    return json.loads(stored.data)


async def test_a_save_indexes_a_changed_next_due_time_and_nothing_else() -> None:
    storage = CountingIndex()
    clock = ManualClock(start_ms=START)
    system = ActorSystem([alarm_machine(), counter_machine()], storage=storage, clock=clock)
    await system.send("c", "INC", machine="counter")  # no timers: no entry
    assert storage.added == []
    await system.send("a", "TOUCH", machine="alarm")  # created with a timer: one entry
    assert storage.added == [DueEntry(START + 1000, "a")]
    await system.send("a", "TOUCH")  # the next due time did not change: no request
    assert storage.added == [DueEntry(START + 1000, "a")]


async def test_fire_due_fires_a_timer_nobody_sends_to(backend: Backend) -> None:
    clock = ManualClock(start_ms=START)
    system = ActorSystem([alarm_machine()], storage=backend.storage, lock=backend.lock, clock=clock)
    await system.send("a", "TOUCH", machine="alarm")
    await clock.set(START + 999)
    assert await system.fire_due() == 0  # not due yet: nothing is read but the index
    assert (await _value(system, "a"))["value"] == "armed"
    await clock.set(START + 1000)
    assert await system.fire_due() == 1
    stored = await _value(system, "a")
    assert (stored["value"], stored["context"]["rings"]) == ("rung", 1)
    assert await backend.storage.list_due(START + 10_000_000) == []  # served and removed
    assert await system.fire_due() == 0  # fired once
    assert await backend.make_lock().peek("a") is None


async def test_a_chain_of_timers_is_followed_pass_by_pass() -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    system = ActorSystem([timer_machine()], storage=storage, clock=clock)
    await system.send("t", "LOOK", machine="timers")
    await clock.set(START + 1000)
    assert await system.fire_due() == 1
    assert await storage.list_due(START + 10_000) == [DueEntry(START + 2000, "t")]
    await clock.set(START + 2500)
    assert await system.fire_due() == 1
    assert (await _value(system, "t"))["value"] == "done"
    assert await storage.list_due(START + 10_000) == []


async def test_stale_and_orphaned_entries_are_removed() -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    system = ActorSystem([alarm_machine()], storage=storage, clock=clock)
    await system.send("a", "TOUCH", machine="alarm")
    await storage.add_due("a", START + 10)  # stale: the actor is due later
    await storage.add_due("gone", START + 10)  # no such actor
    await clock.set(START + 20)
    assert await system.fire_due() == 0
    assert await storage.list_due(START + 10_000) == [DueEntry(START + 1000, "a")]
    assert system.stats.stale == 2


def deadline_machine() -> Machine:
    """``waiting`` runs late after the delay the last SET gave (1000 ms at first)."""
    return Machine(
        {
            "id": "deadline",
            "initial": "waiting",
            "states": {
                "waiting": {
                    "after": {"given": "late"},
                    "on": {"SET": {"target": "waiting", "reenter": True}},
                },
                "late": {},
            },
        },
        delays={"given": lambda c, e: e.get("delay", 1000)},
    )


async def test_a_due_time_indexed_again_while_a_visit_retires_it_is_kept(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A visit removes a stale entry before it gives the lease back.

    Another process that sets the same due time again meanwhile (its index
    entry has the same name) waits for the lease, and the entry it makes is
    not taken away by the removal.
    """
    clock = ManualClock(start_ms=START)
    storage = backend.storage
    system = ActorSystem([deadline_machine()], storage=storage, lock=backend.lock, clock=clock)
    await system.send("d", {"type": "SET", "delay": 1000}, machine="deadline")
    await system.send("d", {"type": "SET", "delay": 2000})  # START + 1000 is stale now
    stale = DueEntry(START + 1000, "d")
    removing, go_on = asyncio.Event(), asyncio.Event()
    remove = storage.remove_due

    async def paused_remove(entry: DueEntry) -> None:
        removing.set()
        await go_on.wait()
        await remove(entry)

    monkeypatch.setattr(storage, "remove_due", paused_remove)
    visit = asyncio.create_task(system._visit("d", [stale]))
    await removing.wait()
    other = ActorSystem(
        [deadline_machine()], storage=storage, lock=backend.make_lock(), clock=clock, lock_wait=30
    )
    setting = asyncio.create_task(other.send("d", {"type": "SET", "delay": 1000}))
    await asyncio.sleep(0.5)  # as far as it gets: to the lease (or, unfenced, to the end)
    go_on.set()
    tick = await visit
    assert tick is not None
    assert not tick.stepped
    assert tick.due == START + 2000
    await setting
    assert system.stats.stale == 1
    assert stale in await storage.list_due(START + 10_000)
    await clock.set(START + 1000)
    assert await system.fire_due() == 1
    assert (await _value(system, "d"))["value"] == "late"


async def test_a_visit_cancelled_while_it_retires_entries_releases_the_lease(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(start_ms=START)
    storage = backend.storage
    system = ActorSystem([deadline_machine()], storage=storage, lock=backend.lock, clock=clock)
    await system.send("d", {"type": "SET", "delay": 1000}, machine="deadline")
    await system.send("d", {"type": "SET", "delay": 2000})
    removing = asyncio.Event()

    async def stuck_remove(entry: DueEntry) -> None:
        removing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(storage, "remove_due", stuck_remove)
    actor = PersistedActor("d", None, storage=storage, lock=backend.lock, machines=system.machines)
    actor.retire_due([DueEntry(START + 1000, "d")])

    async def session() -> None:
        async with actor.session():
            pass

    task = asyncio.create_task(session())
    await removing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lease = await backend.make_lock().acquire("d", ttl=5)  # free at once
    assert lease.key == "d"


async def test_foreign_and_corrupt_snapshots_are_reported_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    other = ActorSystem([alarm_machine(), counter_machine()], storage=storage, clock=clock)
    await other.send("foreign", "TOUCH", machine="alarm")
    await other.send("fine", "TOUCH", machine="alarm")
    await storage.write("corrupt", b"not a snapshot")
    await storage.add_due("corrupt", START + 5)
    system = ActorSystem([counter_machine()], storage=storage, clock=clock)  # no "alarm"
    system.register(Machine({"id": "alarm2", "initial": "x", "states": {"x": {}}}))
    await clock.set(START + 1000)
    with caplog.at_level(logging.ERROR, logger="durable_state.system"):
        assert await system.fire_due() == 0
    assert system.stats.unknown_machine == 2  # "foreign" and "fine" name "alarm"
    assert system.stats.failed == 1
    assert "corrupt" in caplog.text
    assert "'alarm'" in caplog.text
    assert (await storage.read("corrupt")).data == b"not a snapshot"  # type: ignore[union-attr]
    assert len(await storage.list_due(START + 1000)) == 3  # entries kept
    # Once the machine is known, the same entries are served.
    system.register(alarm_machine())
    assert await system.fire_due() == 2


async def test_a_busy_actor_is_skipped_and_served_later(backend: Backend) -> None:
    clock = ManualClock(start_ms=START)
    system = ActorSystem([alarm_machine()], storage=backend.storage, lock=backend.lock, clock=clock)
    await system.send("a", "TOUCH", machine="alarm")
    other = backend.make_lock()
    lease = await other.acquire("a", ttl=60)
    await clock.set(START + 1000)
    assert await system.fire_due() == 0  # never waits for the holder
    assert system.stats.busy == 1
    await other.release(lease)
    assert await system.fire_due() == 1


async def test_two_wakers_fire_each_timer_once(backend: Backend) -> None:
    clock = ManualClock(start_ms=START)
    machine = alarm_machine()
    first = ActorSystem([machine], storage=backend.storage, lock=backend.lock, clock=clock)
    second = ActorSystem([machine], storage=backend.storage, lock=backend.make_lock(), clock=clock)
    ids = [f"a{i}" for i in range(20)]
    for actor_id in ids:
        await first.send(actor_id, "TOUCH", machine="alarm")
    await clock.set(START + 1000)
    for _ in range(3):
        await asyncio.gather(first.fire_due(concurrency=4), second.fire_due(concurrency=4))
    rings = [(await _value(first, i))["context"]["rings"] for i in ids]
    assert rings == [1] * len(ids)
    assert first.stats.stepped + second.stats.stepped == len(ids)


async def test_two_optimistic_wakers_fire_each_timer_once() -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    first = ActorSystem([alarm_machine()], storage=storage, clock=clock)
    second = ActorSystem([alarm_machine()], storage=storage, clock=clock)
    for i in range(20):
        await first.send(f"a{i}", "TOUCH", machine="alarm")
    await clock.set(START + 1000)
    for _ in range(3):
        await asyncio.gather(first.fire_due(), second.fire_due())
    rings = [(await _value(first, f"a{i}"))["context"]["rings"] for i in range(20)]
    assert rings == [1] * 20  # a lost compare-and-set discards the second firing


async def test_the_background_waker_fires_on_time() -> None:
    storage = MemoryStorage()
    machine = Machine(
        {
            "id": "quick",
            "initial": "armed",
            "context": {"rings": 0},
            "states": {
                "armed": {"after": {"150": {"target": "rung", "actions": "ring"}}},
                "rung": {},
            },
        },
        actions={"ring": assign(lambda c, e: {"rings": c["rings"] + 1})},
    )
    system = ActorSystem([machine], storage=storage)
    async with system.waker(poll_interval=0.02):
        await system.send("q", {"type": "HELLO"}, machine="quick")
        for _ in range(200):
            await asyncio.sleep(0.02)
            if (await _value(system, "q"))["value"] == "rung":
                break
    assert (await _value(system, "q"))["context"]["rings"] == 1


def _stamping_alarm(delay_ms: int) -> Machine:
    """Rings ``delay_ms`` after it is created and keeps the wall-clock time of both."""
    return Machine(
        {
            "id": "stamped",
            "initial": "armed",
            "context": {"armed_at": None, "rang_at": None},
            "states": {
                "armed": {
                    "entry": "arm",
                    "after": {str(delay_ms): {"target": "rung", "actions": "ring"}},
                },
                "rung": {},
            },
        },
        actions={
            "arm": assign(lambda c, e: {"armed_at": time.time() * 1000}),
            "ring": assign(lambda c, e: {"rang_at": time.time() * 1000}),
        },
    )


async def _until_rung(
    system: ActorSystem, actor_id: str, within: float, state: str = "rung"
) -> Any:
    with anyio.fail_after(within):
        while True:  # another system saves it: nothing here to wait on but time
            value = await _value(system, actor_id)
            if value["value"] == state:
                return value
            await asyncio.sleep(0.01)


async def test_the_background_waker_visits_at_the_due_time_not_at_the_next_poll() -> None:
    system = ActorSystem([_stamping_alarm(300)], storage=MemoryStorage())
    await system.send("s", {"type": "HELLO"}, machine="stamped")
    # The first poll reads one poll interval ahead: the visit is planned for
    # the due time, long before the second poll (10 s later) would find it.
    async with system.waker(poll_interval=10.0):
        context = (await _until_rung(system, "s", within=5.0))["context"]
    assert context["rang_at"] - context["armed_at"] >= 300  # never early
    assert system.stats.passes == 1


async def test_a_planned_visit_waits_for_a_clock_the_loop_does_not_drive() -> None:
    clock = ManualClock(start_ms=START)
    system = ActorSystem([alarm_machine()], storage=MemoryStorage(), clock=clock)
    await system.send("a", "TOUCH", machine="alarm")  # due at START + 1000
    await clock.set(START + 900)
    async with system.waker(poll_interval=0.2):  # reads up to START + 1100
        await asyncio.sleep(0.6)  # planned visits wake up to a clock at START + 900
        assert (await _value(system, "a"))["value"] == "armed"
        assert system.stats.stepped == 0
        await clock.set(START + 1000)
        await _until_rung(system, "a", within=5.0)
    assert (await _value(system, "a"))["context"]["rings"] == 1


async def test_stopping_the_waker_cancels_the_planned_visits() -> None:
    system = ActorSystem([_stamping_alarm(3000)], storage=MemoryStorage())
    await system.send("s", {"type": "HELLO"}, machine="stamped")
    with anyio.fail_after(2.0):  # not 3 s: the planned visit does not hold it up
        async with system.waker(poll_interval=5.0):
            await asyncio.sleep(0.1)
    assert (await _value(system, "s"))["value"] == "armed"
    assert system.stats.stepped == 0


async def test_a_full_read_of_entries_that_stay_is_not_read_again_at_once() -> None:
    clock = ManualClock(start_ms=START)
    storage = MemoryStorage()
    other = ActorSystem([alarm_machine()], storage=storage, clock=clock)
    for i in range(3):
        await other.send(f"a{i}", "TOUCH", machine="alarm")
    await clock.set(START + 1000)
    system = ActorSystem([counter_machine()], storage=storage, clock=clock)  # no "alarm"
    async with system.waker(poll_interval=0.1, limit=2):
        await asyncio.sleep(0.55)
    # Reads that hit the limit are followed at once only by visits that
    # changed something; unloadable snapshots change nothing.
    assert system.stats.unknown_machine >= 2
    assert system.stats.passes <= 8


@pytest.mark.parametrize(
    ("option", "value"), [("poll_interval", 0), ("limit", 0), ("concurrency", 0)]
)
async def test_the_waker_refuses_options_out_of_range(option: str, value: float) -> None:
    system = ActorSystem([alarm_machine()], storage=MemoryStorage())
    with pytest.raises(ValueError, match=option):
        async with system.waker(**{option: value}):
            pass
    with pytest.raises(ValueError, match=option):
        await system.run_waker(**{option: value})


async def test_a_chain_of_short_timers_is_followed_without_waiting_for_the_next_poll() -> None:
    chain = Machine(
        {
            "id": "chain",
            "initial": "a",
            "states": {"a": {"after": {"150": "b"}}, "b": {"after": {"150": "c"}}, "c": {}},
        }
    )
    system = ActorSystem([chain], storage=MemoryStorage())
    await system.send("c", {"type": "HELLO"}, machine="chain")
    async with system.waker(poll_interval=10.0):
        await _until_rung(system, "c", within=5.0, state="c")
    assert system.stats.passes == 1  # both timers fired after the first read
    assert system.stats.stepped == 2
