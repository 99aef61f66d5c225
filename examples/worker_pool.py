"""A pool of asyncio workers stepping many persisted actors concurrently.

Every event is one session: lease, load, send, compare-and-set save, release
-- what a queue consumer does for each message. Events are routed to a worker
by a hash of the actor id, so one actor's events are applied in order by one
worker while different actors progress in parallel; the leases still keep
out any other process working on the same directory.

Run it::

    python examples/worker_pool.py --actors 200 --events 5 --workers 8

It prints the throughput and the session latency; ``--check`` then verifies
that every actor reached its final state. Snapshots and leases are files in
``--root`` (a temporary directory by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import FileLockManager, LockManager
from durable_state.storage import LocalFileStorage, Storage

machine = Machine(
    {
        "id": "order",
        "initial": "cart",
        "context": {"items": 0},
        "states": {
            "cart": {
                "on": {
                    "ADD": {"actions": "add"},
                    "CHECKOUT": {"target": "paid", "guard": "has_items"},
                }
            },
            "paid": {"type": "final", "output": {"ok": True}},
        },
    },
    actions={
        "add": assign(lambda context, event: {"items": context["items"] + event.get("by", 1)})
    },
    guards={"has_items": lambda context, event: context["items"] > 0},
)

Job = tuple[str, dict[str, Any], str]  # actor id, event, event id


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    skipped: int = 0


def jobs(actors: int, events: int) -> list[Job]:
    """``events - 1`` ADDs then a CHECKOUT per actor, interleaved across actors."""
    out: list[Job] = []
    for step in range(events):
        for n in range(actors):
            event = {"type": "CHECKOUT"} if step == events - 1 else {"type": "ADD", "by": 1}
            out.append((f"order-{n:05d}", event, f"order-{n:05d}:{step}"))
    return out


async def worker(
    inbox: ObjectReceiveStream[Job], storage: Storage, locks: LockManager, stats: Stats
) -> None:
    async with inbox:
        async for actor_id, event, event_id in inbox:
            started = time.perf_counter()
            async with persisted_actor(
                actor_id, machine, storage=storage, lock=locks, lock_wait=30.0
            ) as actor:
                if not await actor.send(event, event_id=event_id):
                    stats.skipped += 1  # a redelivered job: applied once only
            stats.latencies.append(time.perf_counter() - started)


async def run(root: str, actors: int, events: int, workers: int) -> Stats:
    """Apply every job with ``workers`` workers; return the latency figures."""
    storage = LocalFileStorage(root)
    stats = Stats()
    async with FileLockManager(root) as locks, anyio.create_task_group() as tg:
        inboxes: list[MemoryObjectSendStream[Job]] = []
        for _ in range(workers):
            send, receive = anyio.create_memory_object_stream[Job](max_buffer_size=64)
            inboxes.append(send)
            tg.start_soon(worker, receive, storage, locks, stats)
        with contextlib.ExitStack() as stack:
            for inbox in inboxes:
                stack.enter_context(inbox)  # closing an inbox lets its worker finish
            for job in jobs(actors, events):
                await inboxes[zlib.crc32(job[0].encode()) % workers].send(job)
    return stats


async def check(root: str, actors: int, events: int) -> list[str]:
    """The actors that did not end ``paid`` with ``events - 1`` items."""
    storage = LocalFileStorage(root)
    wrong = []
    for n in range(actors):
        stored = await storage.read(f"order-{n:05d}")
        data = json.loads(stored.data) if stored else {}
        if data.get("value") != "paid" or data.get("context") != {"items": events - 1}:
            wrong.append(f"order-{n:05d}")
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--actors", type=int, default=200)
    parser.add_argument("--events", type=int, default=5, help="events per actor (>= 2)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--root", help="state directory (default: a temporary one)")
    parser.add_argument("--check", action="store_true", help="verify the final states")
    args = parser.parse_args(argv)
    if args.events < 2 or args.actors < 1 or args.workers < 1:
        parser.error("need --events >= 2, --actors >= 1 and --workers >= 1")

    with tempfile.TemporaryDirectory(prefix="durable-state-") as tmp:
        root = args.root or tmp
        started = time.perf_counter()
        stats = asyncio.run(run(root, args.actors, args.events, args.workers))
        elapsed = time.perf_counter() - started
        sessions = len(stats.latencies)
        ms = sorted(x * 1000 for x in stats.latencies)
        print(
            f"{sessions} sessions ({args.actors} actors x {args.events} events, "
            f"{args.workers} workers) in {elapsed:.2f} s: {sessions / elapsed:.0f} events/s; "
            f"session latency p50 {statistics.median(ms):.1f} ms, "
            f"p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} ms; "
            f"{stats.skipped} already applied"
        )
        if args.check:
            wrong = asyncio.run(check(root, args.actors, args.events))
            if wrong:
                print(f"{len(wrong)} actors in the wrong state, e.g. {wrong[:5]}", file=sys.stderr)
                return 1
            print(f"all {args.actors} actors paid with {args.events - 1} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
