"""``MemoryStorage``: the storage contract kept in a dict, for tests and examples."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator

import anyio.lowlevel

from ..errors import VersionConflict
from ._keys import MAX_KEY_BYTES, check_data, check_key, check_version
from ._protocol import ANY_VERSION, ClosingContext, IfVersion, Stored

__all__ = ("MemoryStorage",)


class MemoryStorage(ClosingContext):
    """An in-process :class:`~durable_state.storage.Storage`.

    Keeps exactly the semantics of the persistent backends -- key rules,
    conditions, fresh versions on every write -- so that code tested against it
    behaves the same on files or S3. Values live as long as the instance;
    several actors (or several ``PersistedActor`` instances) may share one.
    It is safe for concurrent tasks on one event loop, not across threads.

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

    #: The longest key in UTF-8 bytes.
    max_key_bytes = MAX_KEY_BYTES

    def __init__(self) -> None:
        self._items: dict[str, Stored] = {}
        # A counter shared by all keys never repeats, even after a delete, so a
        # version can never come back (no A-B-A); the per-instance tag keeps
        # versions of two stores apart.
        self._counter = itertools.count(1)
        self._tag = secrets.token_hex(4)

    def _next_version(self) -> str:
        return f"{next(self._counter)}-{self._tag}"

    async def read(self, key: str) -> Stored | None:
        """Read the bytes and version stored at ``key``.

        Returns:
            The stored value, or ``None`` if the key does not exist.

        Raises:
            InvalidKey: the key is not acceptable.
        """
        check_key(key)
        await anyio.lowlevel.checkpoint()
        return self._items.get(key)

    async def write(self, key: str, data: bytes, *, if_version: IfVersion = ANY_VERSION) -> str:
        """Store ``data`` at ``key`` if the condition holds.

        See :meth:`durable_state.storage.Storage.write`.

        Returns:
            The new version.

        Raises:
            VersionConflict: the condition did not hold; nothing was written.
            InvalidKey: the key is not acceptable.
            TypeError: ``data`` is not bytes-like.
            ValueError: ``if_version`` is an empty string.
        """
        check_key(key)
        payload = check_data(data)
        check_version(if_version)
        await anyio.lowlevel.checkpoint()
        # No await between the check and the change: on one event loop the
        # pair is atomic.
        self._check(key, if_version)
        version = self._next_version()
        self._items[key] = Stored(payload, version)
        return version

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        """Delete ``key``, unconditionally or only if still at ``if_version``.

        See :meth:`durable_state.storage.Storage.delete`.

        Raises:
            VersionConflict: a version was given and the key is at another one
                or does not exist.
            InvalidKey: the key is not acceptable.
            ValueError: ``if_version`` is an empty string.
        """
        check_key(key)
        check_version(if_version)
        await anyio.lowlevel.checkpoint()
        if if_version is not None:  # None (or "*") deletes unconditionally
            self._check(key, if_version)
        self._items.pop(key, None)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value.

        Raises:
            InvalidKey: the key is not acceptable.
        """
        check_key(key)
        await anyio.lowlevel.checkpoint()
        return key in self._items

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys that start with ``prefix``, in ascending order.

        Yields:
            The stored keys, exactly as written.

        Raises:
            TypeError: ``prefix`` is not a str.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        for key in sorted(k for k in self._items if k.startswith(prefix)):
            await anyio.lowlevel.checkpoint()
            yield key

    async def aclose(self) -> None:
        """Nothing to release; present for the contract. Values are kept."""

    def _check(self, key: str, if_version: str | None) -> None:
        if if_version == ANY_VERSION:
            return
        current = self._items.get(key)
        actual = current.version if current is not None else None
        # None expects absence, a version expects exactly that version.
        if actual != if_version:
            raise VersionConflict(key, expected=if_version, actual=actual)

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._items)} keys>)"
