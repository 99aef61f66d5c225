"""The due index and the waker: what indexing costs a save, how late timers fire, how fast a pass is.

Three measurements, each beside what it compares with, in this run:

* ``index``: a save that changes the actor's next due time (one more index
  entry) against a save that does not, per backend. Local files: wall time
  per step, ratio (goal <= 1.3x). S3 (a moto server in a child process,
  behind a counting proxy): requests per step, difference (goal: exactly +1).
* ``delay``: one waker (``poll_interval`` 1 s) on local files, 1,000 actors
  whose timers fall due within one second: how long after its due time each
  timer fired, p50 and p99 (goal: p99 <= poll_interval + 0.5 s); read-write
  with a ``FileLockManager``, then optimistic (no lock manager).
* ``throughput``: 10,000 due actors (memory backends; 1,000 on local files):
  one ``fire_due`` pass against calling ``fire_due_timers`` for the same ids
  by hand at the same concurrency, ratio of actors per second (goal >= 0.8x).
  Three rounds of one pass each, the order turning every round (the
  machine's speed drifts between passes of a few seconds); the median of
  the rounds' ratios.

Usage::

    python bench/bench_waker.py              # everything (a few minutes on 2 cores)
    python bench/bench_waker.py --quick
    python bench/bench_waker.py --only index delay
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _moto import moto_server  # type: ignore[import-not-found]

from durable_state import ActorSystem, Machine, ManualClock, assign, fire_due_timers
from durable_state.locks import FileLockManager, MemoryLockManager
from durable_state.storage import LocalFileStorage, MemoryStorage, S3Storage, Storage
from durable_state.testing import FaultProxy

RESULTS: dict[str, Any] = {}


def snooze_machine() -> Machine:
    """``SNOOZE`` re-enters the timer state (a new due time); ``TOUCH`` changes only the context."""
    return Machine(
        {
            "id": "snooze",
            "initial": "waiting",
            "context": {"touches": 0},
            "states": {
                "waiting": {
                    "after": {"3600000": "rang"},
                    "on": {
                        "SNOOZE": {"target": "waiting", "reenter": True},
                        "TOUCH": {"actions": "touch"},
                    },
                },
                "rang": {},
            },
        },
        actions={"touch": assign(lambda c, e: {"touches": c["touches"] + 1})},
    )


def due_at_machine() -> Machine:
    """``ARM`` with ``due_at`` (epoch ms) rings at that time and records when it rang."""
    return Machine(
        {
            "id": "due_at",
            "initial": "parked",
            "context": {"due_at": None, "rang_at": None},
            "states": {
                "parked": {"on": {"ARM": {"target": "waiting", "actions": "arm"}}},
                "waiting": {"after": {"until": {"target": "rang", "actions": "ring"}}},
                "rang": {},
            },
        },
        actions={
            "arm": assign(lambda c, e: {"due_at": e["due_at"]}),
            "ring": assign(lambda c, e: {"rang_at": time.time() * 1000}),
        },
        delays={"until": lambda c, e: max(0.0, c["due_at"] - time.time() * 1000)},
    )


async def per_step(step: Callable[[int], Awaitable[None]], n: int) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await step(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --------------------------------------------------------------------------- #
# index: the cost of a save that moves the next due time
# --------------------------------------------------------------------------- #


async def index_local(n: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        async with LocalFileStorage(root) as storage, FileLockManager(root) as locks:
            system = ActorSystem([snooze_machine()], storage=storage, lock=locks)
            await system.send("a", "TOUCH", machine="snooze")
            moving: list[float] = []
            still: list[float] = []
            for _ in range(n):  # alternate, so both see the same disk and load
                moving.append(await per_step(lambda i: _send(system, "SNOOZE"), 1))
                still.append(await per_step(lambda i: _send(system, "TOUCH"), 1))
    a, b = statistics.median(moving), statistics.median(still)
    RESULTS["index_local"] = {"moving_ms": a * 1e3, "still_ms": b * 1e3, "ratio": a / b}
    print("a save that moves the next due time, local files (wall time per step, median):")
    print(f"  moves {a * 1e3:.2f} ms, does not {b * 1e3:.2f} ms: ratio {a / b:.2f}x (goal <= 1.3x)")


async def _send(system: ActorSystem, event: str) -> None:
    await system.send("a", event)


async def index_s3(n: int) -> None:
    with moto_server() as endpoint:
        host, port = endpoint.removeprefix("http://").split(":")
        with FaultProxy(host, int(port)) as proxy:
            storage = S3Storage("bench-waker", endpoint_url=proxy.url, region_name="us-east-1")
            async with storage:
                client = await storage._aws.get()
                await client.create_bucket(Bucket="bench-waker")
                system = ActorSystem([snooze_machine()], storage=storage)
                await system.send("a", "TOUCH", machine="snooze")
                counts: dict[str, list[int]] = {"SNOOZE": [], "TOUCH": []}
                for _ in range(n):
                    for event in counts:
                        proxy.reset_counts()
                        await _send(system, event)
                        counts[event].append(proxy.request_count)
    moving, still = statistics.median(counts["SNOOZE"]), statistics.median(counts["TOUCH"])
    RESULTS["index_s3"] = {"moving_requests": moving, "still_requests": still}
    print("a save that moves the next due time, S3 (requests per optimistic step, median):")
    print(f"  moves {moving:.0f}, does not {still:.0f}: +{moving - still:.0f} (goal: exactly +1)")


# --------------------------------------------------------------------------- #
# delay: how late timers fire
# --------------------------------------------------------------------------- #


async def delay(actors: int, poll_interval: float, *, leases: bool = True) -> None:
    machine = due_at_machine()
    with tempfile.TemporaryDirectory() as root:
        async with LocalFileStorage(root) as storage, FileLockManager(root) as file_locks:
            locks = file_locks if leases else None
            creator = ActorSystem([machine], storage=storage, lock=locks)
            limiter = asyncio.Semaphore(32)

            async def send(i: int, event: dict[str, Any]) -> None:
                async with limiter:
                    await creator.send(f"d{i}", event, machine="due_at")

            # Created parked first; arming them takes as long again, so their
            # due times start one arming time (plus a second) from now and
            # spread over the next second.
            began = time.perf_counter()
            await asyncio.gather(*(send(i, {"type": "HELLO"}) for i in range(actors)))
            arming = time.perf_counter() - began
            started = time.time() * 1000
            lead = 2000 * arming + 1000
            await asyncio.gather(
                *(
                    send(i, {"type": "ARM", "due_at": started + lead + random.uniform(0, 1000)})
                    for i in range(actors)
                )
            )
            waker = ActorSystem([machine], storage=storage, lock=locks)
            cpu_before = _cpu_times()
            async with waker.waker(poll_interval=poll_interval):
                deadline = started + lead + 1000 + 2000 * poll_interval + 5000
                while time.time() * 1000 < deadline:
                    await asyncio.sleep(0.25)
                    if await _all_rang(storage, actors):
                        break
            steal = _steal_share(cpu_before, _cpu_times())
            late = await _lateness(storage, actors)
    late.sort()
    p50, p99 = late[len(late) // 2], late[int(len(late) * 0.99) - 1]
    mode = "read-write (FileLockManager)" if leases else "optimistic (no lock manager)"
    RESULTS["delay" if leases else "delay_optimistic"] = {
        "actors": actors,
        "poll_interval": poll_interval,
        "p50_s": p50,
        "p99_s": p99,
        "cpu_steal": steal,
    }
    print(
        f"fire delay after the due time, one waker, poll_interval {poll_interval:g} s, "
        f"{actors} actors, {mode}:"
    )
    stolen = "" if steal is None else f"; the hypervisor took {steal:.0%} of the CPU meanwhile"
    print(f"  p50 {p50:.2f} s, p99 {p99:.2f} s (goal p99 <= {poll_interval + 0.5:g} s){stolen}")


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (Linux ``/proc/stat``), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            return [int(n) for n in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def _steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time a hypervisor gave to other machines between two readings.

    A shared virtual machine's figures move with it: a run where the host
    took a third of the CPU is not comparable with one where it took none.
    """
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])  # user .. steal (guest time is within user)
    return (after[7] - before[7]) / total if total > 0 else None


async def _all_rang(storage: Storage, actors: int) -> bool:
    return not await storage.list_due(int(time.time() * 1000), limit=1) and all(
        json.loads(s.data)["value"] == "rang"
        for s in [await storage.read(f"d{i}") for i in range(0, actors, max(actors // 20, 1))]
        if s is not None
    )


async def _lateness(storage: Storage, actors: int) -> list[float]:
    late = []
    for i in range(actors):
        stored = await storage.read(f"d{i}")
        assert stored is not None
        context = json.loads(stored.data)["context"]
        assert context["rang_at"] is not None, f"d{i} never rang"
        late.append((context["rang_at"] - context["due_at"]) / 1000)
    return late


# --------------------------------------------------------------------------- #
# throughput: one pass against fire_due_timers by hand
# --------------------------------------------------------------------------- #


async def throughput(
    label: str, actors: int, make: Callable[[], tuple[Storage, Any]], rounds: int = 3
) -> None:
    machine = snooze_machine()
    rates: dict[str, list[float]] = {"fire_due": [], "by hand": []}
    ratios = []
    for round_ in range(rounds):
        order = ("fire_due", "by hand") if round_ % 2 == 0 else ("by hand", "fire_due")
        for name in order:
            rates[name].append(await _pass(name, machine, actors, make))
        ratios.append(rates["fire_due"][-1] / rates["by hand"][-1])
    ratio = statistics.median(ratios)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    RESULTS[f"throughput_{label}"] = {**medians, "ratio": ratio, "ratios": ratios, "actors": actors}
    print(f"waker throughput, {actors} due actors, {label}, concurrency 16, {rounds} rounds:")
    print(
        f"  fire_due {medians['fire_due']:.0f}/s, fire_due_timers by hand "
        f"{medians['by hand']:.0f}/s (medians): ratio {ratio:.2f}x (goal >= 0.8x); "
        f"rounds {', '.join(f'{r:.2f}x' for r in ratios)}"
    )


async def _pass(
    name: str, machine: Machine, actors: int, make: Callable[[], tuple[Storage, Any]]
) -> float:
    """Actors per second of one pass over ``actors`` due actors, made for it."""
    storage, locks = make()
    clock = ManualClock(start_ms=1_800_000_000_000)
    system = ActorSystem([machine], storage=storage, lock=locks, clock=clock)
    ids = [f"t{i}" for i in range(actors)]
    for actor_id in ids:
        await system.send(actor_id, "TOUCH", machine="snooze")
    await clock.advance(3_600_000)
    started = time.perf_counter()
    if name == "fire_due":
        stepped = await system.fire_due(limit=actors, concurrency=16)
        assert stepped == actors, stepped
    else:
        await _by_hand(ids, machine, storage, locks, clock)
    return actors / (time.perf_counter() - started)


async def _by_hand(
    ids: list[str], machine: Machine, storage: Storage, locks: Any, clock: ManualClock
) -> None:
    limiter = asyncio.Semaphore(16)

    async def one(actor_id: str) -> None:
        async with limiter:
            await fire_due_timers(actor_id, machine, storage=storage, lock=locks, clock=clock)

    await asyncio.gather(*(one(i) for i in ids))


def _local() -> tuple[Storage, Any]:
    root = tempfile.mkdtemp(prefix="bench-waker-")
    return LocalFileStorage(root), FileLockManager(root)


async def main(args: argparse.Namespace) -> None:
    chosen = set(args.only or ("index", "delay", "throughput"))
    if "index" in chosen:
        await index_local(20 if args.quick else 100)
        await index_s3(5 if args.quick else 20)
    if "delay" in chosen:
        await delay(200 if args.quick else 1000, 1.0)
        await delay(200 if args.quick else 1000, 1.0, leases=False)
    if "throughput" in chosen:
        await throughput(
            "memory", 1000 if args.quick else 10_000, lambda: (MemoryStorage(), MemoryLockManager())
        )
        await throughput("local files", 200 if args.quick else 1000, _local)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--only", nargs="*", choices=("index", "delay", "throughput"))
    parser.add_argument("--json", help="write the figures to this file")
    arguments = parser.parse_args()
    asyncio.run(main(arguments))
    if arguments.json:
        with open(arguments.json, "w") as report:
            json.dump(RESULTS, report, indent=2)
