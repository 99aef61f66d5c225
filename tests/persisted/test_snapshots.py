"""What is stored: deterministic JSON, typed errors for bad snapshots, migrations.

A snapshot that cannot be loaded (corrupt bytes, another machine's snapshot,
a newer version, a state the machine no longer has, a missing or failing
migration) raises a typed error and leaves the stored bytes and version
exactly as they were; the lease is released.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from durable_state import (
    Machine,
    NotSerializable,
    SnapshotCorrupt,
    SnapshotIncompatible,
    persisted_actor,
)

from ._machines import counter_machine, emitter_machine, versioned_machine
from .conftest import Backend


async def stored_json(backend: Backend, actor_id: str) -> dict[str, Any]:
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    data: dict[str, Any] = json.loads(stored.data)
    return data


async def load(backend: Backend, actor_id: str, machine: Machine) -> None:
    async with persisted_actor(actor_id, machine, storage=backend.storage, lock=backend.lock):
        pytest.fail("a snapshot that should not load was loaded")


# --------------------------------------------------------------------------- #
# Encoding
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_the_encoding_is_deterministic_utf8_json(backend: Backend, actor_id: str) -> None:
    machine = counter_machine()
    for key in (actor_id, actor_id + "-twin"):
        async with persisted_actor(key, machine, storage=backend.storage) as actor:
            await actor.send({"type": "SET", "key": "name", "value": "Zoë ✓"})
            await actor.send({"type": "SET", "key": "tags", "value": {"b": 1, "a": [1.5, None]}})
    one = await backend.storage.read(actor_id)
    twin = await backend.storage.read(actor_id + "-twin")
    assert one is not None
    assert twin is not None
    assert one.data == twin.data  # same history, same bytes
    assert "Zoë ✓".encode() in one.data  # UTF-8, not \\u escapes
    data = json.loads(one.data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert one.data == canonical.encode("utf-8")
    assert set(data) >= {"status", "value", "context", "historyValue", "children", "$durable"}


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "context.when"),
        ({"items": [1, object()]}, "context.when.items[1]"),
        (float("nan"), "context.when"),
        ({3: "x"}, "context.when[3]"),
    ],
)
async def test_a_value_json_cannot_hold_fails_the_save_with_its_path(
    backend: Backend, actor_id: str, value: Any, path: str
) -> None:
    machine = counter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage, lock=backend.lock):
        pass
    before = await backend.storage.read(actor_id)

    async def session() -> None:
        async with persisted_actor(
            actor_id, machine, storage=backend.storage, lock=backend.lock
        ) as actor:
            await actor.send("INC")
            await actor.send({"type": "SET", "key": "when", "value": value})

    with pytest.raises(NotSerializable) as info:
        await session()
    assert info.value.path == path
    assert await backend.storage.read(actor_id) == before  # nothing written
    await backend.assert_lock_free(actor_id)


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_restored_context_is_checked_where_it_changed(
    backend: Backend, actor_id: str
) -> None:
    # A restored context's values are not walked again when saved; a value
    # put there since is, at every save of the session.
    machine = counter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage) as actor:
        await actor.send({"type": "SET", "key": "when", "value": {"a": [1, 2]}})
    async with persisted_actor(actor_id, machine, storage=backend.storage) as actor:
        await actor.send("INC")
        await actor.save()
        await actor.send({"type": "SET", "key": "when", "value": {"a": [1, {2}]}})
        with pytest.raises(NotSerializable) as info:
            await actor.save()
        assert info.value.path == "context.when.a[1]"
        await actor.send({"type": "SET", "key": "when", "value": [1]})
    assert (await stored_json(backend, actor_id))["context"] == {"count": 1, "when": [1]}


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_stored_constant_json_does_not_allow_fails_the_save_with_its_path(
    backend: Backend, actor_id: str, constant: str
) -> None:
    machine = counter_machine()
    async with persisted_actor(actor_id, machine, storage=backend.storage):
        pass
    data = await stored_json(backend, actor_id)
    text = json.dumps({**data, "context": {"count": 0, "x": {"y": "__C__"}}})
    await backend.storage.write(actor_id, text.replace('"__C__"', constant).encode())
    with pytest.raises(NotSerializable) as info:
        async with persisted_actor(actor_id, machine, storage=backend.storage) as actor:
            await actor.send("INC")
    assert info.value.path == "context.x.y"


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_new_actor_that_cannot_be_encoded_is_not_stored(
    backend: Backend, actor_id: str
) -> None:
    async def session() -> None:
        async with persisted_actor(
            actor_id, counter_machine(), storage=backend.storage, lock=backend.lock
        ) as actor:
            await actor.send({"type": "SET", "key": "when", "value": b"bytes"})

    with pytest.raises(NotSerializable, match=r"context\.when"):
        await session()
    assert await backend.storage.read(actor_id) is None


# --------------------------------------------------------------------------- #
# Snapshots that do not load
# --------------------------------------------------------------------------- #


CORRUPT = {
    "not utf-8": b"\xff\xfe\x00garbage",
    "not json": b'{"status": "active", ',
    "not an object": b'["active"]',
    "no metadata": b'{"status":"active","value":"counting","context":{"count":1}}',
    "bad processed": (
        b'{"$durable":{"machine":"counter","version":1,"timers":[],"processed":"m1"},'
        b'"status":"active","value":"counting","context":{"count":1}}'
    ),
}


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
@pytest.mark.parametrize("raw", CORRUPT.values(), ids=CORRUPT.keys())
async def test_corrupt_bytes_raise_snapshot_corrupt_and_stay(
    backend: Backend, actor_id: str, raw: bytes
) -> None:
    version = await backend.storage.write(actor_id, raw, if_version=None)
    with pytest.raises(SnapshotCorrupt) as info:
        await load(backend, actor_id, counter_machine())
    assert info.value.key == actor_id
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    assert (stored.data, stored.version) == (raw, version)
    await backend.assert_lock_free(actor_id)


async def test_corrupt_bytes_on_every_backend(backend: Backend, actor_id: str) -> None:
    version = await backend.storage.write(actor_id, CORRUPT["not json"], if_version=None)
    with pytest.raises(SnapshotCorrupt):
        await load(backend, actor_id, counter_machine())
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    assert (stored.data, stored.version) == (CORRUPT["not json"], version)
    await backend.assert_lock_free(actor_id)


async def assert_incompatible_and_untouched(
    backend: Backend, actor_id: str, machine: Machine, reason: str
) -> None:
    before = await backend.storage.read(actor_id)
    assert before is not None
    with pytest.raises(SnapshotIncompatible, match=reason) as info:
        await load(backend, actor_id, machine)
    assert info.value.key == actor_id
    assert await backend.storage.read(actor_id) == before
    await backend.assert_lock_free(actor_id)


async def test_another_machines_snapshot_is_refused(backend: Backend, actor_id: str) -> None:
    async with persisted_actor(actor_id, counter_machine(), storage=backend.storage) as actor:
        await actor.send("INC")
    await assert_incompatible_and_untouched(backend, actor_id, emitter_machine(), "'counter'")


async def test_a_newer_version_is_refused(backend: Backend, actor_id: str) -> None:
    async with persisted_actor(actor_id, versioned_machine(2), storage=backend.storage):
        pass
    await assert_incompatible_and_untouched(backend, actor_id, versioned_machine(1), "version 2")


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_state_the_machine_no_longer_has_is_refused(
    backend: Backend, actor_id: str
) -> None:
    async with persisted_actor(actor_id, counter_machine(), storage=backend.storage):
        pass
    data = await stored_json(backend, actor_id)
    data["value"] = "retired"
    stored = await backend.storage.read(actor_id)
    assert stored is not None
    await backend.storage.write(actor_id, json.dumps(data).encode(), if_version=stored.version)
    await assert_incompatible_and_untouched(backend, actor_id, counter_machine(), "retired")


# --------------------------------------------------------------------------- #
# Migrations
# --------------------------------------------------------------------------- #


def migrations(calls: list[int]) -> dict[int, Any]:
    def one_to_two(data: dict[str, Any]) -> Mapping[str, Any]:
        calls.append(1)
        context = dict(data["context"])
        context["count"] = context.pop("n")
        return {**data, "context": context}

    def two_to_three(data: dict[str, Any]) -> Mapping[str, Any]:
        calls.append(2)
        assert "count" in data["context"], "ran before the 1 -> 2 migration"
        return {**data, "context": {**data["context"], "unit": "x"}}

    return {1: one_to_two, 2: two_to_three}


async def test_an_older_snapshot_runs_through_the_migrations_in_order(
    backend: Backend, actor_id: str
) -> None:
    async with persisted_actor(actor_id, versioned_machine(1), storage=backend.storage) as actor:
        await actor.send("GO")
    v1 = await backend.storage.read(actor_id)

    calls: list[int] = []
    v3 = versioned_machine(3, migrations=migrations(calls))
    async with persisted_actor(actor_id, v3, storage=backend.storage, lock=backend.lock) as actor:
        assert calls == [1, 2]
        assert actor.snapshot.value == "b"
        assert actor.snapshot.context == {"count": 0, "unit": "x"}
    # Loading alone changes nothing: the stored bytes are upgraded with the
    # next change, not by a read.
    assert await backend.storage.read(actor_id) == v1

    async with persisted_actor(actor_id, v3, storage=backend.storage, lock=backend.lock) as actor:
        await actor.send("TOUCH")
    data = await stored_json(backend, actor_id)
    assert data["$durable"]["version"] == 3
    assert data["context"] == {"count": 0, "unit": "x", "touched": True}


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_missing_migration_is_refused(backend: Backend, actor_id: str) -> None:
    async with persisted_actor(actor_id, versioned_machine(1), storage=backend.storage):
        pass
    only_two = {2: migrations([])[2]}
    await assert_incompatible_and_untouched(
        backend, actor_id, versioned_machine(3, migrations=only_two), "no migration from version 1"
    )


@pytest.mark.parametrize("backend", ["memory", "file"], indirect=True)
async def test_a_failing_migration_is_refused(backend: Backend, actor_id: str) -> None:
    async with persisted_actor(actor_id, versioned_machine(1), storage=backend.storage):
        pass

    def broken(data: dict[str, Any]) -> Mapping[str, Any]:
        raise KeyError("count")

    await assert_incompatible_and_untouched(
        backend,
        actor_id,
        versioned_machine(2, migrations={1: broken}),
        "migration from version 1 failed",
    )


def test_the_encoder_names_a_value_json_cannot_hold() -> None:
    # What a save encodes is checked before; values it trusts (restored from
    # JSON) and that were changed in place anyway still fail typed.
    from durable_state import _json

    with pytest.raises(NotSerializable) as info:
        _json.dumps({"context": {"a": [1, {2}]}})
    assert info.value.path == "context.a[1]"
    with pytest.raises(NotSerializable) as info:
        _json.dumps({"context": {"a": [float("inf")]}})
    assert info.value.path == "context.a[0]"
    with pytest.raises(UnicodeEncodeError):
        _json.dumps({"context": "\ud800"})  # JSON text, but not UTF-8: not a value's fault
