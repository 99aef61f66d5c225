"""DynamoDBLockManager against dynalite, and what dynalite answers where AWS documents otherwise.

The lock contract runs against dynalite as the ``dynamodb-dynalite`` backend
(tests/locks/conftest.py), lost answers in test_lost_answers.py. Here:

* the raw answers the manager relies on, for moto and dynalite side by side
  with what AWS documents (``AWS``; ``DIFFERENT`` per server). dynalite
  differs twice: a refused conditional write never carries the old item
  (``ReturnValuesOnConditionCheckFailure`` is ignored), and it has no
  ``UpdateTimeToLive`` (``DescribeTimeToLive`` always says ``DISABLED``);
* how the manager copes: a refused acquire reads the item instead (one
  ``GetItem`` more), so ``LockTimeout`` still names the holder; a refused
  renew or release does not, and names the wrong reason (strict xfails in
  the contract); ``create_table()`` fails at its TTL step with a translated
  ``LockUnavailable``;
* the random-cancellation stress of tests/cancellation on dynalite behind a
  proxy that adds latency, so cancellations land while requests are in flight.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from cancellation._stress import stress
from locks.conftest import create_plain_lock_table

from durable_state.errors import LockTimeout, LockUnavailable
from durable_state.locks import DynamoDBLockManager
from durable_state.storage import MemoryStorage
from durable_state.testing import FaultProxy

SERVERS = ["moto", pytest.param("dynalite", marks=pytest.mark.servers)]

Case = Callable[[Any, str], Awaitable[str]]


async def _answer(call: Awaitable[Any]) -> str:
    from botocore.exceptions import ClientError

    try:
        await call
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        item = exc.response.get("Item")
        return f"{status} {code}" + (f" with {sorted(item)}" if item else "")
    return "ok"


def _key(key: str) -> dict[str, Any]:
    return {"id": {"S": key}}


# --------------------------------------------------------------------------- #
# Raw answers
# --------------------------------------------------------------------------- #


async def refused_update_with_all_old(client: Any, table: str) -> str:
    await client.put_item(TableName=table, Item={**_key("k"), "owner": {"S": "a"}})
    return await _answer(
        client.update_item(
            TableName=table,
            Key=_key("k"),
            UpdateExpression="SET #o = :me",
            ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#o": "owner", "#id": "id"},
            ExpressionAttributeValues={":me": {"S": "b"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    )


async def refused_update_of_a_missing_item(client: Any, table: str) -> str:
    return await _answer(
        client.update_item(
            TableName=table,
            Key=_key("k"),
            UpdateExpression="SET #o = :me",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": {"S": "b"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    )


async def counter_from_if_not_exists(client: Any, table: str) -> str:
    async def bump() -> str:
        response = await client.update_item(
            TableName=table,
            Key=_key("k"),
            UpdateExpression="SET #t = if_not_exists(#t, :seed) + :one",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":seed": {"N": "1000"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        value: str = response["Attributes"]["token"]["N"]
        return value

    return f"{await bump()}, {await bump()}"


async def microsecond_numbers_compare_exactly(client: Any, table: str) -> str:
    await client.put_item(
        TableName=table, Item={**_key("k"), "expireAt": {"N": "1800000000.000002"}}
    )

    async def older_than(cutoff: str) -> str:
        return await _answer(
            client.update_item(
                TableName=table,
                Key=_key("k"),
                UpdateExpression="SET #r = :t",
                ConditionExpression="#e <= :cutoff",
                ExpressionAttributeNames={"#e": "expireAt", "#r": "released"},
                ExpressionAttributeValues={":cutoff": {"N": cutoff}, ":t": {"BOOL": True}},
            )
        )

    return f"{await older_than('1800000000.000001')}; {await older_than('1800000000.000002')}"


async def condition_on_a_missing_attribute(client: Any, table: str) -> str:
    # released = true is false when there is no released attribute at all.
    await client.put_item(TableName=table, Item=_key("k"))
    return await _answer(
        client.update_item(
            TableName=table,
            Key=_key("k"),
            UpdateExpression="SET #o = :me",
            ConditionExpression="#r = :t",
            ExpressionAttributeNames={"#o": "owner", "#r": "released"},
            ExpressionAttributeValues={":me": {"S": "b"}, ":t": {"BOOL": True}},
        )
    )


async def unused_attribute_name(client: Any, table: str) -> str:
    # Why the manager sends only the #names an expression uses.
    return await _answer(
        client.update_item(
            TableName=table,
            Key=_key("k"),
            UpdateExpression="SET #o = :me",
            ExpressionAttributeNames={"#o": "owner", "#unused": "released"},
            ExpressionAttributeValues={":me": {"S": "b"}},
        )
    )


async def read_from_a_missing_table(client: Any, table: str) -> str:
    return await _answer(client.get_item(TableName=table + "-none", Key=_key("k")))


async def enable_ttl(client: Any, table: str) -> str:
    return await _answer(
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expireAt"},
        )
    )


async def describe_ttl_of_a_new_table(client: Any, table: str) -> str:
    described = await client.describe_time_to_live(TableName=table)
    status: str = described["TimeToLiveDescription"]["TimeToLiveStatus"]
    return status


#: The answer AWS documents for each case.
AWS: dict[Case, str] = {
    refused_update_with_all_old: "400 ConditionalCheckFailedException with ['id', 'owner']",
    refused_update_of_a_missing_item: "400 ConditionalCheckFailedException",
    counter_from_if_not_exists: "1001, 1002",
    microsecond_numbers_compare_exactly: "400 ConditionalCheckFailedException; ok",
    condition_on_a_missing_attribute: "400 ConditionalCheckFailedException",
    unused_attribute_name: "400 ValidationException",
    read_from_a_missing_table: "400 ResourceNotFoundException",
    enable_ttl: "ok",
    describe_ttl_of_a_new_table: "DISABLED",
}

#: Where a server answers otherwise than AWS documents.
DIFFERENT: dict[str, dict[Case, str]] = {
    "moto": {},
    "dynalite": {
        # acquire reads the item instead; renew and release name a wrong reason
        refused_update_with_all_old: "400 ConditionalCheckFailedException",
        # create_table() fails at its TTL step; the manager never relies on TTL
        enable_ttl: "400 UnknownOperationException",
    },
}


@pytest.fixture(params=SERVERS)
async def dynamodb(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any, Any, str]]:
    """(server name, endpoint, raw client, a fresh table) for each server in turn."""
    name = request.param
    if name == "moto":
        endpoint = request.getfixturevalue("moto_server")
        session = endpoint.session()
    else:
        endpoint = request.getfixturevalue("dynalite_server")
        session = request.getfixturevalue("dynalite_session")
    table = await create_plain_lock_table(endpoint, session)
    async with session.client("dynamodb", **endpoint.client_kwargs()) as client:
        yield name, endpoint, client, table


@pytest.mark.parametrize("case", list(AWS), ids=lambda case: case.__name__)
async def test_answer(dynamodb: tuple[str, Any, Any, str], case: Case) -> None:
    name, _, client, table = dynamodb
    assert await case(client, table) == DIFFERENT[name].get(case, AWS[case])


# --------------------------------------------------------------------------- #
# How the manager copes
# --------------------------------------------------------------------------- #


@pytest.fixture
def proxy(dynamodb: tuple[str, Any, Any, str]) -> Iterator[FaultProxy]:
    host, port = dynamodb[1].url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), record=True) as running:
        yield running


async def test_a_refused_acquire_names_the_holder(
    dynamodb: tuple[str, Any, Any, str], proxy: FaultProxy
) -> None:
    """Without the old item (dynalite), one consistent GetItem finds the holder."""
    name, endpoint, _, table = dynamodb
    session = endpoint.session()

    def manager() -> DynamoDBLockManager:
        return DynamoDBLockManager(
            table, endpoint_url=proxy.url, region_name=endpoint.region, session=session
        )

    async with manager() as holder, manager() as contender:
        lease = await holder.acquire("k", ttl=60)
        proxy.reset_counts()
        with pytest.raises(LockTimeout) as info:
            await contender.acquire("k")
    assert info.value.holder == lease.owner
    assert info.value.expires_at == pytest.approx(lease.expires_at)
    operations = [r.headers["x-amz-target"].split(".")[-1] for r in proxy.requests]
    assert operations == {"moto": ["UpdateItem"], "dynalite": ["UpdateItem", "GetItem"]}[name]


@pytest.mark.servers
async def test_create_table_stops_at_the_ttl_step_on_dynalite(
    dynalite_server: Any, dynalite_session: Any
) -> None:
    table = f"locks-{uuid.uuid4().hex[:16]}"
    async with DynamoDBLockManager(
        table, session=dynalite_session, **dynalite_server.client_kwargs()
    ) as manager:
        with pytest.raises(LockUnavailable, match="UnknownOperationException") as info:
            await manager.create_table()
        assert info.value.__cause__ is not None  # translated, never a botocore error
        assert not type(info.value).__module__.startswith("botocore")
        # The table itself was made: the manager works on it (TTL only collects garbage).
        lease = await manager.acquire("k", ttl=5)
        await manager.release(lease)


@pytest.mark.servers
@pytest.mark.timeout(600)
async def test_dynalite_leases_survive_random_cancellation(
    dynalite_server: Any, dynalite_session: Any
) -> None:
    """tests/cancellation's stress, 1,000 randomly cancelled cycles, behind 2 ms of latency."""
    table = await create_plain_lock_table(dynalite_server, dynalite_session)
    host, port = dynalite_server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with FaultProxy(host, int(port), latency=0.002) as proxy:
        manager = DynamoDBLockManager(
            table,
            endpoint_url=proxy.url,
            region_name=dynalite_server.region,
            session=dynalite_session,
        )
        async with manager, MemoryStorage() as storage:
            result = await stress(manager, storage, cycles=1000)
    assert result.cycles == 1000
    assert result.cancelled > 250  # most cycles are cut somewhere
    assert result.leaked == 0, (
        f"{result.leaked} leases left held ({time.monotonic() - started:.0f}s)"
    )
