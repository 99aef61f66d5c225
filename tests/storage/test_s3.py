"""S3Storage beyond the shared contract, against the moto server over HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from durable_state.errors import (
    InvalidKey,
    SnapshotCorrupt,
    StorageUnavailable,
    VersionConflict,
)
from durable_state.storage import S3Storage, Stored
from durable_state.storage import s3 as s3_module
from durable_state.storage.s3 import CONFLICT_RETRIES, ENVELOPE_MAGIC
from durable_state.testing import FaultProxy, Request

DRIVER_MODULES = ("aioboto3", "boto3", "botocore", "aiobotocore")


async def _keys(storage: S3Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.list(prefix)]


async def _raw_get(client: Any, bucket: str, key: str) -> tuple[bytes, str]:
    response = await client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read(), response["ETag"]


class SlowClientContext:
    """A client context whose entry waits, like credentials fetched over the network."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aenter__(self) -> Any:
        await anyio.sleep(0.05)
        return await self.inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.inner.__aexit__(*exc_info)


class CountingSession:
    """An aioboto3 session that counts the clients made from it (slowly)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.clients = 0

    def client(self, *args: Any, **kwargs: Any) -> Any:
        self.clients += 1
        return SlowClientContext(self.session.client(*args, **kwargs))


def _conflict_error(operation: str) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {
            "Error": {"Code": "ConditionalRequestConflict", "Message": "in flight"},
            "ResponseMetadata": {"HTTPStatusCode": 409},
        },
        operation,
    )
    return error


class ConflictingClient:
    """A real client whose first ``failures`` PutObject/DeleteObject calls get a 409."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real = real
        self.failures = failures
        self.bodies: list[bytes] = []

    async def put_object(self, **params: Any) -> Any:
        self.bodies.append(params["Body"])
        if self.failures:
            self.failures -= 1
            raise _conflict_error("PutObject")
        return await self.real.put_object(**params)

    async def delete_object(self, **params: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise _conflict_error("DeleteObject")
        return await self.real.delete_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- #
# Envelope and versions
# --------------------------------------------------------------------------- #


async def test_objects_are_enveloped_and_etag_is_the_version(
    make_s3: Any, s3_bucket: str, s3_client: Any
) -> None:
    async with make_s3(s3_bucket) as storage:
        v1 = await storage.write("k", b"same")
        raw1, etag1 = await _raw_get(s3_client, s3_bucket, "k")
        v2 = await storage.write("k", b"same")
        raw2, etag2 = await _raw_get(s3_client, s3_bucket, "k")
    assert (v1, v2) == (etag1, etag2)
    assert v1 != v2  # identical bytes, different objects
    for raw in (raw1, raw2):
        assert raw.startswith(ENVELOPE_MAGIC)
        assert raw.endswith(b"same")
        assert len(raw) == len(ENVELOPE_MAGIC) + 16 + 4
    assert raw1 != raw2


async def test_foreign_object_reads_raw_and_gets_wrapped_on_write(
    make_s3: Any, s3_bucket: str, s3_client: Any
) -> None:
    put = await s3_client.put_object(Bucket=s3_bucket, Key="legacy", Body=b'{"a": 1}')
    async with make_s3(s3_bucket) as storage:
        assert await storage.read("legacy") == Stored(b'{"a": 1}', put["ETag"])
        version = await storage.write("legacy", b'{"a": 2}', if_version=put["ETag"])
        assert await storage.read("legacy") == Stored(b'{"a": 2}', version)
    raw, _ = await _raw_get(s3_client, s3_bucket, "legacy")
    assert raw.startswith(ENVELOPE_MAGIC)


async def test_truncated_envelope_is_corrupt(make_s3: Any, s3_bucket: str, s3_client: Any) -> None:
    await s3_client.put_object(Bucket=s3_bucket, Key="k", Body=ENVELOPE_MAGIC + b"short")
    async with make_s3(s3_bucket) as storage:
        with pytest.raises(SnapshotCorrupt) as info:
            await storage.read("k")
    assert info.value.key == "k"


# --------------------------------------------------------------------------- #
# Prefix and key limits
# --------------------------------------------------------------------------- #


async def test_prefix_is_applied_and_stripped(make_s3: Any, s3_bucket: str, s3_client: Any) -> None:
    for other in ("tenant-10/k", "elsewhere", "tenant-1"):
        await s3_client.put_object(Bucket=s3_bucket, Key=other, Body=b"not ours")
    async with make_s3(s3_bucket, prefix="tenant-1/") as storage:
        await storage.write("order/1", b"x")
        await storage.write("order/2", b"y")
        await storage.write("z", b"z")
        assert await _keys(storage) == ["order/1", "order/2", "z"]
        assert await _keys(storage, "order/") == ["order/1", "order/2"]
        assert not await storage.exists("elsewhere")
    listed = await s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="tenant-1/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "tenant-1/order/1",
        "tenant-1/order/2",
        "tenant-1/z",
    ]


async def test_key_limit_counts_the_prefix(make_s3: Any, s3_bucket: str) -> None:
    prefix = "p" * 24
    async with make_s3(s3_bucket, prefix=prefix) as storage:
        await storage.write("k" * 1000, b"fits")
        with pytest.raises(InvalidKey, match="prefix"):
            await storage.write("k" * 1001, b"too long")
        with pytest.raises(InvalidKey):
            await storage.read("é" * 501)
        assert await _keys(storage) == ["k" * 1000]


def test_constructor_checks_arguments() -> None:
    with pytest.raises(ValueError, match="bucket"):
        S3Storage("")
    with pytest.raises(ValueError, match="NUL"):
        S3Storage("b", prefix="a\x00")
    with pytest.raises(ValueError, match="prefix"):
        S3Storage("b", prefix="p" * 1024)
    with pytest.raises(ValueError, match="sse"):
        S3Storage("b", sse="rot13")


# --------------------------------------------------------------------------- #
# Encryption
# --------------------------------------------------------------------------- #


async def test_sse_settings_reach_put_object(make_s3: Any, s3_bucket: str, s3_client: Any) -> None:
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c"
    async with (
        make_s3(s3_bucket, kms_key_id=key_arn) as kms,
        make_s3(s3_bucket, sse="AES256") as aes,
    ):
        await kms.write("kms", b"x")
        await aes.write("aes", b"y")
        assert (await kms.read("kms")) is not None
    head = await s3_client.head_object(Bucket=s3_bucket, Key="kms")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn
    head = await s3_client.head_object(Bucket=s3_bucket, Key="aes")
    assert head["ServerSideEncryption"] == "AES256"


# --------------------------------------------------------------------------- #
# The client: lazy, single, reused, optionally user-owned
# --------------------------------------------------------------------------- #


async def test_one_lazy_client_even_for_concurrent_first_calls(
    make_s3: Any, s3_bucket: str, aws_session: Any
) -> None:
    session = CountingSession(aws_session)
    storage = make_s3(s3_bucket, session=session)
    assert session.clients == 0  # nothing happens at construction
    async with storage:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(storage.exists, f"k{i}")
        for i in range(10):
            await storage.write(f"k{i}", b"x")
            await storage.read(f"k{i}")
        assert session.clients == 1
    assert storage._aws.current is None
    async with storage:  # usable again after aclose: a new client
        assert await storage.read("k1") is not None
    assert session.clients == 2


async def test_user_owned_client_is_left_open(
    moto_server: Any, aws_session: Any, s3_bucket: str
) -> None:
    async with aws_session.client("s3", **moto_server.client_kwargs()) as client:
        async with S3Storage(s3_bucket, client=client) as storage:
            await storage.write("k", b"x")
        await storage.aclose()
        # Still open: both the raw client and the storage keep working.
        assert (await client.head_object(Bucket=s3_bucket, Key="k"))["ContentLength"] > 0
        assert (await storage.read("k")) is not None


def test_client_is_replaced_when_the_event_loop_changes(moto_server: Any) -> None:
    """One asyncio.run per invocation (a common Lambda shape) keeps working."""
    code = f"""
        import asyncio, gc, warnings
        warnings.simplefilter("error")
        import aioboto3
        from durable_state.storage import S3Storage

        async def make_bucket():
            async with aioboto3.Session().client(
                "s3", endpoint_url={moto_server.url!r}, region_name="us-east-1"
            ) as client:
                await client.create_bucket(Bucket="loop-change")

        asyncio.run(make_bucket())
        storage = S3Storage("loop-change", endpoint_url={moto_server.url!r}, region_name="us-east-1")
        version = asyncio.run(storage.write("k", b"1"))
        assert asyncio.run(storage.read("k")).version == version
        asyncio.run(storage.write("k", b"2", if_version=version))
        asyncio.run(storage.aclose())
        gc.collect()
        print("ok")
    """
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Unclosed" not in result.stderr, result.stderr


# --------------------------------------------------------------------------- #
# 409 ConditionalRequestConflict
# --------------------------------------------------------------------------- #


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "_CONFLICT_BACKOFF", 0.001)


@pytest.mark.usefixtures("fast_backoff")
async def test_conflict_409_is_retried(s3_bucket: str, s3_client: Any) -> None:
    flaky = ConflictingClient(s3_client, failures=CONFLICT_RETRIES)
    storage = S3Storage(s3_bucket, client=flaky)
    v1 = await storage.write("k", b"x", if_version=None)
    assert len(flaky.bodies) == CONFLICT_RETRIES + 1
    # One write id for the whole call: a resend is recognisably the same write.
    assert len(set(flaky.bodies)) == 1
    assert await storage.read("k") == Stored(b"x", v1)
    flaky.failures = 2
    await storage.delete("k", if_version=v1)
    assert not await storage.exists("k")


@pytest.mark.usefixtures("fast_backoff")
async def test_conflict_409_retries_are_bounded(s3_bucket: str, s3_client: Any) -> None:
    storage = S3Storage(s3_bucket, client=ConflictingClient(s3_client, failures=100))
    with pytest.raises(VersionConflict) as info:
        await storage.write("k", b"x", if_version=None)
    assert info.value.key == "k"
    assert info.value.__cause__ is not None
    with pytest.raises(StorageUnavailable, match="ConditionalRequestConflict"):
        await storage.write("k", b"x")  # unconditional: not a version conflict


# --------------------------------------------------------------------------- #
# Errors: translated, keyed, chained
# --------------------------------------------------------------------------- #


def _assert_translated(exc: BaseException) -> None:
    assert isinstance(exc, StorageUnavailable)
    assert type(exc).__module__ == "durable_state.errors"
    assert exc.__cause__ is not None
    assert type(exc.__cause__).__module__.split(".")[0] in (*DRIVER_MODULES, "aiohttp", "builtins")


async def test_missing_bucket(make_s3: Any) -> None:
    async with make_s3("no-such-bucket-here") as storage:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.read("order/42"),
            lambda: storage.write("order/42", b"x"),
            lambda: storage.delete("order/42"),
        ]
        for call in calls:
            with pytest.raises(StorageUnavailable, match=r"'order/42'.*NoSuchBucket") as info:
                await call()
            _assert_translated(info.value)
            assert info.value.key == "order/42"
        with pytest.raises(StorageUnavailable, match="NoSuchBucket") as listing:
            await _keys(storage)
        _assert_translated(listing.value)


async def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, moto_server: Any) -> None:
    import aioboto3

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with S3Storage(
        "bucket",
        session=aioboto3.Session(),
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
    ) as storage:
        with pytest.raises(StorageUnavailable, match=r"storage read 'order/42' failed") as info:
            await storage.read("order/42")
        _assert_translated(info.value)
        with pytest.raises(StorageUnavailable) as info:
            await storage.exists("k")
        _assert_translated(info.value)


# --------------------------------------------------------------------------- #
# Optional dependency hygiene (fresh interpreters)
# --------------------------------------------------------------------------- #


def test_importing_the_package_does_not_import_boto() -> None:
    result = _run_python(
        f"""
        import sys
        import durable_state
        import durable_state.storage
        from durable_state.storage import LocalFileStorage, MemoryStorage, S3Storage, Storage
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {DRIVER_MODULES!r})
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_s3_storage_without_aioboto3_raises_missing_dependency() -> None:
    result = _run_python(
        """
        import sys
        sys.modules["aioboto3"] = None  # makes "import aioboto3" fail
        from durable_state.errors import MissingDependency
        from durable_state.storage import S3Storage
        try:
            S3Storage("bucket")
        except MissingDependency as exc:
            assert (exc.feature, exc.extra) == ("S3Storage", "aws"), exc
            assert isinstance(exc, ImportError)
            print(exc)
        else:
            raise SystemExit("no MissingDependency")
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "durable-state[aws]"' in result.stdout


async def test_read_while_cancelled_does_not_leak(make_s3: Any, s3_bucket: str) -> None:
    """Cancel reads of a large object mid-body: later calls work, nothing leaks."""
    async with make_s3(s3_bucket) as storage:
        version = await storage.write("big", b"x" * (4 << 20))
        for delay in (0.0, 0.001, 0.005, 0.01, 0.02):
            with anyio.move_on_after(delay):
                await storage.read("big")
        stored = await storage.read("big")
        assert stored is not None
        assert stored.version == version
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(storage.read("big"), 0.001)
        assert await storage.exists("big")


# --------------------------------------------------------------------------- #
# Lost answers, through a proxy that drops the response after S3 applied it
# --------------------------------------------------------------------------- #


@pytest.fixture
def dropping_proxy(moto_server: Any) -> Iterator[FaultProxy]:
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        yield proxy


def _put_of(key: str) -> Callable[[Request], bool]:
    return lambda r: r.method == "PUT" and r.path.split("?")[0].endswith("/" + key)


@pytest.mark.parametrize("condition", ["create", "update", "unconditional"])
async def test_a_write_whose_answer_was_lost_is_not_a_conflict(
    dropping_proxy: FaultProxy, s3_bucket: str, aws_session: Any, moto_server: Any, condition: str
) -> None:
    storage = S3Storage(
        s3_bucket,
        endpoint_url=dropping_proxy.url,
        region_name=moto_server.region,
        session=aws_session,
    )
    async with storage:
        v1 = None if condition == "create" else await storage.write("k", b"v1", if_version=None)
        if_version = "*" if condition == "unconditional" else v1
        dropping_proxy.drop_response(_put_of("k"))
        v2 = await storage.write("k", b"v2", if_version=if_version)
        assert dropping_proxy.dropped == 1  # S3 applied it and the answer was cut off
        assert await storage.read("k") == Stored(b"v2", v2)
