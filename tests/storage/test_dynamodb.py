"""DynamoDBStorage beyond the shared contract, against the moto server over HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_state import _dynamodb as layout
from durable_state._urls import LockSpec, StorageSpec, parse_storage_url, resolve_backends
from durable_state.errors import (
    BackendURLError,
    LockTimeout,
    SnapshotCorrupt,
    StorageUnavailable,
    VersionConflict,
)
from durable_state.locks import DynamoDBLockManager
from durable_state.storage import DueEntry, DynamoDBStorage, S3Storage, Stored
from durable_state.storage.dynamodb import SPILL_DIRECTORY
from durable_state.storage.s3 import ENVELOPE_MAGIC
from durable_state.testing import FaultProxy, Request

ROOT = Path(__file__).resolve().parents[2]


def _target(request: Request) -> str:
    """The DynamoDB operation a request calls (``"UpdateItem"``), or ``""``."""
    return request.headers.get("x-amz-target", "").rpartition(".")[2]


def _calling(operation: str) -> Callable[[Request], bool]:
    return lambda request: _target(request) == operation


async def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async for page in client.get_paginator("scan").paginate(TableName=table):
        items.extend(page["Items"])
    return items


async def _item(client: Any, table: str, item_id: str) -> dict[str, Any] | None:
    response = await client.get_item(
        TableName=table, Key={"id": {"S": item_id}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


async def _objects(s3_client: Any, bucket: str) -> list[str]:
    response = await s3_client.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in response.get("Contents", ()))


@pytest.fixture
def proxy(moto_server: Any) -> Iterator[FaultProxy]:
    """A recording proxy in front of the moto server."""
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), record=True) as running:
        yield running


# --------------------------------------------------------------------------- #
# The item layout
# --------------------------------------------------------------------------- #


async def test_a_value_is_one_item_with_its_version(
    make_dynamodb: Any, dynamodb_table: str, dynamodb_client: Any
) -> None:
    async with make_dynamodb(dynamodb_table, prefix="orders/") as storage:
        version = await storage.write("o-1", b"{}", if_version=None)
    item = await _item(dynamodb_client, dynamodb_table, "state#orders/o-1")
    assert item == {
        "id": {"S": "state#orders/o-1"},
        "version": {"S": version},
        "data": {"B": b"{}"},
    }
    assert len(version) == 32
    int(version, 16)  # the write id: 128 random bits in hex


async def test_the_table_has_the_due_index_and_ttl_on_expire_at(
    dynamodb_table: str, dynamodb_client: Any
) -> None:
    table = (await dynamodb_client.describe_table(TableName=dynamodb_table))["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == layout.DUE_INDEX == "dueIndex"
    assert index["KeySchema"] == [
        {"AttributeName": "dueShard", "KeyType": "HASH"},
        {"AttributeName": "dueAt", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ttl = await dynamodb_client.describe_time_to_live(TableName=dynamodb_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expireAt"


async def test_create_table_adds_the_index_to_a_lock_managers_table(
    make_dynamodb: Any, moto_server: Any, aws_session: Any, unique_name: str, dynamodb_client: Any
) -> None:
    async with DynamoDBLockManager(
        unique_name, session=aws_session, **moto_server.client_kwargs()
    ) as locks:
        await locks.create_table()
        lease = await locks.acquire("o-1", ttl=30)
    async with make_dynamodb(unique_name) as storage:
        await storage.create_table()
        await storage.create_table()  # idempotent
        await storage.add_due("o-1", 1_000)
        assert await storage.list_due(1_000) == [DueEntry(1_000, "o-1")]
    table = (await dynamodb_client.describe_table(TableName=unique_name))["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["dueIndex"]
    lease_item = await _item(dynamodb_client, unique_name, "o-1")
    assert lease_item is not None
    assert lease_item["token"] == {"N": str(lease.token)}  # the lease is untouched


async def test_no_state_or_due_item_ever_carries_the_ttl_attribute(
    make_dynamodb: Any,
    dynamodb_table: str,
    dynamodb_client: Any,
    moto_server: Any,
    aws_session: Any,
    s3_bucket: str,
) -> None:
    """Lock manager and storage on one table, on the same actor ids: TTL can only
    ever delete lease items, never a snapshot or a due entry."""
    keys = ["o-1", "o/2", "üñí", "k" * 1024]
    async with (
        DynamoDBLockManager(
            dynamodb_table, session=aws_session, **moto_server.client_kwargs()
        ) as locks,
        make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=64) as storage,
    ):
        for key in keys:
            lease = await locks.acquire(key, ttl=30)
            version = await storage.write(key, b"small", if_version=None)
            await storage.add_due(key, 1_000)
            lease = await locks.renew(lease)
            version = await storage.write(key, b"large" * 100, if_version=version)
            await storage.add_due(key, 2_000)
            await locks.release(lease)
            assert await storage.read(key) == Stored(b"large" * 100, version)
            again = await locks.acquire(key, ttl=30)  # the lease item is the lock's own
            assert again.token == lease.token + 1
            await locks.release(again)
        await storage.write("gone", b"x")
        await storage.delete("gone")
        await storage.remove_due(DueEntry(1_000, "o-1"))
        assert [k async for k in storage.list()] == sorted(keys)
        assert len(await storage.list_due(5_000)) == 2 * len(keys) - 1

    items = await _scan(dynamodb_client, dynamodb_table)
    ttl = layout.TTL_ATTRIBUTE
    storage_items = [
        i for i in items if i["id"]["S"].startswith((layout.STATE_PREFIX, layout.DUE_PREFIX))
    ]
    lease_items = [i for i in items if i not in storage_items]
    assert len(storage_items) == 3 * len(keys) - 1  # a snapshot and two due entries each
    assert all(ttl not in item for item in storage_items)
    assert all(ttl in item for item in lease_items)
    assert sorted(i["id"]["S"] for i in lease_items) == sorted(keys)


@pytest.mark.parametrize("first", ["lock", "storage"])
async def test_a_lock_key_in_the_storage_namespace_never_meets_a_value(
    make_dynamodb: Any,
    dynamodb_table: str,
    dynamodb_client: Any,
    moto_server: Any,
    aws_session: Any,
    first: str,
) -> None:
    """A lock key spelled like a storage item id ("state#o-1") cannot put
    ``expireAt`` on a value, in either order: the storage does not write into
    a lease item, and the lock manager never takes over an item that holds a
    value (it is neither absent, nor released, nor expired)."""
    async with (
        DynamoDBLockManager(
            dynamodb_table, session=aws_session, **moto_server.client_kwargs()
        ) as locks,
        make_dynamodb(dynamodb_table) as storage,
    ):
        if first == "lock":
            lease = await locks.acquire("state#o-1", ttl=30)
            with pytest.raises(StorageUnavailable, match="lease"):
                await storage.write("o-1", b"x")
            with pytest.raises(StorageUnavailable, match="lease"):
                await storage.write("o-1", b"x", if_version=None)
            assert await storage.read("o-1") is None
            await storage.delete("o-1")  # nothing there to delete: the lease stays
            await locks.release(lease)
            lease_due = await locks.acquire(layout.due_id("", 1_000, "o-1"), ttl=30)
            with pytest.raises(StorageUnavailable, match="lease"):
                await storage.add_due("o-1", 1_000)
            await storage.remove_due(DueEntry(1_000, "o-1"))  # the lease stays
            assert await storage.list_due(1_000) == []
            await locks.release(lease_due)
        else:
            await storage.write("o-1", b"x")
            await storage.add_due("o-1", 1_000)
            with pytest.raises(LockTimeout):
                await locks.acquire("state#o-1", ttl=30, wait=0)
            with pytest.raises(LockTimeout):
                await locks.acquire(layout.due_id("", 1_000, "o-1"), ttl=30, wait=0)
            stored = await storage.read("o-1")
            assert stored is not None
            assert stored.data == b"x"
    for item in await _scan(dynamodb_client, dynamodb_table):
        assert not (layout.TTL_ATTRIBUTE in item and "version" in item), item
        assert not (layout.TTL_ATTRIBUTE in item and "dueAt" in item), item


async def test_a_save_keeps_a_lease_held_in_the_same_item(
    make_dynamodb: Any, dynamodb_table: str, dynamodb_client: Any
) -> None:
    """The layout allows a locked step in two requests: one UpdateItem takes the
    lease and returns the snapshot, one saves, checks token and version, and
    releases. Here with raw calls, beside the storage."""
    async with make_dynamodb(dynamodb_table, prefix="p/") as storage:
        v1 = await storage.write("o-1", b"one", if_version=None)
        item_key = {"id": {"S": layout.state_id("p/", "o-1")}}
        names = {
            "#owner": layout.LEASE_OWNER,
            "#token": layout.LEASE_TOKEN,
            "#until": layout.LEASE_UNTIL,
            "#released": layout.LEASE_RELEASED,
        }
        # Request 1: take the lease, get the snapshot back.
        taken = await dynamodb_client.update_item(
            TableName=dynamodb_table,
            Key=item_key,
            UpdateExpression="SET #owner = :owner, #until = :until, #released = :false, "
            "#token = if_not_exists(#token, :zero) + :one",
            ConditionExpression="attribute_not_exists(#owner) OR #released = :true "
            "OR #until <= :now",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":owner": {"S": "worker-1"},
                ":until": {"N": "2000000000"},
                ":false": {"BOOL": False},
                ":true": {"BOOL": True},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":now": {"N": "1700000000"},
            },
            ReturnValues="ALL_NEW",
        )
        snapshot = taken["Attributes"]
        assert (snapshot["data"]["B"], snapshot["version"]["S"]) == (b"one", v1)
        token = snapshot["leaseToken"]["N"]
        # The storage's own writes leave the lease alone.
        v2 = await storage.write("o-1", b"two", if_version=v1)
        leased = await _item(dynamodb_client, dynamodb_table, item_key["id"]["S"])
        assert leased is not None
        assert leased["leaseOwner"] == {"S": "worker-1"}
        assert leased["leaseToken"] == {"N": token}
        # Request 2: save, fenced by token and version, and release.
        await dynamodb_client.update_item(
            TableName=dynamodb_table,
            Key=item_key,
            UpdateExpression="SET #data = :data, #version = :version, #released = :true, "
            "#until = :now REMOVE #spill",
            ConditionExpression="#owner = :owner AND #token = :token AND #released = :false "
            "AND #version = :expected",
            ExpressionAttributeNames={
                **names,
                "#data": layout.DATA,
                "#version": layout.VERSION,
                "#spill": layout.SPILL,
            },
            ExpressionAttributeValues={
                ":data": {"B": b"three"},
                ":version": {"S": "f" * 32},
                ":owner": {"S": "worker-1"},
                ":token": {"N": token},
                ":expected": {"S": v2},
                ":true": {"BOOL": True},
                ":false": {"BOOL": False},
                ":now": {"N": "1700000001"},
            },
        )
        assert await storage.read("o-1") == Stored(b"three", "f" * 32)
        with pytest.raises(VersionConflict):
            await storage.write("o-1", b"late", if_version=v2)


async def test_an_item_holding_only_a_lease_holds_no_value(
    make_dynamodb: Any, dynamodb_table: str, dynamodb_client: Any
) -> None:
    item_id = layout.state_id("", "o-1")
    await dynamodb_client.update_item(
        TableName=dynamodb_table,
        Key={"id": {"S": item_id}},
        UpdateExpression="SET #owner = :owner",
        ExpressionAttributeNames={"#owner": layout.LEASE_OWNER},
        ExpressionAttributeValues={":owner": {"S": "worker-1"}},
    )
    async with make_dynamodb(dynamodb_table) as storage:
        assert await storage.read("o-1") is None
        assert not await storage.exists("o-1")
        assert [k async for k in storage.list()] == []
        version = await storage.write("o-1", b"first", if_version=None)
        assert await storage.read("o-1") == Stored(b"first", version)
    item = await _item(dynamodb_client, dynamodb_table, item_id)
    assert item is not None
    assert item["leaseOwner"] == {"S": "worker-1"}


async def test_prefixes_keep_storages_apart(make_dynamodb: Any, dynamodb_table: str) -> None:
    async with (
        make_dynamodb(dynamodb_table, prefix="a/") as a,
        make_dynamodb(dynamodb_table, prefix="b/") as b,
        make_dynamodb(dynamodb_table) as root,
    ):
        await a.write("k", b"a")
        await b.write("k", b"b")
        await a.add_due("k", 1_000)
        assert [k async for k in a.list()] == ["k"]
        assert [k async for k in root.list()] == ["a/k", "b/k"]
        assert await b.list_due(2_000) == []
        assert await root.list_due(2_000) == []
        assert await a.list_due(2_000) == [DueEntry(1_000, "k")]
        stored = await b.read("k")
        assert stored is not None
        assert stored.data == b"b"


async def test_too_long_prefix_and_bad_arguments(dynamodb_table: str) -> None:
    with pytest.raises(ValueError, match="512"):
        DynamoDBStorage(dynamodb_table, prefix="p" * 513)
    with pytest.raises(ValueError, match="NUL"):
        DynamoDBStorage(dynamodb_table, prefix="a\x00")
    with pytest.raises(ValueError, match="table"):
        DynamoDBStorage("")
    with pytest.raises(TypeError, match="spill"):
        DynamoDBStorage(dynamodb_table, spill=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spill_threshold"):
        DynamoDBStorage(dynamodb_table, spill_threshold=-1)
    with pytest.raises(ValueError, match="max_entries"):
        DynamoDBStorage(dynamodb_table, cache=0)


async def test_a_missing_table_is_unavailable_naming_it(make_dynamodb: Any) -> None:
    async with make_dynamodb("no-such-table") as storage:
        with pytest.raises(StorageUnavailable, match="no-such-table") as info:
            await storage.read("k")
        assert info.value.operation == "read"
        with pytest.raises(StorageUnavailable):
            await storage.write("k", b"x")
        with pytest.raises(StorageUnavailable):
            [k async for k in storage.list()]
        with pytest.raises(StorageUnavailable):
            await storage.list_due(1)


# --------------------------------------------------------------------------- #
# Spill to S3
# --------------------------------------------------------------------------- #


async def test_a_large_value_spills_and_the_item_points_at_it(
    make_dynamodb: Any,
    dynamodb_table: str,
    dynamodb_client: Any,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    big = bytes(range(256)) * 8
    async with make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=1024) as storage:
        version = await storage.write("o-1", big, if_version=None)
        assert await storage.read("o-1") == Stored(big, version)
    item = await _item(dynamodb_client, dynamodb_table, "state#o-1")
    assert item is not None
    assert "data" not in item
    pointer = item["spill"]["M"]
    assert pointer["bucket"] == {"S": s3_bucket}
    assert pointer["sha256"] == {"S": hashlib.sha256(big).hexdigest()}
    assert pointer["size"] == {"N": str(len(big))}
    s3_key = pointer["key"]["S"]
    assert s3_key.startswith(SPILL_DIRECTORY)
    assert s3_key.endswith("/" + version)  # named by the write: never reused
    assert await _objects(s3_client, s3_bucket) == [s3_key]
    body = await (await s3_client.get_object(Bucket=s3_bucket, Key=s3_key))["Body"].read()
    assert body.startswith(ENVELOPE_MAGIC)
    assert body.endswith(big)


async def test_replaced_and_deleted_values_leave_no_objects(
    make_dynamodb: Any, dynamodb_table: str, s3_bucket: str, s3_client: Any
) -> None:
    async with make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=16) as storage:
        v1 = await storage.write("k", b"a" * 100, if_version=None)
        v2 = await storage.write("k", b"b" * 100, if_version=v1)
        assert len(await _objects(s3_client, s3_bucket)) == 1
        v3 = await storage.write("k", b"small", if_version=v2)  # back into the item
        assert await _objects(s3_client, s3_bucket) == []
        v4 = await storage.write("k", b"c" * 100, if_version=v3)
        v5 = await storage.write("k", b"d" * 100)  # unconditional
        assert await storage.read("k") == Stored(b"d" * 100, v5)
        assert len(await _objects(s3_client, s3_bucket)) == 1
        with pytest.raises(VersionConflict) as info:
            await storage.write("k", b"e" * 100, if_version=v4)  # refused: its object goes
        assert info.value.actual == v5
        assert len(await _objects(s3_client, s3_bucket)) == 1
        await storage.delete("k", if_version=v5)
        assert await _objects(s3_client, s3_bucket) == []
        await storage.write("k", b"f" * 100)
        await storage.delete("k")
        assert await _objects(s3_client, s3_bucket) == []


async def test_an_s3_storage_can_be_the_spill_and_stays_open(
    make_dynamodb: Any, make_s3: Any, dynamodb_table: str, s3_bucket: str
) -> None:
    async with make_s3(s3_bucket, prefix="snapshots/") as s3:
        async with make_dynamodb(dynamodb_table, spill=s3, spill_threshold=4) as storage:
            assert storage.spill is s3
            version = await storage.write("k", b"spilled")
            assert await storage.read("k") == Stored(b"spilled", version)
        assert s3._aws.current is not None  # ours to close, not the DynamoDBStorage's
        # Spilled objects are in the reserved part of the bucket: never listed as keys.
        assert [k async for k in s3.list()] == []
        async with make_dynamodb(dynamodb_table, spill=s3, spill_threshold=4) as again:
            assert await again.read("k") == Stored(b"spilled", version)


async def test_without_spill_a_large_value_is_refused_before_any_request(
    make_dynamodb: Any, dynamodb_table: str, proxy: FaultProxy, moto_server: Any
) -> None:
    async with make_dynamodb(
        dynamodb_table, endpoint_url=proxy.url, spill_threshold=10, region_name=moto_server.region
    ) as storage:
        with pytest.raises(ValueError, match="spill"):
            await storage.write("k", b"x" * 11)
        assert proxy.request_count == 0
        await storage.write("k", b"x" * 10)
        assert proxy.request_count == 1


async def test_a_spilled_value_needs_its_bucket_to_be_read(
    make_dynamodb: Any, dynamodb_table: str, s3_bucket: str
) -> None:
    async with make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=4) as writer:
        await writer.write("k", b"too large")
    async with make_dynamodb(dynamodb_table) as reader:
        with pytest.raises(StorageUnavailable, match=s3_bucket):
            await reader.read("k")


async def test_a_spilled_object_that_does_not_match_is_corrupt(
    make_dynamodb: Any, dynamodb_table: str, dynamodb_client: Any, s3_bucket: str, s3_client: Any
) -> None:
    async with make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=4) as storage:
        await storage.write("k", b"too large")
        item = await _item(dynamodb_client, dynamodb_table, "state#k")
        assert item is not None
        s3_key = item["spill"]["M"]["key"]["S"]
        await s3_client.put_object(
            Bucket=s3_bucket, Key=s3_key, Body=ENVELOPE_MAGIC + b"0" * 16 + b"tampered!"
        )
        with pytest.raises(SnapshotCorrupt, match="does not match"):
            await storage.read("k")
        # A pointer to an object that is gone for good is corrupt too.
        await s3_client.delete_object(Bucket=s3_bucket, Key=s3_key)
        with pytest.raises(SnapshotCorrupt, match="missing"):
            await storage.read("k")


def _deny_missing_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a missing S3 object answer 403, as S3 does for a role that may not
    list the bucket without a prefix (the infra module's policy)."""
    original = S3Storage._get

    async def get(self: S3Storage, key: str | None, s3_key: str, **kwargs: Any) -> Any:
        got = await original(self, key, s3_key, **kwargs)
        if got is None:
            raise StorageUnavailable("read", key, "AccessDenied (HTTP 403): Access Denied")
        return got

    monkeypatch.setattr(S3Storage, "_get", get)


@pytest.mark.parametrize("missing", ["404", "403"])
async def test_a_reader_shown_a_replaced_pointer_reads_again(
    make_dynamodb: Any,
    dynamodb_table: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
) -> None:
    """The object of a replaced value is deleted; a reader that got the old
    pointer just before finds it gone and reads the item again."""
    if missing == "403":
        _deny_missing_objects(monkeypatch)
    async with (
        make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=4) as reader,
        make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=4) as writer,
    ):
        v1 = await writer.write("k", b"first value")
        original = DynamoDBStorage._get_item
        calls = 0

        async def get_then_replace(self: DynamoDBStorage, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            item = await original(self, *args, **kwargs)
            calls += 1
            if calls == 1:  # the writer moves on between the item and the object
                await writer.write("k", b"second value", if_version=v1)
            return item

        monkeypatch.setattr(DynamoDBStorage, "_get_item", get_then_replace)
        stored = await reader.read("k")
        assert stored is not None
        assert stored.data == b"second value"
        assert calls == 2  # the old pointer's object was gone: the item was read again


async def test_a_lost_spilled_object_is_reported_when_s3_denies_it(
    make_dynamodb: Any,
    dynamodb_table: str,
    dynamodb_client: Any,
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deny_missing_objects(monkeypatch)
    async with make_dynamodb(dynamodb_table, spill=s3_bucket, spill_threshold=4) as storage:
        await storage.write("k", b"too large")
        item = await _item(dynamodb_client, dynamodb_table, "state#k")
        assert item is not None
        await s3_client.delete_object(Bucket=s3_bucket, Key=item["spill"]["M"]["key"]["S"])
        with pytest.raises(StorageUnavailable, match="AccessDenied"):
            await storage.read("k")


# --------------------------------------------------------------------------- #
# Lost answers and round trips, through a proxy in front of moto
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("spilled", [False, True], ids=["inline", "spilled"])
@pytest.mark.parametrize("condition", ["create", "update", "unconditional"])
async def test_a_write_whose_answer_was_lost_is_recognised_without_a_read(
    proxy: FaultProxy,
    dynamodb_table: str,
    s3_bucket: str,
    aws_session: Any,
    moto_server: Any,
    s3_client: Any,
    condition: str,
    spilled: bool,
) -> None:
    storage = DynamoDBStorage(
        dynamodb_table,
        endpoint_url=proxy.url,
        region_name=moto_server.region,
        session=aws_session,
        spill=S3Storage(s3_bucket, session=aws_session, **moto_server.client_kwargs()),
        spill_threshold=4 if spilled else 1000,
    )
    async with storage, storage.spill:  # type: ignore[union-attr]
        v1 = None if condition == "create" else await storage.write("k", b"v1", if_version=None)
        if_version = "*" if condition == "unconditional" else v1
        proxy.reset_counts()
        proxy.drop_response(_calling("UpdateItem"))
        v2 = await storage.write("k", b"v2 value", if_version=if_version)
        assert proxy.dropped == 1  # DynamoDB applied it and the answer was cut off
        # The resend failed its condition and its ALL_OLD item carried our
        # write id: no GetItem was needed to tell.
        assert [_target(r) for r in proxy.requests] == ["UpdateItem", "UpdateItem"]
        assert await storage.read("k") == Stored(b"v2 value", v2)
    if spilled:
        assert len(await _objects(s3_client, s3_bucket)) >= 1


async def test_round_trips_uncached_and_cached(
    proxy: FaultProxy, dynamodb_table: str, aws_session: Any, moto_server: Any
) -> None:
    """The figures of the issue: an uncached read + write is 2 requests, a
    cached write after a write is 1."""
    kwargs = {"endpoint_url": proxy.url, "region_name": moto_server.region, "session": aws_session}
    async with (
        DynamoDBStorage(dynamodb_table, **kwargs) as plain,
        DynamoDBStorage(dynamodb_table, cache=True, **kwargs) as cached,
    ):
        await plain.connect()
        await cached.connect()
        await plain.write("k", b"0", if_version=None)

        proxy.reset_counts()
        stored = await plain.read("k")
        assert stored is not None
        await plain.write("k", b"1", if_version=stored.version)
        assert [_target(r) for r in proxy.requests] == ["GetItem", "UpdateItem"]

        proxy.reset_counts()
        stored = await cached.cached_read("k")  # not remembered yet: read
        assert stored is not None
        version = await cached.write("k", b"2", if_version=stored.version)
        assert proxy.request_count == 2

        proxy.reset_counts()
        stored = await cached.cached_read("k")  # remembered from the write
        assert stored == Stored(b"2", version)
        await cached.write("k", b"3", if_version=stored.version)
        assert [_target(r) for r in proxy.requests] == ["UpdateItem"]


async def test_list_due_queries_the_index_and_never_scans(
    proxy: FaultProxy, dynamodb_table: str, aws_session: Any, moto_server: Any
) -> None:
    async with DynamoDBStorage(
        dynamodb_table, endpoint_url=proxy.url, region_name=moto_server.region, session=aws_session
    ) as storage:
        for i in range(40):
            await storage.add_due(f"k{i:02d}", 1_000 + i)
        proxy.reset_counts()
        assert len(await storage.list_due(1_019)) == 20
        assert await storage.list_due(999) == []
        assert {_target(r) for r in proxy.requests} == {"Query"}
        bodies = [json.loads(r.body) for r in proxy.requests]
        assert all(b["IndexName"] == "dueIndex" for b in bodies)


async def test_list_due_with_a_limit_breaks_ties_by_key(
    make_dynamodb: Any, dynamodb_table: str
) -> None:
    """Many entries at one due time, read in small pages: the first ``limit``
    by (due, key) come back whatever order the index returns ties in."""
    async with make_dynamodb(dynamodb_table) as storage:
        keys = [f"k{i:02d}" for i in range(25)]
        for key in reversed(keys):
            await storage.add_due(key, 5_000)
        await storage.add_due("early", 4_000)
        await storage.add_due("late", 6_000)
        assert await storage.list_due(10_000, limit=1) == [DueEntry(4_000, "early")]
        assert await storage.list_due(10_000, limit=4) == [
            DueEntry(4_000, "early"),
            *(DueEntry(5_000, k) for k in keys[:3]),
        ]
        everything = await storage.list_due(10_000, limit=100)
        assert everything == [
            DueEntry(4_000, "early"),
            *(DueEntry(5_000, k) for k in keys),
            DueEntry(6_000, "late"),
        ]
        assert await storage.list_due(10_000, limit=27) == everything


# --------------------------------------------------------------------------- #
# Lifetime, optional dependency, URL, infrastructure
# --------------------------------------------------------------------------- #


async def test_connect_makes_the_clients_without_a_request(
    proxy: FaultProxy, dynamodb_table: str, aws_session: Any, moto_server: Any, s3_bucket: str
) -> None:
    storage = DynamoDBStorage(
        dynamodb_table,
        endpoint_url=proxy.url,
        region_name=moto_server.region,
        session=aws_session,
        spill=s3_bucket,
    )
    await storage.connect()
    assert storage._aws.current is not None
    assert storage.spill is not None
    assert storage.spill._aws.current is not None
    assert proxy.request_count == 0
    await storage.aclose()
    assert storage._aws.current is None
    assert storage.spill._aws.current is None  # made from a bucket name: closed with it
    await storage.aclose()


def test_missing_aws_extra_is_named() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aioboto3"] = None
        from durable_state import DynamoDBStorage, MissingDependency
        try:
            DynamoDBStorage("table")
        except MissingDependency as exc:
            assert (exc.feature, exc.extra) == ("DynamoDBStorage", "aws"), exc
            print(exc)
        else:
            raise SystemExit("no MissingDependency")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "durable-state[aws]"' in done.stdout


def test_storage_urls() -> None:
    spec = parse_storage_url("dynamodb://orders-state")
    assert spec == StorageSpec("dynamodb", "orders-state", "")
    spec = parse_storage_url(
        "dynamodb://orders-state/actors?region=eu-west-1&spill=big-snapshots",
        endpoint_url="http://127.0.0.1:5000",
    )
    assert (spec.location, spec.prefix) == ("orders-state", "actors/")
    assert dict(spec.options) == {
        "region": "eu-west-1",
        "spill": "big-snapshots",
        "endpoint_url": "http://127.0.0.1:5000",
    }
    assert str(spec) == "dynamodb://orders-state/actors/"
    spill = parse_storage_url("dynamodb://t-1/?spill=big-snapshots/over/").options["spill"]
    assert spill == "big-snapshots/over/"
    for bad, message in [
        ("dynamodb://", "no table name"),
        ("dynamodb://ab", "not a valid DynamoDB table name"),
        ("dynamodb://t-1?spill=Bad_Bucket", "not a valid S3 bucket name"),
        ("dynamodb://t-1?sse=AES256", "unknown parameter 'sse'"),
    ]:
        with pytest.raises(BackendURLError, match=message):
            parse_storage_url(bad)


def test_a_dynamodb_storage_is_locked_on_its_own_table_by_default() -> None:
    storage, lock = resolve_backends(
        "dynamodb://orders-state/p?region=eu-west-1&spill=big-snapshots", None, environ={}
    )
    assert storage.scheme == "dynamodb"
    assert lock == LockSpec("dynamodb", "orders-state", {"region": "eu-west-1"})
    assert resolve_backends("dynamodb://orders-state", "none", environ={})[1] == LockSpec("none")


async def test_a_url_opens_the_storage(
    moto_server: Any, dynamodb_table: str, s3_bucket: str
) -> None:
    spec = parse_storage_url(
        f"dynamodb://{dynamodb_table}/p/?spill={s3_bucket}/big/&region={moto_server.region}",
        endpoint_url=moto_server.url,
    )
    async with spec.open() as storage:
        assert isinstance(storage, DynamoDBStorage)
        assert (storage.table, storage.prefix) == (dynamodb_table, "p/")
        assert storage.spill is not None
        assert (storage.spill.bucket, storage.spill.prefix) == (s3_bucket, "big/")
        version = await storage.write("k", b"x" * 500_000)
        assert await storage.read("k") == Stored(b"x" * 500_000, version)


def test_the_url_timeout_reaches_both_clients() -> None:
    storage: Any = parse_storage_url("dynamodb://orders-state?spill=big-snapshots").open(
        timeout=1.5
    )
    config = storage._aws._session.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 1.5)
    assert storage.spill._aws._session.config.read_timeout == 1.5
    assert parse_storage_url("dynamodb://orders-state").open()._aws._session is None  # type: ignore[attr-defined]


def test_terraform_declares_the_due_index() -> None:
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is part of the test extra")

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {plain(k): plain(v) for k, v in value.items() if k != "__is_block__"}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value

    doc = plain(hcl2.loads((ROOT / "infra" / "main.tf").read_text()))
    tables = [b["aws_dynamodb_table"] for b in doc["resource"] if "aws_dynamodb_table" in b]
    table = tables[0]["locks"]
    assert {"name": layout.DUE_SHARD, "type": "S"} in table["attribute"]
    assert {"name": layout.DUE_AT, "type": "N"} in table["attribute"]
    (index,) = table["global_secondary_index"]
    local_names = {k: v for block in doc["locals"] for k, v in block.items()}
    assert index["name"] == "${local.due_index_name}"
    assert local_names["due_index_name"] == layout.DUE_INDEX
    assert (index["hash_key"], index["range_key"]) == (layout.DUE_SHARD, layout.DUE_AT)
    assert index["projection_type"] == "KEYS_ONLY"
    assert table["ttl"] == [{"attribute_name": layout.TTL_ATTRIBUTE, "enabled": True}]
