"""``FileLockManager``: the lease contract across processes on one host.

Two mechanisms, with separate jobs:

* **Mutual exclusion is the lease record.** Each key has a record file
  (owner, fencing token, expiry, released flag, the holder's session). Every
  acquire, renew, release and abandon is a read-modify-write of that record
  inside a short critical section: an ``flock`` on the record file itself
  (:func:`durable_state._posix.run_locked`: tried without blocking in a
  worker thread, retried from the event loop, so that no thread ever blocks
  and a waiting task stays cancellable).
* **The record file has two slots** of :data:`_SLOT_SIZE` bytes, each a
  checksummed JSON record with a sequence number; the newest whole one is
  the record. A write goes in place, into the slot that does not hold the
  acquisition of the current token, so a torn write can only destroy the
  record it replaces. An acquisition (a new token) is flushed before it is
  used, so fencing tokens survive a power loss; a renewal or a release is
  not flushed: lost with the power, it leaves the acquisition of the same
  token, whose holder's session died with the power (free at once). A new
  file is written whole and renamed into place.
* **Liveness is a session.** Each open manager holds an exclusive ``flock``
  on its own session file for as long as it lives; the kernel drops that lock
  when the process dies, however it dies. A contender that finds an unexpired
  record checks the holder's session: if it can lock it (or it is gone), the
  holder died and the lease is taken over at once. A live holder that stops
  renewing still loses its lease after the TTL, because the expiry in the
  record, not the session, decides ownership.

``flock`` locks belong to open file descriptions, so two managers in one
process (each opening the files itself) exclude each other just as two
processes do. ``fcntl``/``lockf`` record locks would not: they are
per-process.

Layout under the root::

    <root>/.locks/keys/<name>.json      the lease record and its critical
                                        section's lock; never deleted, so
                                        that tokens keep increasing
    <root>/.locks/keys/<name>.lock      the critical section's lock of the
                                        previous release's format (below)
    <root>/.locks/sessions/<hex id>     one per live manager (its liveness)

The previous release kept one JSON record per file, replaced by rename under
an ``flock`` on the ``.lock`` file. Such a record is read as it is (its token
carries on, a lease it holds is respected) and converted by the first
acquisition, which holds that ``.lock`` too: a process of the previous release
sharing the root waits for the conversion, and then reports the new record as
corrupt instead of taking a lease that is held. Upgrade every process sharing
a root; never run the two formats side by side for longer than a rollout.

File names: the key's UTF-8 bytes with every byte outside ``[a-z0-9_-]``
written as ``%XX`` (upper-case hex); an encoded name longer than
:data:`MAX_PLAIN_NAME` characters is replaced by ``~`` + the SHA-256 of the
key. The mapping is injective (apart from SHA-256 collisions for very long
keys), never produces ``/``, ``.`` or ``..``, and stays injective on
case-insensitive file systems. No key can name a path outside the root.

POSIX only (``flock``), and for local file systems only: ``flock`` over NFS
or SMB is emulated or absent and cannot be relied upon.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, TypeVar

from .. import _posix
from .._keys import MAX_PLAIN_NAME, key_file_stem
from .._posix import DEFAULT_CONTENTION_TIMEOUT as DEFAULT_CONTENTION_TIMEOUT
from ..errors import LockLost, LockUnavailable
from ._base import BaseLockManager
from ._lease import DEFAULT_TTL, Busy, Lease, LeaseRecord, check_key, stale_reason

__all__ = ("DEFAULT_CONTENTION_TIMEOUT", "MAX_PLAIN_NAME", "FileLockManager")

logger: logging.Logger = logging.getLogger("durable_state.locks")

_SESSION_ID: Final = re.compile(r"[0-9a-f]{32}")
_RECORD_VERSION: Final = 2
_LEGACY_VERSION: Final = 1  # one JSON object per file, replaced by rename
_SLOT_SIZE: Final = 1024
_FILE_SIZE: Final = 2 * _SLOT_SIZE
_SLOT_HEADER: Final = re.compile(rb"([0-9a-f]{8}) ([0-9]{4})\n")
_HEADER_SIZE: Final = 14

_T = TypeVar("_T")


def file_name(key_bytes: bytes) -> str:
    """The file name stem for a key (the scheme of :mod:`durable_state._keys`)."""
    return key_file_stem(key_bytes)


@dataclass(frozen=True)
class _Record:
    owner: str
    token: int
    expires_at: float
    ttl: float
    released: bool
    session: str


@dataclass(frozen=True)
class _Slots:
    """What a record file holds: its newest record, and where the next write goes."""

    record: _Record | None
    seq: int  # the newest record's sequence number (0: none)
    offset: int  # where the next record goes
    settled: bool  # False: empty, or a record in the previous release's format


class _Corrupt(Exception):
    """A lease record that cannot be decoded."""


class _Store:
    """The blocking half: every method runs in a worker thread."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.keys_dir = os.path.join(root, ".locks", "keys")
        self.sessions_dir = os.path.join(root, ".locks", "sessions")
        self.session_id: str | None = None
        self._session_fd: int | None = None
        self._session_lock = threading.Lock()

    def legacy_lock_path(self, name: str) -> str:
        """The file whose ``flock`` guarded the record of ``name`` in the previous format."""
        return os.path.join(self.keys_dir, name + ".lock")

    def record_path(self, name: str) -> str:
        """The lease record of ``name``; its ``flock`` guards the key's critical section."""
        return os.path.join(self.keys_dir, name + ".json")

    # -- sessions ---------------------------------------------------------- #

    def ensure_session(self) -> str:
        """Create this manager's session on first use; return its id."""
        with self._session_lock:
            if self.session_id is not None:
                return self.session_id
            os.makedirs(self.sessions_dir, exist_ok=True)
            self._sweep_dead_sessions()
            session_id = secrets.token_hex(16)
            tmp = os.path.join(self.sessions_dir, _posix.TMP_PREFIX + session_id)
            # Locked before it gets its real name: a session file that can be
            # found is always either locked or dead.
            fd = _posix.lock_file(
                tmp,
                flags=os.O_RDWR | os.O_CREAT | os.O_EXCL,
                mode=0o644,
                on_fork=self._forget_inherited_session,
            )
            if fd is None:  # pragma: no cover - a file this call just created
                raise RuntimeError(f"a new session file is locked already: {tmp}")
            try:
                _posix.write_all(fd, f"pid {os.getpid()}\n".encode())
                os.replace(tmp, os.path.join(self.sessions_dir, session_id))
            except BaseException:
                _posix.unlock(fd)
                _posix.unlink_missing_ok(tmp)
                raise
            self._session_fd = fd
            self.session_id = session_id
            return session_id

    def close_session(self) -> None:
        """End the session: its leases become free to take at once."""
        with self._session_lock:
            fd, self._session_fd = self._session_fd, None
            if fd is None or self.session_id is None:
                return
            _posix.unlink_missing_ok(os.path.join(self.sessions_dir, self.session_id))
            _posix.unlock(fd)

    def _forget_inherited_session(self) -> None:
        """In a forked child, whose copy of the session descriptor is closed: start afresh.

        The child must neither keep the parent's session alive after the
        parent dies nor take leases in the parent's name. (Closing the copy
        does not end the parent's session: the parent has its own descriptor.)
        """
        self._session_fd = None
        self.session_id = None
        self._session_lock = threading.Lock()  # a parent thread may have held it

    def session_alive(self, session_id: str) -> bool:
        """Whether the manager that owns ``session_id`` still holds its session."""
        if not _SESSION_ID.fullmatch(session_id):
            return False  # not a name this module writes: no live holder
        try:
            fd = _posix.lock_file(
                os.path.join(self.sessions_dir, session_id), flags=os.O_RDONLY, shared=True
            )
        except FileNotFoundError:
            return False
        if fd is None:
            return True
        _posix.unlock(fd)
        return False

    def forget_session(self, session_id: str) -> None:
        """Remove a dead session's file (best effort; it is garbage)."""
        if not _SESSION_ID.fullmatch(session_id):
            return
        path = os.path.join(self.sessions_dir, session_id)
        try:
            fd = _posix.lock_file(path, flags=os.O_RDONLY)
        except FileNotFoundError:
            return
        if fd is None:
            return  # alive after all (cannot happen for a dead id)
        try:
            os.unlink(path)
        except OSError:
            pass  # already gone: garbage either way
        finally:
            _posix.unlock(fd)

    def _sweep_dead_sessions(self) -> None:
        for name in os.listdir(self.sessions_dir):
            if _SESSION_ID.fullmatch(name):
                self.forget_session(name)

    # -- records ----------------------------------------------------------- #

    def peek(self, name: str, now: float, key: str) -> Lease | None:
        # A writer changes one slot in place (or renames a whole new file
        # into place): a reader without the critical section sees the newest
        # whole record, or the one before it.
        record = self.read_record(name)
        if record is None or record.released or record.expires_at <= now:
            return None
        if not self.session_alive(record.session):
            return None  # its holder's process is gone: acquirable at once
        return Lease(key, record.owner, record.token, record.expires_at, record.ttl)

    def read_record(self, name: str) -> _Record | None:
        """The newest record of ``name``, whatever its state (no critical section, like peek)."""
        try:
            fd = os.open(self.record_path(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return self._load(fd, name).record
        finally:
            os.close(fd)

    def set_record(self, fd: int, name: str, fields: LeaseRecord | None) -> None:
        """Replace the record of ``name`` (keeping its TTL and session), or remove it."""
        if fields is None:
            _posix.unlink_missing_ok(self.record_path(name))
            return
        found = self._load(fd, name)
        old = found.record
        record = _Record(
            fields.owner,
            fields.token,
            fields.expires_at,
            old.ttl if old is not None else 0.0,
            fields.released,
            old.session if old is not None else self.ensure_session(),
        )
        self._put(fd, name, found, record, acquired=old is None or record.token != old.token)

    def _load(self, fd: int, name: str) -> _Slots:
        raw = os.pread(fd, _FILE_SIZE, 0)
        if raw[:1] == b"{" and len(raw) == _FILE_SIZE:
            # A record of the previous format, longer than a new file.
            raw = _posix.read_file(self.record_path(name)) or b""
        return _decode(raw, self.record_path(name))

    def _put(self, fd: int, name: str, found: _Slots, record: _Record, *, acquired: bool) -> None:
        """Write ``record`` as the newest record of the file ``fd`` (which holds ``found``).

        An acquisition (a new token) is flushed before this returns: tokens
        must survive a power loss before anyone uses them. A renewal or a
        release keeps the token and is not flushed; it goes to the slot that
        does not hold the acquisition of this token, so a torn or lost update
        leaves that acquisition, whose holder's session died with the power:
        free at once, with the same token. An empty or old-format file is
        replaced whole by a new one renamed into place, with its directory
        flushed.
        """
        if not found.settled:
            content = _encode_slot(record, 1, acquired=True) + bytes(_SLOT_SIZE)
            _posix.replace_atomically(self.record_path(name), (content,))
            return
        _posix.pwrite_all(fd, _encode_slot(record, found.seq + 1, acquired=acquired), found.offset)
        if acquired:
            os.fdatasync(fd)

    # -- lease operations (all but peek run in the key's critical section) -- #

    def try_acquire(
        self, fd: int, name: str, key: str, owner: str, ttl: float, now: float
    ) -> Lease | Busy | _posix.BusyMarker:
        session = self.ensure_session()
        found = self._load(fd, name)
        if not found.settled:
            return self._first_acquire(fd, name, key, owner, ttl, now, session)
        return self._acquire_from(fd, name, found, key, owner, ttl, now, session)

    def _acquire_from(
        self,
        fd: int,
        name: str,
        found: _Slots,
        key: str,
        owner: str,
        ttl: float,
        now: float,
        session: str,
    ) -> Lease | Busy:
        """Take ``key`` over the record ``found`` in the file, if it is free."""
        taken = self._take(found.record, key, owner, ttl, now, session)
        if isinstance(taken, Busy):
            return taken
        record, dead = taken
        self._put(fd, name, found, record, acquired=True)
        return self._taken(key, record, dead)

    def _first_acquire(
        self, fd: int, name: str, key: str, owner: str, ttl: float, now: float, session: str
    ) -> Lease | Busy | _posix.BusyMarker:
        """Acquire through an empty record file or one in the previous release's format.

        That format was one JSON record replaced by rename, in a critical
        section guarded by the ``.lock`` file beside it. Holding that lock
        too keeps a process of the previous release out while the file is
        converted (it reports the new format as corrupt rather than taking
        a lease that is held). The new file is renamed into place whole: a
        crash leaves the old record or the new one.
        """
        guard = _posix.lock_file(self.legacy_lock_path(name))
        if guard is None:
            return _posix.BUSY
        try:
            if os.fstat(fd).st_ino != os.stat(self.record_path(name)).st_ino:
                return _posix.BUSY  # replaced since it was opened: read the new one
            found = self._load(fd, name)
            if found.settled:
                return _posix.BUSY  # converted meanwhile: take the common path
            return self._acquire_from(fd, name, found, key, owner, ttl, now, session)
        finally:
            _posix.unlock(guard)

    def _take(
        self, record: _Record | None, key: str, owner: str, ttl: float, now: float, session: str
    ) -> tuple[_Record, _Record | None] | Busy:
        """The record that takes ``key`` for ``owner``, and the dead holder it replaces."""
        dead: _Record | None = None
        if record is not None and not record.released and record.expires_at > now:
            if self.session_alive(record.session):
                return Busy(record.owner, record.expires_at, record.expires_at)
            # The holder's process died (or its manager was closed): its
            # lease is free although its expiry is still ahead.
            dead = record
        token = 1 if record is None else record.token + 1
        return _Record(owner, token, now + ttl, ttl, False, session), dead

    def _taken(self, key: str, record: _Record, dead: _Record | None) -> Lease:
        if dead is not None:
            logger.info("took over the lease on %r from %r, whose process is gone", key, dead.owner)
            self.forget_session(dead.session)
        return Lease(key, record.owner, record.token, record.expires_at, record.ttl)

    def renew(self, fd: int, name: str, lease: Lease, now: float) -> Lease:
        expires_at = now + lease.ttl
        found = self._load(fd, name)
        stale = stale_reason(found.record, lease)
        if stale is not None or found.record is None:
            raise LockLost(lease.key, owner=lease.owner, token=lease.token, reason=stale or "")
        self._put(fd, name, found, replace(found.record, expires_at=expires_at), acquired=False)
        return Lease(lease.key, lease.owner, lease.token, expires_at, lease.ttl)

    def release(self, fd: int, name: str, lease: Lease) -> str | None:
        found = self._load(fd, name)
        record = found.record
        if record is None or record.owner != lease.owner or record.token != lease.token:
            return stale_reason(record, lease)
        if not record.released:
            self._put(fd, name, found, replace(record, released=True), acquired=False)
        return None

    def abandon(self, fd: int, name: str, owner: str) -> None:
        found = self._load(fd, name)
        record = found.record
        if record is not None and record.owner == owner and not record.released:
            self._put(fd, name, found, replace(record, released=True), acquired=False)


def _encode_slot(record: _Record, seq: int, *, acquired: bool) -> bytes:
    """One slot: ``<crc32 hex> <length>\\n``, the record as JSON, zeros to the slot's end."""
    body = json.dumps(
        {"v": _RECORD_VERSION, "seq": seq, "acquired": acquired, **asdict(record)},
        separators=(",", ":"),
    ).encode()
    if len(body) > _SLOT_SIZE - _HEADER_SIZE:  # pragma: no cover - owners are generated
        raise ValueError(f"a lease record of {len(body)} bytes does not fit in a slot")
    return (b"%08x %04d\n" % (zlib.crc32(body), len(body)) + body).ljust(_SLOT_SIZE, b"\0")


def _decode_slot(slot: bytes) -> tuple[int, bool, _Record] | None:
    """``(seq, acquired, record)``, or ``None`` for a slot that is not whole (torn or unused)."""
    header = _SLOT_HEADER.match(slot)
    if header is None:
        return None
    body = slot[_HEADER_SIZE : _HEADER_SIZE + int(header[2])]
    if len(body) != int(header[2]) or zlib.crc32(body) != int(header[1], 16):
        return None
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != _RECORD_VERSION:
            return None
        return _typed(data, "seq", int), _typed(data, "acquired", bool), _record(data)
    except ValueError:
        return None


def _decode(raw: bytes, path: str) -> _Slots:
    """What the record file at ``path`` holds (its content ``raw``).

    Raises:
        _Corrupt: neither slot holds a whole record, or an old-format record
            cannot be decoded.
    """
    if not raw.strip(b"\0"):
        return _Slots(None, 0, 0, settled=False)  # created, never written
    if raw[:1] == b"{":
        return _Slots(_decode_legacy(raw, path), 0, 0, settled=False)
    found = [
        (slot[0], index, slot[1], slot[2])
        for index in range(2)
        if (slot := _decode_slot(raw[index * _SLOT_SIZE : (index + 1) * _SLOT_SIZE]))
    ]
    if not found:
        raise _Corrupt(f"the lease record {path!r} is corrupt: no whole record in it")
    seq, index, acquired, record = max(found)
    # The next write goes where it cannot destroy the newest acquisition:
    # never over the only whole record, and never over the slot whose record
    # took the current token.
    target = 1 - index if len(found) == 1 or acquired else index
    return _Slots(record, seq, target * _SLOT_SIZE, settled=True)


def _decode_legacy(raw: bytes, path: str) -> _Record:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != _LEGACY_VERSION:
            raise ValueError(f"unknown record format: {raw[:80]!r}")
        return _record(data)
    except ValueError as exc:
        raise _Corrupt(f"the lease record {path!r} is corrupt: {exc}") from exc


def _record(data: dict[str, Any]) -> _Record:
    return _Record(
        owner=_typed(data, "owner", str),
        token=_typed(data, "token", int),
        expires_at=float(_typed(data, "expires_at", float | int)),
        ttl=float(_typed(data, "ttl", float | int)),
        released=_typed(data, "released", bool),
        session=_typed(data, "session", str),
    )


def _typed(data: dict[str, Any], field: str, kind: Any) -> Any:
    value = data.get(field)
    # bool is an int: never accept it where a number is expected, or vice versa.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"field {field!r} is {value!r}")
    return value


@contextlib.contextmanager
def _reported(operation: str, key: str) -> Iterator[None]:
    """Report a file-system failure or a corrupt record as ``LockUnavailable``."""
    try:
        with _posix.map_exceptions(LockUnavailable, operation, key):
            yield
    except _Corrupt as exc:
        raise LockUnavailable(operation, key, str(exc)) from exc


class FileLockManager(BaseLockManager):
    """Leases in a directory, shared by the processes of one host.

    A lease is taken over when it expires (a live holder that stops renewing
    loses it after its TTL, like on every backend) or at once when the
    process holding it dies (kill -9 included), thanks to a per-manager
    session file locked with ``flock`` for the manager's lifetime.
    :meth:`aclose` ends the session, so leases still held then become free at
    once.

    Not for network file systems (NFS, SMB): ``flock`` is not reliable there.
    Several managers may share a root, in one process or many. The root may
    be the same directory as a ``LocalFileStorage`` root: everything lives
    under ``<root>/.locks``.

    Args:
        root: the directory (created on first use).
        default_ttl: the lease duration when ``ttl`` is not given (seconds).
        clock: epoch seconds for every expiry decision (default
            :func:`time.time`); every process sharing the root must use the
            same time source.
        contention_timeout: how long an operation waits for a key's critical
            section held by another process before failing with
            :class:`LockUnavailable`, in seconds (default 10). Critical
            sections last milliseconds; a long wait means a process was
            stopped inside one. ``LocalFileStorage`` takes the same argument
            with the same meaning.

    Raises:
        NotImplementedError: on a platform without ``flock`` (Windows).
        TypeError: ``default_ttl`` or ``contention_timeout`` is not a number,
            or ``clock`` is not callable.
        ValueError: ``default_ttl`` or ``contention_timeout`` is not positive.

    Attributes:
        root: the absolute path of the directory.
        contention_timeout: see above.
    """

    # An attempt is a critical section run by _posix.run_locked, which
    # returns only once a started step has finished (or before it starts):
    # a cancelled acquisition leaves nothing in flight for its clean-up to
    # race, and needs no task of its own (one fewer per session).
    _attempts_settle = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        default_ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] | None = None,
        contention_timeout: float = DEFAULT_CONTENTION_TIMEOUT,
    ) -> None:
        if sys.platform == "win32":
            raise NotImplementedError("FileLockManager needs POSIX flock(); it is not on Windows")
        super().__init__(default_ttl=default_ttl, clock=clock)
        self.contention_timeout: float = _posix.check_contention_timeout(contention_timeout)
        self.root: str = os.path.abspath(os.fspath(root))
        self._store = _Store(self.root)

    def __repr__(self) -> str:
        return f"FileLockManager({self.root!r}, default_ttl={self.default_ttl!r})"

    def record_path(self, key: str) -> str:
        """Where the lease record of ``key`` lives, whether or not it exists yet.

        The file holds two slots of :data:`_SLOT_SIZE` bytes, each a line
        ``<crc32 hex> <length>`` and a JSON object with (among others)
        ``seq``, ``owner``, ``token``, ``expires_at`` and ``released``; the
        whole slot with the highest ``seq`` is the record. For diagnostics
        and tests: the managers write it only inside the key's critical
        section (an ``flock`` on this file).

        Raises:
            InvalidKey: ``key`` is not a valid key.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        return self._store.record_path(file_name(key.encode("utf-8")))

    async def record(self, key: str) -> LeaseRecord | None:
        """The last lease recorded for ``key``, whatever its state.

        Unlike :meth:`peek`, a released or expired lease is a record too. For
        diagnostics and for tests that look behind the managers' backs.

        Raises:
            InvalidKey: ``key`` is not a valid key.
            LockUnavailable: the file system failed, or the record is corrupt.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        name = file_name(key.encode("utf-8"))
        with _reported("record", key):
            found = await _posix.run_in_thread(self._store.read_record, name)
        if found is None:
            return None
        return LeaseRecord(found.owner, found.token, found.expires_at, found.released)

    async def set_record(self, key: str, record: LeaseRecord | None) -> None:
        """Replace the record of ``key``, or remove it (``None``), in its critical section.

        For tests that play an operator or another holder: a lease whose
        record is rewritten or removed here is lost to its holder at its next
        renewal. The record keeps its TTL and the session that vouches for
        its holder; a record written where there was none gets this
        manager's session (its holder lives as long as this manager) and a
        TTL of 0. A new token is flushed to disk, as an acquisition is.

        Raises:
            InvalidKey: ``key`` is not a valid key.
            LockUnavailable: the file system failed, or the record is corrupt.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        await self._locked("set_record", key, self._store.set_record, record)

    async def _locked(
        self, operation: str, key: str, step: Callable[..., _T | _posix.BusyMarker], *args: object
    ) -> _T:
        """Run ``step(fd, name, *args)`` in a worker thread, in the key's critical section.

        ``fd`` is the record file, open for reading and writing, whose
        ``flock`` is the critical section.
        """
        name = file_name(key.encode("utf-8"))
        with _reported(operation, key):
            return await _posix.run_locked(
                self._store.record_path(name),
                self.contention_timeout,
                step,
                name,
                *args,
                pass_fd=True,
            )

    async def _try_acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        return await self._locked("acquire", key, self._store.try_acquire, key, owner, ttl, now)

    async def _renew(self, lease: Lease, now: float) -> Lease:
        return await self._locked("renew", lease.key, self._store.renew, lease, now)

    async def _release(self, lease: Lease, now: float) -> str | None:
        return await self._locked("release", lease.key, self._store.release, lease)

    async def _abandon(self, key: str, owner: str, now: float) -> None:
        if self._store.session_id is None:
            return  # no session yet: no record can have been written
        await self._locked("release", key, self._store.abandon, owner)

    async def _peek(self, key: str, now: float) -> Lease | None:
        with _reported("peek", key):
            name = file_name(key.encode("utf-8"))
            return await _posix.run_in_thread(self._store.peek, name, now, key)

    async def _aclose(self) -> None:
        with _posix.map_exceptions(LockUnavailable, "close", self.root):
            await _posix.run_in_thread(self._store.close_session)
