"""The lease contract, run against every backend (see conftest.backend).

Expiry is driven by fake clocks (exact boundaries, no sleeping); waiting,
heartbeats and cancellation run on real time with short TTLs.
"""

from __future__ import annotations

import logging
import math
import time

import anyio
import pytest

from durable_state.errors import InvalidKey, LockLost, LockTimeout
from durable_state.locks import HeldLease, Lease, LockManager

from .conftest import FakeClock, LockBackend

# --------------------------------------------------------------------------- #
# Acquire, exclusion, waiting
# --------------------------------------------------------------------------- #


async def test_acquire_returns_a_lease_recorded_in_the_store(
    backend: LockBackend, clock: FakeClock
) -> None:
    manager = backend.make(clock=clock, default_ttl=30)
    assert isinstance(manager, LockManager)
    lease = await manager.acquire("order-42")
    assert isinstance(lease, Lease)
    assert lease.key == "order-42"
    assert lease.ttl == 30
    assert lease.expires_at == clock.now + 30
    assert isinstance(lease.token, int)
    stored = await backend.read("order-42")
    assert stored is not None
    assert (stored.owner, stored.token, stored.released) == (lease.owner, lease.token, False)
    assert stored.expires_at == pytest.approx(lease.expires_at)


async def test_owner_ids_are_unique_per_acquisition(backend: LockBackend) -> None:
    manager = backend.make()
    leases = [await manager.acquire(f"k{i}") for i in range(5)]
    assert len({lease.owner for lease in leases}) == 5


async def test_a_held_key_excludes_every_manager(backend: LockBackend, clock: FakeClock) -> None:
    first, second = backend.make(clock=clock), backend.make(clock=clock)
    lease = await first.acquire("k", ttl=60)
    for manager in (first, second):
        with pytest.raises(LockTimeout) as info:
            await manager.acquire("k")
        assert info.value.key == "k"
        assert info.value.holder == lease.owner
        assert info.value.expires_at == pytest.approx(lease.expires_at)
    # Other keys are independent.
    other = await second.acquire("k2")
    assert other.owner != lease.owner


async def test_concurrent_acquirers_exactly_one_wins(
    backend: LockBackend, clock: FakeClock
) -> None:
    managers = [backend.make(clock=clock) for _ in range(4)]
    won: list[Lease] = []
    lost: list[LockTimeout] = []

    async def grab(manager: LockManager) -> None:
        try:
            won.append(await manager.acquire("k", ttl=60))
        except LockTimeout as exc:
            lost.append(exc)

    async with anyio.create_task_group() as tg:
        for manager in managers * 2:
            tg.start_soon(grab, manager)
    assert len(won) == 1
    assert len(lost) == 7
    assert {exc.holder for exc in lost} == {won[0].owner}


async def test_lock_timeout_after_wait(backend: LockBackend) -> None:
    holder, waiter = backend.make(), backend.make()
    lease = await holder.acquire("k", ttl=60)
    started = anyio.current_time()
    with pytest.raises(LockTimeout) as info:
        await waiter.acquire("k", wait=0.3)
    elapsed = anyio.current_time() - started
    assert 0.3 <= elapsed < 2.0
    assert info.value.waited >= 0.3
    assert info.value.holder == lease.owner
    assert info.value.expires_at == pytest.approx(lease.expires_at)


async def test_a_waiter_gets_the_key_once_it_is_released(backend: LockBackend) -> None:
    holder, waiter = backend.make(), backend.make()
    lease = await holder.acquire("k", ttl=60)

    async def release_later() -> None:
        await anyio.sleep(0.2)
        await holder.release(lease)

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(release_later)
        taken = await waiter.acquire("k", wait=10)
    assert 0.2 <= anyio.current_time() - started < 2.0
    assert taken.token > lease.token


async def test_a_waiter_gets_the_key_when_the_lease_runs_out(backend: LockBackend) -> None:
    holder, waiter = backend.make(), backend.make()
    lease = await holder.acquire("k", ttl=0.4)
    taken = await waiter.acquire("k", wait=10)
    # The backoff aims at the holder's expiry: no long overshoot.
    assert time.time() - lease.expires_at < 1.0
    assert taken.token > lease.token


# --------------------------------------------------------------------------- #
# Expiry on the clock
# --------------------------------------------------------------------------- #


async def test_expiry_boundary_on_the_clock(backend: LockBackend, clock: FakeClock) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    lease = await holder.acquire("k", ttl=10)
    clock.now = lease.expires_at - 0.001
    with pytest.raises(LockTimeout):
        await contender.acquire("k")
    clock.now = lease.expires_at
    taken = await contender.acquire("k")
    assert taken.token > lease.token


async def test_expired_lease_is_taken_over_without_deleting_the_record(
    backend: LockBackend, clock: FakeClock
) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    lease = await holder.acquire("k", ttl=5)
    clock.advance(3600)
    # Nothing removed the expired record (no TTL deletion is relied upon) ...
    stored = await backend.read("k")
    assert stored is not None
    assert (stored.owner, stored.token, stored.released) == (lease.owner, lease.token, False)
    # ... and the takeover is a conditional overwrite of it.
    taken = await contender.acquire("k")
    assert taken.token == lease.token + 1
    stored = await backend.read("k")
    assert stored is not None
    assert (stored.owner, stored.token) == (taken.owner, taken.token)


async def test_renew_extends_the_lease(backend: LockBackend, clock: FakeClock) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    lease = await holder.acquire("k", ttl=10)
    clock.advance(8)
    renewed = await holder.renew(lease)
    assert renewed.expires_at == clock.now + 10
    assert (renewed.key, renewed.owner, renewed.token, renewed.ttl) == (
        lease.key,
        lease.owner,
        lease.token,
        lease.ttl,
    )
    stored = await backend.read("k")
    assert stored is not None
    assert stored.expires_at == pytest.approx(renewed.expires_at)
    clock.advance(9)  # past the original expiry, before the renewed one
    with pytest.raises(LockTimeout):
        await contender.acquire("k")
    clock.advance(1)  # exactly the renewed expiry
    taken = await contender.acquire("k")
    assert taken.token == lease.token + 1


async def test_renew_of_a_locally_expired_lease_is_lost(
    backend: LockBackend, clock: FakeClock
) -> None:
    holder = backend.make(clock=clock)
    lease = await holder.acquire("k", ttl=10)
    clock.now = lease.expires_at - 0.001
    lease = await holder.renew(lease)
    clock.now = lease.expires_at
    with pytest.raises(LockLost) as info:
        await holder.renew(lease)
    assert (info.value.key, info.value.owner, info.value.token) == ("k", lease.owner, lease.token)


async def test_stale_renew_raises_lock_lost(backend: LockBackend) -> None:
    # The old holder's clock lags: by its own clock the lease is still valid,
    # so only the store can tell that it was taken over.
    late, early = FakeClock(1_800_000_000.0), FakeClock(1_800_000_010.0)
    old_holder, new_holder = backend.make(clock=late), backend.make(clock=early)
    old = await old_holder.acquire("k", ttl=10)
    new = await new_holder.acquire("k", ttl=10)
    assert new.token > old.token
    with pytest.raises(LockLost) as info:
        await old_holder.renew(old)
    assert (info.value.owner, info.value.token) == (old.owner, old.token)
    assert new.owner in info.value.reason
    stored = await backend.read("k")
    assert stored is not None
    assert (stored.owner, stored.expires_at) == (new.owner, pytest.approx(new.expires_at))


async def test_renew_after_release_raises_lock_lost(backend: LockBackend) -> None:
    holder = backend.make()
    lease = await holder.acquire("k", ttl=60)
    await holder.release(lease)
    with pytest.raises(LockLost, match="released"):
        await holder.renew(lease)


async def test_stale_release_leaves_the_new_holders_lock(
    backend: LockBackend, caplog: pytest.LogCaptureFixture
) -> None:
    late, early = FakeClock(1_800_000_000.0), FakeClock(1_800_000_010.0)
    old_holder, new_holder = backend.make(clock=late), backend.make(clock=early)
    old = await old_holder.acquire("k", ttl=10)
    new = await new_holder.acquire("k", ttl=10)
    with caplog.at_level(logging.WARNING, logger="durable_state.locks"):
        await old_holder.release(old)  # a silent no-op apart from the warning
    assert "stale lease" in caplog.text
    stored = await backend.read("k")
    assert stored is not None
    assert (stored.owner, stored.token, stored.released) == (new.owner, new.token, False)
    with pytest.raises(LockTimeout) as info:
        await old_holder.acquire("k")
    assert info.value.holder == new.owner
    await new_holder.renew(new)


async def test_release_frees_the_key_and_keeps_the_record(
    backend: LockBackend, clock: FakeClock
) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    lease = await holder.acquire("k", ttl=60)
    await holder.release(lease)
    await holder.release(lease)  # twice is harmless
    stored = await backend.read("k")
    assert stored is not None
    assert stored.released
    assert stored.token == lease.token
    taken = await contender.acquire("k")
    assert taken.token == lease.token + 1


async def test_fencing_tokens_strictly_increase(backend: LockBackend, clock: FakeClock) -> None:
    managers = [backend.make(clock=clock), backend.make(clock=clock)]
    tokens: list[int] = []
    for i in range(4):  # released, alternating managers
        lease = await managers[i % 2].acquire("k", ttl=5)
        tokens.append(lease.token)
        with pytest.raises(LockTimeout):
            await managers[(i + 1) % 2].acquire("k")  # a failed attempt
        await managers[i % 2].release(lease)
    for i in range(3):  # expired, never released
        lease = await managers[i % 2].acquire("k", ttl=5)
        tokens.append(lease.token)
        clock.advance(5)
    assert tokens == sorted(set(tokens)), tokens
    assert tokens[-1] - tokens[0] == len(tokens) - 1


# --------------------------------------------------------------------------- #
# Cancellation
# --------------------------------------------------------------------------- #


async def test_a_cancelled_waiter_leaves_no_lock_behind(backend: LockBackend) -> None:
    holder, waiter, probe = backend.make(), backend.make(), backend.make()
    lease = await holder.acquire("k", ttl=60)
    with anyio.move_on_after(0.2) as scope:
        await waiter.acquire("k", wait=30)
    assert scope.cancelled_caught
    await holder.release(lease)
    await anyio.sleep(0.2)  # a waiter still retrying would take the key now
    taken = await probe.acquire("k")
    stored = await backend.read("k")
    assert stored is not None
    assert stored.owner == taken.owner


async def test_cancelling_an_acquisition_at_any_point_leaves_no_lock(
    backend: LockBackend,
) -> None:
    manager, probe = backend.make(), backend.make()
    interrupted = 0
    for delay in (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02):
        lease = None
        with anyio.move_on_after(delay) as scope:
            lease = await manager.acquire("k", ttl=60)
        interrupted += scope.cancelled_caught
        if lease is not None:
            await manager.release(lease)  # shielded by the manager
        # Whatever instant the cancellation hit, the key is free again.
        free = await probe.acquire("k")
        await probe.release(free)
    assert interrupted > 0


# --------------------------------------------------------------------------- #
# hold()
# --------------------------------------------------------------------------- #


async def test_hold_renews_in_the_background(backend: LockBackend) -> None:
    holder, contender = backend.make(), backend.make()
    async with holder.hold("k", ttl=1.0) as held:
        assert isinstance(held, HeldLease)
        first = held.lease
        await anyio.sleep(1.4)  # longer than the TTL: only renewals keep it
        assert held.lease.expires_at > first.expires_at
        assert (held.lease.owner, held.token) == (first.owner, first.token)
        assert not held.lost
        with pytest.raises(LockTimeout):
            await contender.acquire("k")
    taken = await contender.acquire("k")  # released on exit
    assert taken.token > first.token


async def test_hold_releases_when_the_body_finishes(backend: LockBackend, clock: FakeClock) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    async with holder.hold("k", ttl=60) as held:
        pass
    stored = await backend.read("k")
    assert stored is not None
    assert stored.released
    taken = await contender.acquire("k")
    assert taken.token == held.token + 1


async def test_hold_cancels_the_body_when_the_record_disappears(backend: LockBackend) -> None:
    holder = backend.make()
    seen: list[HeldLease] = []
    reached_the_end = False

    async def body() -> None:
        nonlocal reached_the_end
        async with holder.hold("k", ttl=1.0) as held:
            seen.append(held)
            await backend.delete("k")
            await anyio.sleep(30)
            reached_the_end = True

    started = anyio.current_time()
    with pytest.raises(LockLost) as info:
        await body()
    assert type(info.value) is LockLost  # not a cancellation, not an ExceptionGroup
    assert not reached_the_end
    assert anyio.current_time() - started < 5
    (held,) = seen
    assert held.lost
    assert (info.value.owner, info.value.token) == (held.lease.owner, held.token)
    assert await backend.read("k") is None  # the release on exit recreated nothing


async def test_hold_cancels_the_body_when_the_lease_is_taken_over(backend: LockBackend) -> None:
    holder = backend.make()

    async def body() -> None:
        async with holder.hold("k", ttl=1.0) as held:
            await backend.overwrite("k", "intruder", held.token + 1, time.time() + 60)
            await anyio.sleep(30)

    with pytest.raises(LockLost, match="intruder"):
        await body()
    stored = await backend.read("k")
    assert stored is not None
    # The release on exit did not free the new holder's lease.
    assert (stored.owner, stored.released) == ("intruder", False)


async def test_hold_loses_the_lease_when_it_runs_out_locally(backend: LockBackend) -> None:
    offset = 0.0

    def jumpy_clock() -> float:
        return time.time() + offset

    holder = backend.make(clock=jumpy_clock)

    async def body() -> None:
        nonlocal offset
        async with holder.hold("k", ttl=1.0):
            offset = 3600.0  # the holder's clock leaps past the expiry
            await anyio.sleep(30)

    with pytest.raises(LockLost, match="ran out"):
        await body()


async def test_hold_releases_on_a_body_exception_and_propagates_it_unchanged(
    backend: LockBackend, clock: FakeClock
) -> None:
    holder, contender = backend.make(clock=clock), backend.make(clock=clock)
    error = ValueError("boom")
    seen: list[HeldLease] = []

    async def body() -> None:
        async with holder.hold("k", ttl=60) as held:
            seen.append(held)
            raise error

    with pytest.raises(ValueError, match="boom") as info:
        await body()
    assert info.value is error
    assert type(info.value) is ValueError
    taken = await contender.acquire("k")  # at once: released on exit
    assert taken.token == seen[0].token + 1


async def test_hold_lets_an_outer_cancellation_through_and_releases(
    backend: LockBackend,
) -> None:
    holder, contender = backend.make(), backend.make()
    with anyio.move_on_after(0.2) as scope:
        async with holder.hold("k", ttl=60):
            await anyio.sleep(30)
    assert scope.cancelled_caught
    await contender.acquire("k")


async def test_hold_waits_like_acquire(backend: LockBackend) -> None:
    holder, waiter = backend.make(), backend.make()
    lease = await holder.acquire("k", ttl=60)
    ran = False

    async def body() -> None:
        nonlocal ran
        async with waiter.hold("k", wait=0.1):
            ran = True

    with pytest.raises(LockTimeout):
        await body()
    assert not ran  # the body never runs without the lease
    await holder.release(lease)
    async with waiter.hold("k", wait=1) as held:
        assert held.token > lease.token


# --------------------------------------------------------------------------- #
# Arguments and lifecycle
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("key", ["", "a\x00b", "\ud800", 42, None, b"k"])
async def test_invalid_keys_are_refused(backend: LockBackend, key: object) -> None:
    manager = backend.make()
    with pytest.raises(InvalidKey):
        await manager.acquire(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"ttl": 0}, ValueError),
        ({"ttl": -1}, ValueError),
        ({"ttl": math.inf}, ValueError),
        ({"ttl": "9"}, TypeError),
        ({"wait": -0.1}, ValueError),
        ({"wait": math.nan}, ValueError),
        ({"wait": "1"}, TypeError),
    ],
)
async def test_invalid_ttl_and_wait_are_refused(
    backend: LockBackend, kwargs: dict[str, object], error: type[Exception]
) -> None:
    manager = backend.make()
    with pytest.raises(error):
        await manager.acquire("k", **kwargs)  # type: ignore[arg-type]


async def test_a_closed_manager_refuses_work(backend: LockBackend) -> None:
    manager = backend.make()
    async with manager as entered:
        assert entered is manager
        lease = await manager.acquire("k", ttl=60)
    await manager.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await manager.acquire("k2")
    with pytest.raises(RuntimeError, match="closed"):
        await manager.renew(lease)


# --------------------------------------------------------------------------- #
# Peek (diagnostics)
# --------------------------------------------------------------------------- #


async def test_peek_shows_the_current_holder_and_nothing_else(
    backend: LockBackend, clock: FakeClock
) -> None:
    holder, observer = backend.make(clock=clock), backend.make(clock=clock)
    assert await observer.peek("k") is None  # never taken
    lease = await holder.acquire("k", ttl=60)
    seen = await observer.peek("k")
    assert seen is not None
    assert (seen.key, seen.owner, seen.token) == ("k", lease.owner, lease.token)
    assert seen.expires_at == pytest.approx(lease.expires_at)
    assert seen.ttl == pytest.approx(60)
    # Peeking takes nothing: the holder can still renew, others still wait.
    renewed = await holder.renew(lease)
    with pytest.raises(LockTimeout):
        await observer.acquire("k")
    await holder.release(renewed)
    assert await observer.peek("k") is None  # released


async def test_peek_treats_an_expired_lease_as_free(backend: LockBackend, clock: FakeClock) -> None:
    holder, observer = backend.make(clock=clock), backend.make(clock=clock)
    await holder.acquire("k", ttl=10)
    clock.advance(9.5)
    assert await observer.peek("k") is not None
    clock.advance(1)
    assert await observer.peek("k") is None
    await observer.acquire("k", ttl=10)  # and indeed acquirable


async def test_peek_rejects_invalid_keys(backend: LockBackend) -> None:
    with pytest.raises(InvalidKey):
        await backend.make().peek("")
