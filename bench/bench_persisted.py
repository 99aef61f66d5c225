"""Persisted-actor steps on S3 + DynamoDB: round trips per step and wall time against raw calls.

A *step* is what a request handler does with one actor: load it, send one
event, save it, in one of the three locking modes::

    async with persisted_actor("counter-1", machine, storage=s3, lock=dynamo,
                               locking=mode) as actor:
        await actor.send("INC")

It is measured on a moto server started here in a child process on
127.0.0.1 (S3 and DynamoDB over HTTP, dummy credentials), with one
``S3Storage`` and one ``DynamoDBLockManager`` reused for every step (one
client each), exactly as a long-lived worker or a warm Lambda would.

Round trips are counted twice: as calls into the storage and the lock
manager (counting wrappers), and as HTTP requests sent by the aiobotocore
clients (a botocore ``before-send`` hook on the session), which also catches
retries and any request the wrappers cannot see.

The raw baseline is the least a hand-written step must do on the same server
with one reused aioboto3 client per service: for ``read-write``, a
conditional ``UpdateItem`` taking the lease (the lock table's condition:
absent, released or expired), ``GetObject``, ``json.loads``, the increment,
``json.dumps``, ``PutObject`` with ``IfMatch`` on the ETag read, and a
conditional ``UpdateItem`` giving the lease back; ``write`` reads first and
takes the lease around the put; ``optimistic`` is ``GetObject`` + ``PutObject``
with ``IfMatch``. The raw document is the library's own snapshot JSON, so both
sides move the same bytes.

Ours and raw run in short alternating blocks (drift from moto's growing
state or other load hits both alike); figures are medians and 90th
percentiles of per-step wall time; the ratio is ours/raw of the medians and
the overhead is ratio - 1. The client CPU column is this process's CPU time
per step (the median over blocks): the part of the overhead that is the
library's own work, free of the server's and the machine's noise. Targets: 4 round trips in ``read-write``, 2 in ``optimistic``,
overhead <= 10 %.

Usage::

    python bench/bench_persisted.py                  # 200 blocks of 2 steps per side and mode
    python bench/bench_persisted.py --quick          # a smoke run
    python bench/bench_persisted.py --json /tmp/persisted.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from _moto import REGION, moto_server  # type: ignore[import-not-found]

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import HeldLease, Lease
from durable_state.locks.dynamodb import DynamoDBLockManager
from durable_state.storage import S3Storage

MODES: tuple[str | None, ...] = ("read-write", "write", None)
TARGET_TRIPS = {"read-write": 4, "write": 4, None: 2}
TARGET_OVERHEAD = 0.10
BUCKET = "bench-persisted"
TABLE = "bench-persisted-locks"
LEASE_TTL = 60.0

Step = Callable[[], Awaitable[None]]


def mode_name(mode: str | None) -> str:
    return mode if mode is not None else "optimistic"


def counter_machine() -> Machine:
    return Machine(
        {
            "id": "counter",
            "initial": "counting",
            "context": {"count": 0},
            "states": {"counting": {"on": {"INC": {"actions": "inc"}}}},
        },
        actions={"inc": assign(lambda c, e: {"count": c["count"] + 1})},
    )


# -- the moto server ---------------------------------------------------------- #


# -- counting ------------------------------------------------------------------ #


class CountingStorage:
    """Forwards ``read``/``write`` to a storage and counts them."""

    def __init__(self, inner: S3Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def read(self, key: str) -> Any:
        self.calls["read"] += 1
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes, *, if_version: Any = "*") -> str:
        self.calls["write"] += 1
        return await self.inner.write(key, data, if_version=if_version)


class CountingLock:
    """Forwards acquire/renew/release to a lock manager and counts them (``hold`` included)."""

    def __init__(self, inner: DynamoDBLockManager) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def clock(self) -> Callable[[], float]:
        return self.inner.clock

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease:
        self.calls["acquire"] += 1
        return await self.inner.acquire(key, ttl=ttl, wait=wait)

    async def renew(self, lease: Lease) -> Lease:
        self.calls["renew"] += 1
        return await self.inner.renew(lease)

    async def release(self, lease: Lease) -> None:
        self.calls["release"] += 1
        await self.inner.release(lease)

    def hold(self, key: str, *, ttl: float | None = None, wait: float | None = None) -> HeldLease:
        return HeldLease(self, key, ttl=ttl, wait=wait)


class HttpCounter:
    """Counts the HTTP requests the clients of one aioboto3 session send."""

    def __init__(self, session: Any) -> None:
        self.requests: Counter[str] = Counter()
        # Clients copy the session's event hooks when they are created.
        session._session.register("before-send", self._on_send)

    def _on_send(self, request: Any, **kwargs: Any) -> None:
        self.requests[kwargs.get("event_name", "before-send").rsplit(".", 2)[-2]] += 1


# -- the two sides -------------------------------------------------------------- #


@dataclass
class Ours:
    storage: Any
    lock: Any
    machine: Machine
    key: str

    def step(self, mode: str | None) -> Step:
        lock = self.lock if mode is not None else None

        async def run() -> None:
            async with persisted_actor(
                self.key,
                self.machine,
                storage=self.storage,
                lock=lock,
                locking=mode,  # type: ignore[arg-type]
                lock_ttl=LEASE_TTL,
            ) as actor:
                await actor.send("INC")

        return run


@dataclass
class Raw:
    s3: Any
    dynamo: Any
    key: str
    count: int = field(default=0)

    async def acquire(self) -> tuple[str, int]:
        owner = uuid.uuid4().hex
        now = time.time()
        response = await self.dynamo.update_item(
            TableName=TABLE,
            Key={"id": {"S": self.key}},
            UpdateExpression=(
                "SET #owner = :owner, #exp = :exp, #rel = :false, "
                "#token = if_not_exists(#token, :seed) + :one"
            ),
            ConditionExpression="attribute_not_exists(#id) OR #rel = :true OR #exp <= :now",
            ExpressionAttributeNames={
                "#id": "id",
                "#owner": "owner",
                "#exp": "expireAt",
                "#rel": "released",
                "#token": "token",
            },
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":exp": {"N": f"{now + LEASE_TTL:.6f}"},
                ":now": {"N": f"{now:.6f}"},
                ":false": {"BOOL": False},
                ":true": {"BOOL": True},
                ":one": {"N": "1"},
                ":seed": {"N": str(int(now * 1000))},
            },
            ReturnValues="ALL_NEW",
        )
        return owner, int(response["Attributes"]["token"]["N"])

    async def release(self, owner: str, token: int) -> None:
        await self.dynamo.update_item(
            TableName=TABLE,
            Key={"id": {"S": self.key}},
            UpdateExpression="SET #rel = :true, #exp = :now",
            ConditionExpression="#owner = :owner AND #token = :token",
            ExpressionAttributeNames={
                "#owner": "owner",
                "#token": "token",
                "#rel": "released",
                "#exp": "expireAt",
            },
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":token": {"N": str(token)},
                ":true": {"BOOL": True},
                ":now": {"N": f"{time.time():.6f}"},
            },
        )

    async def read(self) -> tuple[dict[str, Any], str]:
        response = await self.s3.get_object(Bucket=BUCKET, Key=self.key)
        async with response["Body"] as body:
            raw = await body.read()
        return json.loads(raw), response["ETag"]

    async def write(self, doc: dict[str, Any], etag: str) -> None:
        doc["context"]["count"] += 1
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        await self.s3.put_object(Bucket=BUCKET, Key=self.key, Body=body, IfMatch=etag)

    def step(self, mode: str | None) -> Step:
        async def read_write() -> None:
            owner, token = await self.acquire()
            doc, etag = await self.read()
            await self.write(doc, etag)
            await self.release(owner, token)

        async def write() -> None:
            doc, etag = await self.read()
            owner, token = await self.acquire()
            await self.write(doc, etag)
            await self.release(owner, token)

        async def optimistic() -> None:
            doc, etag = await self.read()
            await self.write(doc, etag)

        return {"read-write": read_write, "write": write, None: optimistic}[mode]


# -- measuring ------------------------------------------------------------------ #


@dataclass
class Row:
    mode: str
    storage_calls: float
    lock_calls: float
    round_trips: float
    http_requests: float
    raw_http_requests: float
    ours_p50_ms: float
    ours_p90_ms: float
    raw_p50_ms: float
    raw_p90_ms: float
    ours_cpu_ms: float
    raw_cpu_ms: float
    ratio: float
    overhead: float
    trips_ok: bool
    overhead_ok: bool


async def timed(step: Step, n: int, cpu: list[float] | None = None) -> list[float]:
    """Wall time of each of ``n`` steps; appends the block's CPU time per step to ``cpu``."""
    times = []
    cpu_started = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        await step()
        times.append(time.perf_counter() - started)
    if cpu is not None:
        cpu.append((time.process_time() - cpu_started) / n)
    return times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


@contextlib.asynccontextmanager
async def sides(session: Any, url: str, key: str) -> AsyncIterator[tuple[Ours, Raw]]:
    """Our step and the raw step, each on its own key, with reused clients."""
    storage = S3Storage(BUCKET, session=session, endpoint_url=url, region_name=REGION)
    lock = DynamoDBLockManager(TABLE, session=session, endpoint_url=url, region_name=REGION)
    async with (
        storage,
        lock,
        session.client("s3", endpoint_url=url, region_name=REGION) as s3,
        session.client("dynamodb", endpoint_url=url, region_name=REGION) as dynamo,
    ):
        yield Ours(storage, lock, counter_machine(), key), Raw(s3, dynamo, "raw-" + key)


async def count_trips(url: str, mode: str | None, steps: int) -> dict[str, float]:
    import aioboto3

    session = aioboto3.Session()
    http = HttpCounter(session)
    key = f"count-{mode_name(mode)}"
    async with sides(session, url, key) as (ours, raw):
        counted = Ours(CountingStorage(ours.storage), CountingLock(ours.lock), ours.machine, key)
        await counted.step(mode)()  # the actor exists from here on
        await raw_seed(raw, ours)
        counted.storage.calls.clear()
        counted.lock.calls.clear()
        http.requests.clear()
        for _ in range(steps):
            await counted.step(mode)()
        ours_http = sum(http.requests.values())
        http.requests.clear()
        raw_step = raw.step(mode)
        for _ in range(steps):
            await raw_step()
        raw_http = sum(http.requests.values())
    return {
        "storage": sum(counted.storage.calls.values()) / steps,
        "lock": sum(counted.lock.calls.values()) / steps,
        "http": ours_http / steps,
        "raw_http": raw_http / steps,
    }


async def raw_seed(raw: Raw, ours: Ours) -> None:
    """Give the raw side the library's own snapshot bytes as its document."""
    stored = await ours.storage.read(ours.key)
    await raw.s3.put_object(Bucket=BUCKET, Key=raw.key, Body=stored.data)


async def measure(url: str, blocks: int, per_block: int, warmup: int) -> list[Row]:
    import aioboto3

    session = aioboto3.Session()
    lock = DynamoDBLockManager(TABLE, session=session, endpoint_url=url, region_name=REGION)
    async with lock, session.client("s3", endpoint_url=url, region_name=REGION) as s3:
        await lock.create_table()
        await s3.create_bucket(Bucket=BUCKET)

    rows = []
    for mode in MODES:
        trips = await count_trips(url, mode, steps=10)
        async with sides(session, url, f"time-{mode_name(mode)}") as (ours, raw):
            ours_step = ours.step(mode)
            await ours_step()
            await raw_seed(raw, ours)
            raw_step = raw.step(mode)
            await timed(ours_step, warmup)
            await timed(raw_step, warmup)
            ours_times: list[float] = []
            raw_times: list[float] = []
            ours_cpu: list[float] = []
            raw_cpu: list[float] = []
            for block in range(blocks):
                # Alternate which side goes first, too.
                if block % 2:
                    raw_times += await timed(raw_step, per_block, raw_cpu)
                    ours_times += await timed(ours_step, per_block, ours_cpu)
                else:
                    ours_times += await timed(ours_step, per_block, ours_cpu)
                    raw_times += await timed(raw_step, per_block, raw_cpu)
        ours_p50, raw_p50 = statistics.median(ours_times), statistics.median(raw_times)
        ratio = ours_p50 / raw_p50
        round_trips = trips["storage"] + trips["lock"]
        rows.append(
            Row(
                mode=mode_name(mode),
                storage_calls=trips["storage"],
                lock_calls=trips["lock"],
                round_trips=round_trips,
                http_requests=trips["http"],
                raw_http_requests=trips["raw_http"],
                ours_p50_ms=ours_p50 * 1000,
                ours_p90_ms=p90(ours_times) * 1000,
                raw_p50_ms=raw_p50 * 1000,
                raw_p90_ms=p90(raw_times) * 1000,
                ours_cpu_ms=statistics.median(ours_cpu) * 1000,
                raw_cpu_ms=statistics.median(raw_cpu) * 1000,
                ratio=ratio,
                overhead=ratio - 1,
                trips_ok=round_trips <= TARGET_TRIPS[mode] and trips["http"] <= TARGET_TRIPS[mode],
                overhead_ok=ratio - 1 <= TARGET_OVERHEAD,
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'mode':<11} {'trips (storage+lock)':>21} {'HTTP ours/raw':>14} "
        f"{'ours p50/p90 ms':>16} {'raw p50/p90 ms':>15} {'ratio':>6} {'overhead':>9} "
        f"{'client CPU ours/raw ms':>23}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        trips = f"{r.round_trips:g} ({r.storage_calls:g}+{r.lock_calls:g})"
        flag = "" if r.trips_ok and r.overhead_ok else "  <- over target"
        print(
            f"{r.mode:<11} {trips:>21} {f'{r.http_requests:g}/{r.raw_http_requests:g}':>14} "
            f"{f'{r.ours_p50_ms:.2f}/{r.ours_p90_ms:.2f}':>16} "
            f"{f'{r.raw_p50_ms:.2f}/{r.raw_p90_ms:.2f}':>15} "
            f"{r.ratio:>6.3f} {r.overhead:>+8.1%} "
            f"{f'{r.ours_cpu_ms:.2f}/{r.raw_cpu_ms:.2f}':>23}{flag}"
        )
    targets = ", ".join(f"{mode_name(m)} {t}" for m, t in TARGET_TRIPS.items())
    print(f"\ntargets: round trips {targets}; overhead <= {TARGET_OVERHEAD:.0%}")
    print(
        "client CPU: this process's CPU time per step (median of blocks); the moto "
        "server's own time is in the wall time only"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=200, help="alternating blocks per side")
    parser.add_argument("--steps", type=int, default=2, help="steps per block")
    parser.add_argument("--quick", action="store_true", help="4 blocks of 5 steps: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    blocks, steps, warmup = (4, 5, 5) if args.quick else (args.blocks, args.steps, 20)

    with moto_server() as url:
        rows = asyncio.run(measure(url, blocks, steps, warmup))
    print(
        f"persisted actor step on S3 + DynamoDB (moto server, child process); "
        f"{blocks} x {steps} steps per side and mode; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print_table(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "blocks": blocks,
                    "steps_per_block": steps,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "rows": [asdict(r) for r in rows],
                },
                f,
                indent=2,
            )
    return 0 if all(r.trips_ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
