"""Lease round trips: acquire + release, per backend, and the cost over raw DynamoDB calls.

What is timed, per iteration, on one key that is free each time:

* ``dynamodb``: ``DynamoDBLockManager.acquire`` + ``release`` against a moto
  server on 127.0.0.1 (started here, in a thread), i.e. two conditional
  ``UpdateItem`` calls over HTTP plus our argument checks, owner ids, the
  shielded attempt and the stale-release check.
* ``dynamodb-raw``: the same two conditional ``UpdateItem`` calls (same
  expressions, same return values) made directly on one reused aioboto3
  client: the floor that any DynamoDB lease can reach on this server.
* ``file``: ``FileLockManager.acquire`` + ``release`` in a temporary
  directory (each one a locked read-modify-write with ``fsync``, in a worker
  thread).
* ``memory``: ``MemoryLockManager.acquire`` + ``release``.

``dynamodb`` and ``dynamodb-raw`` run in alternating blocks so that drift
(the moto server's heap growing, the garbage collector) affects both alike.
Figures are medians (and 90th percentiles) of per-iteration wall time in
microseconds; the ratio ours/raw is of the medians.

Usage::

    python bench/bench_locks.py                 # 400 iterations per backend
    python bench/bench_locks.py --quick         # a smoke run
    python bench/bench_locks.py --json /tmp/locks.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from durable_state.locks import DynamoDBLockManager, FileLockManager, MemoryLockManager

TABLE = "bench-locks"
KEY = "bench-key"
BLOCKS = 8


def start_moto() -> tuple[Any, str]:
    """A moto server on 127.0.0.1 with an ephemeral port, and its URL."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


async def timed(step: Callable[[], Awaitable[None]], n: int) -> list[float]:
    """Per-iteration wall times of ``step`` in microseconds."""
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await step()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def ours(manager: Any) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        lease = await manager.acquire(KEY, ttl=60)
        await manager.release(lease)

    return step


def raw(client: Any) -> Callable[[], Awaitable[None]]:
    """The two conditional writes of a lease, straight on the client."""
    names = {"#id": "id", "#o": "owner", "#t": "token", "#e": "expireAt", "#r": "released"}

    async def step() -> None:
        owner = uuid.uuid4().hex
        now = time.time()
        acquired = await client.update_item(
            TableName=TABLE,
            Key={"id": {"S": KEY}},
            UpdateExpression="SET #o = :o, #e = :e, #r = :f, #t = if_not_exists(#t, :s) + :one",
            ConditionExpression="attribute_not_exists(#id) OR #r = :tr OR #e <= :now",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":o": {"S": owner},
                ":e": {"N": f"{now + 60:.6f}"},
                ":f": {"BOOL": False},
                ":tr": {"BOOL": True},
                ":one": {"N": "1"},
                ":s": {"N": str(int(now * 1000))},
                ":now": {"N": f"{now:.6f}"},
            },
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        token = acquired["Attributes"]["token"]["N"]
        await client.update_item(
            TableName=TABLE,
            Key={"id": {"S": KEY}},
            UpdateExpression="SET #r = :tr, #e = :now",
            ConditionExpression="#o = :o AND #t = :t",
            ExpressionAttributeNames={
                "#o": "owner",
                "#t": "token",
                "#e": "expireAt",
                "#r": "released",
            },
            ExpressionAttributeValues={
                ":o": {"S": owner},
                ":t": {"N": token},
                ":tr": {"BOOL": True},
                ":now": {"N": f"{time.time():.6f}"},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    return step


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_us": statistics.median(ordered),
        "p90_us": ordered[int(0.9 * (len(ordered) - 1))],
        "ops_per_s": 1e6 / statistics.median(ordered),
    }


async def run(iterations: int) -> dict[str, Any]:
    import aioboto3

    server, url = start_moto()
    results: dict[str, Any] = {}
    try:
        session = aioboto3.Session()
        async with (
            DynamoDBLockManager(
                TABLE, session=session, endpoint_url=url, region_name="us-east-1"
            ) as manager,
            session.client("dynamodb", endpoint_url=url, region_name="us-east-1") as client,
        ):
            await manager.create_table()
            ours_step, raw_step = ours(manager), raw(client)
            for step in (ours_step, raw_step):  # warm-up: connections, models, caches
                await timed(step, 30)
            mine: list[float] = []
            floor: list[float] = []
            block = max(iterations // BLOCKS, 1)
            for _ in range(BLOCKS):
                mine += await timed(ours_step, block)
                floor += await timed(raw_step, block)
            results["dynamodb"] = summary(mine)
            results["dynamodb-raw"] = summary(floor)
    finally:
        server.stop()

    with tempfile.TemporaryDirectory() as root:
        async with FileLockManager(root) as file_manager:
            await timed(ours(file_manager), 30)
            results["file"] = summary(await timed(ours(file_manager), iterations))

    async with MemoryLockManager() as memory_manager:
        await timed(ours(memory_manager), 100)
        results["memory"] = summary(await timed(ours(memory_manager), iterations))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="40 iterations, for a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    iterations = 40 if args.quick else args.iterations

    results = asyncio.run(run(iterations))
    ratio = results["dynamodb"]["median_us"] / results["dynamodb-raw"]["median_us"]

    print(f"acquire + release round trips, {iterations} per backend")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'backend':<14}{'median us':>12}{'p90 us':>12}{'ops/s':>10}")
    for name, row in results.items():
        print(f"{name:<14}{row['median_us']:>12.0f}{row['p90_us']:>12.0f}{row['ops_per_s']:>10.0f}")
    print(f"ratio ours/raw (dynamodb, medians): {ratio:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"iterations": iterations, "results": results, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
