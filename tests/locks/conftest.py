"""Fixtures for the lock tests: every backend behind one parametrized fixture.

The contract suite (durable_state.testing.locks) asks for ``lock_backend``
and runs once per lock backend. A :class:`LockBackend` makes any number of
managers over the same shared store (what several processes would see), and
can look at or change the stored lease records behind the managers' backs.
DynamoDB runs against the session's moto server over HTTP, with a fresh table
per test; ``dynamodb-dynalite`` runs the same manager against dynalite (marked
``servers``: only with ``DURABLE_STATE_SLOW=1``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from durable_state.locks import (
    DynamoDBLockManager,
    FileLockManager,
    LockManager,
)
from durable_state.testing.locks import FakeClock as FakeClock
from durable_state.testing.locks import LeaseRecord, LockBackend, MemoryLockBackend

BACKENDS = (
    "memory",
    "file",
    "dynamodb",
    pytest.param("dynamodb-dynalite", marks=pytest.mark.servers),
)


@pytest.fixture(scope="session")
def aws_session(moto_server: Any) -> Any:
    """One aioboto3 session for the run: it caches botocore's service models."""
    aioboto3 = pytest.importorskip("aioboto3")
    return aioboto3.Session()


@pytest.fixture
async def dynamo_client(moto_server: Any, aws_session: Any) -> AsyncIterator[Any]:
    """A raw aiobotocore DynamoDB client, for looking behind the managers' backs."""
    async with aws_session.client("dynamodb", **moto_server.client_kwargs()) as client:
        yield client


class FileLockBackend(LockBackend):
    """Managers over one root; the records through ``record()`` and ``set_record()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._probe = FileLockManager(root)

    def new_manager(self, *, clock: Callable[[], float], default_ttl: float) -> LockManager:
        return FileLockManager(self.root, clock=clock, default_ttl=default_ttl)

    async def read_record(self, key: str) -> LeaseRecord | None:
        return await self._probe.record(key)

    async def delete_record(self, key: str) -> None:
        await self._probe.set_record(key, None)

    async def write_record(self, key: str, record: LeaseRecord) -> None:
        await self._probe.set_record(key, record)


class DynamoDBLockBackend(LockBackend):
    """Managers over one table; the records are read and written with a raw client."""

    def __init__(self, endpoint: Any, session: Any, table: str, client: Any) -> None:
        self.endpoint = endpoint
        self.session = session
        self.table = table
        self.client = client

    def new_manager(self, *, clock: Callable[[], float], default_ttl: float) -> LockManager:
        return DynamoDBLockManager(
            self.table,
            session=self.session,
            clock=clock,
            default_ttl=default_ttl,
            skew_margin=0.0,
            **self.endpoint.client_kwargs(),
        )

    async def read_record(self, key: str) -> LeaseRecord | None:
        response = await self.client.get_item(
            TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        return LeaseRecord(
            item["owner"]["S"],
            int(item["token"]["N"]),
            float(item["expireAt"]["N"]),
            item["released"]["BOOL"],
        )

    async def delete_record(self, key: str) -> None:
        await self.client.delete_item(TableName=self.table, Key={"id": {"S": key}})

    async def write_record(self, key: str, record: LeaseRecord) -> None:
        await self.client.put_item(
            TableName=self.table,
            Item={
                "id": {"S": key},
                "owner": {"S": record.owner},
                "token": {"N": str(record.token)},
                "expireAt": {"N": f"{record.expires_at:.6f}"},
                "released": {"BOOL": record.released},
            },
        )


async def create_lock_table(moto: Any, session: Any) -> str:
    """A fresh lock table on the moto server, made by the development helper."""
    name = f"locks-{uuid.uuid4().hex[:16]}"
    async with DynamoDBLockManager(name, session=session, **moto.client_kwargs()) as manager:
        await manager.create_table()
    return name


async def create_plain_lock_table(endpoint: Any, session: Any) -> str:
    """A fresh lock table made without the helper: the table's shape, no TTL.

    For dynalite, which has no UpdateTimeToLive, so the helper's last step
    fails there (tests/servers/test_dynalite.py). The manager never relies
    on TTL deletion, so the contract is the same without it.
    """
    name = f"locks-{uuid.uuid4().hex[:16]}"
    async with session.client("dynamodb", **endpoint.client_kwargs()) as client:
        await client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
    return name


@pytest.fixture
async def lock_table(moto_server: Any, aws_session: Any) -> str:
    """A fresh lock table on the moto server."""
    return await create_lock_table(moto_server, aws_session)


@pytest.fixture(params=BACKENDS)
async def lock_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LockBackend]:
    """Each lock backend in turn, over an empty store."""
    if request.param == "memory":
        yield MemoryLockBackend()
        return
    if request.param == "file":
        yield FileLockBackend(tmp_path / "root")
        return
    # Sync fixtures only: an async fixture cannot be requested from here.
    if request.param == "dynamodb-dynalite":
        endpoint = request.getfixturevalue("dynalite_server")
        session = request.getfixturevalue("dynalite_session")
        table = await create_plain_lock_table(endpoint, session)
        _expect_dynalite_failures(request)
    else:
        endpoint = request.getfixturevalue("moto_server")
        session = request.getfixturevalue("aws_session")
        table = await create_lock_table(endpoint, session)
    async with session.client("dynamodb", **endpoint.client_kwargs()) as client:
        yield DynamoDBLockBackend(endpoint, session, table, client)


def _expect_dynalite_failures(request: pytest.FixtureRequest) -> None:
    """Mark the contract tests known to fail on dynalite (tests/servers/_dynalite.py says why)."""
    from servers._dynalite import LOCK_CONTRACT_XFAILS

    reason = LOCK_CONTRACT_XFAILS.get(request.node.originalname)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at a fixed instant."""
    return FakeClock()


def now() -> float:
    """Wall-clock epoch seconds (for tests that run on real time)."""
    return time.time()
