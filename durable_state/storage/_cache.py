"""The version cache: answer a read from memory when a conditional write will check it.

An optimistic step (no lease) reads an actor, changes it and writes it back
with ``if_version=<the version read>``. When this process wrote or read the
actor last, it already knows those bytes and that version, and the write
itself checks whether they are still current: the step then costs one
request, the conditional write. When somebody else wrote meanwhile, the write
fails with :class:`~durable_state.errors.VersionConflict`, the entry is
dropped, and the caller reads again (from the backend).

So a cached value is never trusted for anything a conditional write does not
check: :meth:`CachingStorage.cached_read` is the only read that may answer
from memory; :meth:`~CachingStorage.read` always asks the backend (and
refreshes the entry). An entry holds only a ``(version, bytes)`` pair the
backend confirmed: the answer of a read, or the version a successful write
returned for the bytes it sent. Every write or delete whose outcome is
unknown or negative (conflict, backend error, cancellation) drops the key's
entry first, and so does every delete.

The cache is per storage instance and per process; it is bounded by entries
and by bytes and evicts the least recently used entry.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from ._base import BaseStorage
from ._keys import check_data, check_version
from ._protocol import ANY_VERSION, IfVersion, Stored

__all__ = ("DEFAULT_CACHE_BYTES", "DEFAULT_CACHE_ENTRIES", "CachingStorage", "VersionCache")

#: Entries kept by ``cache=True``.
DEFAULT_CACHE_ENTRIES: Final = 1024
#: Bytes of values kept at most (a larger value is not cached).
DEFAULT_CACHE_BYTES: Final = 64 * 1024 * 1024


class VersionCache:
    """A bounded LRU map from key to the :class:`Stored` value last confirmed there.

    Safe for the tasks of one event loop (no awaits inside).

    Args:
        max_entries: how many keys are remembered at most.
        max_bytes: how many bytes of values are kept at most; a value larger
            than this is not cached at all.

    Raises:
        ValueError: a bound is not a positive int.

    Attributes:
        max_entries: the bound on entries.
        max_bytes: the bound on bytes.
        hits: how many lookups found an entry.
        misses: how many lookups found none.
    """

    def __init__(
        self, max_entries: int = DEFAULT_CACHE_ENTRIES, *, max_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(bound, bool) or not isinstance(bound, int) or bound <= 0:
                raise ValueError(f"{name} must be a positive int, not {bound!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits: int = 0
        self.misses: int = 0
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"VersionCache(<{len(self._entries)}/{self.max_entries} entries, "
            f"{self._bytes} bytes, {self.hits} hits, {self.misses} misses>)"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def size_bytes(self) -> int:
        """The bytes of the values held now."""
        return self._bytes

    def get(self, key: str) -> Stored | None:
        """The entry for ``key`` (now the most recently used), or ``None``."""
        stored = self._entries.get(key)
        if stored is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return stored

    def put(self, key: str, stored: Stored) -> None:
        """Remember ``stored`` as the value confirmed at ``key``; evict to stay in bounds."""
        self.drop(key)
        size = len(stored.data)
        if size > self.max_bytes:
            return
        self._entries[key] = stored
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.data)

    def drop(self, key: str) -> None:
        """Forget ``key`` (no-op if it is not remembered)."""
        stored = self._entries.pop(key, None)
        if stored is not None:
            self._bytes -= len(stored.data)

    def clear(self) -> None:
        """Forget everything (the counters stay)."""
        self._entries.clear()
        self._bytes = 0


def make_cache(cache: bool | int) -> VersionCache | None:
    """The cache a backend's ``cache`` argument asks for.

    ``False``: none; ``True``: :data:`DEFAULT_CACHE_ENTRIES` entries; a
    positive int: that many entries.

    Raises:
        TypeError: ``cache`` is neither a bool nor an int.
        ValueError: ``cache`` is an int below 1.
    """
    if isinstance(cache, bool):
        return VersionCache() if cache else None
    if not isinstance(cache, int):
        raise TypeError(f"cache must be a bool or a number of entries, not {cache!r}")
    return VersionCache(cache)


class CachingStorage(BaseStorage):
    """A :class:`BaseStorage` with an optional :class:`VersionCache`.

    A subclass sets ``self._cache = make_cache(cache)`` in its constructor.
    Without a cache every method behaves exactly as :class:`BaseStorage`'s,
    and :meth:`cached_read` is :meth:`read`.
    """

    _cache: VersionCache | None = None

    @property
    def cache(self) -> VersionCache | None:
        """The version cache (``cache=`` in the constructor), or ``None``."""
        return self._cache

    async def cached_read(self, key: str) -> Stored | None:
        """The value at ``key`` as this instance last confirmed it, else :meth:`read`.

        For a caller whose next step is a conditional write with
        ``if_version=<the version returned>``: the write checks what the
        cache cannot know. If somebody else wrote meanwhile, that write
        raises :class:`~durable_state.errors.VersionConflict` (and drops the
        entry); read again and retry. Never use its answer for anything that
        is not checked that way. A key this instance does not remember (or a
        storage without a cache) is read from the backend.

        Returns:
            The remembered or stored value, or ``None`` if the key does not
            exist (absence is never remembered).

        Raises:
            InvalidKey: the key is not acceptable.
            SnapshotCorrupt: what is stored is not something this storage wrote.
            StorageUnavailable: the backend failed.
        """
        self._check_key(key)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        return await self.read(key)

    async def read(self, key: str) -> Stored | None:
        """Read ``key`` from the backend (never from the cache, which it refreshes).

        See :meth:`BaseStorage.read`.

        Raises:
            InvalidKey: the key is not acceptable.
            SnapshotCorrupt: what is stored is not something this storage wrote.
            StorageUnavailable: the backend failed.
        """
        cache = self._cache
        if cache is None:
            return await super().read(key)
        try:
            stored = await super().read(key)
        except BaseException:
            if isinstance(key, str):
                cache.drop(key)
            raise
        if stored is None:
            cache.drop(key)
        else:
            cache.put(key, stored)
        return stored

    async def write(self, key: str, data: bytes, *, if_version: IfVersion = ANY_VERSION) -> str:
        """Store ``data`` at ``key`` if the condition holds; see :meth:`BaseStorage.write`.

        With a cache, a successful write remembers ``(version, data)``; a
        failed or interrupted one forgets the key.

        Returns:
            The new version.

        Raises:
            VersionConflict: the condition did not hold; nothing was written.
            InvalidKey: the key is not acceptable.
            TypeError: ``data`` is not bytes-like.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: the backend failed; the key holds either its
                old or its new value.
        """
        cache = self._cache
        if cache is None:
            return await super().write(key, data, if_version=if_version)
        self._check_key(key)
        payload = check_data(data)
        check_version(if_version)
        try:
            version = await super().write(key, payload, if_version=if_version)
        except BaseException:
            cache.drop(key)
            raise
        cache.put(key, Stored(payload, version))
        return version

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        """Delete ``key``; see :meth:`BaseStorage.delete`. Forgets the key's cache entry.

        Raises:
            VersionConflict: a version was given and the key is at another one
                or does not exist; nothing was deleted.
            InvalidKey: the key is not acceptable.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: the backend failed.
        """
        try:
            await super().delete(key, if_version=if_version)
        finally:
            if self._cache is not None and isinstance(key, str):
                self._cache.drop(key)

    async def aclose(self) -> None:
        """Release what the backend holds, and empty the cache; see :meth:`BaseStorage.aclose`.

        Raises:
            StorageUnavailable: closing a network client failed.
        """
        if self._cache is not None:
            self._cache.clear()
        await super().aclose()
