"""Lost requests and lost answers, on moto and on the independent servers.

A :class:`~durable_state.testing.FaultProxy` sits between the backend and the
server. ``cut`` closes the connection before the request reaches the server
(it never happened); ``drop_response`` lets the server apply the request and
closes the connection instead of answering. Either way botocore sends the
request again, and the backend must end up with the outcome the caller asked
for, and say so. Each test runs on moto and on SeaweedFS or dynalite (those
marked ``servers``), so a difference between them shows side by side. (The
lost answer of a write is tests/storage/test_s3.py's, which runs on SeaweedFS
in test_seaweedfs.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from locks.conftest import create_lock_table, create_plain_lock_table
from storage.conftest import create_bucket

from durable_state.locks import DynamoDBLockManager
from durable_state.storage import S3Storage, Stored
from durable_state.testing import FaultProxy, Request

S3_SERVERS = ["moto", pytest.param("seaweedfs", marks=pytest.mark.servers)]
DYNAMODB_SERVERS = ["moto", pytest.param("dynalite", marks=pytest.mark.servers)]


@dataclass
class Behind:
    """A server behind a fault proxy, and the bucket or table made on it."""

    proxy: FaultProxy
    endpoint: Any
    session: Any
    place: str

    def s3(self) -> S3Storage:
        return S3Storage(
            self.place,
            endpoint_url=self.proxy.url,
            region_name=self.endpoint.region,
            session=self.session,
        )

    def locks(self) -> DynamoDBLockManager:
        return DynamoDBLockManager(
            self.place,
            endpoint_url=self.proxy.url,
            region_name=self.endpoint.region,
            session=self.session,
            skew_margin=0.0,
        )


def _proxy(endpoint: Any) -> FaultProxy:
    host, port = endpoint.url.removeprefix("http://").split(":")
    return FaultProxy(host, int(port), record=True)


def _server(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """The endpoint and an aioboto3 session for the server named by the fixture's param."""
    if request.param == "moto":
        endpoint = request.getfixturevalue("moto_server")
        return endpoint, endpoint.session()
    return (
        request.getfixturevalue(f"{request.param}_server"),
        request.getfixturevalue(f"{request.param}_session"),
    )


@pytest.fixture(params=S3_SERVERS)
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[Behind]:
    """An S3 server behind a fault proxy, with a fresh bucket."""
    endpoint, session = _server(request)
    bucket = await create_bucket(endpoint, session)
    with _proxy(endpoint) as proxy:
        yield Behind(proxy, endpoint, session, bucket)


@pytest.fixture(params=DYNAMODB_SERVERS)
async def dynamodb(request: pytest.FixtureRequest) -> AsyncIterator[Behind]:
    """A DynamoDB server behind a fault proxy, with a fresh lock table."""
    endpoint, session = _server(request)
    if request.param == "moto":
        table = await create_lock_table(endpoint, session)
    else:
        table = await create_plain_lock_table(endpoint, session)  # no UpdateTimeToLive
    with _proxy(endpoint) as proxy:
        yield Behind(proxy, endpoint, session, table)


def _s3_request(method: str, key: str) -> Callable[[Request], bool]:
    return lambda r: r.method == method and r.path.split("?")[0].endswith("/" + key)


def _dynamodb_request(operation: str) -> Callable[[Request], bool]:
    return lambda r: r.headers.get("x-amz-target", "").endswith("." + operation)


# --------------------------------------------------------------------------- #
# S3
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("condition", ["create", "update", "unconditional"])
async def test_a_write_whose_request_was_cut_is_sent_again(s3: Behind, condition: str) -> None:
    async with s3.s3() as storage:
        v1 = None if condition == "create" else await storage.write("k", b"v1", if_version=None)
        s3.proxy.reset_counts()
        s3.proxy.cut(_s3_request("PUT", "k"))
        v2 = await storage.write("k", b"v2", if_version="*" if condition == "unconditional" else v1)
        assert [r.method for r in s3.proxy.requests] == ["PUT", "PUT"]  # cut, then resent
        assert await storage.read("k") == Stored(b"v2", v2)


async def test_a_conditional_delete_whose_request_was_cut_is_sent_again(s3: Behind) -> None:
    async with s3.s3() as storage:
        version = await storage.write("k", b"v1")
        s3.proxy.cut(_s3_request("DELETE", "k"))
        await storage.delete("k", if_version=version)
        assert not await storage.exists("k")


async def test_a_conditional_delete_whose_answer_was_lost_is_not_a_conflict(s3: Behind) -> None:
    async with s3.s3() as storage:
        version = await storage.write("k", b"v1")
        s3.proxy.drop_response(_s3_request("DELETE", "k"))
        try:
            await storage.delete("k", if_version=version)
        finally:
            # Whatever delete() says, the server deleted the key and the answer was lost.
            assert s3.proxy.dropped == 1
            assert not await storage.exists("k")


# --------------------------------------------------------------------------- #
# DynamoDB
# --------------------------------------------------------------------------- #


async def test_an_acquire_whose_answer_was_lost_is_ours(dynamodb: Behind) -> None:
    """The resend fails its condition against our own write: the lease is ours.

    On dynalite the refusal carries no old item, so the manager reads it.
    """
    async with dynamodb.locks() as manager, dynamodb.locks() as other:
        dynamodb.proxy.drop_response(_dynamodb_request("UpdateItem"))
        lease = await manager.acquire("k", ttl=60)
        assert dynamodb.proxy.dropped == 1
        held = await other.peek("k")
        assert held is not None
        assert (held.owner, held.token) == (lease.owner, lease.token)
        await manager.release(lease)
        taken = await other.acquire("k", ttl=60)
        assert taken.token > lease.token


async def test_an_acquire_whose_request_was_cut_is_sent_again(dynamodb: Behind) -> None:
    async with dynamodb.locks() as manager:
        dynamodb.proxy.cut(_dynamodb_request("UpdateItem"))
        lease = await manager.acquire("k", ttl=60)
        held = await manager.peek("k")
        assert held is not None
        assert (held.owner, held.token) == (lease.owner, lease.token)


async def test_a_renew_whose_answer_was_lost_is_renewed(dynamodb: Behind) -> None:
    async with dynamodb.locks() as manager:
        lease = await manager.acquire("k", ttl=60)
        dynamodb.proxy.drop_response(_dynamodb_request("UpdateItem"))
        renewed = await manager.renew(lease)
        assert dynamodb.proxy.dropped == 1
        assert renewed.expires_at >= lease.expires_at
        held = await manager.peek("k")
        assert held is not None
        assert held.token == lease.token
        assert held.expires_at == pytest.approx(renewed.expires_at)


async def test_a_release_whose_answer_was_lost_frees_the_key(dynamodb: Behind) -> None:
    async with dynamodb.locks() as manager, dynamodb.locks() as other:
        lease = await manager.acquire("k", ttl=60)
        dynamodb.proxy.drop_response(_dynamodb_request("UpdateItem"))
        await manager.release(lease)
        assert dynamodb.proxy.dropped == 1
        assert await other.peek("k") is None
        taken = await other.acquire("k")
        assert taken.token > lease.token
