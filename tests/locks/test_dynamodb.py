"""DynamoDBLockManager beyond the contract: table shape, clients, errors, skew."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable_state.errors import LockTimeout, LockUnavailable, MissingDependency
from durable_state.locks import DynamoDBLockManager, Lease

from .conftest import FakeClock


@pytest.fixture
async def make(moto_server: Any, aws_session: Any, lock_table: str) -> AsyncIterator[Any]:
    """Build managers on a fresh table; they are closed afterwards."""
    made: list[DynamoDBLockManager] = []

    def make(**kwargs: Any) -> DynamoDBLockManager:
        kwargs.setdefault("session", aws_session)
        kwargs.setdefault("skew_margin", 0.0)
        manager = DynamoDBLockManager(lock_table, **moto_server.client_kwargs(), **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.aclose()


def test_importing_the_locks_package_does_not_import_the_aws_sdk() -> None:
    code = (
        "import sys, json, durable_state, durable_state.locks\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'aioboto3', 'aiobotocore', 'boto3', 'botocore'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_without_aioboto3_construction_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aioboto3", None)  # makes "import aioboto3" fail
    with pytest.raises(MissingDependency) as info:
        DynamoDBLockManager()
    assert (info.value.feature, info.value.extra) == ("DynamoDBLockManager", "aws")
    assert "durable-state[aws]" in str(info.value)


def test_constructor_arguments_are_checked() -> None:
    pytest.importorskip("aioboto3", reason="the aws extra is part of the test extra")
    with pytest.raises(ValueError, match="table_name"):
        DynamoDBLockManager("")
    with pytest.raises(ValueError, match="skew_margin"):
        DynamoDBLockManager(skew_margin=-1)
    with pytest.raises(TypeError, match="skew_margin"):
        DynamoDBLockManager(skew_margin="1")  # type: ignore[arg-type]
    manager = DynamoDBLockManager()
    assert (manager.table_name, manager.default_ttl, manager.skew_margin) == (
        "lockingTable",
        900.0,
        1.0,
    )


async def test_create_table_matches_durable_x_states_table(
    moto_server: Any, aws_session: Any, dynamo_client: Any, unique_name: str
) -> None:
    async with DynamoDBLockManager(
        unique_name, session=aws_session, **moto_server.client_kwargs()
    ) as manager:
        await manager.create_table()
        await manager.create_table()  # an existing table is left as it is
    table = (await dynamo_client.describe_table(TableName=unique_name))["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = (await dynamo_client.describe_time_to_live(TableName=unique_name))[
        "TimeToLiveDescription"
    ]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expireAt")


async def test_the_item_keeps_the_table_shape(
    make: Any, dynamo_client: Any, lock_table: str, clock: FakeClock
) -> None:
    manager = make(clock=clock)
    lease = await manager.acquire("order-42", ttl=30)
    item = (await dynamo_client.get_item(TableName=lock_table, Key={"id": {"S": "order-42"}}))[
        "Item"
    ]
    assert item == {
        "id": {"S": "order-42"},
        "owner": {"S": lease.owner},
        "token": {"N": str(lease.token)},
        "expireAt": {"N": f"{clock.now + 30:.6f}"},
        "released": {"BOOL": False},
        "ttl": {"N": "30.000000"},
    }
    clock.advance(5)
    await manager.release(lease)
    item = (await dynamo_client.get_item(TableName=lock_table, Key={"id": {"S": "order-42"}}))[
        "Item"
    ]
    # Kept (the token lives on), marked released, and expired for TTL to collect.
    assert item["released"] == {"BOOL": True}
    assert float(item["expireAt"]["N"]) == clock.now


async def test_skew_margin_delays_the_takeover(make: Any, clock: FakeClock) -> None:
    holder = make(clock=clock, skew_margin=2.0)
    contender = make(clock=clock, skew_margin=2.0)
    lease = await holder.acquire("k", ttl=10)
    clock.now = lease.expires_at + 1.999
    with pytest.raises(LockTimeout) as info:
        await contender.acquire("k")
    assert info.value.expires_at == lease.expires_at
    clock.now = lease.expires_at + 2.0
    await contender.acquire("k")


async def test_a_released_lease_is_free_at_once_despite_the_margin(
    make: Any, clock: FakeClock
) -> None:
    holder = make(clock=clock, skew_margin=60.0)
    lease = await holder.acquire("k", ttl=10)
    await holder.release(lease)
    await make(clock=clock, skew_margin=60.0).acquire("k")


async def test_tokens_keep_increasing_after_a_ttl_deletion(
    make: Any, dynamo_client: Any, lock_table: str, clock: FakeClock
) -> None:
    manager = make(clock=clock)
    first = await manager.acquire("k", ttl=10)
    second = await manager.acquire("k2", ttl=10)
    clock.advance(10)
    third = await manager.acquire("k", ttl=10)  # expiry takeover of the item
    assert third.token == first.token + 1
    clock.advance(3600)
    # DynamoDB's TTL process deletes the expired item, some time after expireAt.
    await dynamo_client.delete_item(TableName=lock_table, Key={"id": {"S": "k"}})
    fourth = await manager.acquire("k", ttl=10)
    assert fourth.token > third.token
    assert second.token > 0


async def test_a_landed_write_whose_response_was_lost_is_recognised(
    make: Any, clock: FakeClock
) -> None:
    manager = make(clock=clock)
    # The SDK retries a request whose response was lost; the retry fails its
    # condition against our own write, which must count as success.
    first = await manager._try_acquire("k", "me", 10.0, clock.now)
    again = await manager._try_acquire("k", "me", 10.0, clock.now)
    assert isinstance(first, Lease)
    assert again == first


async def test_a_durable_x_state_item_is_understood(
    make: Any, dynamo_client: Any, lock_table: str, clock: FakeClock
) -> None:
    # durable-x-state's items carry only the key and expireAt.
    await dynamo_client.put_item(
        TableName=lock_table,
        Item={"id": {"S": "old"}, "expireAt": {"N": str(int(clock.now) + 60)}},
    )
    manager = make(clock=clock)
    with pytest.raises(LockTimeout) as info:
        await manager.acquire("old")
    assert info.value.holder is None
    assert info.value.expires_at == int(clock.now) + 60
    clock.advance(60)
    lease = await manager.acquire("old")
    assert lease.token > 0


class _NoOldImage:
    """A client that drops the old item from condition failures (older emulators)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def update_item(self, **kwargs: Any) -> Any:
        try:
            return await self._client.update_item(**kwargs)
        except Exception as exc:
            getattr(exc, "response", {}).pop("Item", None)
            raise


async def test_without_the_old_image_the_holder_is_read(
    make: Any, dynamo_client: Any, clock: FakeClock
) -> None:
    holder = make(clock=clock)
    lease = await holder.acquire("k", ttl=60)
    contender = make(clock=clock, client=_NoOldImage(dynamo_client))
    with pytest.raises(LockTimeout) as info:
        await contender.acquire("k")
    assert info.value.holder == lease.owner


async def test_a_user_client_is_used_and_left_open(
    moto_server: Any, dynamo_client: Any, lock_table: str
) -> None:
    manager = DynamoDBLockManager(lock_table, client=dynamo_client, skew_margin=0)
    lease = await manager.acquire("k", ttl=60)
    await manager.aclose()
    # Still usable by its owner.
    response = await dynamo_client.get_item(TableName=lock_table, Key={"id": {"S": "k"}})
    assert response["Item"]["owner"]["S"] == lease.owner


async def test_one_client_per_manager_created_lazily(make: Any) -> None:
    manager = make()
    assert manager._aws.current is None
    await manager.release(await manager.acquire("k", ttl=60))
    client = manager._aws.current
    assert client is not None
    await manager.acquire("k2", ttl=60)
    assert manager._aws.current is client
    await manager.aclose()
    assert manager._aws.current is None


async def test_a_missing_table_is_lock_unavailable(
    moto_server: Any, aws_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with DynamoDBLockManager(
        "no-such-table", session=aws_session, **moto_server.client_kwargs()
    ) as manager:
        with (
            caplog.at_level(logging.WARNING, logger="durable_state.locks"),
            pytest.raises(LockUnavailable, match="ResourceNotFoundException") as info,
        ):
            await manager.acquire("k")
    assert info.value.operation == "acquire"
    assert type(info.value.__cause__).__name__ == "ResourceNotFoundException"
    # A 4xx answer means nothing was written: no clean-up was attempted.
    assert "could not clear" not in caplog.text


async def test_an_unreachable_endpoint_is_lock_unavailable(
    aws_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    async with DynamoDBLockManager(
        session=aws_session, endpoint_url="http://127.0.0.1:9", region_name="us-east-1"
    ) as manager:
        with pytest.raises(LockUnavailable) as info:
            await manager.acquire("k")
    assert info.value.operation == "acquire"


def test_client_is_replaced_when_the_event_loop_changes(moto_server: Any) -> None:
    """One asyncio.run per invocation (a common Lambda shape) keeps working."""
    code = f"""
import asyncio, gc, warnings
warnings.simplefilter("error")
from durable_state.locks import DynamoDBLockManager

manager = DynamoDBLockManager(
    "loop-change", endpoint_url={moto_server.url!r}, region_name="us-east-1", skew_margin=0
)
asyncio.run(manager.create_table())
lease = asyncio.run(manager.acquire("k", ttl=60))
renewed = asyncio.run(manager.renew(lease))
assert renewed.token == lease.token
asyncio.run(manager.release(renewed))
again = asyncio.run(manager.acquire("k", ttl=60))
assert again.token > lease.token
asyncio.run(manager.aclose())
gc.collect()
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Unclosed" not in result.stderr, result.stderr
