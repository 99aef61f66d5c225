"""``MemoryStorage``: the storage contract kept in a dict, for tests and examples."""

from __future__ import annotations

import bisect
import itertools
import secrets
from asyncio import sleep
from collections.abc import AsyncIterator

from ..errors import VersionConflict
from ._base import BaseStorage
from ._protocol import ANY_VERSION, DueEntry, IfVersion, Stored

__all__ = ("MemoryStorage",)


class MemoryStorage(BaseStorage):
    """An in-process :class:`~durable_state.storage.Storage`.

    Keeps exactly the semantics of the persistent backends -- key rules,
    conditions, fresh versions on every write, the due index -- so that code
    tested against it behaves the same on files or S3. Values live as long
    as the instance; several actors (or several ``PersistedActor``
    instances) may share one. It is safe for concurrent tasks on one event
    loop, not across threads.

    Example:
        >>> import asyncio
        >>> async def demo() -> bytes:
        ...     async with MemoryStorage() as storage:
        ...         v1 = await storage.write("order/42", b"{}", if_version=None)
        ...         await storage.write("order/42", b'{"n": 1}', if_version=v1)
        ...         stored = await storage.read("order/42")
        ...         return stored.data if stored else b""
        >>> asyncio.run(demo())
        b'{"n": 1}'
    """

    def __init__(self) -> None:
        # key -> (value, write id of the write that stored it)
        self._items: dict[str, tuple[Stored, str]] = {}
        # A counter shared by all keys never repeats, even after a delete, so a
        # version can never come back (no A-B-A); the per-instance tag keeps
        # versions of two stores apart.
        self._counter = itertools.count(1)
        self._tag = secrets.token_hex(4)
        # The due index: sorted (due_ms, key) pairs.
        self._due: list[tuple[int, str]] = []

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._items)} keys>)"

    # Every operation takes a turn of the event loop (sleep(0)), as a
    # request to a real backend would: other tasks run, and a pending
    # cancellation lands there.

    async def _read(self, key: str) -> Stored | None:
        await sleep(0)
        item = self._items.get(key)
        return item[0] if item is not None else None

    async def _write(self, key: str, data: bytes, if_version: IfVersion, write_id: str) -> str:
        await sleep(0)
        # No await between the check and the change: on one event loop the
        # pair is atomic.
        self._check(key, if_version)
        version = f"{next(self._counter)}-{self._tag}"
        self._items[key] = (Stored(data, version), write_id)
        return version

    async def _delete(self, key: str, if_version: str | None) -> None:
        await sleep(0)
        if if_version is not None:
            self._check(key, if_version)
        self._items.pop(key, None)

    async def _exists(self, key: str) -> bool:
        await sleep(0)
        return key in self._items

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(k for k in self._items if k.startswith(prefix)):
            await sleep(0)
            yield key

    async def _landed(self, key: str, write_id: str) -> str | None:
        item = self._items.get(key)
        return item[0].version if item is not None and item[1] == write_id else None

    async def _add_due(self, key: str, due_ms: int) -> None:
        await sleep(0)
        entry = (due_ms, key)
        at = bisect.bisect_left(self._due, entry)
        if at == len(self._due) or self._due[at] != entry:
            self._due.insert(at, entry)

    async def _list_due(self, now_ms: int, limit: int | None) -> list[DueEntry]:
        await sleep(0)
        entries: list[DueEntry] = []
        for due_ms, key in self._due:
            if due_ms > now_ms or (limit is not None and len(entries) >= limit):
                break
            entries.append(DueEntry(due_ms, key))
        return entries

    async def _remove_due(self, entry: DueEntry) -> None:
        await sleep(0)
        pair = (entry.due_ms, entry.key)
        at = bisect.bisect_left(self._due, pair)
        if at < len(self._due) and self._due[at] == pair:
            del self._due[at]

    def _check(self, key: str, if_version: IfVersion) -> None:
        if if_version == ANY_VERSION:
            return
        current = self._items.get(key)
        actual = current[0].version if current is not None else None
        # None expects absence, a version expects exactly that version.
        if actual != if_version:
            raise VersionConflict(key, expected=if_version, actual=actual)
