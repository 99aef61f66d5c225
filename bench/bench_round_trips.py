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

The four run interleaved (one step of each per round, the order turning
every round), so that they share whatever else loads the machine. Printed:
median and p90 per step, requests per step (counted by the proxy), and the
ratio of each median to the baseline's, all from this run; then the median
time of a request by operation (what separates the pairs beyond their
number of requests is the server's time per operation). Goals:
``dynamodb`` <= 0.55x, ``dynamodb cached`` <= 0.3x.

moto is a model of AWS written in Python, and its time per request is part
of what is measured. ``--servers independent`` runs the same steps with S3
on SeaweedFS and DynamoDB on dynalite (the servers the test suite checks the
backends against, started by ``tests/servers``; each behind a proxy of its
own with the same latency), so that the ratios are also seen on servers
other people wrote.

Usage::

    python bench/bench_round_trips.py              # 60 steps each, 10 ms a request
    python bench/bench_round_trips.py --latency 0.02 --steps 100
    python bench/bench_round_trips.py --servers independent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
from _moto import moto_server  # type: ignore[import-not-found]

from durable_state import Machine, assign, persisted_actor
from durable_state.errors import LockUnavailable, StorageUnavailable
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


HERE = Path(__file__).resolve().parent
REGION = "us-east-1"


@dataclass(frozen=True)
class Endpoints:
    """Where a benchmark's S3 and DynamoDB requests go, and the sessions that sign them."""

    s3: str
    dynamodb: str
    s3_session: Any = None
    dynamodb_session: Any = None
    #: dynalite has no UpdateTimeToLive (leases never rely on TTL; only the clean-up does).
    ttl: bool = True

    def s3_kwargs(self) -> dict[str, Any]:
        return {"endpoint_url": self.s3, "session": self.s3_session, "region_name": REGION}

    def dynamodb_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.dynamodb,
            "session": self.dynamodb_session,
            "region_name": REGION,
        }


@contextlib.contextmanager
def servers(kind: str, latency: float) -> Iterator[tuple[Endpoints, list[FaultProxy]]]:
    """The servers of a run, each behind a proxy that adds ``latency`` to every request."""
    if kind == "moto":
        with moto_server() as url:
            port = int(url.rsplit(":", 1)[1])
            with FaultProxy("127.0.0.1", port, latency=latency) as proxy:
                yield Endpoints(proxy.url, proxy.url), [proxy]
        return
    sys.path.insert(0, str(HERE.parent / "tests"))
    from servers._dynalite import CREDENTIALS, Dynalite  # type: ignore[import-not-found]
    from servers._seaweedfs import SeaweedFS  # type: ignore[import-not-found]

    directory = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    (directory / "weed").mkdir()
    (directory / "dynalite").mkdir()
    weed, dynalite = SeaweedFS(directory / "weed"), Dynalite(directory / "dynalite")
    s3 = weed.start()
    try:
        dynamodb = dynalite.start()
        try:
            s3_port = int(s3.url.rsplit(":", 1)[1])
            dynamodb_port = int(dynamodb.url.rsplit(":", 1)[1])
            with (
                FaultProxy("127.0.0.1", s3_port, latency=latency) as s3_proxy,
                FaultProxy("127.0.0.1", dynamodb_port, latency=latency) as dynamodb_proxy,
            ):
                print(f"servers: SeaweedFS {weed.version}, dynalite {dynalite.version}")
                yield (
                    Endpoints(
                        s3_proxy.url,
                        dynamodb_proxy.url,
                        aioboto3.Session(
                            aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key
                        ),
                        aioboto3.Session(**CREDENTIALS),
                        ttl=False,
                    ),
                    [s3_proxy, dynamodb_proxy],
                )
        finally:
            dynalite.stop()
    finally:
        weed.stop()


@asynccontextmanager
async def setup(name: str, endpoints: Endpoints) -> AsyncIterator[dict[str, Any]]:
    s3_kwargs, dynamodb_kwargs = endpoints.s3_kwargs(), endpoints.dynamodb_kwargs()
    table, bucket = f"bench-{name.replace(' ', '-').replace('+', '')}", "bench-round-trips"
    if name == "s3+lock":
        async with (
            S3Storage(bucket, **s3_kwargs) as s3,
            DynamoDBLockManager(table, **dynamodb_kwargs) as lock,
        ):
            client = await s3._aws.get()
            try:
                await client.create_bucket(Bucket=bucket)
            except Exception:
                pass
            await _create_table(lock, endpoints)
            yield {"storage": s3, "lock": lock}
    elif name == "s3 cached":
        async with S3Storage(bucket, cache=True, **s3_kwargs) as s3:
            yield {"storage": s3}
    else:
        cached = name == "dynamodb cached"
        async with DynamoDBStorage(table, cache=cached, **dynamodb_kwargs) as storage:
            await _create_table(storage, endpoints)
            if cached:
                yield {"storage": storage}
            else:
                async with DynamoDBLockManager(table, **dynamodb_kwargs) as lock:
                    yield {"storage": storage, "lock": lock}


async def _create_table(backend: Any, endpoints: Endpoints) -> None:
    try:
        await backend.create_table()
    except (LockUnavailable, StorageUnavailable):
        if endpoints.ttl:
            raise  # else: made before the TTL step, which dynalite refuses


async def main(latency: float, steps: int, kind: str) -> None:
    names = ("s3+lock", "dynamodb", "dynamodb cached", "s3 cached")
    times: dict[str, list[float]] = {name: [] for name in names}
    requests = dict.fromkeys(names, 0)
    per_request: dict[str, list[float]] = defaultdict(list)
    with servers(kind, latency) as (endpoints, proxies):
        async with contextlib.AsyncExitStack() as stack:
            steps_of: dict[str, Callable[[], Awaitable[None]]] = {}
            for name in names:
                backends = await stack.enter_async_context(setup(name, endpoints))
                steps_of[name] = _stepper(f"bench-{len(steps_of)}", backends)
                for _ in range(3):
                    await steps_of[name]()  # create, connect, warm the cache
                for role, backend in backends.items():
                    client = await backend._aws.get()
                    _time_requests(client, f"{name} {role}", per_request)
            # Interleaved, in an order that turns every round, so that
            # every configuration sees the same load on the machine.
            for i in range(steps):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    for proxy in proxies:
                        proxy.reset_counts()
                    started = time.perf_counter()
                    await steps_of[name]()
                    times[name].append(time.perf_counter() - started)
                    requests[name] += sum(proxy.request_count for proxy in proxies)
    base = statistics.median(times["s3+lock"])
    print(
        f"one step (load, one event, save), {latency * 1000:.0f} ms added per request, "
        f"{steps} steps each, interleaved:"
    )
    for name in names:
        ordered = sorted(times[name])
        median = statistics.median(ordered)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        goal = f" (goal <= {GOALS[name]}x)" if name in GOALS else ""
        print(
            f"  {name:16s} {requests[name] / steps:4.1f} requests  median {median * 1000:6.1f} ms  "
            f"p90 {p90 * 1000:6.1f} ms  {median / base:4.2f}x{goal}"
        )
    print("time per request by operation, as the client saw it (latency, proxy and server):")
    for operation, seconds in sorted(per_request.items()):
        print(
            f"  {operation:16s} median {statistics.median(seconds) * 1000:6.2f} ms  ({len(seconds)})"
        )


def _time_requests(client: Any, label: str, into: dict[str, list[float]]) -> None:
    """Record the time of each request ``client`` makes, by operation (botocore's events)."""
    started: dict[str, float] = {}

    def before(model: Any, **kwargs: Any) -> None:
        started[model.name] = time.perf_counter()

    def after(model: Any, **kwargs: Any) -> None:
        into[f"{label} {model.name}"].append(time.perf_counter() - started.pop(model.name))

    client.meta.events.register("before-call.*.*", before)
    client.meta.events.register("after-call.*.*", after)


def _stepper(actor_id: str, backends: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        async with persisted_actor(actor_id, COUNTER, **backends) as actor:
            await actor.send("INC")

    return step


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.010, help="seconds added per request")
    parser.add_argument("--steps", type=int, default=60, help="steps per backend")
    parser.add_argument(
        "--servers",
        choices=("moto", "independent"),
        default="moto",
        help="moto, or SeaweedFS for S3 and dynalite for DynamoDB",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.latency, arguments.steps, arguments.servers))
