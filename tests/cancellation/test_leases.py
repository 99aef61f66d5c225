"""No lease outlives a cancelled task, on any lock backend.

``Task.cancel()`` (and ``asyncio.wait_for``/``asyncio.timeout``, which call
it) is not stopped by anyio's shielded scopes, so every clean-up path of a
lease -- an acquisition cut off mid-request, a ``hold()`` block, a bare
``acquire``/``release`` pair, a persisted actor session -- is hit at random
points here and must leave the key free. DynamoDB runs behind a proxy that
adds latency, so cancellations land while requests are in flight.

The default run does 1,000 cycles on the memory and file backends and 250
on DynamoDB, and fewer under ``python -X dev``; with ``DURABLE_STATE_SLOW=1``
(CI) every backend does 1,000 in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durable_state.errors import LockLost
from durable_state.locks import DynamoDBLockManager, FileLockManager, MemoryLockManager
from durable_state.storage import LocalFileStorage, MemoryStorage
from durable_state.testing import FaultProxy

from ._stress import stress

SLOW = bool(os.environ.get("DURABLE_STATE_SLOW"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def dynamodb_locks(moto_server, unique_name) -> AsyncIterator[DynamoDBLockManager]:  # type: ignore[no-untyped-def]
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), latency=0.002) as proxy:
        manager = DynamoDBLockManager(
            unique_name, endpoint_url=proxy.url, region_name=moto_server.region
        )
        async with manager:
            await manager.create_table()
            yield manager


async def test_memory_leases_survive_random_cancellation() -> None:
    async with MemoryLockManager() as manager, MemoryStorage() as storage:
        result = await stress(manager, storage, cycles=1000)
    assert result.cancelled > 250  # most cycles are cut somewhere
    assert result.leaked == 0


async def test_file_leases_survive_random_cancellation(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as manager, LocalFileStorage(tmp_path) as storage:
        result = await stress(manager, storage, cycles=1000)
    assert result.cancelled > 250  # most cycles are cut somewhere
    assert result.leaked == 0


@pytest.mark.slow
async def test_dynamodb_leases_survive_random_cancellation(
    dynamodb_locks: DynamoDBLockManager,
) -> None:
    cycles = 1000 if SLOW else 250
    async with MemoryStorage() as storage:
        result = await stress(dynamodb_locks, storage, cycles=cycles)
    assert result.cancelled > cycles // 4
    assert result.leaked == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "file", "dynamodb"])
def test_no_leak_in_asyncio_debug_mode(backend: str, request: pytest.FixtureRequest) -> None:
    """The same stress in a fresh ``python -X dev`` (asyncio debug mode)."""
    cycles = "1000" if SLOW else ("100" if backend == "dynamodb" else "300")
    extra: list[str] = []
    if backend == "dynamodb":
        moto = request.getfixturevalue("moto_server")
        extra = [moto.url, request.getfixturevalue("unique_name")]
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "tests.cancellation._stress",
            backend,
            cycles,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{backend}: 0 leaked in {cycles} cycles" in proc.stdout


class SlowRelease(MemoryLockManager):
    """Releases take ``delay`` seconds (a slow network)."""

    delay = 0.05
    _never_suspends = False  # its primitives now wait, like a network backend's

    async def _release(self, lease, now):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay)
        return await super()._release(lease, now)


async def test_a_release_runs_to_the_end_through_repeated_native_cancels() -> None:
    manager = SlowRelease()
    entered = asyncio.Event()

    async def body() -> None:
        async with manager.hold("k", ttl=60):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    for _ in range(5):  # cancelled again and again while it releases
        await asyncio.sleep(0.005)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await manager.peek("k") is None


async def test_asyncio_timeout_still_raises_timeout_after_the_release() -> None:
    manager = SlowRelease()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(_hold_forever(manager), 0.02)
    assert await manager.peek("k") is None


async def _hold_forever(manager: MemoryLockManager) -> None:
    async with manager.hold("k", ttl=60):
        await asyncio.sleep(30)


async def test_a_release_that_cannot_finish_is_logged_with_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = SlowRelease()
    manager.delay = 30
    manager.cleanup_timeout = 0.05
    with caplog.at_level(logging.WARNING, logger="durable_state.locks"):
        async with manager.hold("order-42", ttl=60):
            pass
    assert "could not release the lease on 'order-42'" in caplog.text
    assert "took over 0.1s" in caplog.text


async def test_init_and_close_may_run_in_different_tasks_and_timeouts() -> None:
    from durable_state import PersistedActor

    from ._stress import COUNTER

    locks, storage = MemoryLockManager(), MemoryStorage()
    pa = PersistedActor("c", COUNTER, storage=storage, lock=locks)
    await asyncio.wait_for(pa.init(), 5)  # the timeout's scope ends here
    assert await locks.peek("c") is not None
    await asyncio.ensure_future(pa.send("INC"))
    await asyncio.ensure_future(pa.save())
    await asyncio.ensure_future(pa.close())
    assert await locks.peek("c") is None


async def test_an_outer_cancellation_during_a_loss_is_not_swallowed() -> None:
    """The loss's own cancellation becomes LockLost; another one arriving with it goes through."""
    from durable_state import persisted_actor

    from ._stress import COUNTER

    locks, storage = MemoryLockManager(), MemoryStorage()
    entered = asyncio.Event()
    sessions: list[Any] = []

    async def body() -> None:
        async with persisted_actor("c", COUNTER, storage=storage, lock=locks) as pa:
            sessions.append(pa)
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.ensure_future(body())
    await entered.wait()
    (pa,) = sessions
    pa._held._set_lost(LockLost("c", owner="x", token=1, reason="taken over"))  # the renewal's move
    task.cancel()  # and, in the same instant, an outer timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await locks.peek("c") is None

    # The loss alone is reported as the loss.
    sessions.clear()
    entered.clear()
    task = asyncio.ensure_future(body())
    await entered.wait()
    sessions[0]._held._set_lost(LockLost("c", owner="x", token=1, reason="taken over"))
    with pytest.raises(LockLost, match="taken over"):
        await task
