"""Messages between persisted actors: what sending costs a step, and how many go through per second.

Measured side by side in this run:

* ``step``: an ``ActorSystem.send`` whose step sends one message
  (``send_to``) against one whose step sends none (an ``assign`` only), on
  local files and on memory, wall time per step (median), ratio (goal <= 1.5x
  on local files: the message rides in the same compare-and-set save). The
  delivery runs between the timed steps (and its outcome is settled by the
  next timed save, as in steady state).
* ``throughput``: messages per second between two actors: ``--messages``
  events sent to ``a`` at once (served by group commit), each forwarding one
  message to ``b``; timed until ``b`` applied all of them. Beside it, the
  same number of events sent to ``b`` directly (no message in between), so
  that the ratio says what the hop costs.
* ``ping-pong``: round trips per second between two actors that answer each
  other (``a`` -> ``b`` -> ``a``), one at a time: the latency of a message.

Usage::

    python bench/bench_messages.py                  # about a minute on 2 cores
    python bench/bench_messages.py --quick
    python bench/bench_messages.py --json /tmp/messages.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from durable_state import ActorSystem, Machine, assign, send_to
from durable_state.locks import FileLockManager, LockManager, MemoryLockManager
from durable_state.storage import LocalFileStorage, MemoryStorage, Storage

RESULTS: dict[str, Any] = {}

#: Round trips per chain of ping-pong (each round trip is two hops; see MAX_HOPS).
CHAIN = 40

Backends = Callable[[], tuple[Storage, LockManager]]


def machines() -> list[Machine]:
    """``sender`` (``QUIET``: count; ``SEND``: count and message ``b``), ``counter``, ``pong``."""
    count = assign(lambda c, e: {"n": c["n"] + 1})
    sender = Machine(
        {
            "id": "sender",
            "initial": "on",
            "context": {"n": 0},
            "states": {
                "on": {
                    "on": {
                        "QUIET": {"actions": "count"},
                        "SEND": {"actions": ["count", "forward"]},
                        "PONG": [
                            # A chain of sends stops at MAX_HOPS (a cycle that
                            # never settles): each chain is CHAIN round trips.
                            {"guard": "chain_on", "actions": ["count", "ping"]},
                            {"actions": "count"},
                        ],
                    }
                }
            },
        },
        actions={
            "count": count,
            "forward": send_to("b", {"type": "ADD"}, machine="counter"),
            "ping": send_to("b", {"type": "PING"}, machine="pong"),
        },
        guards={"chain_on": lambda c, e: (c["n"] + 1) % CHAIN != 0},
    )
    counter = Machine(
        {
            "id": "counter",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"ADD": {"actions": "count"}}}},
        },
        actions={"count": count},
    )
    pong = Machine(
        {
            "id": "pong",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"PING": {"actions": ["count", "pong"]}}}},
        },
        actions={"count": count, "pong": send_to("a", {"type": "PONG"})},
    )
    return [sender, counter, pong]


def memory() -> tuple[Storage, LockManager]:
    return MemoryStorage(), MemoryLockManager()


def local() -> tuple[Storage, LockManager]:
    root = tempfile.mkdtemp(prefix="bench-messages-")
    return LocalFileStorage(root), FileLockManager(root)


async def stored_n(system: ActorSystem, actor_id: str) -> int:
    found = await system.storage.read(actor_id)
    assert found is not None
    n: int = json.loads(found.data)["context"]["n"]
    return n


async def step(name: str, backends: Backends, n: int) -> None:
    """A step that sends one message against one that sends none (median wall time)."""
    storage, lock = backends()
    system = ActorSystem(machines(), storage=storage, lock=lock)
    await system.send("a", "QUIET", machine="sender")
    await system.send("b", "ADD", machine="counter")
    times: dict[str, list[float]] = {"QUIET": [], "SEND": []}
    for i in range(2 * n):
        event = "SEND" if i % 2 else "QUIET"  # interleaved: both see the same machine state
        started = time.perf_counter()
        await system.send("a", event)
        times[event].append(time.perf_counter() - started)
        await system.idle()  # the delivery, untimed
    assert await stored_n(system, "b") == n + 1, "every message applied once"
    sending, quiet = statistics.median(times["SEND"]), statistics.median(times["QUIET"])
    ratio = sending / quiet
    RESULTS[f"step_{name}"] = {"send_ms": sending * 1e3, "quiet_ms": quiet * 1e3, "ratio": ratio}
    goal = " (goal <= 1.5x)" if name == "local files" else ""
    print(
        f"  {name:<12} sends one {sending * 1e3:.3f} ms, sends none {quiet * 1e3:.3f} ms: "
        f"ratio {ratio:.2f}x{goal}"
    )


async def throughput(name: str, backends: Backends, n: int) -> None:
    """Messages per second a -> b, beside events per second straight to b."""
    storage, lock = backends()
    system = ActorSystem(machines(), storage=storage, lock=lock)
    await system.send("a", "QUIET", machine="sender")
    await system.send("b", "ADD", machine="counter")
    await system.send("c", "ADD", machine="counter")

    started = time.perf_counter()
    await asyncio.gather(*(system.send("c", "ADD") for _ in range(n)))
    direct = n / (time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(system.send("a", "SEND") for _ in range(n)))
    await system.idle()  # every message applied (checked below)
    messages = n / (time.perf_counter() - started)
    assert await stored_n(system, "b") == n + 1, "every message applied once"
    RESULTS[f"throughput_{name}"] = {
        "messages_per_s": messages,
        "direct_events_per_s": direct,
        "ratio": messages / direct,
    }
    print(
        f"  {name:<12} {messages:,.0f} messages/s a -> b, {direct:,.0f} events/s straight to b: "
        f"ratio {messages / direct:.2f}x"
    )


async def ping_pong(name: str, backends: Backends, rounds: int) -> None:
    """Round trips a -> b -> a per second, one at a time."""
    storage, lock = backends()
    system = ActorSystem(machines(), storage=storage, lock=lock)
    await system.send("a", "QUIET", machine="sender")
    await system.send("b", "ADD", machine="counter")  # b is a counter: make it a pong
    await system.storage.delete("b")
    first = await stored_n(system, "a")
    started = time.perf_counter()
    for _ in range(rounds // CHAIN):
        await system.send("a", "PONG")  # a pings b, b pongs a, ... until the chain ends
        await system.idle()  # each hop's delivery starts before the last one ends
    elapsed = time.perf_counter() - started
    trips = await stored_n(system, "a") - first
    assert trips >= rounds // CHAIN * (CHAIN - 2), f"only {trips} round trips"
    per_s = trips / elapsed
    RESULTS[f"ping_pong_{name}"] = {"round_trips_per_s": per_s, "ms_per_round_trip": 1e3 / per_s}
    print(f"  {name:<12} {per_s:,.0f} round trips/s ({1e3 / per_s:.2f} ms each)")


async def main(args: argparse.Namespace) -> None:
    quick = args.quick
    print("a step that sends one message against one that sends none (median per step):")
    await step("local files", local, 100 if quick else 400)
    await step("memory", memory, 300 if quick else 2000)
    print("messages per second between two actors (group commit on both sides):")
    await throughput("local files", local, 200 if quick else 1000)
    await throughput("memory", memory, 1000 if quick else 10_000)
    print("ping-pong between two actors, one message in flight:")
    await ping_pong("local files", local, 2 * CHAIN if quick else 5 * CHAIN)
    await ping_pong("memory", memory, 5 * CHAIN if quick else 50 * CHAIN)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--json", help="write the figures to this file")
    arguments = parser.parse_args()
    asyncio.run(main(arguments))
    if arguments.json:
        with open(arguments.json, "w") as report:
            json.dump(RESULTS, report, indent=2)
