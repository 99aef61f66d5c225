"""The saga of examples/saga.py in real processes, killed with SIGKILL at random points.

Three worker processes start 100 orders (a share each) and a waker process
runs beside them. At random moments a worker or the waker is killed and
started again (a restarted worker starts its share again: ``event_id``
makes that a no-op for the orders it had started). Whatever was in flight
-- a sender between its save and the delivery, a receiver mid-session, the
waker mid-delivery -- every message must be applied exactly once: every
order ends shipped or compensated, every shipped order charged once, the
stock exact, and every outbox empty in the end.

One run by default; 20 with ``DURABLE_STATE_SLOW=1`` (.ci/run, nox -s slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from ._machines import spawn_worker
from .conftest import Backend

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

from saga import problems  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock"),
]

WORKER = str(Path(__file__).with_name("_saga_worker.py"))
ORDERS = 100
SHARES = ((0, 34), (34, 67), (67, 100))
RUNS = 20 if os.environ.get("DURABLE_STATE_SLOW") else 1


async def spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    return await spawn_worker(WORKER, backend.spec, *args)


async def read(backend: Backend, actor_id: str) -> dict[str, Any] | None:
    found = await backend.storage.read(actor_id)
    return None if found is None else dict(json.loads(found.data))


async def settled(backend: Backend) -> tuple[list[str], list[str]]:
    """What is still wrong, and which actors still hold messages or dead letters."""
    orders = {i: await read(backend, f"order-{i}") for i in range(ORDERS)}
    shared = {n: await read(backend, n) for n in ("inventory", "bank", "shipping")}
    children = {i: await read(backend, f"order-{i}/pay") for i in range(ORDERS)}
    holding = [
        actor_id
        for actor_id, data in [
            *((f"order-{i}", o) for i, o in orders.items()),
            *((f"order-{i}/pay", c) for i, c in children.items()),
            *shared.items(),
        ]
        if data is not None and ("outbox" in data["$durable"] or "dead" in data["$durable"])
    ]
    return problems(orders, shared), holding


@pytest.mark.parametrize("backend", ["file"], indirect=True)
@pytest.mark.parametrize("run", range(RUNS))
async def test_every_message_of_the_saga_is_applied_once_through_kills(
    backend: Backend, run: int
) -> None:
    rng = random.Random(run)
    waker = await spawn(backend, "wake")
    workers = {
        share: await spawn(backend, "work", str(share[0]), str(share[1])) for share in SHARES
    }
    kills = 0
    try:
        # Kill -9 a random worker (or the waker) at random moments, and start it again.
        for _ in range(rng.randint(1, 3)):
            await asyncio.sleep(rng.uniform(0.05, 1.5))
            if rng.random() < 0.25:
                waker.kill()
                await waker.wait()
                waker = await spawn(backend, "wake")
            else:
                share = rng.choice(SHARES)
                with contextlib.suppress(ProcessLookupError):  # it may have finished its share
                    workers[share].kill()
                await workers[share].wait()
                workers[share] = await spawn(backend, "work", str(share[0]), str(share[1]))
            kills += 1
        for share, proc in workers.items():
            with anyio.fail_after(120):
                out, err = await proc.communicate()
            assert proc.returncode == 0, (share, err.decode()[-3000:])
            assert out.decode().strip() == "idle"

        # Whatever a killed process left in an outbox, the waker delivers.
        deadline = time.monotonic() + 90
        while True:
            wrong, holding = await settled(backend)
            if not wrong and not holding:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"run {run}, {kills} kills: {wrong[:10]}; still holding: {holding[:10]}"
                )
            await asyncio.sleep(0.25)
    finally:
        for proc in (waker, *workers.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            _, err = await waker.communicate()
    assert waker.returncode == 0, err.decode()[-3000:]
