"""The ``LockManager`` protocol: the lease contract every backend honours."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from ._hold import HeldLease
from ._lease import Lease

__all__ = ("LockManager",)

_M = TypeVar("_M", bound="LockManager")


@runtime_checkable
class LockManager(Protocol):
    """Exclusive, time-limited leases on string keys, with fencing tokens.

    The contract, identical for every backend:

    * **Exclusion.** At any instant at most one unexpired, unreleased lease
      exists per key, across every manager (and process) sharing the backend,
      including two managers in one process.
    * **When a key is acquirable.** When no lease was ever taken on it, when
      its last lease was released, or when its last lease's ``expires_at`` is
      at or before the acquirer's clock (plus the backend's skew margin, if it
      has one). Expiry is decided by comparing stored expiry times, never by a
      background deletion: a holder that stops renewing loses the key after
      its TTL even while its process is alive (paused, partitioned).
      ``FileLockManager`` also frees the lease of a process that died at
      once.
    * **Fencing.** Each acquisition of a key gets a fencing token larger than
      every token handed out for that key before, including to holders whose
      leases expired.
    * **Renew** succeeds only for the current holder (same owner and token,
      not released, not expired on the local clock) and extends the lease to
      ``now + lease.ttl``; otherwise it raises :class:`LockLost`.
    * **Release** frees the key only if the lease is still the current one. A
      stale lease (expired and taken over, or already released) is a silent
      no-op apart from a logged warning: a late release can never free
      another holder's lease, and never raises :class:`LockLost` (so it
      cannot mask a more interesting exception in cleanup code).

    All times are epoch seconds on the manager's ``clock``; all waiting
    (``wait``, backoff, heartbeats) is in real seconds.
    """

    @property
    def default_ttl(self) -> float:
        """The lease duration used when ``ttl`` is not given, in seconds."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """The time source (epoch seconds) used for every expiry decision."""
        ...

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease:
        """Take a lease on ``key``.

        Args:
            key: the key to lock (non-empty str without NUL).
            ttl: the lease duration in seconds (default: :attr:`default_ttl`).
            wait: ``None`` to try once; otherwise retry with exponential
                backoff and jitter for up to ``wait`` seconds.

        Returns:
            The new lease, with a fresh owner id and a larger fencing token.

        Raises:
            LockTimeout: the key was held by someone else (after ``wait``
                seconds, or at once when ``wait`` is None); carries the
                holder and its expiry where the backend knows them.
            LockUnavailable: the backend failed.
            InvalidKey: ``key`` is not a valid key.
            ValueError: ``ttl`` or ``wait`` is out of range.
        """
        ...

    async def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` to ``now + lease.ttl``.

        Returns:
            The renewed lease (same owner and token, later ``expires_at``).

        Raises:
            LockLost: the lease is no longer the current one for its key
                (taken over, released, removed) or has expired locally.
            LockUnavailable: the backend failed; the lease may still be held.
        """
        ...

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back so the key is acquirable at once.

        A stale lease is a no-op (logged as a warning); the current holder's
        lease is never touched.

        Raises:
            LockUnavailable: the backend failed; the lease then runs out at
                its expiry.
        """
        ...

    async def peek(self, key: str) -> Lease | None:
        """The lease holding ``key`` right now, or ``None`` if it is free.

        Diagnostics only (``durable-state show``, a forced unlock): the answer
        may be stale by the time it arrives; never decide a write on it.

        Raises:
            LockUnavailable: the backend failed.
            InvalidKey: ``key`` is not a valid key.
        """
        ...

    def hold(self, key: str, *, ttl: float | None = None, wait: float | None = None) -> HeldLease:
        """Hold ``key`` for an ``async with`` block, renewing in the background.

        See :class:`HeldLease`: the body is cancelled and :class:`LockLost`
        raised if the lease is lost; the lease is released on exit.

        Raises:
            InvalidKey: ``key`` is not a valid key (on entering the block).
        """
        ...

    async def aclose(self) -> None:
        """Free the manager's resources (clients, files). Idempotent."""
        ...

    async def __aenter__(self: _M) -> _M:
        """Return the manager itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Call :meth:`aclose`."""
        ...
