"""``shielded``: clean-up that finishes whatever happens to its caller."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from durable_state._shield import shielded


async def _slow(result: object, seconds: float, done: list[object]) -> object:
    await asyncio.sleep(seconds)
    done.append(result)
    return result


async def test_the_work_s_result_is_returned() -> None:
    done: list[object] = []
    assert await shielded(_slow("ok", 0.01, done), within=5) == "ok"
    assert done == ["ok"]


async def test_the_work_s_error_is_raised() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await shielded(failing(), within=5)


async def test_native_cancellations_wait_for_the_work_then_land() -> None:
    done: list[object] = []
    caller = asyncio.create_task(shielded(_slow("ok", 0.2, done), within=5))
    await asyncio.sleep(0.05)
    for _ in range(3):  # repeated, as an asyncio.timeout and its owner may do
        caller.cancel()
        await asyncio.sleep(0.01)
    assert not caller.done()  # held back while the work runs
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["ok"]


async def test_an_anyio_cancellation_waits_for_the_work_then_lands() -> None:
    done: list[object] = []
    reached = False
    with anyio.move_on_after(0.05) as scope:
        await shielded(_slow("ok", 0.2, done), within=5)
        assert done == ["ok"]
        await anyio.lowlevel.checkpoint()  # the scope's cancellation lands here
        reached = True
    assert scope.cancelled_caught
    assert not reached


async def test_wait_for_still_times_out_after_the_work() -> None:
    done: list[object] = []
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(shielded(_slow("ok", 0.2, done), within=5), 0.05)
    assert done == ["ok"]


async def test_work_past_its_time_is_cancelled() -> None:
    done: list[object] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match=r"gave up after 0\.1 s"):
        await shielded(_slow("late", 5, done), within=0.1)
    assert loop.time() - started < 1
    await asyncio.sleep(0)
    assert done == []


async def test_work_that_will_not_stop_is_left_after_a_grace_second() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await stop.wait()
            except asyncio.CancelledError:
                continue  # ignores its cancellation

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await shielded(stubborn(), within=0.1)
    assert 1.0 <= loop.time() - started < 3
    stop.set()
    await asyncio.sleep(0.01)


async def test_a_cancelled_caller_whose_work_failed_carries_the_failure() -> None:
    async def failing() -> None:
        await asyncio.sleep(0.1)
        raise KeyError("boom")

    caller = asyncio.create_task(shielded(failing(), within=5))
    await asyncio.sleep(0.02)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await caller
    assert isinstance(caught.value.__context__, KeyError)


async def test_no_callback_is_left_on_the_work_or_the_loop() -> None:
    done: list[object] = []
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for _ in range(20):
        await shielded(_slow("ok", 0, done), within=60)
    live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert len(live) <= before
    assert len(done) == 20
