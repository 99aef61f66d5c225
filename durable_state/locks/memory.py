"""``MemoryLockManager``: the lease contract inside one process.

For tests and single-process programs. Every operation is a few dictionary
reads and writes under a :class:`threading.Lock`, done without suspending,
so it is atomic with respect to other tasks and threads, and no cancellation
can cut one off half way. ``acquire`` with ``wait`` still sleeps between
attempts, and ``hold()`` renews in the background, as on every backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LockLost
from ._base import BaseLockManager
from ._lease import DEFAULT_TTL, Busy, Lease, LeaseRecord, check_key, stale_reason

__all__ = ("MemoryLockManager",)


@dataclass
class _Record:
    owner: str
    token: int
    expires_at: float
    released: bool
    ttl: float = 0.0


class _Table:
    """The lease records of one or more sibling managers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Records are kept after release and expiry so tokens keep increasing.
        self.records: dict[str, _Record] = {}


class MemoryLockManager(BaseLockManager):
    """Leases kept in this process's memory, with the full lease contract.

    Each instance has its own lease table; :meth:`sibling` makes a second
    manager over the same table (what a second process would see with a
    shared backend), which is how tests exercise contention between managers.

    Args:
        default_ttl: the lease duration when ``ttl`` is not given (seconds).
        clock: epoch seconds for every expiry decision (default
            :func:`time.time`); e.g. ``ManualClock().time``.

    Raises:
        TypeError: ``default_ttl`` is not a number or ``clock`` is not callable.
        ValueError: ``default_ttl`` is not positive.

    Example:
        >>> async def demo() -> int:
        ...     async with MemoryLockManager() as locks:
        ...         async with locks.hold("order-42") as held:
        ...             return held.token
    """

    def __init__(
        self, *, default_ttl: float = DEFAULT_TTL, clock: Callable[[], float] | None = None
    ) -> None:
        super().__init__(default_ttl=default_ttl, clock=clock)
        self._table = _Table()

    def __repr__(self) -> str:
        return f"MemoryLockManager(default_ttl={self.default_ttl!r})"

    def sibling(
        self, *, default_ttl: float | None = None, clock: Callable[[], float] | None = None
    ) -> MemoryLockManager:
        """A new manager sharing this one's lease table.

        Args:
            default_ttl: the sibling's default TTL (default: this manager's).
            clock: the sibling's clock (default: this manager's); siblings on
                different clocks act like processes whose clocks disagree.

        Returns:
            The sibling; closing either leaves the other usable.

        Raises:
            TypeError: ``default_ttl`` is not a number or ``clock`` is not callable.
            ValueError: ``default_ttl`` is not positive.
        """
        other = MemoryLockManager(
            default_ttl=self.default_ttl if default_ttl is None else default_ttl,
            clock=self.clock if clock is None else clock,
        )
        other._table = self._table
        return other

    def record(self, key: str) -> LeaseRecord | None:
        """The last lease recorded for ``key`` in the shared table, whatever its state.

        Unlike :meth:`peek`, a released or expired lease is a record too. For
        tests that look behind the managers' backs.

        Raises:
            InvalidKey: ``key`` is not a valid key.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        with self._table.lock:
            record = self._table.records.get(key)
            if record is None:
                return None
            return LeaseRecord(record.owner, record.token, record.expires_at, record.released)

    def set_record(self, key: str, record: LeaseRecord | None) -> None:
        """Replace the record of ``key`` in the shared table, or remove it (``None``).

        For tests that play an operator or another holder: a lease whose
        record is rewritten or removed here is lost to its holder at its next
        renewal. The TTL that :meth:`peek` reports is kept (0 for a new record).

        Raises:
            InvalidKey: ``key`` is not a valid key.
        """
        check_key(key, max_bytes=self._max_key_bytes)
        with self._table.lock:
            if record is None:
                self._table.records.pop(key, None)
                return
            old = self._table.records.get(key)
            self._table.records[key] = _Record(
                record.owner,
                record.token,
                record.expires_at,
                record.released,
                ttl=0.0 if old is None else old.ttl,
            )

    _never_suspends = True

    async def _try_acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        with self._table.lock:
            record = self._table.records.get(key)
            if record is not None and not record.released and record.expires_at > now:
                return Busy(record.owner, record.expires_at, record.expires_at)
            token = 1 if record is None else record.token + 1
            self._table.records[key] = _Record(owner, token, now + ttl, released=False, ttl=ttl)
        return Lease(key=key, owner=owner, token=token, expires_at=now + ttl, ttl=ttl)

    async def _renew(self, lease: Lease, now: float) -> Lease:
        expires_at = now + lease.ttl
        with self._table.lock:
            record = self._table.records.get(lease.key)
            stale = stale_reason(record, lease)
            if stale is None and record is not None:
                record.expires_at = expires_at
        if stale is not None:
            raise LockLost(lease.key, owner=lease.owner, token=lease.token, reason=stale)
        return Lease(lease.key, lease.owner, lease.token, expires_at, lease.ttl)

    async def _release(self, lease: Lease, now: float) -> str | None:
        with self._table.lock:
            record = self._table.records.get(lease.key)
            if record is not None and record.owner == lease.owner and record.token == lease.token:
                # Releasing twice is harmless: the record is ours either way.
                record.released = True
                return None
            return stale_reason(record, lease)

    async def _abandon(self, key: str, owner: str, now: float) -> None:
        with self._table.lock:
            record = self._table.records.get(key)
            if record is not None and record.owner == owner:
                record.released = True

    async def _peek(self, key: str, now: float) -> Lease | None:
        with self._table.lock:
            record = self._table.records.get(key)
            if record is None or record.released or record.expires_at <= now:
                return None
            return Lease(key, record.owner, record.token, record.expires_at, record.ttl)

    async def _aclose(self) -> None:
        return None
