"""``LocalFileStorage``: one file per key in a directory, compare-and-set across processes.

Layout of the storage root::

    <root>/<name>.state           one file per key (see "File names")
    <root>/.tmp-<random>          a write in progress (never listed)
    <root>/.storage-locks/NN.lock lock stripes, created on demand, never deleted
    <root>/.due/<bucket>/<due>-<name> the due index: empty files (see below)

File format: a one-line ASCII header, then the value's bytes verbatim::

    DSF1 <version> <percent-encoded key>\\n<data>

Because a reader opens one file and reads both the header and the data from
it, the version it returns always belongs to the data it returns. Files are
only ever replaced whole (temp file, ``fsync``, ``os.replace``, ``fsync`` of
the directory), so a crash at any instant leaves either the old or the new
file.

File names: the key's UTF-8 bytes with every byte outside ``[a-z0-9_-]``
written as ``%XX`` (upper-case hex), then ``.state``. The mapping is injective
and reversible, never produces ``/``, ``.`` or ``..``, and stays injective on
case-insensitive file systems (a literal letter is always lower case, a hex
digit always upper case and behind a ``%``). An encoded name longer than
:data:`MAX_PLAIN_NAME` characters is replaced by ``~`` + the SHA-256 of the
key; the header still carries the key, which is how :meth:`list` recovers it.

Versions: ``"<counter>.<write id>"``. The counter grows with each write of
the key; the write id is the random id of the ``write`` call that stored the
file, which keeps versions unique across delete and re-create and lets a
writer recognise its own write.

The due index: one empty file per entry, named ``<due ms, 15 digits>-<file
name stem>``, in a directory per minute of due time (``<due ms> // 60000``).
Adding an entry creates the file (and ``fsync``-s the directories of a new
minute); the ``fsync`` of the entry's own directory is left to the key's
next write, which runs it after its file's ``fsync`` and before its rename.
So an entry written before a snapshot is durable before the snapshot is, and
on a journaled file system that ``fsync`` costs almost nothing: the file's
``fsync`` has already committed the entry with it. An entry whose key is not
written is made durable by a worker thread 0.1 s later, or by
:meth:`LocalFileStorage.aclose`.
Finding what is due lists the minute directories that have started and, in
each, only its own entries: future minutes are never read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Final

from .. import _posix
from .._keys import MAX_PLAIN_NAME, decode_key, encode_key, key_file_stem
from .._posix import DEFAULT_CONTENTION_TIMEOUT as DEFAULT_CONTENTION_TIMEOUT
from .._posix import read_file as _read_file
from ..errors import SnapshotCorrupt, StorageUnavailable, VersionConflict
from ._base import BaseStorage
from ._keys import MAX_KEY_BYTES
from ._protocol import ANY_VERSION, DueEntry, IfVersion, Stored

__all__ = ("DEFAULT_CONTENTION_TIMEOUT", "MAX_PLAIN_NAME", "LocalFileStorage")

logger: logging.Logger = logging.getLogger("durable_state.storage")

_SUFFIX: Final = ".state"
_LOCK_DIR: Final = ".storage-locks"
_DUE_DIR: Final = ".due"
#: Width of one directory of the due index, in ms.
_DUE_BUCKET_MS: Final = 60_000
_LOCK_STRIPES: Final = 256
_MAGIC: Final = b"DSF1"
# The header holds at most a 3072-character encoded key plus a short version.
_PEEK_BYTES: Final = 4096
#: How long an added due entry waits for its key's write to make it durable.
_DUE_SYNC_DELAY: Final = 0.1


def file_name(key_bytes: bytes) -> str:
    """The file name (without directory) that holds the key."""
    return key_file_stem(key_bytes) + _SUFFIX


class _Corrupt(Exception):
    """A file is not in this storage's format (internal; becomes SnapshotCorrupt)."""


def _parse(raw: bytes) -> tuple[str, str, int]:
    """Split a file's leading bytes into (version, encoded key, offset of the data)."""
    end = raw.find(b"\n", 0, _PEEK_BYTES)
    if end < 0:
        raise _Corrupt("no header line")
    parts = raw[:end].split(b" ")
    if len(parts) != 3 or parts[0] != _MAGIC or not parts[1] or not parts[2]:
        raise _Corrupt("not a durable_state storage file (bad header)")
    try:
        return parts[1].decode("ascii"), parts[2].decode("ascii"), end + 1
    except UnicodeDecodeError as exc:
        raise _Corrupt("header is not ASCII") from exc


def _next_version(current: str | None, write_id: str) -> str:
    # counter: strictly increasing while the file exists; write id: unique per
    # write call, which keeps versions unique across a delete and re-create
    # (when the counter starts over) and across writers that found an
    # unreadable file.
    counter = 0
    if current is not None:
        head, _, _ = current.partition(".")
        counter = int(head) if head.isdigit() else 0
    return f"{counter + 1}.{write_id}"


def _key_of(path: str) -> str | None:
    raw = _read_file(path, _PEEK_BYTES)
    if raw is None:
        return None
    try:
        _, encoded, _ = _parse(raw)
    except _Corrupt:
        return None
    return decode_key(encoded)


def _scan(root: str, prefix: str) -> list[str]:
    """Every key stored under ``root`` that starts with ``prefix``, sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    keys: list[str] = []
    for name in names:
        # Temp files, the lock directory and any foreign file are skipped.
        if name.startswith(".") or not name.endswith(_SUFFIX):
            continue
        stem = name[: -len(_SUFFIX)]
        key = _key_of(os.path.join(root, name)) if stem.startswith("~") else decode_key(stem)
        if key is None or not key.startswith(prefix):
            continue
        if file_name(key.encode("utf-8")) == name:
            keys.append(key)
    keys.sort()
    return keys


def _due_dir(root: str, due_ms: int) -> str:
    return os.path.join(root, _DUE_DIR, f"{due_ms // _DUE_BUCKET_MS:010d}")


def _add_due_entry(root: str, due_ms: int, name: str) -> str:
    """Create the entry's file; return its directory, whose ``fsync`` is still due."""
    bucket = _due_dir(root, due_ms)
    path = os.path.join(bucket, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        try:
            os.close(os.open(path, flags, 0o666))
            break
        except FileNotFoundError:
            # A new minute: make its directory durable too. (A reader that
            # removed it as empty in between makes us come round again.)
            index = os.path.dirname(bucket)
            new_index = not os.path.isdir(index)
            os.makedirs(bucket, exist_ok=True)
            _posix.fsync_dir(index)
            if new_index:
                _posix.fsync_dir(root)
    return bucket


class _DueSync:
    """The ``fsync`` an added due entry's directory still needs: run once, by whoever comes first."""

    __slots__ = ("_lock", "bucket", "done", "key")

    def __init__(self, key: str, bucket: str) -> None:
        self.key = key
        self.bucket = bucket
        self.done = False
        self._lock = threading.Lock()

    def run(self) -> None:
        with self._lock:
            if self.done:
                return
            try:
                _posix.fsync_dir(self.bucket)
            except FileNotFoundError:
                pass  # the minute was emptied and removed: the entry is gone
            self.done = True


def _run_all(syncs: Sequence[_DueSync]) -> None:
    for sync in syncs:
        sync.run()


def _run_quietly(sync: _DueSync) -> None:
    try:
        sync.run()
    except OSError:
        logger.warning(
            "could not make a due entry of %r durable; its next write tries again",
            sync.key,
            exc_info=True,
        )


def _list_due_entries(root: str, now_ms: int, limit: int | None) -> list[DueEntry]:
    index = os.path.join(root, _DUE_DIR)
    try:
        buckets = sorted(int(b) for b in os.listdir(index) if b.isdigit())
    except FileNotFoundError:
        return []
    entries: list[DueEntry] = []
    for bucket in buckets:
        if bucket * _DUE_BUCKET_MS > now_ms:
            break  # this minute and every later one have not started
        bucket_dir = os.path.join(index, f"{bucket:010d}")
        try:
            names = sorted(os.listdir(bucket_dir))
        except FileNotFoundError:
            continue
        for name in names:
            due_text, _, stem = name.partition("-")
            if not due_text.isdigit() or not stem:
                continue  # not an entry (a foreign file)
            due_ms = int(due_text)
            if due_ms > now_ms:
                break  # names sort by due time within a minute
            key = _key_of_stem(root, stem)
            if key is None:
                # A hashed name whose actor file is gone: nothing to wake.
                _posix.unlink_missing_ok(os.path.join(bucket_dir, name))
                continue
            entries.append(DueEntry(due_ms, key))
        if limit is not None and len(entries) >= limit:
            break
    entries.sort()
    return entries[:limit] if limit is not None else entries


def _key_of_stem(root: str, stem: str) -> str | None:
    if stem.startswith("~"):
        return _key_of(os.path.join(root, stem + _SUFFIX))
    return decode_key(stem)


def _remove_due_entry(root: str, due_ms: int, name: str) -> None:
    bucket = _due_dir(root, due_ms)
    _posix.unlink_missing_ok(os.path.join(bucket, name))
    try:
        os.rmdir(bucket)  # only succeeds once the minute is empty
    except OSError:
        pass


def _check(head: bytes | None, key: str, if_version: str | None) -> str | None:
    """Check ``if_version`` against the file whose head was read; return its version.

    A file this storage cannot parse counts as existing at an unknown version:
    an unconditional write replaces it, a conditional one fails.

    Raises:
        VersionConflict: the condition does not hold.
    """
    current: str | None = None
    if head is not None:
        try:
            current = _parse(head)[0]
        except _Corrupt:
            current = None
    if if_version == ANY_VERSION:
        return current
    if head is None and if_version is None:
        return None
    if head is not None and current is not None and current == if_version:
        return current
    raise VersionConflict(key, expected=if_version, actual=current)


def _stripe_path(root: str, name: str) -> str:
    """The lock file that guards the file ``name``: one of 256 stripes.

    ``flock`` locks belong to the open file description, so writers exclude
    each other whether they are two processes, two storage instances or two
    tasks of one instance; the kernel drops the lock of a dead process.
    """
    stripe = hashlib.sha256(name.encode("ascii")).digest()[0] % _LOCK_STRIPES
    return os.path.join(root, _LOCK_DIR, f"{stripe:02x}.lock")


def _replace(
    path: str,
    key: str,
    if_version: str | None,
    header_key: bytes,
    data: bytes,
    write_id: str,
    due_syncs: Sequence[_DueSync],
) -> str:
    """Check the version and replace the file; return the new version (under the stripe lock).

    The due entries added for the key are made durable before the rename.
    """
    current = _check(_read_file(path, _PEEK_BYTES), key, if_version)
    version = _next_version(current, write_id)
    header = b"%s %s %s\n" % (_MAGIC, version.encode(), header_key)
    _posix.replace_atomically(path, (header, data), before_rename=partial(_run_all, due_syncs))
    return version


def _remove(path: str, key: str, if_version: str | None) -> None:
    """Check the version (unless ``None``) and remove the file if it exists (under the lock)."""
    if if_version is not None:
        _check(_read_file(path, _PEEK_BYTES), key, if_version)
    if _posix.unlink_missing_ok(path):
        _posix.fsync_dir(os.path.dirname(path))


class LocalFileStorage(BaseStorage):
    """A :class:`~durable_state.storage.Storage` in a local directory.

    The embedded default: no server and no configuration. The root directory is
    created on the first write. Several processes on one host may share a root
    (e.g. the workers of one web server): compare-and-set holds across all of
    them, because each check-and-replace runs under an exclusive ``flock``.

    Guarantees:

    * atomic replacement: after a crash at any instant a key holds its complete
      old or complete new value; a cancelled write leaves no temp file and no
      held lock;
    * durable once :meth:`write` returns (file and directory are ``fsync``-ed);
    * versions are ``"<counter>.<write id>"``: the counter grows with each
      write of the key, the write id keeps versions unique across delete and
      re-create, so identical bytes written twice get two versions;
    * the due index lives beside the values (``.due/``); an entry added for a
      key is durable before the key's next write through this instance is
      (otherwise a worker thread makes it durable 0.1 s after :meth:`add_due`
      returned, and :meth:`aclose` does).

    Not for network file systems (NFS, SMB, most FUSE mounts): ``flock`` and
    rename atomicity are not reliable there. POSIX only (``fcntl``).

    Args:
        root: the directory to keep the files in; every key lives directly in
            it, and nothing outside it is ever created or touched.
        contention_timeout: how long a write or delete waits for a lock
            stripe held by another writer before giving up with
            ``StorageUnavailable``, in seconds (default 10). Critical sections
            last milliseconds; a long wait means a writer was stopped
            (``SIGSTOP``, a debugger) inside one. ``FileLockManager`` takes
            the same argument with the same meaning.

    Raises:
        TypeError: ``contention_timeout`` is not a number.
        ValueError: ``contention_timeout`` is not positive.

    Example:
        >>> import asyncio, tempfile
        >>> async def demo(root: str) -> bytes:
        ...     async with LocalFileStorage(root) as storage:
        ...         v1 = await storage.write("order/42", b"{}", if_version=None)
        ...         await storage.write("order/42", b'{"n": 1}', if_version=v1)
        ...         stored = await storage.read("order/42")
        ...         return stored.data if stored else b""
        >>> asyncio.run(demo(tempfile.mkdtemp()))
        b'{"n": 1}'
    """

    max_key_bytes = MAX_KEY_BYTES

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        contention_timeout: float = DEFAULT_CONTENTION_TIMEOUT,
    ) -> None:
        if sys.platform == "win32":  # pragma: no cover - POSIX-only backend
            raise NotImplementedError("LocalFileStorage needs POSIX flock (not Windows)")
        self.contention_timeout: float = _posix.check_contention_timeout(contention_timeout)
        # Fixed now, so that a later chdir() cannot move the store.
        self.root: str = os.path.abspath(os.fspath(root))
        # Due entries whose directory fsync has not run yet (event loop only).
        self._due_syncs: list[_DueSync] = []

    def __repr__(self) -> str:
        return f"LocalFileStorage({self.root!r})"

    def _path(self, key: str) -> str:
        return os.path.join(self.root, file_name(key.encode("utf-8")))

    async def _read(self, key: str) -> Stored | None:
        # Takes no lock: files are only ever replaced whole, so one open file
        # yields a matching header and data.
        key_bytes = key.encode("utf-8")
        with _posix.map_exceptions(StorageUnavailable, "read", key):
            # One self-contained call: a cancelled caller leaks no descriptor.
            raw = await _posix.run_in_thread(_read_file, self._path(key))
        if raw is None:
            return None
        try:
            version, encoded, offset = _parse(raw)
        except _Corrupt as exc:
            raise SnapshotCorrupt(key, exc.args[0]) from None
        if encoded != encode_key(key_bytes):
            raise SnapshotCorrupt(key, f"the file holds another key ({decode_key(encoded)!r})")
        return Stored(raw[offset:], version)

    async def _write(self, key: str, data: bytes, if_version: IfVersion, write_id: str) -> str:
        # Waits (cancellably, at most contention_timeout) while another writer
        # of the same lock stripe is in its critical section.
        key_bytes = key.encode("utf-8")
        name = file_name(key_bytes)
        header_key = encode_key(key_bytes).encode("ascii")
        path = os.path.join(self.root, name)
        with _posix.map_exceptions(StorageUnavailable, "write", key):
            return await _posix.run_locked(
                _stripe_path(self.root, name),
                self.contention_timeout,
                _replace,
                path,
                key,
                if_version,
                header_key,
                data,
                write_id,
                self._pending_due_syncs(key),
            )

    async def _delete(self, key: str, if_version: str | None) -> None:
        name = file_name(key.encode("utf-8"))
        path = os.path.join(self.root, name)
        lock_path = _stripe_path(self.root, name)
        with _posix.map_exceptions(StorageUnavailable, "delete", key):
            await _posix.run_locked(
                lock_path, self.contention_timeout, _remove, path, key, if_version
            )

    async def _exists(self, key: str) -> bool:
        with _posix.map_exceptions(StorageUnavailable, "exists", key):
            return await _posix.run_in_thread(_file_exists, self._path(key))

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        # The directory is read once, when iteration starts.
        with _posix.map_exceptions(StorageUnavailable, "list", None):
            keys = await _posix.run_in_thread(_scan, self.root, prefix)
        for key in keys:
            yield key

    async def _landed(self, key: str, write_id: str) -> str | None:
        with _posix.map_exceptions(StorageUnavailable, "read", key):
            head = await _posix.run_in_thread(_read_file, self._path(key), _PEEK_BYTES)
        try:
            version = _parse(head)[0] if head is not None else None
        except _Corrupt:
            return None
        return version if version is not None and version.endswith("." + write_id) else None

    async def _add_due(self, key: str, due_ms: int) -> None:
        name = f"{due_ms:015d}-{key_file_stem(key.encode('utf-8'))}"
        with _posix.map_exceptions(StorageUnavailable, "add_due", key):
            bucket = await _posix.run_in_thread(_add_due_entry, self.root, due_ms, name)
        sync = _DueSync(key, bucket)
        self._due_syncs = [*self._pending_due_syncs(), sync]
        # The key's next write makes the entry durable; should none come soon,
        # a worker thread does.
        asyncio.get_running_loop().call_later(_DUE_SYNC_DELAY, self._sync_soon, sync)

    def _sync_soon(self, sync: _DueSync) -> None:
        if not sync.done:
            _posix.start_in_thread(_run_quietly, sync)

    def _pending_due_syncs(self, key: str | None = None) -> list[_DueSync]:
        """The due entries still to make durable (of ``key``, or all of them)."""
        self._due_syncs = [sync for sync in self._due_syncs if not sync.done]
        return [sync for sync in self._due_syncs if key is None or sync.key == key]

    async def _aclose(self) -> None:
        pending = self._pending_due_syncs()
        if pending:
            with _posix.map_exceptions(StorageUnavailable, "close", None):
                await _posix.run_in_thread(_run_all, pending)

    async def _list_due(self, now_ms: int, limit: int | None) -> list[DueEntry]:
        with _posix.map_exceptions(StorageUnavailable, "list_due", None):
            return await _posix.run_in_thread(_list_due_entries, self.root, now_ms, limit)

    async def _remove_due(self, entry: DueEntry) -> None:
        name = f"{entry.due_ms:015d}-{key_file_stem(entry.key.encode('utf-8'))}"
        with _posix.map_exceptions(StorageUnavailable, "remove_due", entry.key):
            await _posix.run_in_thread(_remove_due_entry, self.root, entry.due_ms, name)


def _file_exists(path: str) -> bool:
    """Whether ``path`` exists; other errors than its absence propagate."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True
