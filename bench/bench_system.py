"""Hot actors and cheap steps: group commit, the light lease, and the cost of a step.

Five measurements, each a ratio of two things run side by side in this run:

* ``hot``: 100 concurrent sends to one actor in one process on local files
  (``LocalFileStorage`` + ``FileLockManager``): ``ActorSystem.send`` (FIFO
  queue, group commit) against one ``persisted_actor`` session per send
  (every session waits for the lease with ``lock_wait``). Reports events/s
  of both, the ratio (goal >= 5x), lease timeouts (goal 0) and whether the
  order of application equals the order of arrival.
* ``lease``: CPU per step on the memory backends (load, one event, save): a
  read-write step (lease held across the step) against an optimistic one
  (goal <= 1.4x).
* ``json``: CPU per step (load, one event, save, optimistic, memory backend)
  against a raw ``json.loads`` + ``json.dumps`` of the stored document, for
  snapshots of 1 KB, 100 KB, 1 MB and 5 MB, with 10,000 remembered event ids,
  and with 10,000 pending timers (goal <= 2x). Beside it, the same ratio for
  the floor: what any step must do with no session around it (the storage's
  read and write, decode, restore, one transition, the persisted form,
  encode).
* ``many``: 10,000 actors x 2 events on the memory backends, read-write, 64
  tasks: steps/s and CPU per step.
* ``import``: the wall time of a fresh interpreter running ``import
  durable_state`` against one running ``import asyncio`` (median of
  interleaved runs; goal <= 1.3x).

Usage::

    python bench/bench_system.py              # everything (about 2 minutes on 2 cores)
    python bench/bench_system.py --quick      # smaller counts
    python bench/bench_system.py --only hot lease
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from durable_state import (
    ActorSystem,
    Machine,
    ManualClock,
    _json,
    assign,
    persisted_actor,
    raise_event,
)
from durable_state.errors import LockTimeout
from durable_state.locks import FileLockManager, MemoryLockManager
from durable_state.statechart._snapshot import context_is_json
from durable_state.storage import LocalFileStorage, MemoryStorage

RESULTS: dict[str, Any] = {}


def ledger() -> Machine:
    """``ADD`` appends ``n`` to ``seen`` (the order events were applied in)."""
    return Machine(
        {
            "id": "ledger",
            "initial": "open",
            "context": {"seen": []},
            "states": {"open": {"on": {"ADD": {"actions": "add"}}}},
        },
        actions={"add": assign(lambda c, e: {"seen": [*c["seen"], e["n"]]})},
    )


def counter(extra: Mapping[str, Any] | None = None) -> Machine:
    """``INC`` counts; the context carries ``extra``; ``ARM`` schedules one more timer."""
    return Machine(
        {
            "id": "counter",
            "initial": "on",
            "context": {"n": 0, "armed": 0, **(extra or {})},
            "states": {
                "on": {"on": {"INC": {"actions": "inc"}, "ARM": {"actions": ["arm", "count"]}}}
            },
        },
        actions={
            "inc": assign(lambda c, e: {"n": c["n"] + 1}),
            # a timer of its own for every ARM, far in the future
            "arm": raise_event(lambda c, e: {"type": f"T{c['armed']}"}, delay=10**9),
            "count": assign(lambda c, e: {"armed": c["armed"] + 1}),
        },
    )


# --------------------------------------------------------------------------- #
# hot: group commit against one session per send
# --------------------------------------------------------------------------- #


async def _hot_round(
    name: str, machine: Machine, senders: int, actor_id: str
) -> tuple[float, int, bool]:
    """One round: events/s, lease timeouts, and whether the order of arrival was kept."""
    timeouts = 0
    with tempfile.TemporaryDirectory() as root:
        async with LocalFileStorage(root) as storage, FileLockManager(root) as locks:
            system = ActorSystem([machine], storage=storage, lock=locks, lock_wait=120)

            async def one(n: int) -> None:
                nonlocal timeouts
                event = {"type": "ADD", "n": n}
                try:
                    if name == "group commit":
                        await system.send(actor_id, event, machine="ledger")
                    else:
                        async with persisted_actor(
                            actor_id, machine, storage=storage, lock=locks, lock_wait=120
                        ) as actor:
                            await actor.send(event)
                except LockTimeout:
                    timeouts += 1

            started = time.perf_counter()
            tasks = []
            for n in range(senders):
                tasks.append(asyncio.ensure_future(one(n)))
                await asyncio.sleep(0)  # arrival order is creation order
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            async with system.actor(actor_id) as actor:
                in_order = bool(actor.snapshot.context["seen"] == list(range(senders)))
    return senders / elapsed, timeouts, in_order


async def hot(senders: int, rounds: int) -> None:
    machine = ledger()
    rates: dict[str, list[float]] = {"group commit": [], "session per send": []}
    timeouts = {"group commit": 0, "session per send": 0}
    in_order = True
    for r in range(rounds):
        for name in rates:
            rate, lost, kept = await _hot_round(name, machine, senders, f"hot-{r}")
            rates[name].append(rate)
            timeouts[name] += lost
            if name == "group commit":
                in_order &= kept
    ours = statistics.median(rates["group commit"])
    base = statistics.median(rates["session per send"])
    RESULTS["hot"] = {
        "senders": senders,
        "group_commit_events_per_s": ours,
        "session_per_send_events_per_s": base,
        "ratio": ours / base,
        "lease_timeouts": timeouts,
        "fifo": in_order,
    }
    print(f"hot actor, {senders} concurrent sends on local files (median of {rounds}):")
    print(f"  group commit      {ours:8.0f} events/s")
    print(f"  session per send  {base:8.0f} events/s")
    print(f"  ratio {ours / base:.1f}x (goal >= 5x); lease timeouts {timeouts}; FIFO {in_order}")


# --------------------------------------------------------------------------- #
# CPU per step
# --------------------------------------------------------------------------- #


async def cpu_per_step(step: Callable[[], Awaitable[None]], n: int) -> float:
    """Median CPU seconds per step over 5 blocks of ``n`` steps (after a warm-up block)."""
    for _ in range(max(n // 5, 1)):
        await step()
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            await step()
        samples.append((time.process_time() - started) / n)
    return statistics.median(samples)


async def paired(
    ours: Callable[[], Awaitable[None]], base: Callable[[], Awaitable[None]], n: int
) -> tuple[float, float, float]:
    """CPU per step of two steps measured in alternating blocks; medians and median ratio.

    Alternating short blocks exposes both sides to the same drift (other
    load on the machine, a growing heap), and the ratio of each pair of
    neighbouring blocks cancels most of it.
    """
    for _ in range(max(n // 5, 1)):
        await ours()
        await base()
    mine, theirs, ratios = [], [], []
    block = max(n // 10, 1)
    for _ in range(21):
        started = time.process_time()
        for _ in range(block):
            await ours()
        a = (time.process_time() - started) / block
        started = time.process_time()
        for _ in range(block):
            await base()
        b = (time.process_time() - started) / block
        mine.append(a)
        theirs.append(b)
        ratios.append(a / b)
    return statistics.median(mine), statistics.median(theirs), statistics.median(ratios)


async def lease(n: int) -> None:
    machine = counter()
    storage, locks = MemoryStorage(), MemoryLockManager()

    async def read_write() -> None:
        async with persisted_actor("c-rw", machine, storage=storage, lock=locks) as actor:
            await actor.send("INC")

    async def optimistic() -> None:
        async with persisted_actor("c-opt", machine, storage=storage) as actor:
            await actor.send("INC")

    rw, opt, ratio = await paired(read_write, optimistic, n)
    RESULTS["lease"] = {"read_write_us": rw * 1e6, "optimistic_us": opt * 1e6, "ratio": ratio}
    print("CPU per step on the memory backends (load, one event, save):")
    print(f"  read-write {rw * 1e6:7.1f} us   optimistic {opt * 1e6:7.1f} us")
    print(f"  ratio {ratio:.2f}x (goal <= 1.4x)")


async def step_vs_json(n_small: int) -> None:
    cases: list[tuple[str, Machine, list[str], int]] = []
    for label, size in (
        ("1 KB", 1_000),
        ("100 KB", 100_000),
        ("1 MB", 1_000_000),
        ("5 MB", 5_000_000),
    ):
        blob = [f"item-{i:08d}" for i in range(size // 16)]
        cases.append((label, counter({"blob": blob}), [], max(n_small * 1_000 // size, 3)))
    ids = [f"msg-{i:08d}" for i in range(10_000)]
    cases.append(("10,000 event ids", counter(), ids, 20))
    cases.append(("10,000 timers", counter(), ["ARM"] * 10_000, 20))
    print(
        "CPU per step (load, one event, save; optimistic, memory) against raw json.loads + json.dumps:"
    )
    RESULTS["json"] = {}
    for label, machine, processed, n in cases:
        await _json_case(label, machine, processed, n)


async def _json_case(label: str, machine: Machine, processed: list[str], n: int) -> None:
    storage = MemoryStorage()
    clock = ManualClock(start_ms=1_800_000_000_000)
    limit = max(len(processed), 100)
    if processed[:1] == ["ARM"]:
        # Pending timers: built with the pure core (fast), stored as a session saves it.
        snapshot = machine.initial_snapshot(now_ms=clock.now_ms())
        for _ in processed:
            snapshot, _ = machine.transition(snapshot, {"type": "ARM"}, now_ms=clock.now_ms())
        await storage.write("a", json.dumps(machine.persisted_snapshot(snapshot)).encode())
        limit = 100
    else:
        async with persisted_actor(
            "a", machine, storage=storage, clock=clock, processed_limit=limit
        ) as actor:
            for event_id in processed:
                actor._remember(event_id)
    stored = await storage.read("a")
    assert stored is not None
    raw = stored.data

    async def ours() -> None:
        async with persisted_actor(
            "a", machine, storage=storage, clock=clock, processed_limit=limit
        ) as actor:
            await actor.send("INC")

    async def baseline() -> None:
        doc = json.loads(raw)
        doc["context"]["n"] += 1
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()

    async def floor() -> None:
        # What any step must do, with no session around it: the storage's
        # read and write, decode, restore, one transition, the persisted
        # form, encode (the library's JSON codec: the baseline's settings, made once).
        found = await storage.read("a")
        assert found is not None
        read = _json.loads(found.data)
        snapshot = machine.restore_snapshot(read, from_json=True)
        context_is_json(snapshot)  # as a session marks a context decoded from JSON
        snapshot, _ = machine.transition(snapshot, {"type": "INC"}, now_ms=clock.now_ms())
        document = machine.persisted_snapshot(snapshot)
        # The remembered event ids go back as they came.
        document["$durable"]["processed"] = read["$durable"].get("processed", [])
        await storage.write("floor", _json.dumps(document))

    mine, base, ratio = await paired(ours, baseline, n)
    least, _, floor_ratio = await paired(floor, baseline, n)
    RESULTS["json"][label] = {
        "bytes": len(raw),
        "ours_ms": mine * 1e3,
        "json_ms": base * 1e3,
        "ratio": ratio,
        "floor_ms": least * 1e3,
        "floor_ratio": floor_ratio,
    }
    print(
        f"  {label:18s} {len(raw) / 1e3:9.0f} kB  ours {mine * 1e3:9.3f} ms  "
        f"json {base * 1e3:9.3f} ms  ratio {ratio:5.2f}x (goal <= 2x)  "
        f"floor {floor_ratio:5.2f}x"
    )


async def many(actors: int, tasks: int) -> None:
    # persisted_actor only, so that the same scenario runs on earlier releases
    # (python bench/bench_system.py --only many, in a checkout of them).
    machine = counter()
    storage, locks = MemoryStorage(), MemoryLockManager()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(actors):
        queue.put_nowait(f"m-{i}")
    for i in range(actors):
        queue.put_nowait(f"m-{i}")

    async def worker() -> None:
        while not queue.empty():
            actor_id = queue.get_nowait()
            async with persisted_actor(
                actor_id, machine, storage=storage, lock=locks, lock_wait=60
            ) as actor:
                await actor.send("INC")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    steps = actors * 2
    RESULTS["many"] = {"steps_per_s": steps / elapsed, "cpu_per_step_us": used / steps * 1e6}
    print(f"{actors} actors x 2 events, read-write, memory, {tasks} tasks:")
    print(f"  {steps / elapsed:8.0f} steps/s, {used / steps * 1e6:.0f} us CPU per step")


def import_time(runs: int) -> None:
    """A fresh interpreter importing durable_state against one importing asyncio."""
    times: dict[str, list[float]] = {"asyncio": [], "durable_state": []}
    for _ in range(runs):
        for module in times:  # interleaved: both see the same machine load
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
            times[module].append(time.perf_counter() - started)
    ours, theirs = statistics.median(times["durable_state"]), statistics.median(times["asyncio"])
    RESULTS["import"] = {"durable_state_ms": ours * 1e3, "asyncio_ms": theirs * 1e3}
    print(f"a fresh interpreter importing (median of {runs}):")
    print(
        f"  durable_state {ours * 1e3:.1f} ms, asyncio {theirs * 1e3:.1f} ms: "
        f"ratio {ours / theirs:.2f}x (goal <= 1.3x)"
    )


async def main(args: argparse.Namespace) -> None:
    chosen = set(args.only or ("hot", "lease", "json", "many", "import"))
    if "hot" in chosen:
        await hot(100, 1 if args.quick else 3)
    if "lease" in chosen:
        await lease(200 if args.quick else 2000)
    if "json" in chosen:
        await step_vs_json(20 if args.quick else 200)
    if "many" in chosen:
        await many(1000 if args.quick else 10_000, 64)
    if "import" in chosen:
        await asyncio.to_thread(import_time, 10 if args.quick else 40)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--only", nargs="*", choices=("hot", "lease", "json", "many", "import"))
    parser.add_argument("--json", help="write the figures to this file")
    arguments = parser.parse_args()
    asyncio.run(main(arguments))
    if arguments.json:
        with open(arguments.json, "w") as report:
            json.dump(RESULTS, report, indent=2)
    sys.exit(0)
