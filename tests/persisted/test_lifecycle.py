"""The persisted actor's lifecycle: load or create, commit on success, locking modes, cleanup.

Each test runs on every backend pair (memory, local files + file locks,
S3 + DynamoDB on the moto server) unless it narrows the ``backend`` parameter.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from durable_state import (
    ActorNotFound,
    LockTimeout,
    PersistedActor,
    VersionConflict,
    persisted_actor,
    with_persisted_actor,
)
from durable_state.storage import MemoryStorage

from ._counting import CountingLock, CountingStorage
from ._machines import counter_machine
from .conftest import Backend


async def count_of(backend: Backend, actor_id: str) -> int:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    count: int = json.loads(stored.data)["context"]["count"]
    return count


async def seed(backend: Backend, actor_id: str, count: int) -> Any:
    """Store the counter actor at ``count`` and return what was stored."""
    async with persisted_actor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
    ) as actor:
        if count:
            await actor.send({"type": "INC", "by": count})
    return await backend.storage.read(actor_id)


# --------------------------------------------------------------------------- #
# Load, create, commit
# --------------------------------------------------------------------------- #


async def test_a_new_actor_is_created_and_saved_on_exit(backend: Backend, actor_id: str) -> None:
    async with persisted_actor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
    ) as actor:
        assert actor.created
        assert actor.version is None
        assert actor.snapshot.context == {"count": 0}
        assert await backend.storage.read(actor_id) is None  # not before the exit
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    assert actor.version == stored.version
    data = json.loads(stored.data)
    assert data["value"] == "counting"
    assert data["$durable"]["machine"] == "counter"
    assert data["$durable"]["version"] == 1
    await backend.assert_lock_free(actor_id)


async def test_events_accumulate_across_sessions(backend: Backend, actor_id: str) -> None:
    machine = counter_machine()
    versions = []
    for _ in range(3):
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock
        ) as actor:
            await actor.send("INC")
        versions.append(actor.version)
    assert await count_of(backend, actor_id) == 3
    assert len(set(versions)) == 3


async def test_nothing_is_written_when_nothing_changed(backend: Backend, actor_id: str) -> None:
    before = await seed(backend, actor_id, 2)
    storage = CountingStorage(backend.storage)
    async with persisted_actor(
        actor_id, counter_machine(), storage=storage, lock=backend.lock
    ) as actor:
        assert not actor.created
        await actor.send("NOOP")  # handled, but changes nothing
        assert not actor.changed
    assert storage.calls == {"read": 1}
    assert await backend.storage.read(actor_id) == before


async def test_create_false_raises_actor_not_found(backend: Backend, actor_id: str) -> None:
    with pytest.raises(ActorNotFound) as info:
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock, create=False
        ):
            pytest.fail("the body ran for a missing actor")
    assert info.value.key == actor_id
    assert await backend.storage.read(actor_id) is None
    await backend.assert_lock_free(actor_id)


async def test_input_is_used_only_when_creating(backend: Backend, actor_id: str) -> None:
    from durable_state import Machine

    machine = Machine(
        {
            "id": "greeter",
            "initial": "idle",
            "context": lambda input: {"name": input["name"]},
            "states": {"idle": {}},
        }
    )
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, input={"name": "ada"}
    ) as actor:
        assert actor.snapshot.context == {"name": "ada"}
    async with persisted_actor(
        actor_id, machine, storage=backend.storage, lock=backend.lock, input={"name": "bob"}
    ) as actor:
        assert actor.snapshot.context == {"name": "ada"}


# --------------------------------------------------------------------------- #
# Exceptions in the body
# --------------------------------------------------------------------------- #


async def test_an_exception_in_the_body_discards_its_events(
    backend: Backend, actor_id: str
) -> None:
    before = await seed(backend, actor_id, 1)

    async def session() -> None:
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
        ) as actor:
            await actor.send("INC")
            await actor.send("INC")
            raise ValueError("body failed")

    with pytest.raises(ValueError, match="body failed"):
        await session()
    assert await backend.storage.read(actor_id) == before
    await backend.assert_lock_free(actor_id)


async def test_an_exception_in_the_body_of_a_new_actor_stores_nothing(
    backend: Backend, actor_id: str
) -> None:
    with pytest.raises(ValueError, match="body failed"):
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
        ):
            raise ValueError("body failed")
    assert await backend.storage.read(actor_id) is None


async def test_save_on_error_saves_the_state_reached(backend: Backend, actor_id: str) -> None:
    await seed(backend, actor_id, 1)

    async def session() -> None:
        async with persisted_actor(
            actor_id,
            counter_machine(),
            storage=backend.storage,
            lock=backend.lock,
            save_on_error=True,
        ) as actor:
            await actor.send("INC")
            await actor.send("INC")
            raise ValueError("body failed")

    with pytest.raises(ValueError, match="body failed"):
        await session()
    assert await count_of(backend, actor_id) == 3
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
@pytest.mark.parametrize("save_on_error", [False, True])
async def test_a_failing_action_and_save_on_error(
    backend: Backend, actor_id: str, save_on_error: bool
) -> None:
    """A custom action that raises fails the body; save_on_error keeps the state before it."""
    await seed(backend, actor_id, 1)

    async def session() -> None:
        async with persisted_actor(
            actor_id,
            counter_machine(),
            storage=backend.storage,
            lock=backend.lock,
            save_on_error=save_on_error,
        ) as actor:
            await actor.send("INC")
            await actor.send("BOOM")

    with pytest.raises(RuntimeError, match="boom"):
        await session()
    assert await count_of(backend, actor_id) == (2 if save_on_error else 1)
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_save_on_error_that_fails_keeps_the_body_exception_and_releases(
    backend: Backend, actor_id: str
) -> None:
    await seed(backend, actor_id, 1)

    async def session() -> None:
        async with persisted_actor(
            actor_id,
            counter_machine(),
            storage=backend.storage,
            lock=backend.lock,
            save_on_error=True,
        ) as actor:
            await actor.send("INC")
            # Someone else writes: the save after the failure meets a conflict.
            await backend.storage.write(actor_id, b"{}", if_version=actor.version)
            raise ValueError("body failed")

    with pytest.raises(ValueError, match="body failed"):
        await session()
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    assert stored.data == b"{}"
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_save_on_error_with_a_listener_that_raises_keeps_the_body_exception(
    backend: Backend, actor_id: str
) -> None:
    """The save succeeds, then a listener raises: the body's exception wins, the lease is freed."""
    from ._machines import emitter_machine

    def listener(event: Any) -> None:
        raise KeyError("listener failed")

    async def session() -> None:
        async with persisted_actor(
            actor_id,
            emitter_machine(),
            storage=backend.storage,
            lock=backend.lock,
            save_on_error=True,
        ) as actor:
            actor.on("pinged", listener)
            await actor.send("PING")
            raise ValueError("body failed")

    # The body's exception is the one raised; the listener's is only logged.
    with pytest.raises(ValueError, match="body failed"):
        await session()
    stored = await backend.storage.read(actor_id)
    assert stored is not None  # the save itself happened before the listener ran
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_outer_cancellation_saves_nothing_and_releases(
    backend: Backend, actor_id: str
) -> None:
    before = await seed(backend, actor_id, 1)
    entered = False
    with anyio.move_on_after(0.2) as scope:
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
        ) as actor:
            entered = True
            await actor.send("INC")
            await anyio.sleep(10)
    assert entered
    assert scope.cancelled_caught
    assert await backend.storage.read(actor_id) == before
    await backend.assert_lock_free(actor_id)


# --------------------------------------------------------------------------- #
# Locking modes
# --------------------------------------------------------------------------- #


async def test_read_write_mode_holds_the_lease_while_the_body_runs(
    backend: Backend, actor_id: str
) -> None:
    other = backend.make_lock()
    async with persisted_actor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
    ) as actor:
        assert actor.locking == "read-write"
        assert actor.lease is not None
        assert actor.lease.token >= 1
        with pytest.raises(LockTimeout):
            await other.acquire(actor_id, ttl=30)
    lease_after: Any = actor.lease  # a property: mypy would keep the narrowing above
    assert lease_after is None
    await backend.assert_lock_free(actor_id)


async def test_a_held_lease_keeps_the_body_out(backend: Backend, actor_id: str) -> None:
    held = await backend.make_lock().acquire(actor_id, ttl=30)
    with pytest.raises(LockTimeout) as info:
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
        ):
            pytest.fail("entered a held actor")
    assert info.value.holder == held.owner
    assert await backend.storage.read(actor_id) is None


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_lock_wait_queues_behind_the_holder(backend: Backend, actor_id: str) -> None:
    machine = counter_machine()
    order: list[str] = []
    first_entered = anyio.Event()

    async def first() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock
        ) as actor:
            order.append("first in")
            first_entered.set()
            await anyio.sleep(0.3)
            await actor.send("INC")
            order.append("first out")

    async def second() -> None:
        await first_entered.wait()
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.make_lock(), lock_wait=5
        ) as actor:
            order.append("second in")
            assert actor.snapshot.context["count"] == 1  # saw the first's commit
            await actor.send("INC")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
    assert order == ["first in", "first out", "second in"]
    assert await count_of(backend, actor_id) == 2


async def test_write_mode_reads_without_the_lease_and_takes_it_to_save(
    backend: Backend, actor_id: str
) -> None:
    await seed(backend, actor_id, 1)
    blocker = backend.make_lock()
    held = await blocker.acquire(actor_id, ttl=30)
    pa = PersistedActor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock, locking="write"
    )
    await pa.init()  # the read needs no lease
    try:
        assert pa.lease is None
        await pa.send("INC")
        with pytest.raises(LockTimeout):
            await pa.save()  # the save does
        assert await count_of(backend, actor_id) == 1
        await blocker.release(held)
        assert await pa.save() is not None
    finally:
        await pa.close()
    assert await count_of(backend, actor_id) == 2
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
@pytest.mark.parametrize("locking", ["read-write", "write", None])
async def test_round_trips_per_step(backend: Backend, actor_id: str, locking: Any) -> None:
    """Load + one event + save: read-write and write 4 round trips, optimistic 2."""
    await seed(backend, actor_id, 0)
    storage, lock = CountingStorage(backend.storage), CountingLock(backend.lock)
    async with persisted_actor(
        actor_id, counter_machine(), storage=storage, lock=lock, locking=locking
    ) as actor:
        await actor.send("INC")
    expected_lock = {} if locking is None else {"acquire": 1, "release": 1}
    assert storage.calls == {"read": 1, "write": 1}
    assert lock.calls == expected_lock


async def test_without_a_lock_manager_the_actor_is_optimistic(
    backend: Backend, actor_id: str
) -> None:
    await seed(backend, actor_id, 1)
    for locking in ("read-write", "write", None):
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, locking=locking
        ) as actor:
            assert actor.locking is None
            assert actor.lease is None
            await actor.send("INC")
    assert await count_of(backend, actor_id) == 4

    # Optimistic sessions still exclude each other through the version check.
    async def overlapping_sessions() -> None:
        machine = counter_machine()
        async with persisted_actor(actor_id, machine, storage=backend.storage) as a:
            await a.send("INC")
            async with persisted_actor(actor_id, machine, storage=backend.storage) as b:
                await b.send({"type": "INC", "by": 100})

    with pytest.raises(VersionConflict):
        await overlapping_sessions()
    assert await count_of(backend, actor_id) == 104


def test_invalid_arguments_are_refused() -> None:
    machine, storage = counter_machine(), MemoryStorage()
    with pytest.raises(ValueError, match="locking"):
        PersistedActor("a", machine, storage=storage, locking="exclusive")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actor_id"):
        PersistedActor("", machine, storage=storage)
    with pytest.raises(ValueError, match="processed_limit"):
        PersistedActor("a", machine, storage=storage, processed_limit=-1)


# --------------------------------------------------------------------------- #
# Explicit lifecycle and with_persisted_actor
# --------------------------------------------------------------------------- #


async def test_explicit_lifecycle(backend: Backend, actor_id: str) -> None:
    pa = PersistedActor(actor_id, counter_machine(), storage=backend.storage, lock=backend.lock)
    with pytest.raises(RuntimeError, match="init"):
        _ = pa.snapshot
    await pa.init()
    try:
        with pytest.raises(RuntimeError, match="already"):
            await pa.init()
        await pa.send("INC")
        first = await pa.save()
        assert first is not None
        assert pa.version == first
        assert await pa.save() is None  # nothing changed since
        await pa.send("INC")  # never saved: close() does not save
    finally:
        await pa.close()
    await pa.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await pa.init()  # a closed actor cannot take the lease again
    assert await count_of(backend, actor_id) == 1
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_explicit_lifecycle_as_a_context_manager_does_not_save(
    backend: Backend, actor_id: str
) -> None:
    async with PersistedActor(
        actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
    ) as pa:
        await pa.send("INC")
    assert await backend.storage.read(actor_id) is None
    await backend.assert_lock_free(actor_id)


async def test_with_persisted_actor(backend: Backend, actor_id: str) -> None:
    params = {
        "actor_id": actor_id,
        "machine": counter_machine(),
        "storage": backend.storage,
        "lock": backend.lock,
    }

    async def bump(actor: PersistedActor) -> int:
        await actor.send("INC")
        count: int = actor.snapshot.context["count"]
        return count

    async def bump_and_fail(actor: PersistedActor) -> int:
        await actor.send("INC")
        raise LookupError("callback failed")

    assert await with_persisted_actor(params, bump) == 1
    with pytest.raises(LookupError, match="callback failed"):
        await with_persisted_actor(params, bump_and_fail)
    await backend.assert_lock_free(actor_id)  # closed although the callback raised
    assert await count_of(backend, actor_id) == 1  # and not saved
    with pytest.raises(TypeError, match="machine"):
        await with_persisted_actor({"actor_id": actor_id, "storage": backend.storage}, bump)
