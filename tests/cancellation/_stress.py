"""Random cancellation of lease and session cycles, counting leases left held.

Each cycle is one of: ``hold`` (``async with manager.hold(key)``), ``bare``
(``acquire`` + ``release`` in a ``finally``) or ``session`` (a persisted actor
session that sends one event and saves). The cycle runs in a task that is
cancelled after a random delay, either with ``Task.cancel()`` or by
``asyncio.wait_for``'s timeout (what ``asyncio.timeout`` also does). Once the
task has ended, whatever way it ended, its key must be free: a lease still
held is a leak, and it would block the key for a whole TTL.

Run as a script (``python -X dev -m tests.cancellation._stress file 1000``) to
check the same under asyncio's debug mode in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import DynamoDBLockManager, FileLockManager, LockManager, MemoryLockManager
from durable_state.storage import LocalFileStorage, MemoryStorage, Storage

COUNTER = Machine(
    {
        "id": "counter",
        "initial": "on",
        "context": {"n": 0},
        "states": {"on": {"on": {"INC": {"actions": "inc"}}}},
    },
    actions={"inc": assign(lambda context, event: {"n": context["n"] + 1})},
)


@dataclass
class Result:
    cycles: int = 0
    cancelled: int = 0
    leaked: int = 0


async def _hold(manager: LockManager, storage: Storage, key: str) -> None:
    async with manager.hold(key, ttl=60):
        await asyncio.sleep(random.random() * 0.002)


async def _bare(manager: LockManager, storage: Storage, key: str) -> None:
    lease = await manager.acquire(key, ttl=60)
    try:
        await asyncio.sleep(random.random() * 0.002)
    finally:
        await manager.release(lease)


async def _session(manager: LockManager, storage: Storage, key: str) -> None:
    async with persisted_actor(key, COUNTER, storage=storage, lock=manager, lock_ttl=60) as actor:
        await actor.send("INC")


CYCLES: dict[str, Callable[[LockManager, Storage, str], Awaitable[None]]] = {
    "hold": _hold,
    "bare": _bare,
    "session": _session,
}


async def _durations(manager: LockManager, storage: Storage, prefix: str) -> dict[str, float]:
    """How long each kind of cycle takes when nothing cancels it (median of 5)."""
    loop = asyncio.get_running_loop()
    durations: dict[str, float] = {}
    for kind, run in CYCLES.items():
        for i in range(3):  # warm up: first uses create directories, clients, threads
            await run(manager, storage, f"{prefix}-warmup-{kind}-{i}")
        times = []
        for i in range(5):
            started = loop.time()
            await run(manager, storage, f"{prefix}-calibrate-{kind}-{i}")
            times.append(loop.time() - started)
        durations[kind] = sorted(times)[2]
    return durations


async def stress(
    manager: LockManager,
    storage: Storage,
    *,
    cycles: int,
    seed: int = 0,
    prefix: str = "k",
) -> Result:
    """Run ``cycles`` randomly cancelled cycles; count the keys left held.

    The cancellation lands anywhere from the start of a cycle to a little
    after its usual end, so every await in it gets hit.
    """
    rng = random.Random(seed)
    durations = await _durations(manager, storage, prefix)
    result = Result()
    for i in range(cycles):
        key = f"{prefix}-{i}"
        kind = rng.choice(tuple(CYCLES))
        cycle = CYCLES[kind](manager, storage, key)
        delay = rng.random() * durations[kind] * 1.2
        if rng.random() < 0.5:
            task = asyncio.ensure_future(cycle)
            await asyncio.sleep(delay)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                result.cancelled += 1
        else:
            try:
                await asyncio.wait_for(cycle, delay)
            except asyncio.TimeoutError:
                result.cancelled += 1
        result.cycles += 1
        if await manager.peek(key) is not None:
            result.leaked += 1
    return result


async def _main(backend: str, cycles: int, endpoint: str | None, table: str | None) -> int:
    with tempfile.TemporaryDirectory() as root:
        manager: LockManager
        storage: Storage
        if backend == "memory":
            manager, storage = MemoryLockManager(), MemoryStorage()
        elif backend == "file":
            manager, storage = FileLockManager(root), LocalFileStorage(root)
        else:
            manager = DynamoDBLockManager(table or "locks", endpoint_url=endpoint)
            storage = MemoryStorage()
            await manager.create_table()
        async with manager, storage:
            result = await stress(manager, storage, cycles=cycles)
    print(
        f"{backend}: {result.leaked} leaked in {result.cycles} cycles ({result.cancelled} cancelled)"
    )
    return 1 if result.leaked else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        asyncio.run(
            _main(
                args[0],
                int(args[1]),
                args[2] if len(args) > 2 else None,
                args[3] if len(args) > 3 else None,
            )
        )
    )
