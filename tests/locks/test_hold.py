"""hold() details that do not depend on the backend (run on the memory backend)."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import pytest

from durable_state.errors import LockLost, LockUnavailable
from durable_state.locks import HeldLease, Lease, MemoryLockManager


class FlakyRenewals(MemoryLockManager):
    """Renewals fail with LockUnavailable while ``failing`` is set."""

    failing = False
    attempts = 0

    async def _renew(self, lease: Lease, now: float) -> Lease:
        self.attempts += 1
        if self.failing:
            raise LockUnavailable("renew", lease.key, "throttled")
        return await super()._renew(lease, now)


async def test_transient_renewal_failures_are_retried() -> None:
    manager = FlakyRenewals()
    async with manager.hold("k", ttl=1.5) as held:
        manager.failing = True
        await anyio.sleep(0.7)  # the renewal at 0.5 fails
        manager.failing = False
        await anyio.sleep(1.2)  # a retry (0.25 s later) succeeds before the expiry at 1.5
        assert not held.lost
    assert manager.attempts >= 3


async def test_renewals_failing_until_expiry_lose_the_lease() -> None:
    manager = FlakyRenewals()
    manager.failing = True
    started = time.monotonic()

    async def body() -> None:
        async with manager.hold("k", ttl=0.6):
            await anyio.sleep(30)

    with pytest.raises(LockLost, match="throttled") as info:
        await body()
    assert isinstance(info.value.__cause__, LockUnavailable)
    assert 0.5 <= time.monotonic() - started < 3
    assert manager.attempts >= 2


async def test_a_loss_is_reported_even_if_the_body_never_awaits() -> None:
    manager = MemoryLockManager()

    async def body() -> None:
        async with manager.hold("k", ttl=0.3) as held:
            await anyio.sleep(0.01)  # the heartbeat starts and sleeps
            # The lease runs out while the body computes without yielding, so
            # the heartbeat never gets to run again before the block ends.
            time.sleep(0.35)  # noqa: ASYNC251 -- a body that blocks, on purpose
            assert not held.lost

    with pytest.raises(LockLost, match="before the block ended"):
        await body()


async def test_a_body_exception_wins_over_a_loss(caplog: pytest.LogCaptureFixture) -> None:
    manager = MemoryLockManager()
    error = KeyError("mine")

    async def body() -> None:
        async with manager.hold("k", ttl=0.6):
            manager.set_record("k", None)  # lost behind its back
            try:
                await anyio.sleep(30)
            finally:
                raise error

    with (
        caplog.at_level(logging.WARNING, logger="durable_state.locks"),
        pytest.raises(KeyError) as info,
    ):
        await body()
    assert info.value is error
    assert "was lost while the body failed" in caplog.text


async def test_a_failing_release_on_exit_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenRelease(MemoryLockManager):
        async def _release(self, lease: Lease, now: float) -> str | None:
            raise LockUnavailable("release", lease.key, "network down")

    manager = BrokenRelease()
    with caplog.at_level(logging.WARNING, logger="durable_state.locks"):
        async with manager.hold("k", ttl=60) as held:
            pass
    assert "could not release the lease on 'k'" in caplog.text
    assert not held.lost


async def test_a_held_lease_is_single_use_and_needs_entering() -> None:
    manager = MemoryLockManager()
    held = manager.hold("k", ttl=60)
    assert isinstance(held, HeldLease)
    with pytest.raises(RuntimeError, match="not held yet"):
        _ = held.lease
    async with held:
        assert held.lease.key == "k"
    with pytest.raises(RuntimeError, match="only once"):
        await held.__aenter__()


async def test_renew_interval_is_configurable() -> None:
    manager = FlakyRenewals()
    async with manager.hold("k", ttl=60, renew_interval=0.05):
        await anyio.sleep(0.3)
    assert manager.attempts >= 4
    with pytest.raises(ValueError, match="renew_interval"):
        manager.hold("k", renew_interval=0)


async def test_renewal_wake_ups_share_one_loop_timer() -> None:
    # Every lease held on a loop sets its next renewal among the others';
    # one loop timer, armed for the earliest, calls those that are due, in
    # the order they were set, and never a cancelled one.
    from durable_state.locks._hold import _wakeups

    wakeups = _wakeups()
    called: list[str] = []
    late = wakeups.call_later(0.05, lambda: called.append("late"))
    first = wakeups.call_later(0.01, lambda: called.append("first"))
    gone = wakeups.call_later(0.01, lambda: called.append("gone"))
    second = wakeups.call_later(0.01, lambda: called.append("second"))
    gone.cancel()
    gone.cancel()  # idempotent
    await asyncio.sleep(0.03)
    assert called == ["first", "second"]
    await asyncio.sleep(0.05)
    assert called == ["first", "second", "late"]
    assert not wakeups.waiting
    for wakeup in (late, first, second):
        wakeup.cancel()  # after it was called: a no-op
