"""A child process for the multi-process lock tests (not a test module).

Usage:
    python _lock_worker.py hold ROOT KEY TTL
        Acquire KEY with a FileLockManager on ROOT, print "acquired <token>",
        then sleep until killed (never renewing).
    python _lock_worker.py hold-and-fork ROOT KEY TTL
        Like "hold", but first fork a child that sleeps for ever, and print
        "acquired <token> <child pid>": the child must not keep the lease
        alive once this process dies.
    python _lock_worker.py contend BACKEND KEY ROUNDS [ROOT | TABLE ENDPOINT REGION]
        Print "ready", wait for a line on stdin, then ROUNDS times hold KEY
        (BACKEND "file" or "dynamodb") and record when the critical section
        was entered and left (time.monotonic(), system-wide on one host) and
        the fencing token. Print the records as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from durable_state.locks import DynamoDBLockManager, FileLockManager, LockManager


def fork_idle_child() -> int:
    """Fork a child that idles for an hour (outliving this process); return its pid.

    Returns once the child runs: fork handlers have run in it by then.
    """
    ready, signal = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        os.write(signal, b"x")
        os.close(signal)
        time.sleep(3600)
        os._exit(0)
    os.close(signal)
    os.read(ready, 1)
    os.close(ready)
    return pid


async def hold(root: str, key: str, ttl: float, fork: bool) -> None:
    manager = FileLockManager(root)
    lease = await manager.acquire(key, ttl=ttl)
    extra = f" {fork_idle_child()}" if fork else ""
    print(f"acquired {lease.token}{extra}", flush=True)
    await asyncio.sleep(3600)


async def contend(backend: str, key: str, rounds: int, args: list[str]) -> None:
    manager: LockManager
    if backend == "file":
        manager = FileLockManager(args[0])
    else:
        table, endpoint, region = args
        manager = DynamoDBLockManager(
            table, endpoint_url=endpoint, region_name=region, skew_margin=0.0
        )
    records: list[dict[str, Any]] = []
    async with manager:
        # Warm up (client creation, session file) before the start line.
        probe = await manager.acquire(f"{key}-warm-up-{os.getpid()}", ttl=5)
        await manager.release(probe)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for _ in range(rounds):
            async with manager.hold(key, ttl=10, wait=60) as held:
                entered = time.monotonic()
                await asyncio.sleep(0.01)
                left = time.monotonic()
            records.append({"enter": entered, "exit": left, "token": held.token})
    print(json.dumps(records), flush=True)


def main() -> None:
    command, *args = sys.argv[1:]
    if command in ("hold", "hold-and-fork"):
        root, key, ttl = args
        asyncio.run(hold(root, key, float(ttl), fork=command == "hold-and-fork"))
    elif command == "contend":
        backend, key, rounds, *rest = args
        asyncio.run(contend(backend, key, int(rounds), rest))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
