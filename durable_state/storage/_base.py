"""The part of a storage backend that is the same for every backend.

:class:`BaseStorage` owns the argument checks (keys, data, versions, due
times), the ``async with`` protocol, and one rule every write needs:

**A write whose outcome was lost is recognised by its write id.** Each call
of :meth:`~BaseStorage.write` draws a fresh write id and the backend
stores it with the value (in the S3 envelope, in the local file's version,
in the DynamoDB item). When a write fails in a way that leaves its outcome
open -- a version conflict that may be the echo of our own retried request
(botocore resends a conditional PUT whose response was cut off, and the
resend then fails its own condition), or a backend error after the request
left -- the storage looks at what is stored now: if it carries this call's
write id, the write landed and its version is returned. A conflict is only
reported when the value stored is somebody else's.

A backend implements a few primitives, each one operation on its store:

* ``_read(key)``, ``_write(key, data, if_version, write_id)``,
  ``_delete(key, if_version)``, ``_exists(key)``, ``_list(prefix)``;
* ``_landed(key, write_id)``: the version stored at ``key`` if its value
  carries ``write_id``, else ``None``;
* ``_add_due``, ``_list_due``, ``_remove_due``: the due index (below);
* ``_aclose()``: free the backend's resources.

**The due index.** A storage also keeps, beside the values, a set of
``(due_ms, key)`` entries: "the actor stored at ``key`` has something to do
at ``due_ms``". The persisted actor adds an entry *before* it saves a
snapshot whose next due time changed, so a crash between the two can only
leave an extra entry (which costs a load), never lose one. Reading the
entries that are due by a time reads those entries only, never every key.
"""

from __future__ import annotations

import abc
import builtins
import logging
from collections.abc import AsyncIterator
from typing import Final

import anyio.abc

from .._unique import unique_hex
from ..errors import StorageError, StorageUnavailable, VersionConflict
from ._keys import MAX_KEY_BYTES, check_data, check_key, check_version
from ._protocol import ANY_VERSION, DueEntry, IfVersion, Stored

__all__ = ("MAX_DUE_MS", "BaseStorage", "check_due", "new_write_id")

logger = logging.getLogger("durable_state.storage")

#: The largest due time an index accepts (epoch ms; year 5138).
MAX_DUE_MS: Final = 10**14 - 1


def new_write_id() -> str:
    """A fresh write id: 32 lower-case hex digits that never repeat (``durable_state._unique``)."""
    return unique_hex()


def check_due(due_ms: object) -> int:
    """Validate a due time (epoch ms, an int in ``[0, MAX_DUE_MS]``).

    Raises:
        TypeError: it is not an int.
        ValueError: it is out of range.
    """
    if isinstance(due_ms, bool) or not isinstance(due_ms, int):
        raise TypeError(f"a due time must be an int of epoch milliseconds, not {due_ms!r}")
    if not 0 <= due_ms <= MAX_DUE_MS:
        raise ValueError(f"a due time must be in [0, {MAX_DUE_MS}], not {due_ms}")
    return due_ms


class BaseStorage(anyio.abc.AsyncResource):
    """Shared implementation of the :class:`~durable_state.storage.Storage` contract."""

    #: The longest key in UTF-8 bytes.
    max_key_bytes: int = MAX_KEY_BYTES

    # ------------------------------------------------------------------ #
    # The contract
    # ------------------------------------------------------------------ #

    async def read(self, key: str) -> Stored | None:
        """Read the bytes and version stored at ``key``.

        Returns:
            The stored value, or ``None`` if the key does not exist.

        Raises:
            InvalidKey: the key is not acceptable.
            SnapshotCorrupt: what is stored is not something this storage wrote.
            StorageUnavailable: the backend failed.
        """
        self._check_key(key)
        return await self._read(key)

    async def write(self, key: str, data: bytes, *, if_version: IfVersion = ANY_VERSION) -> str:
        """Store ``data`` at ``key`` if the condition holds.

        See :meth:`durable_state.storage.Storage.write`. A write whose answer
        was lost but which landed (the value stored carries this call's
        write id) returns its version instead of failing.

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
        self._check_key(key)
        payload = check_data(data)
        check_version(if_version)
        write_id = new_write_id()
        try:
            return await self._write(key, payload, if_version, write_id)
        except (VersionConflict, StorageUnavailable) as exc:
            version = await self._recognise(key, write_id, exc)
            if version is None:
                raise
            return version

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        """Delete ``key``, unconditionally or only if still at ``if_version``.

        Raises:
            VersionConflict: a version was given and the key is at another one
                or does not exist; nothing was deleted.
            InvalidKey: the key is not acceptable.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: the backend failed.
        """
        self._check_key(key)
        check_version(if_version)
        await self._delete(key, None if if_version == ANY_VERSION else if_version)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value.

        Raises:
            InvalidKey: the key is not acceptable.
            StorageUnavailable: the backend failed.
        """
        self._check_key(key)
        return await self._exists(key)

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the stored keys that start with ``prefix``, in ascending order.

        Yields:
            The stored keys, exactly as written.

        Raises:
            TypeError: ``prefix`` is not a str.
            StorageUnavailable: the backend failed (raised while iterating).
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        async for key in self._list(prefix):
            yield key

    # -- the due index ------------------------------------------------------ #

    async def add_due(self, key: str, due_ms: int) -> None:
        """Record that the actor at ``key`` has something to do at ``due_ms``.

        Idempotent; entries for other due times of the same key are kept
        (a reader that finds one stale removes it).

        Raises:
            InvalidKey: the key is not acceptable.
            TypeError: ``due_ms`` is not an int.
            ValueError: ``due_ms`` is out of range.
            StorageUnavailable: the backend failed; the entry may or may not exist.
        """
        self._check_key(key)
        await self._add_due(key, check_due(due_ms))

    async def list_due(self, now_ms: int, *, limit: int | None = None) -> builtins.list[DueEntry]:
        """The entries due by ``now_ms``, earliest first (ties by key).

        Reads only entries that are due (and, depending on the backend, a
        bounded number beyond), never the whole key space.

        Args:
            now_ms: the time to compare with, in epoch ms.
            limit: return at most this many entries (``None``: all).

        Raises:
            TypeError: ``now_ms`` is not an int.
            ValueError: ``now_ms`` is out of range or ``limit`` is not positive.
            StorageUnavailable: the backend failed.
        """
        check_due(now_ms)
        if limit is not None and limit <= 0:
            raise ValueError(f"limit must be positive, not {limit!r}")
        return await self._list_due(now_ms, limit)

    async def remove_due(self, entry: DueEntry) -> None:
        """Remove one entry of the due index; removing a missing entry is a no-op.

        Raises:
            TypeError: ``entry`` is not a :class:`DueEntry`.
            StorageUnavailable: the backend failed.
        """
        if not isinstance(entry, DueEntry):
            raise TypeError(f"expected a DueEntry, not {type(entry).__name__}")
        self._check_key(entry.key)
        await self._remove_due(entry)

    # -- lifetime ----------------------------------------------------------- #

    async def connect(self) -> None:
        """Make what the first request needs (a network client) now.

        A persisted session calls it before it takes a lease, so that the
        lease's time is not spent connecting. A no-op for local backends.

        Raises:
            StorageUnavailable: the connection could not be made.
        """

    async def aclose(self) -> None:
        """Release what the backend holds; safe to call more than once.

        Raises:
            StorageUnavailable: closing a network client failed.
        """
        await self._aclose()

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    def _check_key(self, key: object) -> bytes:
        """Validate ``key`` for this backend; returns its UTF-8 bytes.

        Raises:
            InvalidKey: the key is not acceptable.
        """
        return check_key(key, max_bytes=self.max_key_bytes)

    async def _recognise(self, key: str, write_id: str, exc: Exception) -> str | None:
        """The version of our own write if it landed after all, else ``None``."""
        try:
            version = await self._landed(key, write_id)
        except StorageError:
            # Cannot tell: the original error stands (its outcome is open).
            logger.debug("could not check whether the write of %r landed", key, exc_info=True)
            return None
        if version is not None:
            logger.info(
                "the write of %r landed although it reported %s; it stands as version %s",
                key,
                type(exc).__name__,
                version,
            )
        return version

    async def _aclose(self) -> None:
        """Free the backend's resources (may be called more than once)."""

    @abc.abstractmethod
    async def _read(self, key: str) -> Stored | None:
        """Read ``key`` (already validated)."""

    @abc.abstractmethod
    async def _write(self, key: str, data: bytes, if_version: IfVersion, write_id: str) -> str:
        """Write ``data`` with ``write_id`` if the condition holds; return the version."""

    @abc.abstractmethod
    async def _delete(self, key: str, if_version: str | None) -> None:
        """Delete ``key`` (``if_version=None``: unconditionally)."""

    @abc.abstractmethod
    async def _exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> AsyncIterator[str]:
        """The keys starting with ``prefix``, ascending."""

    @abc.abstractmethod
    async def _landed(self, key: str, write_id: str) -> str | None:
        """The version at ``key`` if its value was written with ``write_id``."""

    @abc.abstractmethod
    async def _add_due(self, key: str, due_ms: int) -> None:
        """Add the index entry ``(due_ms, key)``."""

    @abc.abstractmethod
    async def _list_due(self, now_ms: int, limit: int | None) -> builtins.list[DueEntry]:
        """The entries with ``due_ms <= now_ms``, ascending, at most ``limit``."""

    @abc.abstractmethod
    async def _remove_due(self, entry: DueEntry) -> None:
        """Remove the entry if present."""


def prefix_bytes(prefix: object) -> int:
    """The UTF-8 length of a backend's key prefix, once it is known to be one.

    Raises:
        ValueError: ``prefix`` is not a str, holds NUL, or is not UTF-8 encodable.
    """
    if not isinstance(prefix, str) or "\x00" in prefix:
        raise ValueError("the prefix must be a str without NUL")
    try:
        return len(prefix.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("the prefix must be encodable as UTF-8") from None
