"""A child process for the saga process test (not a test module).

Usage (``SPEC`` is the JSON backend spec of ``_machines.open_backend``)::

    python _saga_worker.py work SPEC FIRST END
        Start orders FIRST..END-1 of examples/saga.py (each at most once,
        however often this runs), deliver their messages, print "idle", exit.
    python _saga_worker.py wake SPEC
        Run the waker for the saga's machines; print "waking"; stop on
        SIGTERM (exit 0) or when killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))

from _machines import open_backend  # type: ignore[import-not-found]
from saga import machines, start_orders  # type: ignore[import-not-found]

from durable_state import ActorSystem, LockTimeout

#: Short leases: a killed process's leases block its actors this long.
LOCK_TTL = 3


async def start(system: ActorSystem, i: int) -> None:
    """Start order ``i``, waiting out the leases a killed process left behind."""
    while True:
        try:
            await start_orders(system, range(i, i + 1))
            return
        except LockTimeout:
            continue


async def work(spec: Mapping[str, Any], first: int, end: int) -> None:
    storage, lock = open_backend(spec)
    async with storage, lock:
        system = ActorSystem(machines(), storage=storage, lock=lock, lock_ttl=LOCK_TTL, lock_wait=2)
        await asyncio.gather(*(start(system, i) for i in range(first, end)))
        await system.idle()
    print("idle", flush=True)


async def wake(spec: Mapping[str, Any]) -> None:
    storage, lock = open_backend(spec)
    async with storage, lock:
        system = ActorSystem(machines(), storage=storage, lock=lock, lock_ttl=LOCK_TTL, lock_wait=2)
        print("waking", flush=True)
        await system.run_waker(poll_interval=0.1, concurrency=8)


if __name__ == "__main__":
    command, spec_text = sys.argv[1], sys.argv[2]
    spec = json.loads(spec_text)
    if command == "work":
        asyncio.run(work(spec, int(sys.argv[3]), int(sys.argv[4])))
    elif command == "wake":
        asyncio.run(wake(spec))
    else:
        raise SystemExit(f"unknown command {command!r}")
