"""Storage latency: read and compare-and-set write per backend, against raw driver calls.

What is timed, per operation, on one key (a ``--size``-byte value, 1 KiB by
default):

* ``local`` read: ``LocalFileStorage.read`` (open, read, header check, in one
  worker thread). Raw: ``aiofiles.open(path, "rb")`` + ``read``.
* ``local`` write: ``LocalFileStorage.write(key, data, if_version=v)``: lock
  stripe (``flock``) + version check, temp file + ``fsync``, ``os.replace``,
  ``fsync`` of the directory. Raw: ``aiofiles`` write of a temp file +
  ``flush`` + ``fsync`` + ``os.replace`` (no lock, no check, no directory
  ``fsync``: the floor of an atomic file write).
* ``s3`` read: ``S3Storage.read`` (GetObject, body, envelope). Raw:
  ``get_object`` + body read on one reused aioboto3 client.
* ``s3`` write: ``S3Storage.write(key, data, if_version=etag)`` (PutObject
  with ``IfMatch`` and a fresh envelope). Raw: ``put_object`` with
  ``IfMatch=<etag>`` on the same client.
* ``memory``: ``MemoryStorage`` read and write, for scale (no raw row).

S3 runs against a moto server started here on 127.0.0.1 (in a thread, dummy
credentials), the local backend in a temporary directory. Ours and raw run
in alternating blocks so that drift (moto's heap, page cache, other load)
affects both alike. Figures are medians (and 90th percentiles) of per-op wall
time in microseconds; the ratio ours/raw is of the medians.

Usage::

    python bench/bench_storage.py                 # 400 ops per row
    python bench/bench_storage.py --quick         # a smoke run
    python bench/bench_storage.py --size 65536 --json /tmp/storage.json
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
from collections.abc import Awaitable, Callable
from typing import Any

import aiofiles
import aiofiles.os

from durable_state.storage import LocalFileStorage, MemoryStorage, S3Storage, Stored

BUCKET = "bench-storage"
KEY = "order/42"
RAW_KEY = "raw-order-42"
BLOCKS = 8
WARMUP = 30

Step = Callable[[], Awaitable[None]]


def start_moto() -> tuple[Any, str]:
    """A moto server on 127.0.0.1 with an ephemeral port, and its URL."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
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


async def timed(step: Step, n: int) -> list[float]:
    """Per-operation wall times of ``step`` in microseconds."""
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await step()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


async def compare(ours: Step, raw: Step, n: int) -> tuple[list[float], list[float]]:
    """Time ``ours`` and ``raw`` in alternating blocks, after a warm-up."""
    for step in (ours, raw):
        await timed(step, WARMUP)
    mine: list[float] = []
    floor: list[float] = []
    block = max(n // BLOCKS, 1)
    for _ in range(BLOCKS):
        mine += await timed(ours, block)
        floor += await timed(raw, block)
    return mine, floor


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_us": statistics.median(ordered),
        "p90_us": ordered[int(0.9 * (len(ordered) - 1))],
    }


# -- steps ------------------------------------------------------------------ #


def ours_read(storage: Any) -> Step:
    async def step() -> None:
        stored = await storage.read(KEY)
        assert stored is not None

    return step


def ours_write(storage: Any, data: bytes, version: str) -> Step:
    current = version

    async def step() -> None:
        nonlocal current
        current = await storage.write(KEY, data, if_version=current)

    return step


def raw_local_read(path: str) -> Step:
    async def step() -> None:
        async with aiofiles.open(path, "rb") as f:
            await f.read()

    return step


def raw_local_write(root: str, path: str, data: bytes, *, sync_dir: bool = False) -> Step:
    tmp = os.path.join(root, ".raw-tmp")
    fsync = aiofiles.os.wrap(os.fsync)
    fsync_dir = aiofiles.os.wrap(_fsync_dir)

    async def step() -> None:
        async with aiofiles.open(tmp, "wb") as f:
            await f.write(data)
            await f.flush()
            await fsync(f.fileno())
        await aiofiles.os.replace(tmp, path)
        if sync_dir:
            await fsync_dir(root)

    return step


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_s3_read(client: Any) -> Step:
    async def step() -> None:
        response = await client.get_object(Bucket=BUCKET, Key=RAW_KEY)
        async with response["Body"] as body:
            await body.read()

    return step


def raw_s3_write(client: Any, data: bytes, etag: str) -> Step:
    current = etag

    async def step() -> None:
        nonlocal current
        response = await client.put_object(Bucket=BUCKET, Key=RAW_KEY, Body=data, IfMatch=current)
        current = response["ETag"]

    return step


# -- runs ------------------------------------------------------------------- #


async def run_local(n: int, data: bytes) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as root:
        async with LocalFileStorage(root) as storage:
            version = await storage.write(KEY, data)
            raw_path = os.path.join(root, "raw-file")
            await raw_local_write(root, raw_path, data)()
            mine, floor = await compare(ours_read(storage), raw_local_read(raw_path), n)
            results["read"] = (summary(mine), summary(floor))
            mine, floor = await compare(
                ours_write(storage, data, version), raw_local_write(root, raw_path, data), n
            )
            results["write"] = (summary(mine), summary(floor))
            # The same, against a raw write that also makes the rename durable.
            version = (await storage.read(KEY) or Stored(b"", "")).version
            mine, floor = await compare(
                ours_write(storage, data, version),
                raw_local_write(root, raw_path, data, sync_dir=True),
                n,
            )
            results["write/d"] = (summary(mine), summary(floor))
    return results


async def run_s3(n: int, data: bytes) -> dict[str, Any]:
    import aioboto3

    server, url = start_moto()
    results: dict[str, Any] = {}
    try:
        session = aioboto3.Session()
        async with (
            session.client("s3", endpoint_url=url, region_name="us-east-1") as client,
            S3Storage(
                BUCKET, session=session, endpoint_url=url, region_name="us-east-1"
            ) as storage,
        ):
            await client.create_bucket(Bucket=BUCKET)
            version = await storage.write(KEY, data)
            etag = (await client.put_object(Bucket=BUCKET, Key=RAW_KEY, Body=data))["ETag"]
            mine, floor = await compare(ours_read(storage), raw_s3_read(client), n)
            results["read"] = (summary(mine), summary(floor))
            mine, floor = await compare(
                ours_write(storage, data, version), raw_s3_write(client, data, etag), n
            )
            results["write"] = (summary(mine), summary(floor))
    finally:
        server.stop()
    return results


async def run_memory(n: int, data: bytes) -> dict[str, Any]:
    storage = MemoryStorage()
    version = await storage.write(KEY, data)
    results: dict[str, Any] = {}
    for op, step in (("read", ours_read(storage)), ("write", ours_write(storage, data, version))):
        await timed(step, WARMUP)
        results[op] = (summary(await timed(step, n)), None)
    return results


async def run(n: int, size: int) -> dict[str, dict[str, Any]]:
    data = os.urandom(size)
    return {
        "local": await run_local(n, data),
        "s3": await run_s3(n, data),
        "memory": await run_memory(n, data),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=400, help="timed operations per row")
    parser.add_argument("--size", type=int, default=1024, help="value size in bytes")
    parser.add_argument("--quick", action="store_true", help="40 operations, for a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    n = 40 if args.quick else args.ops

    results = asyncio.run(run(n, args.size))

    print(f"storage latency, {n} ops per row, {args.size}-byte values")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    header = f"{'backend':<8}{'op':<9}{'ours med us':>12}{'ours p90':>10}"
    print(header + f"{'raw med us':>12}{'raw p90':>10}{'ours/raw':>10}")
    table: list[dict[str, Any]] = []
    for backend, ops in results.items():
        for op, (mine, floor) in ops.items():
            row = f"{backend:<8}{op:<9}{mine['median_us']:>12.0f}{mine['p90_us']:>10.0f}"
            ratio = None
            if floor is not None:
                ratio = mine["median_us"] / floor["median_us"]
                row += f"{floor['median_us']:>12.0f}{floor['p90_us']:>10.0f}{ratio:>10.3f}"
            print(row)
            table.append({"backend": backend, "op": op, "ours": mine, "raw": floor, "ratio": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ops": n, "size": args.size, "rows": table}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
