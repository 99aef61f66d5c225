"""Fencing, lease loss, emitted events and logging of the persisted actor.

* A holder whose lease was taken over can never overwrite the newer state:
  its save is a compare-and-set on the version it read.
* A lease lost while the body runs (record deleted or taken over behind the
  holder's back) cancels the body, raises LockLost and saves nothing; the
  heartbeat's next renewal is what finds the loss.
* Emitted events reach listeners only after the save succeeded.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

from durable_state import (
    LockLost,
    ManualClock,
    NotSerializable,
    PersistedActor,
    VersionConflict,
    persisted_actor,
)
from durable_state.locks.memory import MemoryLockManager
from durable_state.storage import MemoryStorage

from ._machines import counter_machine, emitter_machine
from .conftest import Backend


async def count_of(backend: Backend, actor_id: str) -> int:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    count: int = json.loads(stored.data)["context"]["count"]
    return count


# --------------------------------------------------------------------------- #
# Fencing by storage version
# --------------------------------------------------------------------------- #


async def test_a_holder_whose_lease_was_taken_over_cannot_overwrite(
    backend: Backend, actor_id: str
) -> None:
    machine = counter_machine()

    async def stale_holder() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock, lock_ttl=60
        ) as actor:
            await actor.send("INC")
            # Its lease runs out behind its back (a long GC pause, say); the
            # next holder takes it and commits. Its heartbeat has not noticed.
            await backend.expire_lease(actor_id)
            async with persisted_actor(
                actor_id, machine, storage=backend.storage, lock=backend.make_lock()
            ) as successor:
                await successor.send({"type": "INC", "by": 10})

    with pytest.raises(VersionConflict):
        await stale_holder()
    assert await count_of(backend, actor_id) == 10  # the successor's state stays
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("locking", ["write", None])
async def test_a_save_after_someone_else_saved_is_refused(
    backend: Backend, actor_id: str, locking: Any
) -> None:
    machine = counter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage, lock=backend.lock):
        pass

    async def slow_session() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock, locking=locking
        ) as actor:
            await actor.send("INC")
            async with persisted_actor(
                actor_id, machine, storage=backend.storage, lock=backend.make_lock()
            ) as other:
                await other.send({"type": "INC", "by": 10})

    with pytest.raises(VersionConflict):
        await slow_session()
    assert await count_of(backend, actor_id) == 10
    await backend.assert_lock_free(actor_id)


async def test_a_lease_run_out_on_the_local_clock_is_refused_before_writing() -> None:
    """The heartbeat has not run yet, but the lease's expiry has passed: LockLost, no write."""
    clock = ManualClock(1_000_000)
    storage, locks = MemoryStorage(), MemoryLockManager(clock=clock.time)
    pa = PersistedActor("a", counter_machine(), storage=storage, lock=locks, lock_ttl=60)
    await pa.init()
    await pa.send("INC")
    await clock.advance(61_000)
    with pytest.raises(LockLost, match="ran out"):
        await pa.save()
    with pytest.raises(LockLost):  # and closing reports the loss too
        await pa.close()
    assert await storage.read("a") is None


# --------------------------------------------------------------------------- #
# Lease lost while the body runs
# --------------------------------------------------------------------------- #


#: The lease of the session below: renewed every ttl / 3 seconds.
MID_BODY_TTL = 3.0


@pytest.mark.parametrize("how", ["deleted", "taken over", "taken over slowly"])
async def test_a_lease_lost_mid_body_cancels_it_and_saves_nothing(
    backend: Backend, actor_id: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = counter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage, lock=backend.lock):
        pass
    before = await backend.storage.read(actor_id)
    reached_the_end = False
    thief: Any = None
    lost_at = 0.0

    # Taking a lease over is two requests: expire it, then acquire it with
    # another manager. A renewal landing between the two puts the expiry back
    # and the thief's acquire fails, which is no test of the holder at all
    # (under CPU load that happened about one run in three). So the holder's
    # renewals wait while the lease is meddled with, a renewal already in
    # flight finishes first, and the first renewal afterwards is the one that
    # must find the loss. "taken over slowly" leaves more than a renewal
    # interval between the two requests, as a loaded machine does.
    meddling = anyio.Lock()
    renew = backend.lock.renew

    async def renew_unless_meddling(lease: Any) -> Any:
        async with meddling:
            return await renew(lease)

    monkeypatch.setattr(backend.lock, "renew", renew_unless_meddling)

    async def session() -> None:
        nonlocal reached_the_end, thief, lost_at
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock, lock_ttl=MID_BODY_TTL
        ) as actor:
            await actor.send("INC")
            async with meddling:
                if how == "deleted":
                    await backend.delete_lease(actor_id)
                elif how == "taken over":
                    thief = await backend.steal_lease(actor_id)
                else:
                    await backend.expire_lease(actor_id)
                    await anyio.sleep(MID_BODY_TTL / 3 + 0.1)
                    thief = await backend.make_lock().acquire(actor_id, ttl=60)
            lost_at = anyio.current_time()
            await anyio.sleep(30)
            reached_the_end = True

    with anyio.fail_after(15), pytest.raises(LockLost) as info:
        await session()
    # Noticed by the next renewal (every ttl / 3), well before the lease ran out.
    assert anyio.current_time() - lost_at < MID_BODY_TTL
    assert not reached_the_end
    assert info.value.key == actor_id
    # The renewal saw what was done to the lease, not merely the lease running out.
    if thief is None:
        assert "gone" in info.value.reason
    else:
        assert f"now leased to {thief.owner!r}" in info.value.reason
    assert await backend.storage.read(actor_id) == before


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_lease_lost_in_the_explicit_lifecycle_raises_on_close(
    backend: Backend, actor_id: str
) -> None:
    pa = PersistedActor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock, lock_ttl=1.2
    )

    async def lifecycle() -> None:
        # init() and close() at the same level: the lease's cancel scopes
        # are entered by init() and exited by close().
        await pa.init()
        try:
            await pa.send("INC")
            await backend.delete_lease(actor_id)
            await anyio.sleep(10)  # cancelled by the heartbeat
        finally:
            await pa.close()

    with anyio.fail_after(5), pytest.raises(LockLost):
        await lifecycle()
    assert await backend.storage.read(actor_id) is None


# --------------------------------------------------------------------------- #
# Emitted events
# --------------------------------------------------------------------------- #


async def test_emitted_events_are_delivered_only_after_the_save(
    backend: Backend, actor_id: str
) -> None:
    got: list[Any] = []
    async with persisted_actor(
        actor_id, emitter_machine(), storage=backend.storage, lock=backend.lock
    ) as actor:
        actor.on("pinged", got.append)
        await actor.send("PING")
        await actor.send("PING")
        assert got == []  # held until the save
    assert got == [{"type": "pinged", "pings": 1}, {"type": "pinged", "pings": 2}]


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
@pytest.mark.parametrize("failure", ["conflict", "not serializable", "body raised"])
async def test_a_failed_save_never_leaks_emitted_events(
    backend: Backend, actor_id: str, failure: str
) -> None:
    machine = emitter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage, lock=backend.lock):
        pass
    got: list[Any] = []

    async def session() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock
        ) as actor:
            actor.on("*", got.append)
            await actor.send("PING")
            if failure == "conflict":
                await backend.storage.write(actor_id, b"{}", if_version=actor.version)
            elif failure == "not serializable":
                await actor.send({"type": "SET", "value": {1, 2}})
            else:
                raise LookupError("body raised")

    with pytest.raises((VersionConflict, NotSerializable, LookupError)):
        await session()
    assert got == []


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_explicit_saves_deliver_what_they_saved(backend: Backend, actor_id: str) -> None:
    got: list[Any] = []
    pa = PersistedActor(actor_id, emitter_machine(), storage=backend.storage, lock=backend.lock)
    await pa.init()
    try:
        pa.on("pinged", got.append)
        await pa.send("PING")
        await pa.save()
        assert [e["pings"] for e in got] == [1]
        await pa.send("PING")  # never saved
    finally:
        await pa.close()
    assert [e["pings"] for e in got] == [1]


async def test_changes_made_during_the_write_stay_unsaved() -> None:
    """An event processed while the write is in flight (a timer, invoked work) is
    neither marked saved nor delivered: the next save writes and delivers it."""
    pa: PersistedActor

    class SlowStorage(MemoryStorage):
        async def write(self, key: str, data: bytes, *, if_version: Any = "*") -> str:
            # What a timer firing in the middle of the write would do.
            assert pa._actor is not None
            await pa._actor.send("PING")
            return await super().write(key, data, if_version=if_version)

    storage = SlowStorage()
    got: list[Any] = []
    pa = PersistedActor("a", emitter_machine(), storage=storage)
    await pa.init()
    try:
        pa.on("pinged", got.append)
        await pa.send("PING")
        await pa.save()
        assert [e["pings"] for e in got] == [1]
        stored = await storage.read("a")
        assert stored is not None
        assert json.loads(stored.data)["context"]["pings"] == 1
        assert pa.changed  # the PING during the write is not saved yet
        await pa.save()  # writes pings == 2 (and one more PING happens during it)
        assert [e["pings"] for e in got] == [1, 2]
    finally:
        await pa.close()


# --------------------------------------------------------------------------- #
# Logging
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_loads_saves_and_refusals_are_logged(
    backend: Backend, actor_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_state.persisted")
    machine = counter_machine()
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock
    ) as actor:
        token = actor.lease.token if actor.lease else None
        await actor.send("INC")
    version = actor.version
    messages = [r.getMessage() for r in caplog.records if r.name == "durable_state.persisted"]
    loaded = next(m for m in messages if m.startswith("loaded"))
    saved = next(m for m in messages if m.startswith("saved"))
    assert actor_id in loaded
    assert f"lease token {token}" in loaded
    assert actor_id in saved
    assert f"version None -> {version}" in saved
    assert f"lease token {token}" in saved

    caplog.clear()

    async def conflicting() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock
        ) as actor:
            await actor.send("INC")
            await backend.storage.write(actor_id, b"{}", if_version=actor.version)

    with pytest.raises(VersionConflict):
        await conflicting()
    refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert actor_id in refused[0].getMessage()
    assert f"expected version {version!r}" in refused[0].getMessage()
