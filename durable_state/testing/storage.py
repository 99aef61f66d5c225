"""The :class:`~durable_state.storage.Storage` contract as a pytest suite.

Every bundled storage passes these tests; a storage written elsewhere can run
them too. Subclass :class:`StorageContract` in a test module and provide a
``storage`` fixture that yields a new, empty instance of the backend::

    import pytest_asyncio
    from durable_state.testing.storage import StorageContract

    class TestMyStorage(StorageContract):
        @pytest_asyncio.fixture
        async def storage(self):
            async with MyStorage(...) as storage:
                yield storage

The fixture may also live in a ``conftest.py``, and may be parametrized to
run the suite over several configurations. Each test gets a fresh instance
and expects nothing stored under it (a prefix of its own per test is
enough). The tests are asyncio tests: this module needs ``pytest`` and
``pytest-asyncio`` (``import durable_state`` never imports either). They are
marked ``asyncio``, so they run in pytest-asyncio's strict mode as in its
auto mode; in strict mode an async fixture needs ``pytest_asyncio.fixture``.

Where a backend cannot meet a part of the contract for a reason outside its
control, override a hook rather than a test: :meth:`StorageContract.reports_found_version`
and :meth:`StorageContract.unsupported_key`.
"""

from __future__ import annotations

import os
import random
from typing import ClassVar, Final, cast

import anyio
import pytest

from ..errors import InvalidKey, StorageError, VersionConflict
from ..storage import BaseStorage, DueEntry, Storage, Stored
from ..storage.s3 import ENVELOPE_MAGIC

__all__ = ("INVALID_KEYS", "ODD_KEYS", "StorageContract")

#: Keys every storage must keep apart and give back exactly: path-like,
#: traversal-like, percent-encoded, non-ASCII, control characters, and keys
#: at the 1024-byte limit.
ODD_KEYS: Final[tuple[str, ...]] = (
    "order/42",
    "üñí",
    "a b",
    "x:y",
    "A",
    "a",
    "..",
    ".",
    "../x",
    "/etc/passwd",
    "a/../../b",
    "~",
    "%2F",
    "%41",
    ".tmp-0123456789abcdef",
    ".storage-locks",
    "x.state",
    "tab\there",
    "new\nline",
    "emoji 🚀",
    "\u2028",
    "trailing/",
    "k" * 1024,
    "é" * 512,
)

#: Keys every storage must refuse with :class:`~durable_state.errors.InvalidKey`:
#: empty, NUL, longer than 1024 UTF-8 bytes, a lone surrogate, not a str.
INVALID_KEYS: Final[tuple[object, ...]] = (
    "",
    "\x00",
    "a\x00b",
    "k" * 1025,
    "é" * 513,
    "\ud800",
    42,
    None,
    b"k",
)


def _key_id(key: object) -> str:
    return repr(key)[:24]


async def _keys(storage: Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.list(prefix)]


class StorageContract:
    """The storage contract; subclass it and provide a ``storage`` fixture.

    The fixture yields a new, empty :class:`~durable_state.storage.Storage`
    for each test and closes it afterwards (the suite calls ``aclose()``
    itself too, which must be idempotent). Override the hooks below where a
    backend's service cannot do what the contract asks.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    # ------------------------------------------------------------------ #
    # Hooks
    # ------------------------------------------------------------------ #

    def reports_found_version(self, storage: Storage) -> bool:
        """Whether a failed condition tells which version it found.

        :class:`~durable_state.errors.VersionConflict` has an ``actual``
        attribute: the version stored when the condition failed. A service
        that refuses a conditional write without saying what it holds (S3)
        cannot fill it in; return ``False`` for such a storage and the tests
        do not check it. Default: ``True``.
        """
        return True

    def unsupported_key(self, storage: Storage, key: str) -> str | None:
        """Why ``key`` (one of :data:`ODD_KEYS`) cannot be tested on ``storage``.

        Return a reason to skip the tests that use ``key``, or ``None`` (the
        default) to test it. Meant for a test server that is stricter than the
        service it stands in for, not for keys the backend gets wrong.
        """
        return None

    # ------------------------------------------------------------------ #
    # Values and versions
    # ------------------------------------------------------------------ #

    async def test_backend_is_a_storage(self, storage: Storage) -> None:
        """The backend satisfies the runtime-checkable Storage protocol."""
        assert isinstance(storage, Storage)

    async def test_missing_key(self, storage: Storage) -> None:
        """A key never written reads as None, does not exist and is not listed."""
        assert await storage.read("nope") is None
        assert await storage.exists("nope") is False
        assert await _keys(storage) == []

    async def test_write_then_read(self, storage: Storage) -> None:
        """A write returns a non-empty version string that a read gives back with the bytes."""
        version = await storage.write("k", b"hello")
        assert isinstance(version, str)
        assert version
        assert await storage.read("k") == Stored(b"hello", version)
        assert await storage.exists("k") is True

    async def test_create_only_when_absent(self, storage: Storage) -> None:
        """``if_version=None`` creates a key and conflicts once it exists."""
        v1 = await storage.write("k", b"one", if_version=None)
        with pytest.raises(VersionConflict) as info:
            await storage.write("k", b"two", if_version=None)
        assert info.value.key == "k"
        assert info.value.expected is None
        if self.reports_found_version(storage):
            assert info.value.actual == v1
        assert await storage.read("k") == Stored(b"one", v1)

    async def test_write_if_version(self, storage: Storage) -> None:
        """A write conditioned on a version succeeds only while that version is stored."""
        v1 = await storage.write("k", b"one")
        v2 = await storage.write("k", b"two", if_version=v1)
        assert v2 != v1
        with pytest.raises(VersionConflict) as info:
            await storage.write("k", b"three", if_version=v1)
        assert (info.value.key, info.value.expected) == ("k", v1)
        assert isinstance(info.value, StorageError)
        if self.reports_found_version(storage):
            assert info.value.actual == v2
        assert await storage.read("k") == Stored(b"two", v2)

    async def test_same_bytes_get_a_new_version(self, storage: Storage) -> None:
        """No A-B-A: rewriting identical bytes still invalidates the old version."""
        v1 = await storage.write("k", b"same")
        v2 = await storage.write("k", b"same")
        assert v2 != v1
        with pytest.raises(VersionConflict):
            await storage.write("k", b"other", if_version=v1)
        assert (await storage.read("k")) == Stored(b"same", v2)

    async def test_versions_never_repeat(self, storage: Storage) -> None:
        """Fifteen writes of one key give fifteen distinct versions."""
        versions = {await storage.write("k", b"x") for _ in range(15)}
        assert len(versions) == 15

    async def test_if_version_on_missing_key(self, storage: Storage) -> None:
        """A version condition on a missing key conflicts, with ``actual`` None."""
        v1 = await storage.write("other", b"x")
        with pytest.raises(VersionConflict) as info:
            await storage.write("k", b"x", if_version=v1)
        assert info.value.actual is None
        assert await storage.exists("k") is False

    async def test_unconditional_write_ignores_versions(self, storage: Storage) -> None:
        """``if_version="*"`` overwrites whatever is stored."""
        await storage.write("k", b"one")
        v2 = await storage.write("k", b"two", if_version="*")
        assert await storage.read("k") == Stored(b"two", v2)

    async def test_delete_unconditional(self, storage: Storage) -> None:
        """An unconditional delete removes the key; deleting a missing key is a no-op."""
        await storage.write("k", b"x")
        await storage.delete("k")
        assert await storage.read("k") is None
        assert await storage.exists("k") is False
        await storage.delete("k")  # missing: no-op
        await storage.delete("never-written")

    async def test_delete_if_version(self, storage: Storage) -> None:
        """A conditional delete removes the key only while that version is stored."""
        v1 = await storage.write("k", b"one")
        v2 = await storage.write("k", b"two")
        with pytest.raises(VersionConflict) as info:
            await storage.delete("k", if_version=v1)
        assert (info.value.key, info.value.expected) == ("k", v1)
        assert await storage.read("k") == Stored(b"two", v2)
        await storage.delete("k", if_version=v2)
        assert await storage.read("k") is None
        with pytest.raises(VersionConflict):
            await storage.delete("k", if_version=v2)

    async def test_recreated_key_never_reuses_a_version(self, storage: Storage) -> None:
        """A key deleted and created again with the same bytes gets a new version."""
        v1 = await storage.write("k", b"same", if_version=None)
        await storage.delete("k")
        v2 = await storage.write("k", b"same", if_version=None)
        assert v2 != v1
        with pytest.raises(VersionConflict):
            await storage.write("k", b"late", if_version=v1)
        with pytest.raises(VersionConflict):
            await storage.delete("k", if_version=v1)

    # ------------------------------------------------------------------ #
    # Keys and data
    # ------------------------------------------------------------------ #

    @pytest.mark.parametrize("key", ODD_KEYS, ids=_key_id)
    async def test_odd_keys_round_trip(self, storage: Storage, key: str) -> None:
        """Each of :data:`ODD_KEYS` is written, read, listed and deleted exactly as given."""
        reason = self.unsupported_key(storage, key)
        if reason is not None:
            pytest.skip(reason)
        version = await storage.write(key, key.encode("utf-8"), if_version=None)
        assert await storage.read(key) == Stored(key.encode("utf-8"), version)
        assert await storage.exists(key)
        assert await _keys(storage) == [key]
        await storage.write(key, b"again", if_version=version)
        await storage.delete(key)
        assert await _keys(storage) == []

    async def test_distinct_keys_stay_distinct(self, storage: Storage) -> None:
        """All of :data:`ODD_KEYS` side by side: none aliases another, all are listed in order."""
        keys = [k for k in ODD_KEYS if self.unsupported_key(storage, k) is None]
        for key in keys:
            await storage.write(key, key.encode("utf-8"))
        for key in keys:
            stored = await storage.read(key)
            assert stored is not None
            assert stored.data == key.encode("utf-8")
        assert await _keys(storage) == sorted(keys)

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=_key_id)
    async def test_invalid_keys(self, storage: Storage, key: object) -> None:
        """Each of :data:`INVALID_KEYS` is refused by every operation, and nothing is stored."""
        key = cast(str, key)  # what a caller without a type checker may pass
        with pytest.raises(InvalidKey):
            await storage.read(key)
        with pytest.raises(InvalidKey):
            await storage.write(key, b"x")
        with pytest.raises(InvalidKey):
            await storage.write(key, b"x", if_version=None)
        with pytest.raises(InvalidKey):
            await storage.delete(key)
        with pytest.raises(InvalidKey):
            await storage.exists(key)
        assert await _keys(storage) == []

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\x00\xff\n\r" * 100,
            b"DSF1 1.0 k\nnot a header",
            ENVELOPE_MAGIC + b"0123456789abcdef" + b"looks like an envelope",
            os.urandom(1 << 20),
        ],
        ids=["empty", "binary", "header-like", "envelope-like", "1MiB"],
    )
    async def test_data_round_trips(self, storage: Storage, data: bytes) -> None:
        """Any bytes come back unchanged: empty, binary, 1 MiB, or looking like a format's header."""
        version = await storage.write("k", data)
        assert await storage.read("k") == Stored(data, version)

    async def test_bytes_like_data_is_copied(self, storage: Storage) -> None:
        """Bytes-like data is stored as a copy and read back as bytes; text is refused."""
        buffer = bytearray(b"before")
        await storage.write("k", buffer)  # type: ignore[arg-type]  # bytes-like is accepted
        buffer[:] = b"after!"
        stored = await storage.read("k")
        assert stored is not None
        assert stored.data == b"before"
        assert type(stored.data) is bytes
        with pytest.raises(TypeError):
            await storage.write("k", "text")  # type: ignore[arg-type]

    async def test_bad_if_version(self, storage: Storage) -> None:
        """An empty version is a ValueError and a non-str one a TypeError; nothing is written."""
        with pytest.raises(ValueError, match="if_version"):
            await storage.write("k", b"x", if_version="")
        with pytest.raises(TypeError):
            await storage.write("k", b"x", if_version=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="if_version"):
            await storage.delete("k", if_version="")
        assert await storage.exists("k") is False

    async def test_list(self, storage: Storage) -> None:
        """``list(prefix)`` yields the keys under a plain string prefix, in code point order."""
        for key in ["b/2", "a/1", "b/1", "b", "c", "é", "bé"]:
            await storage.write(key, b"x")
        assert await _keys(storage) == ["a/1", "b", "b/1", "b/2", "bé", "c", "é"]
        assert await _keys(storage, "b/") == ["b/1", "b/2"]
        assert await _keys(storage, "b") == ["b", "b/1", "b/2", "bé"]
        assert await _keys(storage, "zzz") == []
        await storage.delete("b/1")
        assert await _keys(storage, "b/") == ["b/2"]
        with pytest.raises(TypeError):
            await _keys(storage, 3)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ #
    # Concurrency and cancellation
    # ------------------------------------------------------------------ #

    async def test_concurrent_compare_and_set(self, storage: Storage) -> None:
        """Tasks racing on one counter: every successful write is counted once.

        The service must apply each conditional write atomically (a test
        server that does not fails here; real S3 and DynamoDB do).
        """
        await storage.write("counter", b"0", if_version=None)
        successes = 0

        async def worker() -> None:
            nonlocal successes
            for _ in range(15):
                while True:
                    stored = await storage.read("counter")
                    assert stored is not None
                    try:
                        await storage.write(
                            "counter", b"%d" % (int(stored.data) + 1), if_version=stored.version
                        )
                    except VersionConflict:
                        continue
                    successes += 1
                    break

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(worker)
        stored = await storage.read("counter")
        assert stored is not None
        assert int(stored.data) == successes == 90

    async def test_sequential_compare_and_set_from_two_handles(self, storage: Storage) -> None:
        """Two readers of one version: the first write wins, the second conflicts."""
        await storage.write("k", b"0")
        first = await storage.read("k")
        second = await storage.read("k")
        assert first is not None
        assert second is not None
        assert first.version == second.version
        await storage.write("k", b"from first", if_version=first.version)
        with pytest.raises(VersionConflict):
            await storage.write("k", b"from second", if_version=second.version)

    async def test_cancelled_writes_leave_whole_values(self, storage: Storage) -> None:
        """Cancel writes at many points: the key always holds one whole written value.

        (A cancelled request to a service may already be on its way and land
        a little later, so the value read is any one of the attempted values,
        never a torn or mixed one.)
        """
        rng = random.Random(7)
        version = await storage.write("k", b"v0")
        attempted = {b"v0"}
        for i in range(1, 30):
            new = b"v%d" % i * 1000
            attempted.add(new)
            with anyio.move_on_after(rng.uniform(0, 0.004)):
                await storage.write("k", new, if_version=version)
            stored = await storage.read("k")
            assert stored is not None
            assert stored.data in attempted
            version = stored.version
            assert await _keys(storage) == ["k"]
        # Nothing is left holding a lock: a compare-and-set goes through promptly.
        with anyio.fail_after(5):
            while True:
                stored = await storage.read("k")
                assert stored is not None
                try:
                    await storage.write("k", b"final", if_version=stored.version)
                except VersionConflict:  # a late request from the loop above landed
                    continue
                break

    async def test_async_context_manager_and_aclose(self, storage: Storage) -> None:
        """``async with`` yields the storage itself; ``aclose()`` is idempotent."""
        await storage.write("k", b"x")
        async with storage as entered:
            assert entered is storage
        await storage.aclose()  # idempotent
        await storage.aclose()

    # ------------------------------------------------------------------ #
    # The due index
    # ------------------------------------------------------------------ #

    async def test_due_entries_come_back_in_due_order_once_due(self, storage: Storage) -> None:
        """``list_due(now)`` gives the entries due by ``now``, by time then key, up to ``limit``."""
        await storage.add_due("b", 2_000)
        await storage.add_due("a", 2_000)
        await storage.add_due("c", 1_000)
        await storage.add_due("later", 5_000_000)
        assert await storage.list_due(999) == []
        assert await storage.list_due(1_000) == [DueEntry(1_000, "c")]
        assert await storage.list_due(2_000) == [
            DueEntry(1_000, "c"),
            DueEntry(2_000, "a"),
            DueEntry(2_000, "b"),
        ]
        assert await storage.list_due(2_000, limit=2) == [
            DueEntry(1_000, "c"),
            DueEntry(2_000, "a"),
        ]
        assert len(await storage.list_due(10_000_000)) == 4

    async def test_due_entries_are_a_set_and_removal_is_idempotent(self, storage: Storage) -> None:
        """Adding an entry twice keeps one; removing a missing entry is a no-op."""
        await storage.add_due("k", 1_000)
        await storage.add_due("k", 1_000)  # idempotent
        await storage.add_due("k", 3_000)  # another time: a second entry
        assert await storage.list_due(5_000) == [DueEntry(1_000, "k"), DueEntry(3_000, "k")]
        await storage.remove_due(DueEntry(1_000, "k"))
        await storage.remove_due(DueEntry(1_000, "k"))  # a missing entry: no-op
        await storage.remove_due(DueEntry(7_000, "never"))
        assert await storage.list_due(5_000) == [DueEntry(3_000, "k")]

    async def test_due_entries_are_not_keys(self, storage: Storage) -> None:
        """Due entries are neither listed nor seen by ``exists``."""
        await storage.add_due("k", 1_000)
        assert [k async for k in storage.list()] == []
        assert not await storage.exists("k")

    @pytest.mark.parametrize("key", ODD_KEYS)
    async def test_due_entries_keep_odd_keys_exactly(self, storage: Storage, key: str) -> None:
        """A due entry gives back each of :data:`ODD_KEYS` exactly."""
        reason = self.unsupported_key(storage, key)
        if reason is not None:
            pytest.skip(reason)
        await storage.write(key, b"x")  # a hashed local name is resolved through the file
        await storage.add_due(key, 1_000)
        assert await storage.list_due(1_000) == [DueEntry(1_000, key)]
        await storage.remove_due(DueEntry(1_000, key))
        assert await storage.list_due(1_000) == []

    async def test_due_arguments_are_checked(self, storage: Storage) -> None:
        """Bad keys, due times, limits and entries are refused with the documented errors."""
        with pytest.raises(InvalidKey):
            await storage.add_due("", 1)
        with pytest.raises(TypeError):
            await storage.add_due("k", 1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="due time"):
            await storage.add_due("k", -1)
        with pytest.raises(ValueError, match="limit"):
            await storage.list_due(1, limit=0)
        with pytest.raises(TypeError):
            await storage.remove_due(("k", 1))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ #
    # Lost answers
    # ------------------------------------------------------------------ #

    async def test_a_lost_answer_is_recognised_as_our_own_write(
        self, storage: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that landed but reported a conflict (a driver's resend) succeeds.

        This is :class:`~durable_state.storage.BaseStorage`'s rule, checked
        through its ``_write`` primitive; a storage that is not a
        ``BaseStorage`` skips it.
        """
        if not isinstance(storage, BaseStorage):
            pytest.skip("the rule and its _write primitive belong to BaseStorage")
        v1 = await storage.write("k", b"v1", if_version=None)
        original = type(storage)._write

        async def landed_then_conflict(
            self: BaseStorage, key: str, data: bytes, if_version: str | None, write_id: str
        ) -> str:
            await original(self, key, data, if_version, write_id)
            raise VersionConflict(key, expected=if_version)  # what the resend would get

        monkeypatch.setattr(type(storage), "_write", landed_then_conflict)
        v2 = await storage.write("k", b"v2", if_version=v1)
        assert await storage.read("k") == Stored(b"v2", v2)
        monkeypatch.undo()
        # Somebody else's value is still a conflict.
        with pytest.raises(VersionConflict):
            await storage.write("k", b"v3", if_version=v1)
