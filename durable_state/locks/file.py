"""``FileLockManager``: the lease contract across processes on one host.

Two mechanisms, with separate jobs:

* **Mutual exclusion is the lease record.** Each key has a JSON record
  (owner, fencing token, expiry, released flag, the holder's session). Every
  acquire, renew, release and abandon is a read-modify-write of that record
  inside a short critical section guarded by an ``flock`` on a per-key
  ``.lock`` file (:func:`durable_state._posix.run_locked`: tried without
  blocking in a worker thread, retried from the event loop, so that no thread
  ever blocks and a waiting task stays cancellable). The record is replaced
  atomically (:func:`durable_state._posix.replace_atomically`), so a crash
  leaves the old or the new record, never a torn one, and fencing tokens
  survive a power loss.
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

    <root>/.locks/keys/<name>.lock      critical-section lock, never deleted
    <root>/.locks/keys/<name>.json      the lease record, kept after release
                                        so that tokens keep increasing
    <root>/.locks/sessions/<hex id>     one per live manager (its liveness)

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, TypeVar

from .. import _posix
from .._keys import MAX_PLAIN_NAME, key_file_stem
from .._posix import DEFAULT_CONTENTION_TIMEOUT as DEFAULT_CONTENTION_TIMEOUT
from ..errors import LockLost, LockUnavailable
from ._base import BaseLockManager
from ._lease import DEFAULT_TTL, Busy, Lease, check_key, stale_reason

__all__ = ("DEFAULT_CONTENTION_TIMEOUT", "MAX_PLAIN_NAME", "FileLockManager")

logger: logging.Logger = logging.getLogger("durable_state.locks")

_SESSION_ID: Final = re.compile(r"[0-9a-f]{32}")
_RECORD_VERSION: Final = 1

_T = TypeVar("_T")


def file_name(key_bytes: bytes) -> str:
    """The file name stem for a key (the scheme of :mod:`durable_state._keys`)."""
    return key_file_stem(key_bytes)


@dataclass(frozen=True)
class _Record:
    key: str
    owner: str
    token: int
    expires_at: float
    ttl: float
    released: bool
    session: str


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

    def lock_path(self, name: str) -> str:
        """The file whose ``flock`` guards the record of ``name``."""
        return os.path.join(self.keys_dir, name + ".lock")

    def record_path(self, name: str) -> str:
        """The lease record of ``name``."""
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

    def read(self, name: str) -> _Record | None:
        path = self.record_path(name)
        raw = _posix.read_file(path)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != _RECORD_VERSION:
                raise ValueError(f"unknown record format: {raw[:80]!r}")
            record = _Record(
                key=_typed(data, "key", str),
                owner=_typed(data, "owner", str),
                token=_typed(data, "token", int),
                expires_at=float(_typed(data, "expires_at", float | int)),
                ttl=float(_typed(data, "ttl", float | int)),
                released=_typed(data, "released", bool),
                session=_typed(data, "session", str),
            )
        except ValueError as exc:
            raise _Corrupt(f"the lease record {path!r} is corrupt: {exc}") from exc
        return record

    def write(self, name: str, record: _Record, *, new_token: bool = True) -> None:
        """Replace the record of ``name``.

        Only a record with a new token must survive a power loss as soon as
        it is written (tokens never go back). A renewal or a release keeps
        the token: should the power fail before the directory reached the
        disk, the record found afterwards is the acquired one with the same
        token, whose holder's session died with the power: free at once.
        Those skip the directory's ``fsync``.
        """
        payload = json.dumps({"v": _RECORD_VERSION, **asdict(record)}).encode()
        _posix.replace_atomically(
            self.record_path(name), (payload,), mode=0o644, sync_directory=new_token
        )

    # -- lease operations (all but peek run in the key's critical section) -- #

    def try_acquire(self, name: str, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        session = self.ensure_session()
        record = self.read(name)
        dead: _Record | None = None
        if record is not None and not record.released and record.expires_at > now:
            if self.session_alive(record.session):
                return Busy(record.owner, record.expires_at, record.expires_at)
            # The holder's process died (or its manager was closed): its
            # lease is free although its expiry is still ahead.
            dead = record
        token = 1 if record is None else record.token + 1
        self.write(name, _Record(key, owner, token, now + ttl, ttl, False, session))
        if dead is not None:
            logger.info("took over the lease on %r from %r, whose process is gone", key, dead.owner)
            self.forget_session(dead.session)
        return Lease(key=key, owner=owner, token=token, expires_at=now + ttl, ttl=ttl)

    def peek(self, name: str, now: float) -> Lease | None:
        # Records are replaced whole, so a read needs no critical section.
        record = self.read(name)
        if record is None or record.released or record.expires_at <= now:
            return None
        if not self.session_alive(record.session):
            return None  # its holder's process is gone: acquirable at once
        return Lease(record.key, record.owner, record.token, record.expires_at, record.ttl)

    def renew(self, name: str, lease: Lease, now: float) -> Lease:
        expires_at = now + lease.ttl
        record = self.read(name)
        stale = stale_reason(record, lease)
        if stale is not None or record is None:
            raise LockLost(lease.key, owner=lease.owner, token=lease.token, reason=stale or "")
        self.write(name, replace(record, expires_at=expires_at), new_token=False)
        return Lease(lease.key, lease.owner, lease.token, expires_at, lease.ttl)

    def release(self, name: str, lease: Lease) -> str | None:
        record = self.read(name)
        if record is None or record.owner != lease.owner or record.token != lease.token:
            return stale_reason(record, lease)
        if not record.released:
            self.write(name, replace(record, released=True), new_token=False)
        return None

    def abandon(self, name: str, owner: str) -> None:
        record = self.read(name)
        if record is not None and record.owner == owner and not record.released:
            self.write(name, replace(record, released=True), new_token=False)


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

        The record is a JSON object with (among others) ``owner``, ``token``,
        ``expires_at`` and ``released``; it is replaced atomically, never
        edited in place. For diagnostics and tests: the managers read and
        write it only inside the key's critical section.

        Raises:
            InvalidKey: ``key`` is not a valid key.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        return self._store.record_path(file_name(key.encode("utf-8")))

    async def _locked(self, operation: str, key: str, step: Callable[..., _T], *args: object) -> _T:
        """Run ``step(name, *args)`` in a worker thread, in the key's critical section."""
        name = file_name(key.encode("utf-8"))
        with _reported(operation, key):
            return await _posix.run_locked(
                self._store.lock_path(name), self.contention_timeout, step, name, *args
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
            return await _posix.run_in_thread(self._store.peek, file_name(key.encode("utf-8")), now)

    async def _aclose(self) -> None:
        with _posix.map_exceptions(LockUnavailable, "close", self.root):
            await _posix.run_in_thread(self._store.close_session)
