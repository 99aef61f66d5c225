"""Requests per step, counted at the server (a proxy in front of moto).

* S3 + DynamoDB lock, read-write: 4 (acquire, GET, PUT If-Match, release);
* DynamoDB storage + DynamoDB lock on one table, read-write: 2 (one
  UpdateItem takes the lease and returns the snapshot; one saves, checks the
  token and the version, and releases);
* optimistic with the version cache, after this process saved: 1 (the
  conditional write); without the cache: 2;
* a waker's visit on the DynamoDB pair that removes the entry that fired:
  the save keeps the lease, which is released after the removal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from durable_state import ActorSystem, ManualClock, persisted_actor
from durable_state.locks import DynamoDBLockManager
from durable_state.storage import DueEntry, DynamoDBStorage, S3Storage
from durable_state.testing import FaultProxy, Request

from ._machines import counter_machine, timer_machine


@pytest.fixture
def proxy(moto_server: Any) -> Iterator[FaultProxy]:
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), record=True) as running:
        yield running


def _operation(request: Request) -> str:
    target = request.headers.get("x-amz-target")
    if target:
        return target.split(".")[-1]
    return f"{request.method} S3"


async def _step(actor_id: str, **kwargs: Any) -> None:
    async with persisted_actor(actor_id, counter_machine(), **kwargs) as actor:
        await actor.send("INC")


async def _count(proxy: FaultProxy, actor_id: str, **kwargs: Any) -> list[str]:
    await _step(actor_id, **kwargs)  # create it, warm the clients (and the cache)
    proxy.reset_counts()
    await _step(actor_id, **kwargs)
    return [_operation(r) for r in proxy.requests]


async def test_a_locked_step_on_dynamodb_for_both_is_two_requests(
    proxy: FaultProxy, moto_server: Any, unique_name: str
) -> None:
    kwargs = {"endpoint_url": proxy.url, "region_name": moto_server.region}
    async with (
        DynamoDBStorage(unique_name, **kwargs) as storage,
        DynamoDBLockManager(unique_name, **kwargs) as lock,
    ):
        await storage.create_table()
        ops = await _count(proxy, "o-1", storage=storage, lock=lock)
        assert ops == ["UpdateItem", "UpdateItem"]
        stored = await storage.read("o-1")
        assert stored is not None
        assert json.loads(stored.data)["context"]["count"] == 2
        assert await lock.peek("o-1") is None  # nothing in the lock manager's own items
        held = await storage.client()
        item = (await held.get_item(TableName=unique_name, Key=storage.item_key("o-1")))["Item"]
        assert item["leaseReleased"] == {"BOOL": True}  # released by the save itself
        assert "expireAt" not in item  # TTL never reads a snapshot item


async def test_a_waker_visit_on_dynamodb_for_both_removes_its_entry_under_the_lease(
    proxy: FaultProxy, moto_server: Any, unique_name: str
) -> None:
    """The fired entry is removed before the lease is given back, so the save keeps the lease."""
    kwargs = {"endpoint_url": proxy.url, "region_name": moto_server.region}
    start = 1_800_000_000_000
    clock = ManualClock(start_ms=start)
    async with (
        DynamoDBStorage(unique_name, **kwargs) as storage,
        DynamoDBLockManager(unique_name, **kwargs) as lock,
    ):
        await storage.create_table()
        system = ActorSystem([timer_machine()], storage=storage, lock=lock, clock=clock)
        await system.send("t-1", "LOOK", machine="timers")  # "waiting": due in 1 s
        await clock.advance(60_000)
        proxy.reset_counts()
        assert await system.fire_due() == 1  # now "ringing", due 1 s from now
        ops = [_operation(r) for r in proxy.requests]
        assert ops == [
            "Query",  # what is due
            "UpdateItem",  # take the lease and read
            "UpdateItem",  # index the next due time
            "UpdateItem",  # save, keeping the lease
            "DeleteItem",  # remove the entry that fired
            "UpdateItem",  # release
        ]
        assert await storage.list_due(start + 120_000) == [DueEntry(start + 61_000, "t-1")]


async def test_a_locked_step_on_s3_with_a_dynamodb_lock_is_four_requests(
    proxy: FaultProxy, moto_server: Any, unique_name: str
) -> None:
    kwargs = {"endpoint_url": proxy.url, "region_name": moto_server.region}
    async with (
        S3Storage(unique_name, **kwargs) as storage,
        DynamoDBLockManager(unique_name, **kwargs) as lock,
    ):
        client = await storage._aws.get()
        await client.create_bucket(Bucket=unique_name)
        await lock.create_table()
        ops = await _count(proxy, "o-1", storage=storage, lock=lock)
        assert ops == ["UpdateItem", "GET S3", "PUT S3", "UpdateItem"]


@pytest.mark.parametrize("cache", [False, True])
async def test_an_optimistic_step_is_one_request_with_the_cache(
    proxy: FaultProxy, moto_server: Any, unique_name: str, cache: bool
) -> None:
    kwargs = {"endpoint_url": proxy.url, "region_name": moto_server.region}
    async with DynamoDBStorage(unique_name, cache=cache, **kwargs) as storage:
        await storage.create_table()
        ops = await _count(proxy, "o-1", storage=storage)
        assert ops == (["UpdateItem"] if cache else ["GetItem", "UpdateItem"])


async def test_a_stale_cache_costs_a_conflict_never_an_update(
    moto_server: Any, unique_name: str
) -> None:
    from durable_state import ActorSystem
    from durable_state.errors import VersionConflict

    kwargs = moto_server.client_kwargs()
    async with (
        DynamoDBStorage(unique_name, cache=True, **kwargs) as mine,
        DynamoDBStorage(unique_name, **kwargs) as theirs,
    ):
        await mine.create_table()
        await _step("o-1", storage=mine)
        await _step("o-1", storage=theirs)  # another process writes: my cache is stale
        with pytest.raises(VersionConflict):
            await _step("o-1", storage=mine)  # persisted_actor cannot re-run its body
        await _step("o-1", storage=mine)  # the entry was dropped: read again
        system = ActorSystem([counter_machine()], storage=mine)
        await _step("o-1", storage=theirs)
        result = await system.send("o-1", "INC")  # the system re-runs the batch once
        assert result.snapshot.context["count"] == 5
