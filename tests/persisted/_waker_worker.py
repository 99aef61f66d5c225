"""A child process for the waker process tests (not a test module).

Usage (``SPEC`` is the JSON backend spec of ``_machines.open_backend``)::

    python _waker_worker.py wake SPEC
        Run ``ActorSystem.run_waker(poll_interval=0.05)`` for the timed
        machine; print "waking"; stop on SIGTERM (exit 0) or when killed.
    python _waker_worker.py send SPEC COUNT SEED
        Create COUNT timed actors ``timed-<i>`` with delays of 50 to 2000 ms
        (random, from SEED); print "sent" when all are created.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _machines import open_backend  # type: ignore[import-not-found]

from durable_state import ActorSystem, Machine, assign


def timed_machine() -> Machine:
    """``armed`` rings once after ``delay`` ms and records when (epoch ms, wall clock)."""

    def context(input: Mapping[str, Any]) -> dict[str, Any]:
        return {"delay": input["delay"], "created": time.time() * 1000, "fired": []}

    return Machine(
        {
            "id": "timed",
            "initial": "armed",
            "context": context,
            "states": {
                "armed": {"after": {"wait": {"target": "rung", "actions": "ring"}}},
                "rung": {},
            },
        },
        actions={"ring": assign(lambda c, e: {"fired": [*c["fired"], time.time() * 1000]})},
        delays={"wait": lambda c, e: c["delay"]},
    )


async def wake(spec: Mapping[str, Any]) -> None:
    storage, lock = open_backend(spec)
    async with storage, lock:
        system = ActorSystem([timed_machine()], storage=storage, lock=lock, lock_ttl=10)
        print("waking", flush=True)
        await system.run_waker(poll_interval=0.05, concurrency=8)


async def send(spec: Mapping[str, Any], count: int, seed: int) -> None:
    rng = random.Random(seed)
    storage, lock = open_backend(spec)
    async with storage, lock:
        system = ActorSystem([timed_machine()], storage=storage, lock=lock, lock_wait=30)
        for i in range(count):
            delay = rng.randint(50, 2000)
            await system.send(f"timed-{i}", "HELLO", machine="timed", input={"delay": delay})
    print("sent", flush=True)


if __name__ == "__main__":
    command, spec_text = sys.argv[1], sys.argv[2]
    spec = json.loads(spec_text)
    if command == "wake":
        asyncio.run(wake(spec))
    elif command == "send":
        asyncio.run(send(spec, int(sys.argv[3]), int(sys.argv[4])))
    else:
        raise SystemExit(f"unknown command {command!r}")
