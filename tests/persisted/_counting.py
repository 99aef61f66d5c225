"""Wrappers that count the storage and lock round trips a persisted actor makes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from durable_state.locks import HeldLease, Lease


class CountingStorage:
    """Forwards to a storage and counts ``read``/``write``/``delete``/``exists`` calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def read(self, key: str) -> Any:
        self.calls["read"] += 1
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes, *, if_version: Any = "*") -> str:
        self.calls["write"] += 1
        version: str = await self.inner.write(key, data, if_version=if_version)
        return version

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        self.calls["delete"] += 1
        await self.inner.delete(key, if_version=if_version)

    async def exists(self, key: str) -> bool:
        self.calls["exists"] += 1
        found: bool = await self.inner.exists(key)
        return found

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        self.calls["list"] += 1
        listing: AsyncIterator[str] = self.inner.list(prefix)
        return listing

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> CountingStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class CountingLock:
    """Forwards to a lock manager and counts ``acquire``/``renew``/``release`` calls.

    ``hold()`` is built on this wrapper, so the heartbeat's renewals and the
    release on exit are counted too.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def default_ttl(self) -> float:
        ttl: float = self.inner.default_ttl
        return ttl

    @property
    def clock(self) -> Callable[[], float]:
        clock: Callable[[], float] = self.inner.clock
        return clock

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease:
        self.calls["acquire"] += 1
        lease: Lease = await self.inner.acquire(key, ttl=ttl, wait=wait)
        return lease

    async def renew(self, lease: Lease) -> Lease:
        self.calls["renew"] += 1
        renewed: Lease = await self.inner.renew(lease)
        return renewed

    async def release(self, lease: Lease) -> None:
        self.calls["release"] += 1
        await self.inner.release(lease)

    def hold(self, key: str, *, ttl: float | None = None, wait: float | None = None) -> HeldLease:
        return HeldLease(self, key, ttl=ttl, wait=wait)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> CountingLock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def round_trips(*counters: CountingStorage | CountingLock) -> int:
    """Every counted call, all wrappers together."""
    return sum(sum(c.calls.values()) for c in counters)
