"""``hold()``: a lease kept alive while a block (or a session) runs.

One implementation serves every backend: it needs only ``acquire``, ``renew``,
``release`` and the manager's clock.

Renewal is lazy: holding a lease costs one wake-up, due at the next
renewal, among those of every lease held on the event loop (one loop timer
serves them all, armed for the earliest, so that a short block costs no
timer of its own). A block shorter than the renewal interval never starts a
task; when its wake-up comes, one renewal runs in a task of its own and
sets the next one. On a loss the renewal cancels the block through the one cancel
scope ``async with`` enters around it, and ``LockLost`` is raised from the
``async with`` statement.

The release on the way out runs in a task of its own (:func:`shielded`), so
that no cancellation, anyio's or asyncio's native ``Task.cancel()``, can
interrupt it half way; a release that fails or takes too long is logged with
the key, and the lease then runs out at its expiry.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import anyio

from .._shield import shielded
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
    def clock(self) -> Callable[[], float]:
        """The time source (epoch seconds) the lease's expiry is on."""
        ...

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease:
        """Take a lease on ``key`` (see :meth:`LockManager.acquire`)."""
        ...

    async def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` or raise :class:`LockLost` (see :meth:`LockManager.renew`)."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back (see :meth:`LockManager.release`)."""
        ...


class HeldLease:
    """A lease held for a block or a session, renewed in the background.

    Returned by ``manager.hold(key)``. Two ways to use it:

    * ``async with manager.hold(key) as held:`` acquires the lease (waiting as
      ``wait`` says), renews it every ``renew_interval`` seconds (default: a
      third of the TTL) while the block runs, and releases it on the way out,
      whatever way the block is left. If a renewal finds the lease taken over
      or gone, or the lease runs out on the local clock before a renewal
      succeeds (transient backend failures are retried until then), the block
      is cancelled and :class:`LockLost` is raised from the ``async with``
      statement. If the block raised an exception of its own, that exception
      propagates unchanged instead (and the loss is logged).
    * ``await held.start()`` ... ``await held.stop()``: the same lease and
      renewals without cancelling anything on a loss, for code that cannot
      put its work in one block. :attr:`lost` and :meth:`check` tell whether
      the lease is still good; :meth:`on_lost` registers a callback.
      ``start()`` and ``stop()`` may be called from different tasks.

    Example:
        >>> async def handle(manager, key):
        ...     async with manager.hold(key, ttl=60) as held:
        ...         await write_somewhere(fencing_token=held.token)

    Attributes:
        key: the key being held.
    """

    __slots__ = (
        "_callbacks",
        "_last_error",
        "_lease",
        "_lost",
        "_manager",
        "_release_timeout",
        "_renew_interval",
        "_renewal",
        "_scope",
        "_started",
        "_stopped",
        "_timer",
        "_ttl",
        "_wait",
        "key",
    )

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
        """Prepare to hold ``key``; nothing happens until it is started or entered.

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
        self.key: str = key
        self._ttl = ttl
        self._wait = wait
        self._renew_interval = (
            None if renew_interval is None else check_ttl(renew_interval, name="renew_interval")
        )
        self._release_timeout = (
            RELEASE_TIMEOUT
            if release_timeout is RELEASE_TIMEOUT
            else check_ttl(release_timeout, name="release_timeout")
        )
        self._lease: Lease | None = None
        self._lost: LockLost | None = None
        self._last_error: LockError | None = None
        self._started = False
        self._stopped = False
        self._timer: _Wakeup | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"HeldLease(key={self.key!r}, lease={self._lease!r}, lost={self.lost})"

    @property
    def lease(self) -> Lease:
        """The current lease; a new value after each successful renewal.

        Raises:
            RuntimeError: the lease has not been taken yet.
        """
        if self._lease is None:
            raise RuntimeError("the lease is not held yet: use 'async with manager.hold(key)'")
        return self._lease

    @property
    def token(self) -> int:
        """The fencing token of this acquisition (unchanged by renewals).

        Raises:
            RuntimeError: the lease has not been taken yet.
        """
        return self.lease.token

    @property
    def lost(self) -> bool:
        """Whether the lease was found lost (a block is then being cancelled)."""
        return self._lost is not None

    def check(self, when: str = "now") -> None:
        """Raise :class:`LockLost` if the lease is known lost or ran out on the local clock.

        Args:
            when: what the holder was about to do, for the message
                (``"before saving"``).

        Raises:
            LockLost: the lease can no longer be relied upon.
            RuntimeError: the lease has not been taken yet.
        """
        lease = self._lease
        if lease is None:
            raise RuntimeError("the lease is not held yet: use 'async with manager.hold(key)'")
        if self._lost is None and self._manager.clock() >= lease.expires_at:
            self._set_lost(
                LockLost(
                    lease.key,
                    owner=lease.owner,
                    token=lease.token,
                    reason=f"it ran out at {lease.expires_at:.3f}, {when}",
                )
            )
        if self._lost is not None:
            raise self._lost

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the lease is found lost (at once if it is)."""
        if self._lost is not None:
            callback()
        else:
            self._callbacks.append(callback)

    # ------------------------------------------------------------------ #
    # Session form
    # ------------------------------------------------------------------ #

    async def start(self) -> HeldLease:
        """Acquire the lease and arm its renewal.

        Returns:
            This object.

        Raises:
            RuntimeError: this object was started before (it is single-use).
            LockTimeout: the key stayed held by someone else for ``wait``.
            LockUnavailable: the backend failed.
            InvalidKey: the key is not valid.
        """
        if self._started:
            raise RuntimeError("a HeldLease can be entered only once; call hold() again")
        self._started = True
        self._lease = await self._manager.acquire(self.key, ttl=self._ttl, wait=self._wait)
        # No await from here to the return: a cancellation cannot land between
        # taking the lease and handing it to a caller that will release it.
        self._arm(self._interval(self._lease))
        return self

    def released_elsewhere(self) -> None:
        """Record that the lease was given back by another request (a save that released it).

        Renewing stops at once, a renewal in flight is ignored, and
        :meth:`stop` sends no release of its own.
        """
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()

    async def stop(self) -> None:
        """Stop renewing and release the lease; failures are logged, never raised.

        Idempotent. The release finishes even if the caller is cancelled
        meanwhile (the cancellation is delivered afterwards).
        """
        if self._stopped or self._lease is None:
            return  # stopped before, or released by a save
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            # Not awaited: a renewal still in flight may land before or after
            # the release; after it, it fails (the lease is released), and
            # its outcome is ignored either way.
            renewal.cancel()
        lease = self._lease
        release = self._manager.release(lease)
        try:
            if getattr(self._manager, "release_is_shielded", False):
                await release
            else:
                await shielded(release, within=self._release_timeout)
        except TimeoutError:
            logger.warning(
                "releasing the lease on %r (token %d) took over %.1fs; it runs out at %.3f",
                lease.key,
                lease.token,
                self._release_timeout,
                lease.expires_at,
            )
        except Exception:
            logger.warning(
                "could not release the lease on %r (token %d); it runs out at %.3f",
                lease.key,
                lease.token,
                lease.expires_at,
                exc_info=True,
            )

    # ------------------------------------------------------------------ #
    # Block form
    # ------------------------------------------------------------------ #

    async def __aenter__(self) -> HeldLease:
        """Acquire the lease and start renewing it; a loss cancels the block.

        Raises:
            RuntimeError: this object was entered before (it is single-use).
            LockTimeout: the key stayed held by someone else for ``wait``.
            LockUnavailable: the backend failed.
            InvalidKey: the key is not valid.
        """
        await self.start()
        scope = anyio.CancelScope()
        self._scope = scope
        scope.__enter__()
        self.on_lost(scope.cancel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Stop renewing, release the lease, and report a loss.

        Raises:
            LockLost: the lease was lost while the block ran, and the block
                either finished or was cancelled because of the loss.
        """
        scope = self._scope
        if scope is None:
            raise RuntimeError("HeldLease.__aexit__ called without a successful __aenter__")
        cancelled_by_loss = False
        try:
            # True only when the block was cancelled by this scope, i.e. after
            # a loss; an outer cancellation is never swallowed here.
            cancelled_by_loss = bool(scope.__exit__(exc_type, exc, tb))
            if self._lost is None:
                # A block that blocked the event loop past the expiry gave the
                # renewal no chance to run; the lease was lost all the same.
                try:
                    self.check("before the block ended")
                except LockLost:
                    pass
        finally:
            await self.stop()

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

    # ------------------------------------------------------------------ #
    # Renewal
    # ------------------------------------------------------------------ #

    def _interval(self, lease: Lease) -> float:
        return self._renew_interval or lease.ttl / 3

    def _arm(self, delay: float) -> None:
        assert self._lease is not None
        remaining = self._lease.expires_at - self._manager.clock()
        self._timer = _wakeups().call_later(max(0.0, min(delay, remaining)), self._renew_soon)

    def _renew_soon(self) -> None:
        self._timer = None
        if self._stopped or self._lost is not None:
            return
        self._renewal = asyncio.get_running_loop().create_task(
            self._renew_once(), name=f"lease renewal for {self.key!r}"
        )

    async def _renew_once(self) -> None:
        """One renewal; arms the next one, or records the loss."""
        lease = self.lease
        remaining = lease.expires_at - self._manager.clock()
        if remaining <= 0:
            last = self._last_error
            detail = f" (last error: {last})" if last else ""
            lost = LockLost(
                lease.key,
                owner=lease.owner,
                token=lease.token,
                reason=f"it ran out before a renewal succeeded{detail}",
            )
            lost.__cause__ = last
            self._set_lost(lost)
            return
        try:
            # A renewal that hangs must not outlive the lease it renews.
            renewed = await asyncio.wait_for(self._manager.renew(lease), remaining)
        except LockLost as exc:
            self._set_lost(exc)
            return
        except (LockUnavailable, asyncio.TimeoutError) as exc:
            self._last_error = (
                exc
                if isinstance(exc, LockUnavailable)
                else LockUnavailable("renew", lease.key, f"no answer within {remaining:.1f}s")
            )
            # Retry sooner than the normal interval: the lease still has
            # ``remaining`` seconds to be saved in.
            if not self._stopped:
                self._arm(min(self._interval(lease) / 2, 1.0))
            return
        except Exception as exc:
            # A failure nobody anticipated: the lease can no longer be vouched
            # for, so it counts as lost (the cause is kept for the caller).
            logger.error("renewing the lease on %r failed unexpectedly", self.key, exc_info=True)
            lost = LockLost(
                lease.key, owner=lease.owner, token=lease.token, reason=f"renewal failed: {exc!r}"
            )
            lost.__cause__ = exc
            self._set_lost(lost)
            return
        self._lease = renewed
        self._last_error = None
        if not self._stopped:
            self._arm(self._interval(renewed))

    def _set_lost(self, lost: LockLost) -> None:
        if self._lost is not None or self._stopped:
            return
        self._lost = lost
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class _Wakeup:
    """A callback due at a time of the event loop's clock; see :class:`_Wakeups`."""

    __slots__ = ("callback", "context", "owner", "when")

    def __init__(self, owner: _Wakeups, when: float, callback: Callable[[], object]) -> None:
        self.owner = owner
        self.when = when
        self.callback = callback
        # Run in the context it was set in, as a loop callback would be.
        self.context = contextvars.copy_context()

    def cancel(self) -> None:
        """Do not call it (idempotent)."""
        self.owner.waiting.pop(self, None)


class _Wakeups:
    """The renewal wake-ups of the leases held on one event loop, behind one loop timer.

    A timer of its own for every lease would cost every session a timer
    that is set and cancelled, and cancelled timers weigh on the loop until
    they are cleaned up. Here setting one is a dict insertion and cancelling
    one a removal; the loop timer is armed for the earliest wake-up only, and
    when it fires the wake-ups that are due are called, in the order they
    were set.
    """

    __slots__ = ("at", "handle", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the loop is this object's key in _BY_LOOP.
        self.loop = weakref.ref(loop)
        # An ordered set: the wake-ups, in the order they were set.
        self.waiting: dict[_Wakeup, None] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.at = math.inf  # when the handle fires (inf: not armed)

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Wakeup:
        """Call ``callback()`` in ``delay`` seconds (loop time), unless cancelled."""
        loop = self.loop()
        assert loop is not None  # the running loop
        wakeup = _Wakeup(self, loop.time() + delay, callback)
        self.waiting[wakeup] = None
        if wakeup.when < self.at:
            self._arm(wakeup.when)
        return wakeup

    def _arm(self, at: float) -> None:
        loop = self.loop()
        assert loop is not None  # the running loop
        if self.handle is not None:
            self.handle.cancel()
        self.at = at
        self.handle = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        # The loop runs a timer a little early (within its clock's
        # resolution): what was due when it was armed is due now.
        loop = self.loop()
        assert loop is not None  # the loop running this callback
        limit = max(loop.time(), self.at)
        self.handle, self.at = None, math.inf
        due = [w for w in self.waiting if w.when <= limit]
        for wakeup in due:
            del self.waiting[wakeup]
        if self.waiting:
            self._arm(min(w.when for w in self.waiting))
        for wakeup in due:
            try:
                wakeup.context.run(wakeup.callback)
            except Exception as exc:  # noqa: BLE001 - reported as the loop reports a callback's
                loop.call_exception_handler(
                    {"message": "a lease renewal wake-up failed", "exception": exc}
                )


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
    weakref.WeakKeyDictionary()
)


_last: _Wakeups | None = None  # those looked up last: most programs run one loop


def _wakeups() -> _Wakeups:
    """The wake-ups of the running event loop."""
    global _last
    loop = asyncio.get_running_loop()
    found = _last
    if found is None or found.loop() is not loop:
        found = _BY_LOOP.get(loop)
        if found is None:
            found = _BY_LOOP[loop] = _Wakeups(loop)
        _last = found
    return found
