"""A child process for the multi-process persisted-actor tests (not a test module).

Usage (``SPEC`` is the JSON backend spec of ``_machines.open_backend``)::

    python _worker.py increment SPEC ACTOR COUNT MODE
        MODE is "locked" (read-write lease, lock_wait) or "optimistic" (no
        lock manager; retry on VersionConflict). Print "ready", wait for a
        line on stdin, then commit COUNT increments of the counter actor,
        each in its own ``async with persisted_actor(...)``. Print one JSON
        line: {"commits": n, "conflicts": n}.
    python _worker.py hold SPEC ACTOR TTL OUTFILE
        Enter the actor with a TTL-second lease, send INC, print "holding"
        and wait for a line on stdin inside the body; then leave the body
        (which saves). Write the outcome to OUTFILE as JSON: {"outcome":
        "saved" | "VersionConflict" | "LockLost", ...}.
    python _worker.py crash SPEC ACTOR TTL
        Enter the actor with a TTL-second lease, send INC, print "holding"
        and sleep until killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from typing import Any

import anyio
import anyio.to_thread

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Run as a script: its own directory is on sys.path, its package is not.
from _machines import counter_machine, open_backend  # type: ignore[import-not-found]

from durable_state import LockLost, VersionConflict, persisted_actor


def dump_stacks() -> None:
    """Print where every task and suspended async generator waits (on SIGUSR1).

    A test that times out asks for this before killing the worker, so that a
    hang explains itself.
    """
    import gc
    import types

    def chain(obj: Any, label: str) -> None:
        print(label, file=sys.stderr)
        while obj is not None:
            frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
            if frame is not None:
                print(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}",
                    file=sys.stderr,
                )
            obj = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)

    for task in asyncio.all_tasks():
        chain(task.get_coro(), f"task {task.get_name()}")
    for obj in gc.get_objects():
        if isinstance(obj, types.AsyncGeneratorType) and obj.ag_frame is not None:
            chain(obj, f"async generator {obj.ag_code.co_name}")
    sys.stderr.flush()


async def run(main: Any) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_stacks)
    await main


async def increment(spec: dict[str, Any], actor_id: str, count: int, mode: str) -> None:
    machine = counter_machine()
    storage, lock = open_backend(spec)
    # Waiters poll a held lease with exponential backoff; with leases held
    # for milliseconds, a short ceiling keeps the hand-over prompt.
    lock.backoff_max = 0.05
    commits = conflicts = streak = 0
    async with storage, lock:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        while commits < count:
            try:
                if mode == "locked":
                    async with persisted_actor(
                        actor_id, machine, storage=storage, lock=lock, lock_ttl=30, lock_wait=60
                    ) as actor:
                        await actor.send("INC")
                else:
                    async with persisted_actor(actor_id, machine, storage=storage) as actor:
                        await actor.send("INC")
            except VersionConflict:
                conflicts += 1
                streak += 1
                # Back off with jitter, as an optimistic client should, so
                # that contenders stop colliding in lockstep.
                await anyio.sleep(random.uniform(0, 0.005 * 2 ** min(streak, 5)))
                continue
            commits += 1
            streak = 0
    print(json.dumps({"commits": commits, "conflicts": conflicts}), flush=True)


async def hold(spec: dict[str, Any], actor_id: str, ttl: float, outfile: str) -> None:
    machine = counter_machine()
    storage, lock = open_backend(spec)
    result: dict[str, Any]
    async with storage, lock:
        try:
            async with persisted_actor(
                actor_id, machine, storage=storage, lock=lock, lock_ttl=ttl
            ) as actor:
                await actor.send("INC")
                print("holding", flush=True)
                await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            result = {"outcome": "saved", "version": actor.version}
        except VersionConflict as exc:
            result = {"outcome": "VersionConflict", "expected": exc.expected}
        except LockLost as exc:
            result = {"outcome": "LockLost", "token": exc.token, "reason": exc.reason}
    await anyio.Path(outfile).write_text(json.dumps(result), encoding="utf-8")


async def crash(spec: dict[str, Any], actor_id: str, ttl: float) -> None:
    machine = counter_machine()
    storage, lock = open_backend(spec)
    async with (
        storage,
        lock,
        persisted_actor(actor_id, machine, storage=storage, lock=lock, lock_ttl=ttl) as actor,
    ):
        await actor.send("INC")
        print(f"holding {time.time()}", flush=True)
        await anyio.sleep(3600)


def main(argv: list[str]) -> None:
    if os.environ.get("DS_WORKER_LOG"):
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format=f"%(created).6f {os.getpid()} %(name)s %(message)s",
        )
        logging.getLogger("botocore").setLevel(logging.WARNING)
        logging.getLogger("aiobotocore").setLevel(logging.WARNING)
    command, spec = argv[0], json.loads(argv[1])
    if command == "increment":
        asyncio.run(run(increment(spec, argv[2], int(argv[3]), argv[4])))
    elif command == "hold":
        asyncio.run(run(hold(spec, argv[2], float(argv[3]), argv[4])))
    elif command == "crash":
        asyncio.run(run(crash(spec, argv[2], float(argv[3]))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
