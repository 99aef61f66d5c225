"""``hold()``: a lease kept alive for the duration of an ``async with`` block.

One implementation serves every backend: it needs only ``acquire``, ``renew``,
``release`` and the manager's clock.

How the pieces nest (entered top to bottom, exited bottom to top)::

    task group           runs the heartbeat task
      body cancel scope  cancelled by the heartbeat when the lease is lost
        the caller's body

The task group is exited with no exception passed in, even when the body
raised: anyio would otherwise wrap the body's exception in an
``ExceptionGroup``. The heartbeat never raises (it records the loss and
cancels the body scope), so the task group has nothing of its own to report,
and the body's exception propagates unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc

from ..errors import LockError, LockLost, LockUnavailable
from ._lease import Lease, check_ttl

__all__ = ("HeldLease",)

logger = logging.getLogger("durable_state.locks")

#: How long the release on exit may take before it is given up (the lease then
#: runs out by itself at its expiry).
RELEASE_TIMEOUT = 10.0


class _LeaseOps(Protocol):
    """What :class:`HeldLease` needs from a manager."""

    @property
    def clock(self) -> Callable[[], float]: ...

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease: ...

    async def renew(self, lease: Lease) -> Lease: ...

    async def release(self, lease: Lease) -> None: ...


class HeldLease:
    """A lease held while an ``async with`` block runs, renewed in the background.

    Returned by ``manager.hold(key)``; entering it acquires the lease (waiting
    as ``wait`` says), starts a heartbeat that renews the lease every
    ``renew_interval`` seconds (default: a third of the TTL), and yields this
    object. Leaving the block stops the heartbeat and releases the lease under
    a shielded cancel scope with a timeout, whatever way the block is left.

    If a renewal finds the lease taken over or gone, or the lease runs out on
    the local clock before a renewal succeeds (transient backend failures are
    retried until then), the body is cancelled and :class:`LockLost` is
    raised from the ``async with`` statement. If the body raised an exception
    of its own, that exception propagates unchanged instead (and the loss is
    logged): nothing here wraps exceptions in an ``ExceptionGroup``.

    Example:
        >>> async def handle(manager, key):
        ...     async with manager.hold(key, ttl=60) as held:
        ...         await write_somewhere(fencing_token=held.token)

    Attributes:
        key: the key being held.
    """

    def __init__(
        self,
        manager: _LeaseOps,
        key: str,
        *,
        ttl: float | None = None,
        wait: float | None = None,
        renew_interval: float | None = None,
        release_timeout: float = RELEASE_TIMEOUT,
    ) -> None:
        """Prepare to hold ``key``; nothing happens until the block is entered.

        Args:
            manager: the lock manager to acquire, renew and release through.
            key: the key to hold.
            ttl: the lease duration (default: the manager's default TTL).
            wait: how long to wait for the key (``None``: try once).
            renew_interval: seconds between renewals (default: ``ttl / 3``).
            release_timeout: how long the release on exit may take.

        Raises:
            TypeError: ``renew_interval`` or ``release_timeout`` is not a number.
            ValueError: ``renew_interval`` or ``release_timeout`` is not positive.
        """
        self._manager = manager
        self.key = key
        self._ttl = ttl
        self._wait = wait
        self._renew_interval = (
            None if renew_interval is None else check_ttl(renew_interval, name="renew_interval")
        )
        self._release_timeout = check_ttl(release_timeout, name="release_timeout")
        self._lease: Lease | None = None
        self._lost: LockLost | None = None
        self._entered = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._body_scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"HeldLease(key={self.key!r}, lease={self._lease!r}, lost={self.lost})"

    @property
    def lease(self) -> Lease:
        """The current lease; a new value after each successful renewal.

        Raises:
            RuntimeError: the block has not been entered yet.
        """
        if self._lease is None:
            raise RuntimeError("the lease is not held yet: use 'async with manager.hold(key)'")
        return self._lease

    @property
    def token(self) -> int:
        """The fencing token of this acquisition (unchanged by renewals).

        Raises:
            RuntimeError: the block has not been entered yet.
        """
        return self.lease.token

    @property
    def lost(self) -> bool:
        """Whether the lease was found lost (the body is then being cancelled)."""
        return self._lost is not None

    async def __aenter__(self) -> HeldLease:
        """Acquire the lease and start renewing it.

        Raises:
            RuntimeError: this object was entered before (it is single-use).
            LockTimeout: the key stayed held by someone else for ``wait``.
            LockUnavailable: the backend failed.
            InvalidKey: the key is not valid.
        """
        if self._entered:
            raise RuntimeError("a HeldLease can be entered only once; call hold() again")
        self._entered = True
        self._lease = await self._manager.acquire(self.key, ttl=self._ttl, wait=self._wait)
        # From here on the lease is ours: nothing may fail without releasing it.
        try:
            # The body scope exists before the heartbeat can run, so that an
            # early loss cancels it as soon as it is entered.
            self._body_scope = anyio.CancelScope()
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
        except BaseException:
            await self._release_quietly()
            raise
        self._task_group = task_group
        task_group.start_soon(self._heartbeat, name=f"lease heartbeat for {self.key!r}")
        self._body_scope.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Stop renewing, release the lease, and report a loss.

        Raises:
            LockLost: the lease was lost while the body ran, and the body
                either finished or was cancelled because of the loss.
        """
        body_scope, task_group = self._body_scope, self._task_group
        if body_scope is None or task_group is None:
            raise RuntimeError("HeldLease.__aexit__ called without a successful __aenter__")
        cancelled_by_loss = False
        try:
            try:
                # True only when the body was cancelled by this scope, i.e.
                # by the heartbeat after a loss; an outer cancellation is
                # never swallowed here.
                cancelled_by_loss = bool(body_scope.__exit__(exc_type, exc, tb))
            finally:
                task_group.cancel_scope.cancel()
                # No exception passed in: see the module docstring.
                await task_group.__aexit__(None, None, None)
                # A body that blocked the event loop past the expiry gave the
                # heartbeat no chance to notice; the lease was lost all the same.
                lease = self.lease
                if self._lost is None and self._manager.clock() >= lease.expires_at:
                    self._lost = LockLost(
                        lease.key,
                        owner=lease.owner,
                        token=lease.token,
                        reason="it ran out before the block ended",
                    )
        finally:
            await self._release_quietly()

        lost = self._lost
        if lost is None:
            return False
        if exc is None or cancelled_by_loss:
            # Raise the loss itself, not as "during handling of Cancelled".
            raise lost from lost.__cause__
        logger.warning(
            "the lease on %r was lost while the body failed; the body's %s propagates: %s",
            self.key,
            type(exc).__name__,
            lost,
        )
        return False

    async def _heartbeat(self) -> None:
        """Renew the lease until cancelled; on a loss, record it and cancel the body."""
        try:
            await self._renew_until_lost()
        except LockLost as exc:
            self._lost = exc
        except Exception as exc:
            # A failure nobody anticipated: the lease can no longer be vouched
            # for, so it counts as lost (the cause is kept for the caller).
            logger.error("renewing the lease on %r failed unexpectedly", self.key, exc_info=True)
            lease = self.lease
            lost = LockLost(
                lease.key, owner=lease.owner, token=lease.token, reason=f"renewal failed: {exc!r}"
            )
            lost.__cause__ = exc
            self._lost = lost
        assert self._body_scope is not None
        self._body_scope.cancel()

    async def _renew_until_lost(self) -> None:
        clock = self._manager.clock
        last_error: LockError | None = None
        while True:
            lease = self.lease
            interval = self._renew_interval or lease.ttl / 3
            remaining = lease.expires_at - clock()
            if remaining <= 0:
                detail = f" (last error: {last_error})" if last_error else ""
                lost = LockLost(
                    lease.key,
                    owner=lease.owner,
                    token=lease.token,
                    reason=f"it ran out before a renewal succeeded{detail}",
                )
                raise lost from last_error
            # After a failed renewal, retry sooner than the normal interval
            # (the lease still has ``remaining`` seconds to be saved in).
            delay = interval if last_error is None else min(interval / 2, 1.0)
            await anyio.sleep(min(delay, remaining))
            remaining = lease.expires_at - clock()
            if remaining <= 0:
                continue
            # A renewal that hangs must not outlive the lease it renews.
            with anyio.move_on_after(remaining):
                try:
                    self._lease = await self._manager.renew(lease)
                except LockUnavailable as exc:
                    last_error = exc
                else:
                    last_error = None

    async def _release_quietly(self) -> None:
        """Release the lease; failures are logged, never raised.

        Raising here would replace the body's own exception (or its result):
        a release that fails only means the lease runs out at its expiry.
        """
        lease = self._lease
        if lease is None:
            return
        with anyio.move_on_after(self._release_timeout, shield=True) as scope:
            try:
                await self._manager.release(lease)
            except Exception:
                logger.warning(
                    "could not release the lease on %r (token %d); it runs out at %.3f",
                    lease.key,
                    lease.token,
                    lease.expires_at,
                    exc_info=True,
                )
        if scope.cancelled_caught:
            logger.warning(
                "releasing the lease on %r (token %d) took over %.1fs; it runs out at %.3f",
                lease.key,
                lease.token,
                self._release_timeout,
                lease.expires_at,
            )
