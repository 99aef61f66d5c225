"""The version cache of S3Storage and DynamoDBStorage (``cache=``), and its bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from durable_state.errors import StorageUnavailable, VersionConflict
from durable_state.storage import DynamoDBStorage, S3Storage, Stored
from durable_state.storage._cache import VersionCache, make_cache
from durable_state.testing import FaultProxy

from .conftest import create_bucket, create_table

# --------------------------------------------------------------------------- #
# VersionCache on its own
# --------------------------------------------------------------------------- #


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = VersionCache(2)
    cache.put("a", Stored(b"a", "1"))
    cache.put("b", Stored(b"b", "1"))
    assert cache.get("a") == Stored(b"a", "1")  # now "b" is the least recently used
    cache.put("c", Stored(b"c", "1"))
    assert "b" not in cache
    assert (len(cache), cache.get("b"), cache.hits, cache.misses) == (2, None, 1, 1)
    cache.put("a", Stored(b"a2", "2"))  # replacing an entry does not evict another
    assert len(cache) == 2
    assert cache.get("a") == Stored(b"a2", "2")


def test_bytes_are_bounded_too() -> None:
    cache = VersionCache(100, max_bytes=10)
    cache.put("a", Stored(b"x" * 4, "1"))
    cache.put("b", Stored(b"x" * 4, "1"))
    cache.put("c", Stored(b"x" * 4, "1"))  # 12 bytes: "a" goes
    assert ("a" in cache, "b" in cache, "c" in cache) == (False, True, True)
    assert cache.size_bytes == 8
    cache.put("b", Stored(b"x" * 11, "2"))  # larger than the bound: not kept at all
    assert "b" not in cache
    assert cache.size_bytes == 4
    cache.drop("c")
    cache.drop("never")
    assert (len(cache), cache.size_bytes) == (0, 0)


def test_cache_arguments() -> None:
    assert make_cache(False) is None
    made = make_cache(True)
    assert made is not None
    assert made.max_entries == 1024
    made = make_cache(5)
    assert made is not None
    assert made.max_entries == 5
    with pytest.raises(ValueError, match="max_entries"):
        make_cache(0)
    with pytest.raises(TypeError):
        make_cache("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        VersionCache(1, max_bytes=0)


# --------------------------------------------------------------------------- #
# Both AWS backends, through a recording proxy in front of moto
# --------------------------------------------------------------------------- #


@pytest.fixture
def proxy(moto_server: Any) -> Iterator[FaultProxy]:
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), record=True) as running:
        yield running


Make = Callable[..., Any]


@pytest.fixture(params=["s3", "dynamodb"])
async def make(
    request: pytest.FixtureRequest, moto_server: Any, aws_session: Any, proxy: FaultProxy
) -> AsyncIterator[Make]:
    """Build storages of one backend over one bucket or table, through the proxy."""
    bucket = await create_bucket(moto_server, aws_session)
    table = await create_table(moto_server, aws_session) if request.param == "dynamodb" else ""
    made: list[Any] = []

    def build(*, cache: bool | int = True) -> Any:
        where = {"endpoint_url": proxy.url, "region_name": moto_server.region}
        storage: Any
        if request.param == "s3":
            storage = S3Storage(bucket, session=aws_session, cache=cache, **where)
        else:
            storage = DynamoDBStorage(table, session=aws_session, cache=cache, **where)
        made.append(storage)
        return storage

    yield build
    for storage in made:
        await storage.aclose()


async def test_an_uncached_step_is_two_requests_a_cached_one_is_one(
    make: Make, proxy: FaultProxy
) -> None:
    plain, cached = make(cache=False), make()
    await plain.connect()
    await cached.connect()
    await plain.write("k", b"0", if_version=None)

    proxy.reset_counts()
    stored = await plain.cached_read("k")  # without a cache: always a read
    await plain.write("k", b"1", if_version=stored.version)
    assert proxy.request_count == 2

    version = await cached.write("k", b"2", if_version="*")
    proxy.reset_counts()
    stored = await cached.cached_read("k")
    assert stored == Stored(b"2", version)
    await cached.write("k", b"3", if_version=stored.version)
    assert proxy.request_count == 1  # the conditional write only


async def test_a_conflict_drops_the_entry_and_the_next_read_asks_the_backend(
    make: Make, proxy: FaultProxy
) -> None:
    mine, theirs = make(), make()
    v1 = await mine.write("k", b"mine", if_version=None)
    v2 = await theirs.write("k", b"theirs", if_version=v1)
    # Stale, by design: only a conditional write may rely on it.
    assert await mine.cached_read("k") == Stored(b"mine", v1)
    with pytest.raises(VersionConflict):
        await mine.write("k", b"lost update", if_version=v1)
    assert "k" not in mine.cache
    proxy.reset_counts()
    assert await mine.cached_read("k") == Stored(b"theirs", v2)
    assert proxy.request_count == 1
    assert mine.cache.get("k") == Stored(b"theirs", v2)  # confirmed by that read


async def test_an_unknown_outcome_is_never_served(
    make: Make, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that failed, or was cancelled, leaves nothing in the cache: not its
    bytes (unconfirmed) and not the old value (it may have been replaced)."""
    storage = make()
    v1 = await storage.write("k", b"v1", if_version=None)

    async def failing(*args: Any) -> str:
        raise StorageUnavailable("write", "k", "the connection was reset")

    with monkeypatch.context() as patch:
        patch.setattr(type(storage), "_write", failing)
        with pytest.raises(StorageUnavailable):
            await storage.write("k", b"unconfirmed", if_version=v1)
    assert "k" not in storage.cache
    assert await storage.cached_read("k") == Stored(b"v1", v1)  # from the backend

    proxy.latency = 0.2
    with anyio.move_on_after(0.05):
        await storage.write("k", b"cancelled", if_version=v1)
    proxy.latency = 0.0
    assert "k" not in storage.cache
    await asyncio.sleep(0.3)  # let the cancelled request land (or not)
    stored = await storage.cached_read("k")
    assert stored is not None
    assert stored.data in (b"v1", b"cancelled")
    assert stored == await storage.read("k")


async def test_reads_refresh_and_deletes_forget(make: Make) -> None:
    mine, theirs = make(), make()
    await mine.write("k", b"mine")
    v2 = await theirs.write("k", b"theirs")
    assert await mine.read("k") == Stored(b"theirs", v2)  # read: always the backend
    assert mine.cache.get("k") == Stored(b"theirs", v2)
    await mine.delete("k")
    assert "k" not in mine.cache
    assert await mine.cached_read("k") is None
    await theirs.write("k", b"again")
    await theirs.delete("k")
    assert await theirs.read("k") is None
    assert "k" not in theirs.cache  # absence is never remembered


async def test_the_cache_is_bounded_and_emptied_on_close(make: Make, proxy: FaultProxy) -> None:
    storage = make(cache=2)
    for key in ("a", "b", "c"):
        await storage.write(key, key.encode())
    assert len(storage.cache) == 2
    assert "a" not in storage.cache
    proxy.reset_counts()
    stored = await storage.cached_read("a")
    assert stored is not None
    assert stored.data == b"a"
    assert proxy.request_count == 1
    await storage.aclose()
    assert len(storage.cache) == 0


async def test_without_cache_nothing_is_remembered(make: Make) -> None:
    storage = make(cache=False)
    assert storage.cache is None
    await storage.write("k", b"x")
    stored = await storage.cached_read("k")
    assert stored is not None
    assert stored.data == b"x"
