"""Fixtures for the persisted-actor tests: one ``backend`` fixture over every storage + lock pair.

* ``memory``: ``MemoryStorage`` + ``MemoryLockManager`` (one process);
* ``file``: ``LocalFileStorage`` + ``FileLockManager`` on one directory in tmp_path;
* ``aws``: ``S3Storage`` + ``DynamoDBLockManager`` on the session's moto
  server, over HTTP, with a fresh bucket and table per test.

Concurrent conditional writes from several processes rely on the session's
moto server applying them atomically, as AWS does (see tests/conftest.py).

A test that needs fewer backends narrows the parameter with
``@pytest.mark.parametrize("backend", [...], indirect=True)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_state.errors import LockTimeout
from durable_state.locks.file import FileLockManager
from durable_state.locks.memory import MemoryLockManager
from durable_state.storage import LocalFileStorage, MemoryStorage, S3Storage

BACKENDS = ("memory", "file", "aws", "dynamodb")

#: The takeover margin of the DynamoDB managers in these tests (seconds).
DYNAMO_SKEW = 0.2


@dataclass
class Backend:
    """A storage and a lock manager sharing one backend, plus ways to meddle with them."""

    kind: str
    storage: Any
    lock: Any
    #: Another manager on the same lease table/directory (what another process sees).
    make_lock: Callable[[], Any]
    #: Move a key's lease expiry into the past behind its holder's back.
    expire_lease: Callable[[str], Awaitable[None]]
    #: Remove a key's lease record behind its holder's back.
    delete_lease: Callable[[str], Awaitable[None]]
    #: JSON-able description for child processes (``None`` for memory).
    spec: dict[str, Any] | None = None

    async def steal_lease(self, key: str) -> Any:
        """Expire the holder's lease and take the key with another manager.

        Returns:
            The thief's lease (released when the test's backend is torn down).
        """
        await self.expire_lease(key)
        return await self.make_lock().acquire(key, ttl=60)

    async def assert_lock_free(self, key: str) -> None:
        """Fail unless another manager can take ``key`` at once (then give it back)."""
        other = self.make_lock()
        try:
            lease = await other.acquire(key, ttl=30)
        except LockTimeout as exc:  # pragma: no cover - the failure message matters
            pytest.fail(f"the lease on {key!r} was left held: {exc}")
        await other.release(lease)


@pytest.fixture(scope="session")
def aws_session(moto_server: Any) -> Any:
    """One aioboto3 session for the run: it caches botocore's service models."""
    aioboto3 = pytest.importorskip("aioboto3")
    return aioboto3.Session()


@pytest.fixture(scope="session")
def aws_names(moto_server: Any) -> tuple[str, str]:
    """A bucket and a lock table for the whole run (every test uses its own keys).

    Made once, on a loop of its own in a thread of its own (this fixture is
    first requested while a test's loop runs): creating them per test costs
    more than most tests. Both moto fronts serve the same backends, so both
    see them.
    """
    import aioboto3

    from durable_state.locks.dynamodb import DynamoDBLockManager

    bucket = f"ds-{uuid.uuid4().hex[:24]}"
    table = f"locks-{uuid.uuid4().hex[:12]}"
    session = aioboto3.Session()

    async def create() -> None:
        async with session.client("s3", **moto_server.client_kwargs()) as s3:
            await s3.create_bucket(Bucket=bucket)
        async with DynamoDBLockManager(
            table, session=session, **moto_server.client_kwargs()
        ) as manager:
            await manager.create_table()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return bucket, table


@pytest.fixture(scope="session")
def dynamodb_table(moto_server: Any) -> str:
    """One table for snapshots and leases (DynamoDBStorage + DynamoDBLockManager), for the run."""
    import aioboto3

    from durable_state.storage import DynamoDBStorage

    table = f"state-{uuid.uuid4().hex[:12]}"
    session = aioboto3.Session()

    async def create() -> None:
        async with DynamoDBStorage(table, session=session, **moto_server.client_kwargs()) as s:
            await s.create_table()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return table


@pytest.fixture
def aws_endpoint(moto_server: Any) -> Any:
    """The moto endpoint the ``aws`` backend talks to (a module may override it)."""
    return moto_server


@pytest.fixture
def actor_id() -> str:
    """A fresh actor id (also the storage key and the lock key)."""
    return f"actor-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each storage + lock pair in turn, empty."""
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            yield _memory_backend(stack)
        elif request.param == "file":
            yield _file_backend(stack, tmp_path / "state")
        elif request.param == "aws":
            moto = request.getfixturevalue("aws_endpoint")
            session = request.getfixturevalue("aws_session")
            names = request.getfixturevalue("aws_names")
            yield await _aws_backend(stack, moto, session, names)
        else:
            moto = request.getfixturevalue("aws_endpoint")
            session = request.getfixturevalue("aws_session")
            table = request.getfixturevalue("dynamodb_table")
            yield await _dynamodb_backend(stack, moto, session, table)


def _memory_backend(stack: AsyncExitStack) -> Backend:
    lock = MemoryLockManager()

    def make_lock() -> MemoryLockManager:
        return lock.sibling()

    async def expire(key: str) -> None:
        record = lock.record(key)
        assert record is not None
        lock.set_record(key, replace(record, expires_at=0.0))

    async def delete(key: str) -> None:
        lock.set_record(key, None)

    return Backend("memory", MemoryStorage(), lock, make_lock, expire, delete)


def _file_backend(stack: AsyncExitStack, root: Path) -> Backend:
    lock = FileLockManager(root)
    stack.push_async_callback(lock.aclose)

    def make_lock() -> FileLockManager:
        other = FileLockManager(root)
        stack.push_async_callback(other.aclose)
        return other

    async def expire(key: str) -> None:
        record = await lock.record(key)
        assert record is not None
        await lock.set_record(key, replace(record, expires_at=0.0))

    async def delete(key: str) -> None:
        await anyio.Path(lock.record_path(key)).unlink()

    return Backend(
        "file",
        LocalFileStorage(root),
        lock,
        make_lock,
        expire,
        delete,
        spec={"kind": "file", "root": os.fspath(root)},
    )


async def _aws_backend(
    stack: AsyncExitStack, moto: Any, session: Any, names: tuple[str, str]
) -> Backend:
    from durable_state.locks.dynamodb import DynamoDBLockManager

    bucket, table = names
    kwargs = moto.client_kwargs()

    def make_lock() -> DynamoDBLockManager:
        other = DynamoDBLockManager(table, session=session, skew_margin=DYNAMO_SKEW, **kwargs)
        stack.push_async_callback(other.aclose)
        return other

    # A prefix per test: the bucket is shared by the run, the due index must not be.
    prefix = f"t-{uuid.uuid4().hex[:12]}/"
    storage = S3Storage(bucket, prefix=prefix, session=session, **kwargs)
    stack.push_async_callback(storage.aclose)

    async def expire(key: str) -> None:
        async with session.client("dynamodb", **kwargs) as dynamo:
            await dynamo.update_item(
                TableName=table,
                Key={"id": {"S": key}},
                UpdateExpression="SET expireAt = :zero",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )

    async def delete(key: str) -> None:
        async with session.client("dynamodb", **kwargs) as dynamo:
            await dynamo.delete_item(TableName=table, Key={"id": {"S": key}})

    spec = {
        "kind": "aws",
        "bucket": bucket,
        "prefix": prefix,
        "table": table,
        "endpoint": moto.url,
        "region": moto.region,
        "skew": DYNAMO_SKEW,
    }
    return Backend("aws", storage, make_lock(), make_lock, expire, delete, spec=spec)


async def _dynamodb_backend(stack: AsyncExitStack, moto: Any, session: Any, table: str) -> Backend:
    """Snapshots and leases in one DynamoDB table: leases live in the snapshot items."""
    from durable_state._item_leases import leases_for
    from durable_state.locks.dynamodb import DynamoDBLockManager
    from durable_state.storage import DynamoDBStorage

    kwargs = moto.client_kwargs()
    prefix = f"t-{uuid.uuid4().hex[:12]}/"
    storage = DynamoDBStorage(table, prefix=prefix, session=session, **kwargs)
    stack.push_async_callback(storage.aclose)

    def raw_lock() -> DynamoDBLockManager:
        other = DynamoDBLockManager(table, session=session, skew_margin=DYNAMO_SKEW, **kwargs)
        stack.push_async_callback(other.aclose)
        return other

    def make_lock() -> Any:
        # What a session of another process uses: the leases in the items.
        return leases_for(storage, raw_lock())

    async def update(key: str, expression: str, values: dict[str, Any] | None = None) -> None:
        async with session.client("dynamodb", **kwargs) as dynamo:
            await dynamo.update_item(
                TableName=table,
                Key=storage.item_key(key),
                UpdateExpression=expression,
                **({"ExpressionAttributeValues": values} if values else {}),
            )

    async def expire(key: str) -> None:
        await update(key, "SET leaseUntil = :zero", {":zero": {"N": "0"}})

    async def delete(key: str) -> None:
        await update(key, "REMOVE leaseOwner, leaseToken, leaseUntil, leaseReleased, leaseTtl")

    spec = {
        "kind": "dynamodb",
        "table": table,
        "prefix": prefix,
        "endpoint": moto.url,
        "region": moto.region,
        "skew": DYNAMO_SKEW,
    }
    return Backend("dynamodb", storage, make_lock(), make_lock, expire, delete, spec=spec)
