"""Wakers in real processes: several at once, one killed, every timer fired exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from ._machines import spawn_worker
from .conftest import Backend

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock"),
]

WORKER = str(Path(__file__).with_name("_waker_worker.py"))
ACTORS = 200


async def spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    return await spawn_worker(WORKER, backend.spec, *args)


async def expect(proc: asyncio.subprocess.Process, line: str, seconds: float = 60) -> None:
    assert proc.stdout is not None
    with anyio.fail_after(seconds):
        got = (await proc.stdout.readline()).decode().strip()
    if got != line:
        _, err = await proc.communicate()
        pytest.fail(f"expected {line!r}, got {got!r}: {err.decode()[-2000:]}")


@pytest.mark.parametrize("backend", ["file", "aws"], indirect=True)
async def test_two_wakers_and_a_sender_fire_every_timer_once_through_a_kill(
    backend: Backend,
) -> None:
    wakers = [await spawn(backend, "wake") for _ in range(2)]
    for waker in wakers:
        await expect(waker, "waking")
    sender = await spawn(backend, "send", str(ACTORS), "7")
    await asyncio.sleep(1.0)
    wakers[0].kill()  # kill -9 mid-run: its leases and half-done visits must not matter
    await wakers[0].wait()
    await expect(sender, "sent", seconds=120)
    await sender.wait()

    deadline = time.monotonic() + 60
    stored: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        stored = {}
        for i in range(ACTORS):
            found = await backend.storage.read(f"timed-{i}")
            if found is not None:
                stored[f"timed-{i}"] = json.loads(found.data)
        if len(stored) == ACTORS and all(s["value"] == "rung" for s in stored.values()):
            break
        await asyncio.sleep(0.25)

    wakers[1].send_signal(signal.SIGTERM)  # a worker stops cleanly on SIGTERM
    with anyio.fail_after(30):
        _, err = await wakers[1].communicate()
    assert wakers[1].returncode == 0, err.decode()[-2000:]

    assert len(stored) == ACTORS
    late: list[float] = []
    for actor_id, data in stored.items():
        context = data["context"]
        assert isinstance(context, dict)
        assert data["value"] == "rung", actor_id
        fired = context["fired"]
        assert len(fired) == 1, (actor_id, fired)  # exactly once
        due = context["created"] + context["delay"]
        assert fired[0] >= due, (actor_id, fired[0] - due)  # never early
        late.append(fired[0] - due)
    assert await backend.storage.list_due(int(time.time() * 1000) + 10_000) == []
    print(
        f"fire delay after due: median {sorted(late)[len(late) // 2]:.0f} ms, max {max(late):.0f} ms"
    )
