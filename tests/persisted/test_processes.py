"""Persisted actors across real OS processes: contention, fencing of a frozen holder, crashes.

Every child is ``python _worker.py ...`` started with ``sys.executable``; the
file backend shares a directory in tmp_path, the AWS backend shares a bucket
and a table on the session's moto server (reached over HTTP by every child).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from durable_state import LockTimeout, persisted_actor

from ._machines import counter_machine, spawn_worker
from .conftest import DYNAMO_SKEW, Backend

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock"),
]

WORKER = str(Path(__file__).with_name("_worker.py"))
PROCESSES = 4
INCREMENTS = 25


async def spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    return await spawn_worker(WORKER, backend.spec, *args, stdin=True)


async def read_line(proc: asyncio.subprocess.Process, seconds: float = 30.0) -> str:
    assert proc.stdout is not None
    with anyio.fail_after(seconds):
        line = await proc.stdout.readline()
    if not line:
        _, err = await proc.communicate()
        pytest.fail(f"worker exited early ({proc.returncode}): {err.decode()[-2000:]}")
    return line.decode().strip()


async def tell(proc: asyncio.subprocess.Process, line: str = "go") -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


async def finish(proc: asyncio.subprocess.Process, seconds: float = 60.0) -> str:
    """Wait for the worker to exit; fail with its stderr unless it exited 0.

    A worker still running after ``seconds`` is asked where it waits
    (SIGUSR1), then killed; its answer is in the failure message.
    """
    with anyio.move_on_after(seconds):
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-3000:]
        return out.decode()
    proc.send_signal(signal.SIGUSR1)
    await anyio.sleep(1.0)
    proc.kill()
    _, err = await proc.communicate()
    pytest.fail(f"worker {proc.pid} hung; its stacks:\n{err.decode()[-6000:]}")


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.communicate()


async def stored_count(backend: Backend, actor_id: str) -> int:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    count: int = json.loads(stored.data)["context"]["count"]
    return count


@pytest.mark.parametrize("backend", ["file", "aws"], indirect=True)
@pytest.mark.parametrize("mode", ["locked", "optimistic"])
async def test_four_processes_increment_one_counter(
    backend: Backend, actor_id: str, mode: str
) -> None:
    procs = [
        await spawn(backend, "increment", actor_id, str(INCREMENTS), mode) for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert await read_line(proc) == "ready"
        for proc in procs:  # all start at once
            await tell(proc)
        results = [json.loads(await finish(proc)) for proc in procs]
    finally:
        for proc in procs:
            await kill(proc)

    commits = sum(r["commits"] for r in results)
    conflicts = sum(r["conflicts"] for r in results)
    assert commits == PROCESSES * INCREMENTS
    # Every successful commit is in the count, and nothing else is.
    assert await stored_count(backend, actor_id) == commits
    if mode == "locked":
        # Leases queue the processes: no save ever meets a newer version.
        assert conflicts == 0


@pytest.mark.parametrize("backend", ["file", "aws"], indirect=True)
async def test_frozen_holder_cannot_overwrite_the_next_holders_state(
    backend: Backend, actor_id: str, tmp_path: Path
) -> None:
    machine = counter_machine()
    ttl = 1.5
    outfile = tmp_path / "outcome.json"
    holder = await spawn(backend, "hold", actor_id, str(ttl), str(outfile))
    try:
        assert await read_line(holder) == "holding"
        # The holder has its lease and one INC in memory; freeze it.
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            # Past its TTL (and the DynamoDB takeover margin), another
            # process takes the lease and commits.
            async with persisted_actor(
                actor_id,
                machine,
                storage=backend.storage,
                lock=backend.lock,
                lock_ttl=30,
                lock_wait=ttl + DYNAMO_SKEW + 5,
            ) as actor:
                await actor.send({"type": "INC", "by": 10})
            committed = await backend.storage.read(actor_id)
            assert committed is not None
        finally:
            os.kill(holder.pid, signal.SIGCONT)
        await tell(holder)  # let the frozen body finish and try to save
        await finish(holder)
    finally:
        await kill(holder)

    outcome = json.loads(outfile.read_text())
    assert outcome["outcome"] in ("VersionConflict", "LockLost"), outcome
    after = await backend.storage.read(actor_id)
    assert after == committed  # same bytes, same version: the second holder's state
    assert json.loads(after.data)["context"]["count"] == 10
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["file", "aws"], indirect=True)
async def test_killed_holder(backend: Backend, actor_id: str) -> None:
    """kill -9 mid-body: the file lock is free at once, the DynamoDB lease after its TTL."""
    machine = counter_machine()
    ttl = 30.0 if backend.kind == "file" else 3.0
    holder = await spawn(backend, "crash", actor_id, str(ttl))
    try:
        line = await read_line(holder)
        assert line.startswith("holding")
        holding_since = float(line.split()[1])
        holder.kill()
        await holder.wait()
        killed_at = time.time()
    finally:
        await kill(holder)

    if backend.kind == "aws":
        # A dead holder is indistinguishable from a slow one: the lease stands.
        with pytest.raises(LockTimeout):
            async with persisted_actor(
                actor_id, machine, storage=backend.storage, lock=backend.lock
            ):
                pytest.fail("entered while the dead holder's lease was still valid")

    async with persisted_actor(
        actor_id,
        machine,
        storage=backend.storage,
        lock=backend.lock,
        lock_ttl=30,
        lock_wait=ttl + DYNAMO_SKEW + 5,
    ) as actor:
        entered_at = time.time()
        # The killed holder's INC was never saved (nor was the actor).
        assert actor.created
        assert actor.snapshot.context["count"] == 0
        await actor.send("INC")

    if backend.kind == "file":
        assert entered_at - killed_at < 2.0, "the dead holder's file lease was not freed at once"
    else:
        # Not before the lease ran out (acquired before "holding" was printed).
        assert entered_at >= holding_since + ttl - 1.0
    assert await stored_count(backend, actor_id) == 1
