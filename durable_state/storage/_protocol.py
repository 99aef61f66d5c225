"""The storage contract: a versioned key-value store with compare-and-set.

Every snapshot save in durable_state goes through :class:`Storage`. The
contract is small on purpose so that it can be kept exactly by a directory of
files, an S3 bucket and a dict alike; one test suite checks every backend
against it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

__all__ = ("ANY_VERSION", "DueEntry", "IfVersion", "Storage", "Stored")

#: ``if_version`` value meaning "write whatever is stored (or not)".
ANY_VERSION: Literal["*"] = "*"

#: What ``if_version`` accepts: ``"*"`` (unconditional), ``None`` (must not
#: exist yet) or a version string returned by the same storage.
IfVersion = str | None


@dataclass(frozen=True)
class Stored:
    """Bytes read from a storage together with the version they were read at.

    Attributes:
        data: the bytes exactly as written.
        version: an opaque token naming this write; pass it as ``if_version``
            to write or delete only if nobody wrote since.
    """

    data: bytes
    version: str


@dataclass(frozen=True, order=True)
class DueEntry:
    """One entry of a storage's due index.

    Ordered by due time, then key: the order :meth:`Storage.list_due`
    returns them in.

    Attributes:
        due_ms: when the actor has something to do, in epoch milliseconds.
        key: the actor's storage key.
    """

    due_ms: int
    key: str


@runtime_checkable
class Storage(Protocol):
    """A versioned key-value store whose writes can be conditional.

    **Keys** are non-empty ``str`` of at most a backend-specific number of
    UTF-8 bytes (1024 for every bundled backend; for ``S3Storage`` the prefix
    counts too), without NUL characters. Any other character is allowed and
    round-trips exactly: ``"order/42"``, ``"üñí"``, ``"a b"``, ``"x:y"``,
    ``"../x"`` and ``"A"``/``"a"`` are distinct keys. A key never addresses
    anything outside the storage's own namespace (directory, bucket prefix).
    A key that breaks these rules raises :class:`~durable_state.errors.InvalidKey`
    before anything is touched.

    **Versions** are opaque strings. Every successful write produces a version
    that this key has never had before, even when the bytes are identical to
    the previous ones and even after the key was deleted and written again:
    a writer that read version ``v`` is refused after *any* later write (no
    A-B-A). Versions are only comparable for equality.

    **Conditions** (``if_version``):

    * ``"*"`` -- unconditional;
    * ``None`` -- the key must not exist;
    * a version string -- the key must exist and still be at that version.

    A condition that does not hold raises
    :class:`~durable_state.errors.VersionConflict` carrying the key, the
    expected version and, when the backend can tell, the current one; nothing
    is changed. The check and the change are one atomic step with respect to
    every other writer of the same storage (for ``LocalFileStorage``: every
    process on the host sharing the directory).

    **Atomicity**: a reader sees either the whole old value with its version or
    the whole new value with its version, never a mix and never a torn value,
    even if the writer crashed or was cancelled half way.

    **Failures** of the backend (I/O, network, permissions, throttling) raise
    :class:`~durable_state.errors.StorageUnavailable` (a
    :class:`~durable_state.errors.StorageError`) naming the key and chaining the
    driver's exception; driver exception types never escape.

    **Lost answers**: a write whose outcome the backend could not report (a
    dropped connection, a conditional request retried by the driver after
    it had already applied) is checked against what is stored: if the
    value there is this write's own, the write succeeded and its version is
    returned; ``VersionConflict`` always means somebody else's value is
    stored.

    **Due index**: beside the values, a storage keeps a set of
    ``(due_ms, key)`` entries (:meth:`add_due`, :meth:`list_due`,
    :meth:`remove_due`), kept by the same backend with no other service. It
    is what a waker reads to find actors whose timers are due: reading the
    entries due by a time costs in proportion to those entries, never to
    the number of keys. Entries are hints: a stale one costs a load.

    **Lifetime**: a storage is an async context manager; :meth:`aclose`
    releases what it holds (network clients) and is idempotent.
    """

    async def read(self, key: str) -> Stored | None:
        """Read the bytes and version stored at ``key``.

        Returns:
            The stored value, or ``None`` if the key does not exist.

        Raises:
            InvalidKey: the key is not acceptable.
            SnapshotCorrupt: what is stored is not something this storage wrote.
            StorageUnavailable: the backend failed.
        """
        ...

    async def write(self, key: str, data: bytes, *, if_version: IfVersion = ANY_VERSION) -> str:
        """Store ``data`` at ``key`` if the condition holds.

        Args:
            key: where to write.
            data: the complete new value.
            if_version: ``"*"`` to write unconditionally, ``None`` to write only
                if the key does not exist, a version to write only if the key is
                still at that version.

        Returns:
            The new version.

        Raises:
            VersionConflict: the condition did not hold; nothing was written.
            InvalidKey: the key is not acceptable.
            TypeError: ``data`` is not bytes-like.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: the backend failed; the key holds either its old
                or its new value.
        """
        ...

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        """Delete ``key``.

        Unlike :meth:`write`, ``if_version=None`` here means *unconditional*;
        deleting a missing key is then a no-op. With a version, the key is
        deleted only if it is still at that version.

        Raises:
            VersionConflict: a version was given and the key is at another one
                or does not exist; nothing was deleted.
            InvalidKey: the key is not acceptable.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: the backend failed.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value.

        Raises:
            InvalidKey: the key is not acceptable.
            StorageUnavailable: the backend failed.
        """
        ...

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the stored keys that start with ``prefix``.

        Keys come back exactly as written, in ascending code-point order
        (which is also the order of their UTF-8 bytes). Keys written or
        deleted while the iteration runs may or may not be seen. Internal
        files or objects (temporary files, locks) are never listed.

        Raises:
            StorageUnavailable: the backend failed (raised while iterating).
        """
        ...

    async def add_due(self, key: str, due_ms: int) -> None:
        """Record that the actor at ``key`` has something to do at ``due_ms``.

        Idempotent. Entries for other due times of the same key are kept.

        Raises:
            InvalidKey: the key is not acceptable.
            TypeError: ``due_ms`` is not an int.
            ValueError: ``due_ms`` is out of range.
            StorageUnavailable: the backend failed.
        """
        ...

    async def list_due(self, now_ms: int, *, limit: int | None = None) -> builtins.list[DueEntry]:
        """The entries with ``due_ms <= now_ms``, earliest first (ties by key).

        Raises:
            StorageUnavailable: the backend failed.
        """
        ...

    async def remove_due(self, entry: DueEntry) -> None:
        """Remove one entry; a missing entry is a no-op.

        Raises:
            StorageUnavailable: the backend failed.
        """
        ...

    async def aclose(self) -> None:
        """Release held resources; safe to call more than once.

        Raises:
            StorageUnavailable: closing a network client failed.
        """
        ...

    async def __aenter__(self) -> Storage:
        """Return the storage itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Call :meth:`aclose`."""
        ...
