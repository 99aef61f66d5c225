"""Fixtures for the lock tests: every backend behind one parametrized fixture.

The contract suite asks for ``backend`` and runs once per lock backend. A
:class:`LockBackend` makes any number of managers over the same shared store
(what several processes would see), and can look at or change the stored
lease records behind the managers' backs. DynamoDB runs against the session's
moto server over HTTP, with a fresh table per test; ``dynamodb-dynalite`` runs
the same manager against dynalite (marked ``servers``: only with
``DURABLE_STATE_SLOW=1``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_state.locks import (
    DynamoDBLockManager,
    FileLockManager,
    LockManager,
    MemoryLockManager,
)
from durable_state.locks.memory import _Record

BACKENDS = (
    "memory",
    "file",
    "dynamodb",
    pytest.param("dynamodb-dynalite", marks=pytest.mark.servers),
)


class FakeClock:
    """A clock that moves only when told to (epoch seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class StoredLease:
    """A lease record as the backend stores it, read behind the managers' backs."""

    owner: str | None
    token: int | None
    expires_at: float | None
    released: bool


@dataclass
class LockBackend:
    """Managers over one shared store, plus raw access to that store."""

    name: str
    _make: Callable[[Callable[[], float] | None, float], Any]
    read: Callable[[str], Awaitable[StoredLease | None]]
    delete: Callable[[str], Awaitable[None]]
    overwrite: Callable[[str, str, int, float], Awaitable[None]]
    made: list[Any] = field(default_factory=list)

    def make(
        self, *, clock: Callable[[], float] | None = None, default_ttl: float = 900.0
    ) -> LockManager:
        manager = self._make(clock, default_ttl)
        self.made.append(manager)
        return manager  # type: ignore[no-any-return]

    async def close_all(self) -> None:
        for manager in self.made:
            await manager.aclose()


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


def memory_backend() -> LockBackend:
    root = MemoryLockManager()
    table = root._table

    def make(clock: Callable[[], float] | None, default_ttl: float) -> MemoryLockManager:
        manager = MemoryLockManager(clock=clock, default_ttl=default_ttl)
        manager._table = table  # share the store, as sibling() does
        return manager

    async def read(key: str) -> StoredLease | None:
        record = table.records.get(key)
        if record is None:
            return None
        return StoredLease(record.owner, record.token, record.expires_at, record.released)

    async def delete(key: str) -> None:
        table.records.pop(key, None)

    async def overwrite(key: str, owner: str, token: int, expires_at: float) -> None:
        table.records[key] = _Record(owner, token, expires_at, released=False)

    return LockBackend("memory", make, read, delete, overwrite)


def file_backend(root: Path) -> LockBackend:
    probe = FileLockManager(root)

    def make(clock: Callable[[], float] | None, default_ttl: float) -> FileLockManager:
        return FileLockManager(root, clock=clock, default_ttl=default_ttl)

    async def read(key: str) -> StoredLease | None:
        try:
            data = json.loads(await anyio.Path(probe._record_path(key)).read_text())
        except FileNotFoundError:
            return None
        return StoredLease(data["owner"], data["token"], data["expires_at"], data["released"])

    async def delete(key: str) -> None:
        await anyio.Path(probe._record_path(key)).unlink()

    async def overwrite(key: str, owner: str, token: int, expires_at: float) -> None:
        path = anyio.Path(probe._record_path(key))
        data = json.loads(await path.read_text())
        data.update(owner=owner, token=token, expires_at=expires_at, released=False)
        await path.write_text(json.dumps(data))

    return LockBackend("file", make, read, delete, overwrite)


def dynamodb_backend(moto: Any, session: Any, table: str, client: Any) -> LockBackend:
    def make(clock: Callable[[], float] | None, default_ttl: float) -> DynamoDBLockManager:
        return DynamoDBLockManager(
            table,
            session=session,
            clock=clock,
            default_ttl=default_ttl,
            skew_margin=0.0,
            **moto.client_kwargs(),
        )

    async def read(key: str) -> StoredLease | None:
        response = await client.get_item(
            TableName=table, Key={"id": {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        return StoredLease(
            item["owner"]["S"],
            int(item["token"]["N"]),
            float(item["expireAt"]["N"]),
            item["released"]["BOOL"],
        )

    async def delete(key: str) -> None:
        await client.delete_item(TableName=table, Key={"id": {"S": key}})

    async def overwrite(key: str, owner: str, token: int, expires_at: float) -> None:
        await client.put_item(
            TableName=table,
            Item={
                "id": {"S": key},
                "owner": {"S": owner},
                "token": {"N": str(token)},
                "expireAt": {"N": f"{expires_at:.6f}"},
                "released": {"BOOL": False},
            },
        )

    return LockBackend("dynamodb", make, read, delete, overwrite)


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
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LockBackend]:
    """Each lock backend in turn, over an empty store."""
    if request.param == "memory":
        made = memory_backend()
    elif request.param == "file":
        made = file_backend(tmp_path / "root")
    else:
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
            made = dynamodb_backend(endpoint, session, table, client)
            try:
                yield made
            finally:
                await made.close_all()
        return
    try:
        yield made
    finally:
        await made.close_all()


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
