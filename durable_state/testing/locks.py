"""The :class:`~durable_state.locks.LockManager` contract as a pytest suite.

Every bundled lock manager passes these tests; a lock manager written
elsewhere can run them too. Subclass :class:`LockContract` in a test module
and provide a ``lock_backend`` fixture returning a :class:`LockBackend`: an
adapter, written once per backend, that makes managers over one shared,
empty store and reads and changes that store's lease records behind the
managers' backs::

    import pytest
    from durable_state.testing.locks import LockBackend, LockContract

    class MyLockBackend(LockBackend):
        ...  # new_manager, read_record, delete_record, write_record

    class TestMyLocks(LockContract):
        @pytest.fixture
        def lock_backend(self):
            return MyLockBackend(...)

The fixture may also live in a ``conftest.py``, and may be parametrized.
Expiry is driven by :class:`FakeClock` (exact boundaries, no sleeping);
waiting, heartbeats and cancellation run on real time with short TTLs, so
the suite takes some seconds per backend. The tests are asyncio tests: this
module needs ``pytest`` and ``pytest-asyncio`` (``import durable_state``
never imports either). They are marked ``asyncio``, so they run in
pytest-asyncio's strict mode as in its auto mode; in strict mode an async
fixture needs ``pytest_asyncio.fixture``.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import anyio
import pytest
import pytest_asyncio

from ..errors import InvalidKey, LockLost, LockTimeout
from ..locks import DEFAULT_TTL, HeldLease, Lease, LockManager, MemoryLockManager
from ..locks import LeaseRecord as LeaseRecord

__all__ = (
    "FakeClock",
    "LeaseRecord",
    "LockBackend",
    "LockContract",
    "ManagerFactory",
    "MemoryLockBackend",
)


class FakeClock:
    """A clock that moves only when told to, in epoch seconds.

    Pass it as a lock manager's ``clock``; set :attr:`now` or call
    :meth:`advance` between operations. (Unlike
    :class:`~durable_state.ManualClock`, it schedules nothing: it is only a
    time source.)

    Args:
        now: the initial time in epoch seconds.

    Attributes:
        now: the current time in epoch seconds.
    """

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now: float = now

    def __call__(self) -> float:
        """The current time in epoch seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


class LockBackend(abc.ABC):
    """What :class:`LockContract` needs from a backend: managers and raw records.

    Every manager made by one instance works on the same store (what several
    processes sharing the backend would see), empty at the start of a test.
    The record methods look at that store directly, not through a manager.
    """

    @abc.abstractmethod
    def new_manager(self, *, clock: Callable[[], float], default_ttl: float) -> LockManager:
        """A new, open manager over the shared store.

        The suite closes every manager it makes. A manager must decide
        expiry on ``clock`` exactly: a lease is acquirable when
        ``expires_at <= clock()``, with no skew margin (configure one away).

        Args:
            clock: the manager's clock (epoch seconds).
            default_ttl: the manager's default lease duration in seconds.
        """

    @abc.abstractmethod
    async def read_record(self, key: str) -> LeaseRecord | None:
        """The lease record stored for ``key``, or ``None`` if there is none.

        A released or expired lease is still a record: the suite checks that
        records are kept (fencing tokens depend on it).
        """

    @abc.abstractmethod
    async def delete_record(self, key: str) -> None:
        """Remove the record of ``key`` (which exists), as an operator might."""

    @abc.abstractmethod
    async def write_record(self, key: str, record: LeaseRecord) -> None:
        """Replace the record of ``key`` (which exists), as another holder would.

        Fields the backend keeps beside those of :class:`LeaseRecord` may be
        left as they are.
        """


class ManagerFactory:
    """Makes managers from a :class:`LockBackend` and closes them all at the end.

    The ``managers`` fixture of :class:`LockContract`.
    """

    def __init__(self, backend: LockBackend) -> None:
        """Make managers with ``backend``.

        Args:
            backend: the backend under test.
        """
        self.backend: LockBackend = backend
        self._made: list[LockManager] = []

    def make(
        self, *, clock: Callable[[], float] | None = None, default_ttl: float = DEFAULT_TTL
    ) -> LockManager:
        """A new manager over the backend's shared store.

        Args:
            clock: its clock (default :func:`time.time`).
            default_ttl: its default lease duration in seconds.
        """
        manager = self.backend.new_manager(clock=clock or time.time, default_ttl=default_ttl)
        self._made.append(manager)
        return manager

    async def aclose(self) -> None:
        """Close every manager made (closing is idempotent)."""
        for manager in self._made:
            await manager.aclose()


class MemoryLockBackend(LockBackend):
    """A :class:`LockBackend` for :class:`~durable_state.locks.MemoryLockManager`.

    Its managers are siblings sharing one lease table.
    """

    def __init__(self) -> None:
        """Start with an empty lease table."""
        self._root = MemoryLockManager()

    def new_manager(
        self, *, clock: Callable[[], float] | None = None, default_ttl: float = DEFAULT_TTL
    ) -> MemoryLockManager:
        """A sibling over the shared lease table (by default on :func:`time.time`)."""
        return self._root.sibling(clock=clock or time.time, default_ttl=default_ttl)

    async def read_record(self, key: str) -> LeaseRecord | None:
        """The record in the shared table (:meth:`MemoryLockManager.record`)."""
        return self._root.record(key)

    async def delete_record(self, key: str) -> None:
        """Remove the record from the shared table."""
        self._root.set_record(key, None)

    async def write_record(self, key: str, record: LeaseRecord) -> None:
        """Put ``record`` in the shared table (:meth:`MemoryLockManager.set_record`)."""
        self._root.set_record(key, record)


class LockContract:
    """The lease contract; subclass it and provide a ``lock_backend`` fixture.

    The fixture returns a :class:`LockBackend` over a new, empty store for
    each test. The suite provides two fixtures of its own to its tests:
    ``managers`` (a :class:`ManagerFactory`) and ``clock`` (a
    :class:`FakeClock`).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest_asyncio.fixture
    async def managers(self, lock_backend: LockBackend) -> AsyncIterator[ManagerFactory]:
        """Managers over the backend's store, closed after the test."""
        factory = ManagerFactory(lock_backend)
        try:
            yield factory
        finally:
            await factory.aclose()

    @pytest.fixture
    def clock(self) -> FakeClock:
        """A fake clock at a fixed instant."""
        return FakeClock()

    # ------------------------------------------------------------------ #
    # Acquire, exclusion, waiting
    # ------------------------------------------------------------------ #

    async def test_acquire_returns_a_lease_recorded_in_the_store(
        self, managers: ManagerFactory, lock_backend: LockBackend, clock: FakeClock
    ) -> None:
        """A lease carries key, TTL, expiry on the clock and a token; the store records it."""
        manager = managers.make(clock=clock, default_ttl=30)
        assert isinstance(manager, LockManager)
        lease = await manager.acquire("order-42")
        assert isinstance(lease, Lease)
        assert lease.key == "order-42"
        assert lease.ttl == 30
        assert lease.expires_at == clock.now + 30
        assert isinstance(lease.token, int)
        stored = await lock_backend.read_record("order-42")
        assert stored is not None
        assert (stored.owner, stored.token, stored.released) == (lease.owner, lease.token, False)
        assert stored.expires_at == pytest.approx(lease.expires_at)

    async def test_owner_ids_are_unique_per_acquisition(self, managers: ManagerFactory) -> None:
        """Every acquisition gets an owner id of its own, even from one manager."""
        manager = managers.make()
        leases = [await manager.acquire(f"k{i}") for i in range(5)]
        assert len({lease.owner for lease in leases}) == 5

    async def test_a_held_key_excludes_every_manager(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """A held key refuses its own manager and others, naming the holder; other keys are free."""
        first, second = managers.make(clock=clock), managers.make(clock=clock)
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
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """Eight concurrent acquisitions from four managers: one lease, seven timeouts."""
        contenders = [managers.make(clock=clock) for _ in range(4)]
        won: list[Lease] = []
        lost: list[LockTimeout] = []

        async def grab(manager: LockManager) -> None:
            try:
                won.append(await manager.acquire("k", ttl=60))
            except LockTimeout as exc:
                lost.append(exc)

        async with anyio.create_task_group() as tg:
            for manager in contenders * 2:
                tg.start_soon(grab, manager)
        assert len(won) == 1
        assert len(lost) == 7
        assert {exc.holder for exc in lost} == {won[0].owner}

    async def test_lock_timeout_after_wait(self, managers: ManagerFactory) -> None:
        """``wait`` retries for that long, then raises LockTimeout naming the holder."""
        holder, waiter = managers.make(), managers.make()
        lease = await holder.acquire("k", ttl=60)
        started = anyio.current_time()
        with pytest.raises(LockTimeout) as info:
            await waiter.acquire("k", wait=0.3)
        elapsed = anyio.current_time() - started
        assert 0.3 <= elapsed < 2.0
        assert info.value.waited >= 0.3
        assert info.value.holder == lease.owner
        assert info.value.expires_at == pytest.approx(lease.expires_at)

    async def test_a_waiter_gets_the_key_once_it_is_released(
        self, managers: ManagerFactory
    ) -> None:
        """A waiting acquisition takes the key soon after its release, with a larger token."""
        holder, waiter = managers.make(), managers.make()
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

    async def test_a_waiter_gets_the_key_when_the_lease_runs_out(
        self, managers: ManagerFactory
    ) -> None:
        """A waiting acquisition takes an unrenewed key soon after its expiry."""
        holder, waiter = managers.make(), managers.make()
        lease = await holder.acquire("k", ttl=0.4)
        taken = await waiter.acquire("k", wait=10)
        # The backoff aims at the holder's expiry: no long overshoot.
        assert time.time() - lease.expires_at < 1.0
        assert taken.token > lease.token

    # ------------------------------------------------------------------ #
    # Expiry on the clock
    # ------------------------------------------------------------------ #

    async def test_expiry_boundary_on_the_clock(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """A lease is held until just before ``expires_at`` and acquirable at it."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
        lease = await holder.acquire("k", ttl=10)
        clock.now = lease.expires_at - 0.001
        with pytest.raises(LockTimeout):
            await contender.acquire("k")
        clock.now = lease.expires_at
        taken = await contender.acquire("k")
        assert taken.token > lease.token

    async def test_expired_lease_is_taken_over_without_deleting_the_record(
        self, managers: ManagerFactory, lock_backend: LockBackend, clock: FakeClock
    ) -> None:
        """An expired record stays in the store; the takeover overwrites it with the next token."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
        lease = await holder.acquire("k", ttl=5)
        clock.advance(3600)
        # Nothing removed the expired record (no TTL deletion is relied upon) ...
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert (stored.owner, stored.token, stored.released) == (lease.owner, lease.token, False)
        # ... and the takeover is a conditional overwrite of it.
        taken = await contender.acquire("k")
        assert taken.token == lease.token + 1
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert (stored.owner, stored.token) == (taken.owner, taken.token)

    async def test_renew_extends_the_lease(
        self, managers: ManagerFactory, lock_backend: LockBackend, clock: FakeClock
    ) -> None:
        """Renewing moves the expiry to ``now + ttl`` in the lease and the store, nothing else."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
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
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert stored.expires_at == pytest.approx(renewed.expires_at)
        clock.advance(9)  # past the original expiry, before the renewed one
        with pytest.raises(LockTimeout):
            await contender.acquire("k")
        clock.advance(1)  # exactly the renewed expiry
        taken = await contender.acquire("k")
        assert taken.token == lease.token + 1

    async def test_renew_of_a_locally_expired_lease_is_lost(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """A lease whose expiry has passed on the holder's clock cannot be renewed."""
        holder = managers.make(clock=clock)
        lease = await holder.acquire("k", ttl=10)
        clock.now = lease.expires_at - 0.001
        lease = await holder.renew(lease)
        clock.now = lease.expires_at
        with pytest.raises(LockLost) as info:
            await holder.renew(lease)
        assert (info.value.key, info.value.owner, info.value.token) == (
            "k",
            lease.owner,
            lease.token,
        )

    async def test_stale_renew_raises_lock_lost(
        self, managers: ManagerFactory, lock_backend: LockBackend
    ) -> None:
        """A renewal by a holder whose lease was taken over fails, naming the new holder."""
        # The old holder's clock lags: by its own clock the lease is still valid,
        # so only the store can tell that it was taken over.
        late, early = FakeClock(1_800_000_000.0), FakeClock(1_800_000_010.0)
        old_holder, new_holder = managers.make(clock=late), managers.make(clock=early)
        old = await old_holder.acquire("k", ttl=10)
        new = await new_holder.acquire("k", ttl=10)
        assert new.token > old.token
        with pytest.raises(LockLost) as info:
            await old_holder.renew(old)
        assert (info.value.owner, info.value.token) == (old.owner, old.token)
        assert new.owner in info.value.reason
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert stored.owner == new.owner
        assert stored.expires_at == pytest.approx(new.expires_at)

    async def test_renew_after_release_raises_lock_lost(self, managers: ManagerFactory) -> None:
        """A released lease cannot be renewed."""
        holder = managers.make()
        lease = await holder.acquire("k", ttl=60)
        await holder.release(lease)
        with pytest.raises(LockLost, match="released"):
            await holder.renew(lease)

    async def test_stale_release_leaves_the_new_holders_lock(
        self,
        managers: ManagerFactory,
        lock_backend: LockBackend,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A late release by a holder that was taken over changes nothing and logs a warning."""
        late, early = FakeClock(1_800_000_000.0), FakeClock(1_800_000_010.0)
        old_holder, new_holder = managers.make(clock=late), managers.make(clock=early)
        old = await old_holder.acquire("k", ttl=10)
        new = await new_holder.acquire("k", ttl=10)
        with caplog.at_level(logging.WARNING, logger="durable_state.locks"):
            await old_holder.release(old)  # a silent no-op apart from the warning
        assert "stale lease" in caplog.text
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert (stored.owner, stored.token, stored.released) == (new.owner, new.token, False)
        with pytest.raises(LockTimeout) as info:
            await old_holder.acquire("k")
        assert info.value.holder == new.owner
        await new_holder.renew(new)

    async def test_release_frees_the_key_and_keeps_the_record(
        self, managers: ManagerFactory, lock_backend: LockBackend, clock: FakeClock
    ) -> None:
        """Releasing (twice is harmless) marks the record released and frees the key at once."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
        lease = await holder.acquire("k", ttl=60)
        await holder.release(lease)
        await holder.release(lease)  # twice is harmless
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert stored.released
        assert stored.token == lease.token
        taken = await contender.acquire("k")
        assert taken.token == lease.token + 1

    async def test_fencing_tokens_strictly_increase(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """Tokens grow by one per acquisition, through releases, failed attempts and expiries."""
        pair = [managers.make(clock=clock), managers.make(clock=clock)]
        tokens: list[int] = []
        for i in range(4):  # released, alternating managers
            lease = await pair[i % 2].acquire("k", ttl=5)
            tokens.append(lease.token)
            with pytest.raises(LockTimeout):
                await pair[(i + 1) % 2].acquire("k")  # a failed attempt
            await pair[i % 2].release(lease)
        for i in range(3):  # expired, never released
            lease = await pair[i % 2].acquire("k", ttl=5)
            tokens.append(lease.token)
            clock.advance(5)
        assert tokens == sorted(set(tokens)), tokens
        assert tokens[-1] - tokens[0] == len(tokens) - 1

    # ------------------------------------------------------------------ #
    # Cancellation
    # ------------------------------------------------------------------ #

    async def test_a_cancelled_waiter_leaves_no_lock_behind(
        self, managers: ManagerFactory, lock_backend: LockBackend
    ) -> None:
        """A waiting acquisition that is cancelled stops trying and takes nothing."""
        holder, waiter, probe = managers.make(), managers.make(), managers.make()
        lease = await holder.acquire("k", ttl=60)
        with anyio.move_on_after(0.2) as scope:
            await waiter.acquire("k", wait=30)
        assert scope.cancelled_caught
        await holder.release(lease)
        await anyio.sleep(0.2)  # a waiter still retrying would take the key now
        taken = await probe.acquire("k")
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert stored.owner == taken.owner

    async def test_cancelling_an_acquisition_at_any_point_leaves_no_lock(
        self, managers: ManagerFactory
    ) -> None:
        """Whenever an acquisition is cancelled, the key is free again afterwards."""
        manager, probe = managers.make(), managers.make()
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

    # ------------------------------------------------------------------ #
    # hold()
    # ------------------------------------------------------------------ #

    async def test_hold_renews_in_the_background(self, managers: ManagerFactory) -> None:
        """``hold()`` keeps the lease past its TTL by renewing it, and releases it on exit."""
        holder, contender = managers.make(), managers.make()
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

    async def test_hold_releases_when_the_body_finishes(
        self, managers: ManagerFactory, lock_backend: LockBackend, clock: FakeClock
    ) -> None:
        """Leaving a ``hold()`` block releases the lease in the store."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
        async with holder.hold("k", ttl=60) as held:
            pass
        stored = await lock_backend.read_record("k")
        assert stored is not None
        assert stored.released
        taken = await contender.acquire("k")
        assert taken.token == held.token + 1

    async def test_hold_cancels_the_body_when_the_record_disappears(
        self, managers: ManagerFactory, lock_backend: LockBackend
    ) -> None:
        """A deleted record is a lost lease: the body is cancelled with LockLost, nothing recreated."""
        holder = managers.make()
        seen: list[HeldLease] = []
        reached_the_end = False

        async def body() -> None:
            nonlocal reached_the_end
            async with holder.hold("k", ttl=1.0) as held:
                seen.append(held)
                await lock_backend.delete_record("k")
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
        assert await lock_backend.read_record("k") is None  # the release on exit recreated nothing

    async def test_hold_cancels_the_body_when_the_lease_is_taken_over(
        self, managers: ManagerFactory, lock_backend: LockBackend
    ) -> None:
        """A record rewritten by another holder cancels the body, and the exit leaves it alone."""
        holder = managers.make()

        async def body() -> None:
            async with holder.hold("k", ttl=1.0) as held:
                intruder = LeaseRecord("intruder", held.token + 1, time.time() + 60)
                await lock_backend.write_record("k", intruder)
                await anyio.sleep(30)

        with pytest.raises(LockLost, match="intruder"):
            await body()
        stored = await lock_backend.read_record("k")
        assert stored is not None
        # The release on exit did not free the new holder's lease.
        assert (stored.owner, stored.released) == ("intruder", False)

    async def test_hold_loses_the_lease_when_it_runs_out_locally(
        self, managers: ManagerFactory
    ) -> None:
        """A holder whose clock leaps past the expiry cancels its own body."""
        offset = 0.0

        def jumpy_clock() -> float:
            return time.time() + offset

        holder = managers.make(clock=jumpy_clock)

        async def body() -> None:
            nonlocal offset
            async with holder.hold("k", ttl=1.0):
                offset = 3600.0  # the holder's clock leaps past the expiry
                await anyio.sleep(30)

        with pytest.raises(LockLost, match="ran out"):
            await body()

    async def test_hold_releases_on_a_body_exception_and_propagates_it_unchanged(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """A body's own exception comes out of ``hold()`` as it was, after the release."""
        holder, contender = managers.make(clock=clock), managers.make(clock=clock)
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
        self, managers: ManagerFactory
    ) -> None:
        """An outer cancellation goes through ``hold()``, which still releases."""
        holder, contender = managers.make(), managers.make()
        with anyio.move_on_after(0.2) as scope:
            async with holder.hold("k", ttl=60):
                await anyio.sleep(30)
        assert scope.cancelled_caught
        await contender.acquire("k")

    async def test_hold_waits_like_acquire(self, managers: ManagerFactory) -> None:
        """``hold(wait=...)`` waits as ``acquire`` does; without the lease the body never runs."""
        holder, waiter = managers.make(), managers.make()
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

    # ------------------------------------------------------------------ #
    # Arguments and lifecycle
    # ------------------------------------------------------------------ #

    @pytest.mark.parametrize("key", ["", "a\x00b", "\ud800", 42, None, b"k"])
    async def test_invalid_keys_are_refused(self, managers: ManagerFactory, key: object) -> None:
        """Keys that are empty, hold NUL, are not UTF-8 or not str are refused."""
        manager = managers.make()
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
        self, managers: ManagerFactory, kwargs: dict[str, object], error: type[Exception]
    ) -> None:
        """Non-positive or infinite TTLs, negative or NaN waits, and non-numbers are refused."""
        manager = managers.make()
        with pytest.raises(error):
            await manager.acquire("k", **kwargs)  # type: ignore[arg-type]

    async def test_a_closed_manager_refuses_work(self, managers: ManagerFactory) -> None:
        """``async with`` yields the manager; once closed (idempotently) it raises RuntimeError."""
        manager = managers.make()
        async with manager as entered:
            assert entered is manager
            lease = await manager.acquire("k", ttl=60)
        await manager.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await manager.acquire("k2")
        with pytest.raises(RuntimeError, match="closed"):
            await manager.renew(lease)

    # ------------------------------------------------------------------ #
    # Peek (diagnostics)
    # ------------------------------------------------------------------ #

    async def test_peek_shows_the_current_holder_and_nothing_else(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """``peek`` shows the live lease, takes nothing, and shows nothing once released."""
        holder, observer = managers.make(clock=clock), managers.make(clock=clock)
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

    async def test_peek_treats_an_expired_lease_as_free(
        self, managers: ManagerFactory, clock: FakeClock
    ) -> None:
        """``peek`` shows nothing once the lease has expired on the clock."""
        holder, observer = managers.make(clock=clock), managers.make(clock=clock)
        await holder.acquire("k", ttl=10)
        clock.advance(9.5)
        assert await observer.peek("k") is not None
        clock.advance(1)
        assert await observer.peek("k") is None
        await observer.acquire("k", ttl=10)  # and indeed acquirable

    async def test_peek_rejects_invalid_keys(self, managers: ManagerFactory) -> None:
        """``peek`` refuses an invalid key as ``acquire`` does."""
        with pytest.raises(InvalidKey):
            await managers.make().peek("")
