"""LocalFileStorage beyond the shared contract: file layout, hostile keys,
crashes, cancellation and compare-and-set across real OS processes."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given
from hypothesis import strategies as st

from durable_state import _posix
from durable_state.errors import (
    InvalidKey,
    SnapshotCorrupt,
    StorageUnavailable,
    VersionConflict,
)
from durable_state.storage import DueEntry, LocalFileStorage, Stored
from durable_state.storage import local as local_module
from durable_state.storage.local import MAX_PLAIN_NAME, decode_key, encode_key, file_name

from ._local_worker import check_churn_value

WORKER = str(Path(__file__).with_name("_local_worker.py"))
DATA_NAME = re.compile(r"^(~[0-9a-f]{64}|[a-z0-9_%A-F-]+)\.state$")
LOCK_NAME = re.compile(r"^[0-9a-f]{2}\.lock$")

HOSTILE_KEYS = [
    "../x",
    "../../../../../../tmp/escape",
    "/etc/passwd",
    "..",
    ".",
    "./.",
    "a/../../b",
    "\\..\\..\\windows",
    "~",
    "~" + "0" * 64,
    ".storage-locks",
    ".storage-locks/00.lock",
    ".tmp-0123456789abcdef",
    "CON",
    "x" * 1024,
    "/" * 1024,
    "ü" * 512,
]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _tmp_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


async def _keys(storage: LocalFileStorage, prefix: str = "") -> list[str]:
    return [key async for key in storage.list(prefix)]


def _assert_layout(root: Path) -> None:
    """Everything under root is a data file, the lock directory or a lock file."""
    for entry in root.iterdir():
        if entry.name == ".storage-locks":
            assert entry.is_dir()
            assert all(LOCK_NAME.match(p.name) for p in entry.iterdir()), list(entry.iterdir())
        else:
            assert entry.is_file()
            assert DATA_NAME.match(entry.name), entry.name
            assert len(entry.name) <= MAX_PLAIN_NAME + len(".state")


# --------------------------------------------------------------------------- #
# Key to file-name mapping
# --------------------------------------------------------------------------- #


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_encoding_round_trips(key: str) -> None:
    encoded = encode_key(key.encode("utf-8"))
    assert re.fullmatch(r"[a-z0-9_%A-F-]+", encoded)
    assert decode_key(encoded) == key


@given(st.lists(st.text(min_size=1, max_size=8, alphabet="aAbB.%/_-~ü"), unique=True))
def test_file_names_are_injective_even_ignoring_case(keys: list[str]) -> None:
    variants = set(keys) | {k.swapcase() for k in keys}
    names = {file_name(k.encode("utf-8")).casefold() for k in variants}
    assert len(names) == len(variants)


def test_non_canonical_names_do_not_decode() -> None:
    assert decode_key("%61") is None  # "a" is always written literally
    assert decode_key("%2f") is None  # hex digits are always upper case
    assert decode_key("A") is None
    assert decode_key("a.b") is None
    assert decode_key("%C3") is None  # not UTF-8
    assert decode_key("%2") is None
    assert decode_key("order%2F42") == "order/42"


def test_long_keys_are_hashed_with_a_bounded_name() -> None:
    short = file_name(b"k" * MAX_PLAIN_NAME)
    assert short == "k" * MAX_PLAIN_NAME + ".state"
    long = file_name(b"k" * (MAX_PLAIN_NAME + 1))
    assert long.startswith("~")
    assert len(long) == 1 + 64 + len(".state")
    assert file_name("é".encode() * 21).startswith("~")  # 21 * 6 encoded chars > 120


async def test_hostile_keys_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with LocalFileStorage(root) as storage:
        for key in HOSTILE_KEYS:
            await storage.write(key, key.encode("utf-8"), if_version=None)
        for key in HOSTILE_KEYS:
            stored = await storage.read(key)
            assert stored is not None
            assert stored.data == key.encode("utf-8")
        assert await _keys(storage) == sorted(HOSTILE_KEYS)
        for key in HOSTILE_KEYS[::2]:
            await storage.delete(key)
    assert _names(tmp_path) == ["root"]
    _assert_layout(root)


@pytest.mark.parametrize("key", ["", "\x00", "../\x00", "x" * 1025, "\udcff"], ids=repr)
async def test_invalid_keys_touch_nothing(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    storage = LocalFileStorage(root)
    with pytest.raises(InvalidKey):
        await storage.write(key, b"x")
    with pytest.raises(InvalidKey):
        await storage.read(key)
    assert _names(tmp_path) == []


async def test_root_is_created_on_demand_and_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalFileStorage("deep/er/root")
    assert await storage.read("k") is None
    assert await _keys(storage) == []
    assert not (tmp_path / "deep").exists()
    monkeypatch.chdir("/")
    await storage.write("k", b"x")
    assert (tmp_path / "deep/er/root" / "k.state").is_file()
    assert storage.root == str(tmp_path / "deep/er/root")


async def test_file_format_and_versions(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    v1 = await storage.write("Order/42", b"payload\n")
    v2 = await storage.write("Order/42", b"payload\n")
    raw = (local_root / "%4Frder%2F42.state").read_bytes()
    assert raw == b"DSF1 " + v2.encode() + b" %4Frder%2F42\npayload\n"
    assert re.fullmatch(r"1\.[0-9a-f]{32}", v1)
    assert re.fullmatch(r"2\.[0-9a-f]{32}", v2)
    await storage.delete("Order/42")
    v3 = await storage.write("Order/42", b"payload\n")
    assert v3.startswith("1.")
    assert v3 != v1


async def test_writes_fsync_file_and_directory(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    storage = LocalFileStorage(local_root)
    await storage.write("k", b"x")
    assert synced == ["file", "dir"]
    synced.clear()
    await storage.delete("k")
    assert synced == ["dir"]


async def test_foreign_files_are_not_listed(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    await storage.write("real", b"x")
    for name in ["notes.txt", ".hidden.state", "%61.state", "UPPER.state", "~junk.state"]:
        (local_root / name).write_bytes(b"whatever")
    (local_root / ("~" + "0" * 64 + ".state")).write_bytes(b"DSF1 1.00 k\nx")  # wrong hash
    (local_root / ".tmp-abandoned").write_bytes(b"half a wri")
    assert await _keys(storage) == ["real"]


async def test_corrupt_file(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    await storage.write("k", b"x")
    (local_root / "k.state").write_bytes(b"garbage without a header")
    with pytest.raises(SnapshotCorrupt) as info:
        await storage.read("k")
    assert info.value.key == "k"
    assert await storage.exists("k")
    with pytest.raises(VersionConflict):
        await storage.write("k", b"y", if_version=None)
    with pytest.raises(VersionConflict):
        await storage.write("k", b"y", if_version="1.0000000000000000")
    version = await storage.write("k", b"repaired")  # unconditional replaces it
    assert await storage.read("k") == Stored(b"repaired", version)


async def test_file_under_another_keys_name_is_corrupt(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    await storage.write("a", b"x")
    (local_root / "b.state").write_bytes((local_root / "a.state").read_bytes())
    with pytest.raises(SnapshotCorrupt, match="another key"):
        await storage.read("b")
    # list() goes by file names only; the mismatch shows when "b" is read.
    assert await _keys(storage) == ["a", "b"]


async def test_os_errors_become_storage_unavailable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    storage = LocalFileStorage(not_a_dir)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.read("order/42"),
        lambda: storage.write("order/42", b"x"),
        lambda: storage.delete("order/42"),
        lambda: storage.exists("order/42"),
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable, match=r"'order/42'") as info:
            await call()
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.key == "order/42"
    with pytest.raises(StorageUnavailable) as listing:
        await _keys(storage)
    assert listing.value.operation == "list"


# --------------------------------------------------------------------------- #
# The due index's durability
# --------------------------------------------------------------------------- #

DUE_MS = 1_800_000_000_000


class SyncLog:
    """Records file fsyncs, directory fsyncs (by path) and renames, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        self._changed = threading.Condition()
        real_fsync, real_fsync_dir, real_replace = os.fsync, _posix.fsync_dir, os.replace

        def fsync(fd: int) -> None:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self.events.append("file")
            real_fsync(fd)

        def fsync_dir(path: str) -> None:
            real_fsync_dir(path)
            with self._changed:
                self.events.append(path)
                self._changed.notify_all()

        def replace(src: str, dst: str) -> None:
            self.events.append("rename")
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(_posix, "fsync_dir", fsync_dir)
        monkeypatch.setattr(os, "replace", replace)

    def wait_for(self, event: str, timeout: float) -> bool:
        """Block until ``event`` was recorded (call in a worker thread)."""
        with self._changed:
            return self._changed.wait_for(lambda: event in self.events, timeout)


def _bucket(root: Path, due_ms: int) -> str:
    return str(root / ".due" / f"{due_ms // 60_000:010d}")


async def test_a_due_entry_is_durable_before_the_snapshot_it_precedes(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key's write fsyncs the entry's directory after its own file, before its rename."""
    monkeypatch.setattr(local_module, "_DUE_SYNC_DELAY", 60.0)  # no help from the background
    storage = LocalFileStorage(local_root)
    await storage.add_due("k", DUE_MS)  # creates the minute's directory
    await storage.write("k", b"v1")
    log = SyncLog(monkeypatch)
    await storage.add_due("k", DUE_MS + 1)
    assert log.events == []  # left to the write
    await storage.write("k", b"v2")
    assert log.events == ["file", _bucket(local_root, DUE_MS), "rename", str(local_root)]
    log.events.clear()
    await storage.write("k", b"v3")  # done once
    assert log.events == ["file", "rename", str(local_root)]


async def test_a_due_entry_that_cannot_be_made_durable_stops_the_write(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalFileStorage(local_root)
    v1 = await storage.write("k", b"v1")
    with monkeypatch.context() as patch:
        patch.setattr(local_module, "_DUE_SYNC_DELAY", 60.0)  # no help from the background
        await storage.add_due("k", DUE_MS)
    real_fsync_dir = _posix.fsync_dir

    def failing(path: str) -> None:
        if ".due" in path:
            raise OSError(5, "Input/output error")
        real_fsync_dir(path)

    monkeypatch.setattr(_posix, "fsync_dir", failing)
    with pytest.raises(StorageUnavailable, match="EIO"):
        await storage.write("k", b"v2", if_version=v1)
    assert await storage.read("k") == Stored(b"v1", v1)  # not renamed
    assert _tmp_files(local_root) == []
    monkeypatch.undo()
    log = SyncLog(monkeypatch)
    await storage.write("k", b"v3", if_version=v1)  # tries the entry again
    assert _bucket(local_root, DUE_MS) in log.events


async def test_an_unwritten_due_entry_is_made_durable_soon(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "_DUE_SYNC_DELAY", 1.0)
    storage = LocalFileStorage(local_root)
    log = SyncLog(monkeypatch)
    await storage.add_due("k", DUE_MS)
    await storage.write("other", b"x")  # another key's write leaves it alone
    bucket = _bucket(local_root, DUE_MS)
    assert bucket not in log.events
    assert await anyio.to_thread.run_sync(log.wait_for, bucket, 10)


async def test_closing_makes_due_entries_durable(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalFileStorage(local_root)
    await storage.add_due("k", DUE_MS)
    await storage.write("k", b"v1")
    log = SyncLog(monkeypatch)
    await storage.add_due("k", DUE_MS + 1)
    await storage.aclose()
    assert log.events == [_bucket(local_root, DUE_MS)]


async def test_a_removed_due_entry_does_not_fail_its_keys_write(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    await storage.add_due("k", DUE_MS)
    await storage.remove_due(DueEntry(DUE_MS, "k"))  # the minute's directory goes too
    version = await storage.write("k", b"v1")
    assert await storage.read("k") == Stored(b"v1", version)
    assert await storage.list_due(DUE_MS) == []


# --------------------------------------------------------------------------- #
# Cancellation
# --------------------------------------------------------------------------- #


class SlowFsync:
    """Makes os.fsync take a while and tells when a write reached it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.reached = threading.Event()
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            self.reached.set()
            time.sleep(self.delay)
        self._real(fd)


async def _assert_clean(root: Path, expected: bytes, version: str) -> None:
    """No temp file, no held lock, the key holds ``expected`` at ``version``."""
    assert _tmp_files(root) == []
    other = LocalFileStorage(root)  # another instance: its own lock descriptor
    assert await other.read("k") == Stored(expected, version)
    with anyio.fail_after(2):
        await other.write("k", b"after", if_version=version)


async def test_cancel_scope_during_write(local_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt under way is never torn: the write completes, then the scope exits."""
    storage = LocalFileStorage(local_root)
    version = await storage.write("k", b"old")
    slow = SlowFsync(0.3)
    monkeypatch.setattr(os, "fsync", slow)
    with anyio.move_on_after(0.05) as scope:
        await storage.write("k", b"new", if_version=version)
    assert scope.cancel_called
    assert slow.reached.is_set()
    monkeypatch.undo()
    stored = await storage.read("k")
    assert stored is not None
    assert stored.data == b"new"
    await _assert_clean(local_root, b"new", stored.version)


async def test_native_task_cancel_during_write(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A native cancel does not wait, but the cancelled task ends only after the attempt."""
    storage = LocalFileStorage(local_root)
    version = await storage.write("k", b"old")
    slow = SlowFsync(0.3)
    monkeypatch.setattr(os, "fsync", slow)
    task = asyncio.create_task(storage.write("k", b"new", if_version=version))
    assert await anyio.to_thread.run_sync(slow.reached.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()
    # Checked at once: no temp file and no lock outlive the cancelled task.
    assert _tmp_files(local_root) == []
    stored = await storage.read("k")
    assert stored is not None
    assert stored.data == b"new"
    await _assert_clean(local_root, b"new", stored.version)


@pytest.mark.parametrize("how", ["move_on_after", "wait_for"])
async def test_cancellation_sweep_leaves_no_temp_files(local_root: Path, how: str) -> None:
    """Cancel at many random instants, with anyio scopes and with native cancels."""
    rng = random.Random(3)
    storage = LocalFileStorage(local_root)
    version = await storage.write("k", b"v0")
    value = b"v0"
    completed = 0
    for i in range(1, 50):
        new = b"v%d" % i * 4096
        delay = 0.0 if i % 5 == 0 else rng.uniform(0, 0.003)
        if how == "move_on_after":
            with anyio.move_on_after(delay):
                await storage.write("k", new, if_version=version)
        else:
            try:
                await asyncio.wait_for(storage.write("k", new, if_version=version), delay)
            except asyncio.TimeoutError:
                pass
        assert _tmp_files(local_root) == []
        stored = await storage.read("k")
        assert stored is not None
        assert stored.data in (value, new)
        completed += stored.data == new
        version, value = stored.version, stored.data
    assert 0 < completed < 49, "the sweep should both interrupt and finish some writes"
    await _assert_clean(local_root, value, version)


WRITE_ID = "0" * 32


def _stripe(root: Path, key: bytes) -> str:
    """The lock stripe that guards ``key``."""
    return local_module._stripe_path(str(root), file_name(key))


def test_attempts_queued_behind_an_abort_do_nothing(local_root: Path) -> None:
    """A native cancel can run abort() before an attempt that was already queued."""
    local_root.mkdir()
    path = local_root / "k.state"
    path.write_bytes(b"DSF1 1.00 k\nold")
    attempts = _posix._Attempts(_stripe(local_root, b"k"))
    attempts.abort()
    write = (local_module._replace, str(path), "k", "*", b"k", b"new", WRITE_ID, ())
    assert attempts.run(*write) is _posix.BUSY
    assert attempts.run(local_module._remove, str(path), "k", None) is _posix.BUSY
    assert _tmp_files(local_root) == []
    assert path.read_bytes() == b"DSF1 1.00 k\nold"
    # Nothing was locked: a fresh attempt goes through at once.
    other = _posix._Attempts(_stripe(local_root, b"k"))
    version = other.run(local_module._replace, str(path), "k", "1.00", b"k", b"new", WRITE_ID, ())
    assert isinstance(version, str)
    assert version.startswith("2.")


def test_an_attempt_cleans_up_after_itself(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing attempt removes its temp file and drops its lock before returning."""
    attempts = _posix._Attempts(_stripe(local_root, b"k"))
    path = str(local_root / "k.state")
    v1 = attempts.run(local_module._replace, path, "k", None, b"k", b"v1", WRITE_ID, ())
    assert isinstance(v1, str)

    def failing_replace(src: str, dst: str) -> None:
        assert Path(src).read_bytes().endswith(b"v2")  # the temp file was complete
        raise PermissionError(13, "denied by the test")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(PermissionError, match="denied by the test"):
        attempts.run(local_module._replace, path, "k", v1, b"k", b"v2", WRITE_ID, ())
    monkeypatch.undo()
    assert _tmp_files(local_root) == []
    v3 = attempts.run(local_module._replace, path, "k", v1, b"k", b"v3", WRITE_ID, ())
    assert isinstance(v3, str)  # not left locked


async def test_short_writes_are_completed(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write and os.writev may write fewer bytes than asked: the value is still whole."""
    real_write, real_writev = os.write, os.writev
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    monkeypatch.setattr(os, "writev", lambda fd, chunks: real_writev(fd, [bytes(chunks[0][:3])]))
    data = bytes(range(256)) * 40
    storage = LocalFileStorage(local_root)
    version = await storage.write("k", data)
    monkeypatch.undo()
    assert await storage.read("k") == Stored(data, version)


@pytest.mark.parametrize("chunk", [None, 7])
def test_read_file_reads_whole_files_and_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    """Across read calls (a file larger than one, or short reads), and up to a limit."""
    if chunk is not None:
        real_read = os.read
        monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, chunk)))
    big = bytes(range(256)) * (3 * _posix._READ_CHUNK // 256 + 5)
    path = tmp_path / "f"
    path.write_bytes(big)
    assert _posix.read_file(str(path)) == big
    for limit in (0, 1, 100, _posix._READ_CHUNK + 3, len(big), len(big) + 10):
        assert _posix.read_file(str(path), limit) == big[:limit]
    path.write_bytes(b"")
    assert _posix.read_file(str(path)) == b""
    assert _posix.read_file(str(path), 10) == b""
    assert _posix.read_file(str(tmp_path / "missing")) is None


async def test_cancel_while_waiting_for_another_process_lock(local_root: Path) -> None:
    storage = LocalFileStorage(local_root)
    version = await storage.write("k", b"old")
    lock_path = _stripe(local_root, b"k")
    holder = await anyio.open_process([sys.executable, WORKER, "hold-lock", lock_path])
    try:
        assert holder.stdout is not None
        line = await BufferedByteReceiveStream(holder.stdout).receive_until(b"\n", 100)
        assert line == b"locked"
        with anyio.move_on_after(0.3) as scope:
            await storage.write("k", b"new", if_version=version)
        assert scope.cancelled_caught, "the write must wait while another process holds the lock"
        assert await storage.read("k") == Stored(b"old", version)
    finally:
        holder.kill()
        await holder.aclose()
    # The kernel dropped the dead holder's lock; ours was never taken.
    await _assert_clean(local_root, b"old", version)


async def test_a_stopped_lock_holder_times_out_writers(local_root: Path) -> None:
    storage = LocalFileStorage(local_root, contention_timeout=0.3)
    version = await storage.write("k", b"old")
    lock_path = _stripe(local_root, b"k")
    holder = await anyio.open_process([sys.executable, WORKER, "hold-lock", lock_path])
    try:
        assert holder.stdout is not None
        line = await BufferedByteReceiveStream(holder.stdout).receive_until(b"\n", 100)
        assert line == b"locked"
        started = anyio.current_time()
        with pytest.raises(StorageUnavailable, match="stayed locked") as info:
            await storage.write("k", b"new", if_version=version)
        assert 0.3 <= anyio.current_time() - started < 5
        assert (info.value.operation, info.value.key) == ("write", "k")
        assert info.value.detail.startswith("ETIMEDOUT: the critical section " + lock_path)
        assert isinstance(info.value.__cause__, TimeoutError)
        with pytest.raises(StorageUnavailable, match="stayed locked"):
            await storage.delete("k")
        assert await storage.read("k") == Stored(b"old", version)  # reads take no lock
    finally:
        holder.kill()
        await holder.aclose()
    with pytest.raises(ValueError, match="contention_timeout"):
        LocalFileStorage(local_root, contention_timeout=0)
    with pytest.raises(TypeError, match="contention_timeout"):
        LocalFileStorage(local_root, contention_timeout="5")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Several OS processes
# --------------------------------------------------------------------------- #


def _spawn(*args: str, stdin: Any = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_compare_and_set_across_processes(local_root: Path) -> None:
    """4 processes x 100 read-then-conditional-write increments of one counter."""
    procs = [
        _spawn("increment", str(local_root), "counter", "100", stdin=subprocess.PIPE)
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n", proc.communicate(timeout=10)
        for proc in procs:  # start together, to contend
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=90) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    counts = [tuple(map(int, out.split())) for out, _ in results]
    successes = sum(s for s, _ in counts)
    conflicts = sum(c for _, c in counts)

    async def final() -> Stored | None:
        return await LocalFileStorage(local_root).read("counter")

    stored = anyio.run(final)
    assert stored is not None
    assert successes == 400
    assert int(stored.data) == 400
    assert stored.version.startswith("400.")  # the write counter saw every write
    assert _tmp_files(local_root) == []
    print(f"cross-process: 400 increments, {conflicts} conflicts retried")


def _wait_for_temp_file(root: Path, old: set[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(_tmp_files(root)) - old:
            return True
    return False


@pytest.mark.slow
def test_sigkill_during_writes_leaves_a_whole_value(local_root: Path) -> None:
    """Kill a writer of 1 MiB values mid-write or at random: never a torn value."""
    rng = random.Random(11)
    rounds, mid_write = 8, 0
    for i in range(rounds):
        before = set(_tmp_files(local_root)) if local_root.exists() else set()
        proc = _spawn("churn", str(local_root), "k")
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", proc.communicate(timeout=10)
            if i % 2:
                time.sleep(rng.uniform(0.005, 0.08))
            else:  # kill the instant a new temp file shows a write in progress
                assert _wait_for_temp_file(local_root, before, 5)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        mid_write += bool(set(_tmp_files(local_root)) - before)

        async def check() -> None:
            storage = LocalFileStorage(local_root)
            stored = await storage.read("k")
            assert stored is not None
            assert check_churn_value(stored.data) >= 1  # raises on a torn value
            assert await _keys(storage) == ["k"]  # leftover temp files stay invisible
            # The dead writer's lock went with it.
            with anyio.fail_after(2):
                await storage.write("k", stored.data, if_version=stored.version)

        anyio.run(check)
    assert mid_write >= 1, "no kill landed in the middle of a write"
    print(f"sigkill: {mid_write}/{rounds} kills left a half-written temp file behind")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_keep_a_stripe_locked(tmp_path: Path) -> None:
    """A process that forks while a write holds a stripe's flock must not pin it.

    The child shares the open file description that holds the flock; unless
    the child drops its copy, the stripe stays locked after the parent's
    write finished, for as long as the child lives.
    """
    code = """
import os, sys, time
from durable_state._posix import lock_file, unlock
from durable_state.storage.local import _stripe_path

root = sys.argv[1]
path = _stripe_path(root, "k.state")
os.makedirs(os.path.dirname(path))
held = lock_file(path)  # a write in progress
assert held is not None
pid = os.fork()
if pid == 0:
    time.sleep(5)  # a long-lived child (a worker process)
    os._exit(0)
try:
    unlock(held)  # the parent's write finishes
    # The child drops its copy as soon as it runs; without that it would keep
    # the stripe locked for its whole 5 s life.
    deadline = time.monotonic() + 2
    again = None
    while again is None and time.monotonic() < deadline:
        again = lock_file(path)
        time.sleep(0.01)
    print("free" if again is not None else "held by the child")
finally:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "free"
