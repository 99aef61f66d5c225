"""Per-step latency on AWS-like backends when every request costs a round trip.

On AWS a step's time is its round trips: at 10-50 ms a request, the number of
sequential requests is the whole cost. Here a moto server (a child process)
sits behind ``durable_state.testing.FaultProxy``, which adds ``--latency``
(10 ms) before each request, and a step (load, one event, save) is timed on:

* ``s3+lock``: S3Storage + DynamoDBLockManager, read-write (4 requests) -- the baseline;
* ``dynamodb``: DynamoDBStorage + DynamoDBLockManager on one table, read-write
  (2 requests: the lease lives in the snapshot's item);
* ``dynamodb cached``: DynamoDBStorage(cache=True), optimistic (1 request);
* ``s3 cached``: S3Storage(cache=True), optimistic (1 request).

Printed: median and p90 per step, requests per step (counted by the proxy),
and the ratio of each median to the baseline's, all from this run. Goals:
``dynamodb`` <= 0.55x, ``dynamodb cached`` <= 0.3x.

Usage::

    python bench/bench_round_trips.py              # 60 steps each, 10 ms a request
    python bench/bench_round_trips.py --latency 0.02 --steps 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _moto import moto_server  # type: ignore[import-not-found]

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import DynamoDBLockManager
from durable_state.storage import DynamoDBStorage, S3Storage
from durable_state.testing import FaultProxy

COUNTER = Machine(
    {
        "id": "counter",
        "initial": "on",
        "context": {"n": 0},
        "states": {"on": {"on": {"INC": {"actions": "inc"}}}},
    },
    actions={"inc": assign(lambda c, e: {"n": c["n"] + 1})},
)
GOALS = {"dynamodb": 0.55, "dynamodb cached": 0.30}


@asynccontextmanager
async def setup(name: str, url: str) -> AsyncIterator[dict[str, Any]]:
    kwargs = {"endpoint_url": url, "region_name": "us-east-1"}
    table, bucket = f"bench-{name.replace(' ', '-').replace('+', '')}", "bench-round-trips"
    if name == "s3+lock":
        async with S3Storage(bucket, **kwargs) as s3, DynamoDBLockManager(table, **kwargs) as lock:
            client = await s3._aws.get()
            try:
                await client.create_bucket(Bucket=bucket)
            except Exception:
                pass
            await lock.create_table()
            yield {"storage": s3, "lock": lock}
    elif name == "s3 cached":
        async with S3Storage(bucket, cache=True, **kwargs) as s3:
            yield {"storage": s3}
    else:
        cached = name == "dynamodb cached"
        async with DynamoDBStorage(table, cache=cached, **kwargs) as storage:
            await storage.create_table()
            if cached:
                yield {"storage": storage}
            else:
                async with DynamoDBLockManager(table, **kwargs) as lock:
                    yield {"storage": storage, "lock": lock}


async def measure(name: str, url: str, proxy: FaultProxy, steps: int) -> dict[str, float]:
    async with setup(name, url) as backends:

        async def step() -> None:
            async with persisted_actor("bench-1", COUNTER, **backends) as actor:
                await actor.send("INC")

        for _ in range(3):
            await step()  # create, connect, warm the cache
        times: list[float] = []
        proxy.reset_counts()
        for _ in range(steps):
            started = time.perf_counter()
            await step()
            times.append(time.perf_counter() - started)
        requests = proxy.request_count / steps
    times.sort()
    return {
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": times[int(len(times) * 0.9) - 1] * 1000,
        "requests": requests,
    }


async def main(latency: float, steps: int) -> None:
    with moto_server() as url:
        port = int(url.rsplit(":", 1)[1])
        with FaultProxy("127.0.0.1", port, latency=latency) as proxy:
            results = {}
            for name in ("s3+lock", "dynamodb", "dynamodb cached", "s3 cached"):
                results[name] = await measure(name, proxy.url, proxy, steps)
    base = results["s3+lock"]["median_ms"]
    print(
        f"one step (load, one event, save), {latency * 1000:.0f} ms added per request, {steps} steps:"
    )
    for name, r in results.items():
        goal = f" (goal <= {GOALS[name]}x)" if name in GOALS else ""
        print(
            f"  {name:16s} {r['requests']:4.1f} requests  median {r['median_ms']:6.1f} ms  "
            f"p90 {r['p90_ms']:6.1f} ms  {r['median_ms'] / base:4.2f}x{goal}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.010, help="seconds added per request")
    parser.add_argument("--steps", type=int, default=60, help="steps per backend")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.latency, arguments.steps))
