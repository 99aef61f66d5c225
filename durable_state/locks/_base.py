"""The part of a lock manager that is the same for every backend.

:class:`BaseLockManager` owns argument checks, owner ids, the wait loop
(exponential backoff with jitter), the local expiry check before a renewal,
clean-up after an interrupted acquisition, ``hold()`` and the ``async with``
protocol. A backend implements six small primitives, each one operation on
its store:

* ``_try_acquire(key, owner, ttl, now)``: take the key if it is free (absent,
  released, or expired as of ``now``); return the :class:`Lease` or a
  :class:`Busy` describing the holder.
* ``_renew(lease, now)``: extend the lease if owner and token still match;
  raise :class:`LockLost` otherwise.
* ``_release(lease, now)``: mark the lease released if owner and token still
  match; return ``None`` when released or a reason it was stale.
* ``_abandon(key, owner, now)``: release whatever lease ``owner`` holds on
  ``key``, if any (used after an interrupted acquisition, token unknown).
* ``_peek(key, now)``: the lease holding ``key`` as of ``now``, or ``None``.
* ``_aclose()``: free the backend's resources.

and may override ``_connect(key)`` to make its network client before the
first acquisition reads the clock.
"""

from __future__ import annotations

import abc
import logging
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.lowlevel

from .._retry import backoff
from .._shield import shielded
from ..errors import LockLost, LockTimeout, LockUnavailable
from ._hold import RELEASE_TIMEOUT, HeldLease
from ._lease import DEFAULT_TTL, MAX_KEY_BYTES, Busy, Lease, check_key, check_ttl, check_wait
from ._lease import new_owner as _new_owner

__all__ = ("BaseLockManager",)

logger = logging.getLogger("durable_state.locks")

_M = TypeVar("_M", bound="BaseLockManager")


class BaseLockManager(abc.ABC):
    """Shared implementation of the :class:`~durable_state.locks.LockManager` contract.

    Attributes:
        backoff_initial: the first retry delay while waiting, in seconds.
        backoff_max: the longest retry delay while waiting, in seconds.
        operation_timeout: the longest one acquisition attempt may take (it
            is not interrupted by cancellation, so that its outcome is known),
            in seconds.
        cleanup_timeout: how long the clean-up after an interrupted
            acquisition may take, in seconds.
    """

    #: :meth:`release` finishes whatever cancels its caller (see ``HeldLease``).
    release_is_shielded: bool = True
    #: The backend's primitives never suspend (an in-process table): no
    #: cancellation can cut one off, so none needs a task of its own.
    _never_suspends: bool = False
    #: A cancelled acquisition attempt has finished, or never started, by the
    #: time the cancellation reaches its caller (the backend waits for a
    #: request in flight itself): it needs no task of its own either, and
    #: its time is bounded by the backend.
    _attempts_settle: bool = False
    backoff_initial: float = 0.01
    backoff_max: float = 1.0
    operation_timeout: float = 30.0
    cleanup_timeout: float = RELEASE_TIMEOUT
    _max_key_bytes: int = MAX_KEY_BYTES

    def __init__(
        self, *, default_ttl: float = DEFAULT_TTL, clock: Callable[[], float] | None = None
    ) -> None:
        """Set the defaults shared by every backend.

        Args:
            default_ttl: the lease duration when ``ttl`` is not given.
            clock: epoch seconds for every expiry decision (default
                :func:`time.time`).

        Raises:
            TypeError: ``default_ttl`` is not a number or ``clock`` is not callable.
            ValueError: ``default_ttl`` is not positive and finite.
        """
        self._default_ttl = check_ttl(default_ttl, name="default_ttl")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning epoch seconds, not {clock!r}")
        self._clock: Callable[[], float] = clock or time.time
        self._closed = False

    @property
    def default_ttl(self) -> float:
        """The lease duration used when ``ttl`` is not given, in seconds."""
        return self._default_ttl

    @property
    def clock(self) -> Callable[[], float]:
        """The time source (epoch seconds) used for every expiry decision."""
        return self._clock

    # ------------------------------------------------------------------ #
    # The contract
    # ------------------------------------------------------------------ #

    async def acquire(
        self, key: str, *, ttl: float | None = None, wait: float | None = None
    ) -> Lease:
        """Take a lease on ``key``; see :meth:`LockManager.acquire`.

        Raises:
            LockTimeout: the key stayed held by someone else.
            LockUnavailable: the backend failed.
            InvalidKey: ``key`` is not a valid key.
            TypeError: ``ttl`` or ``wait`` is not a number.
            ValueError: ``ttl`` or ``wait`` is out of range.
            RuntimeError: the manager is closed.
        """
        self._check_open()
        check_key(key, max_bytes=self._max_key_bytes)
        lease_ttl = self._default_ttl if ttl is None else check_ttl(ttl)
        max_wait = check_wait(wait)
        # One owner id for every attempt of this acquisition: a write that
        # landed although its response was lost is then recognisably ours.
        owner = _new_owner()
        # Connections are made before the clock is read: a lease's time must
        # not be spent creating a client (a cold process takes a second).
        if type(self)._connect is not BaseLockManager._connect:
            await self._connect(key)
        started = time.monotonic()
        attempt = 0
        while True:
            now = self._clock()
            result = await self._attempt(key, owner, lease_ttl, now)
            if isinstance(result, Lease):
                return result
            waited = time.monotonic() - started
            if max_wait is None or waited >= max_wait:
                raise LockTimeout(
                    key, holder=result.holder, expires_at=result.expires_at, waited=waited
                )
            delay = self._backoff(attempt, result, now)
            attempt += 1
            await anyio.sleep(min(delay, max_wait - waited))

    async def renew(self, lease: Lease) -> Lease:
        """Extend ``lease``; see :meth:`LockManager.renew`.

        A lease whose ``expires_at`` has passed on the local clock is lost
        even if nobody took it yet: its holder must already have stopped
        relying on it.

        Raises:
            LockLost: the lease is no longer current or has expired.
            LockUnavailable: the backend failed.
            TypeError: ``lease`` is not a :class:`Lease`.
            RuntimeError: the manager is closed.
        """
        self._check_open()
        _check_lease(lease)
        now = self._clock()
        if now >= lease.expires_at:
            raise LockLost(
                lease.key,
                owner=lease.owner,
                token=lease.token,
                reason=f"it expired at {lease.expires_at:.3f} (now {now:.3f})",
            )
        return await self._renew(lease, now)

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back; a stale lease is a logged no-op.

        The release runs to completion even if the calling task is cancelled
        meanwhile (for at most :attr:`cleanup_timeout` seconds).

        Raises:
            LockUnavailable: the backend failed.
            TypeError: ``lease`` is not a :class:`Lease`.
            RuntimeError: the manager is closed.
        """
        self._check_open()
        _check_lease(lease)
        # Shielded: release is clean-up, usually run while a cancellation or
        # an exception is on its way out, and an interrupted release would
        # leave the key blocked until the lease's expiry. A backend whose
        # primitives never suspend cannot be interrupted half way.
        release = self._release(lease, self._clock())
        try:
            if self._never_suspends:
                stale = await release
            else:
                stale = await shielded(release, within=self.cleanup_timeout)
        except TimeoutError:
            raise LockUnavailable(
                "release", lease.key, f"took over {self.cleanup_timeout:.1f}s (gave up)"
            ) from None
        if stale is not None:
            logger.warning(
                "ignored the release of a stale lease on %r (owner %r, token %d): %s",
                lease.key,
                lease.owner,
                lease.token,
                stale,
            )

    async def peek(self, key: str) -> Lease | None:
        """The lease that holds ``key`` right now, without taking it.

        For diagnostics (``durable-state show``, a forced unlock): the answer
        can be out of date as soon as it is returned, so never use it to
        decide whether to write.

        Returns:
            The current holder's lease, or ``None`` when an acquisition would
            succeed now (never taken, released, expired, or its holder's
            process is gone).

        Raises:
            LockUnavailable: the backend failed.
            InvalidKey: ``key`` is not a valid key.
            RuntimeError: the manager is closed.
        """
        self._check_open()
        check_key(key, max_bytes=self._max_key_bytes)
        return await self._peek(key, self._clock())

    def hold(
        self,
        key: str,
        *,
        ttl: float | None = None,
        wait: float | None = None,
        renew_interval: float | None = None,
    ) -> HeldLease:
        """Hold ``key`` for an ``async with`` block; see :class:`HeldLease`.

        Args:
            key: the key to hold.
            ttl: the lease duration (default: :attr:`default_ttl`).
            wait: how long to wait for the key (``None``: try once).
            renew_interval: seconds between renewals (default: ``ttl / 3``).

        Returns:
            A single-use async context manager yielding itself.

        Raises:
            TypeError: ``renew_interval`` is not a number.
            ValueError: ``renew_interval`` is not positive.
        """
        return HeldLease(self, key, ttl=ttl, wait=wait, renew_interval=renew_interval)

    async def aclose(self) -> None:
        """Free the manager's resources; idempotent.

        Leases still held are not released by closing (they run out at their
        expiry), except where a backend says otherwise.
        """
        if self._closed:
            return
        self._closed = True
        # Shielded: a cancelled caller must not leave a client or a session
        # open; bounded, so a hung backend cannot hang the caller for ever.
        try:
            await shielded(self._aclose(), within=self.cleanup_timeout)
        except TimeoutError:
            logger.warning("%r: closing took over %.1fs; gave up", self, self.cleanup_timeout)

    async def __aenter__(self: _M) -> _M:
        """Return the manager itself.

        Raises:
            RuntimeError: the manager is closed.
        """
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the manager."""
        await self.aclose()

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    async def _attempt(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        """One acquisition attempt that leaves nothing behind if it is interrupted.

        The attempt runs in a task of its own, bounded by
        :attr:`operation_timeout` (in the caller's task when the backend never
        suspends, or settles a cancelled attempt itself: nothing can cut a
        request off then). If the caller is cancelled
        (anyio's cancellation or a native ``Task.cancel()``), or the attempt
        fails in a way that may have taken the lease anyway (a response lost
        after the backend applied the write), whatever this owner holds on the
        key is given back -- again in a task no cancellation interrupts --
        before the exception propagates: the acquisition either returns a
        lease its caller will release, or leaves none behind.
        """
        try:
            if self._never_suspends or self._attempts_settle:
                result = await self._try_acquire(key, owner, ttl, now)
                # Still a checkpoint: a cancellation already pending is
                # delivered here, while the lease can be given back.
                await anyio.lowlevel.checkpoint_if_cancelled()
            else:
                # In a task of its own: a cancellation must not cut a request
                # off in flight, or the clean-up below could reach the backend
                # before the request it cleans up after. The cancellation is
                # delivered once the backend has answered.
                try:
                    result = await shielded(
                        self._try_acquire(key, owner, ttl, now), within=self.operation_timeout
                    )
                except TimeoutError:
                    raise LockUnavailable(
                        "acquire", key, f"no answer within {self.operation_timeout:.1f}s"
                    ) from None
                await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException as exc:
            if self._may_have_applied(exc):
                try:
                    await shielded(self._abandon_quietly(key, owner), within=self.cleanup_timeout)
                except TimeoutError:
                    logger.warning(
                        "clearing a possibly taken lease on %r (owner %r) took over %.1fs; "
                        "it runs out after its TTL",
                        key,
                        owner,
                        self.cleanup_timeout,
                    )
            raise
        return result

    async def _abandon_quietly(self, key: str, owner: str) -> None:
        try:
            await self._abandon(key, owner, self._clock())
        except Exception:
            logger.warning(
                "could not clear a possibly taken lease on %r (owner %r) after an "
                "interrupted acquisition; it runs out after its TTL",
                key,
                owner,
                exc_info=True,
            )

    def _backoff(self, attempt: int, busy: Busy, now: float) -> float:
        """The delay before the next attempt: exponential, with equal jitter.

        Never sleeps much past the moment the holder's lease can be taken, so
        a waiter picks up an expiring lease promptly.
        """
        delay = backoff(attempt, initial=self.backoff_initial, maximum=self.backoff_max)
        if busy.available_at is not None:
            until = max(busy.available_at - now, 0.0)
            delay = min(delay, until + random.uniform(0, self.backoff_initial))
        return delay

    async def _connect(self, key: str) -> None:  # noqa: B027 - an optional hook, empty by default
        """Make what the first request needs (a network client); a no-op by default.

        Raises:
            LockUnavailable: the connection could not be made.
        """

    def _may_have_applied(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` may still have taken the lease."""
        return True

    @abc.abstractmethod
    async def _try_acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        """Take ``key`` for ``owner`` if it is free as of ``now``."""

    @abc.abstractmethod
    async def _renew(self, lease: Lease, now: float) -> Lease:
        """Extend ``lease`` to ``now + lease.ttl`` if it is still current."""

    @abc.abstractmethod
    async def _release(self, lease: Lease, now: float) -> str | None:
        """Release ``lease`` if current; return ``None``, or why it was stale."""

    @abc.abstractmethod
    async def _abandon(self, key: str, owner: str, now: float) -> None:
        """Release any lease ``owner`` holds on ``key`` (token unknown)."""

    @abc.abstractmethod
    async def _peek(self, key: str, now: float) -> Lease | None:
        """The lease holding ``key`` as of ``now``, or ``None`` if it is free."""

    @abc.abstractmethod
    async def _aclose(self) -> None:
        """Free the backend's resources (called once)."""


def _check_lease(lease: object) -> None:
    if not isinstance(lease, Lease):
        raise TypeError(f"expected a Lease, not {type(lease).__name__}")
