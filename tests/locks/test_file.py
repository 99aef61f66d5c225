"""FileLockManager beyond the contract: file names, process death, sessions."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_state.errors import InvalidKey, LockLost, LockTimeout, LockUnavailable
from durable_state.locks import FileLockManager, LeaseRecord
from durable_state.locks import file as lease_files
from durable_state.locks.file import MAX_PLAIN_NAME, file_name
from durable_state.storage import LocalFileStorage

WORKER = os.path.join(os.path.dirname(__file__), "_lock_worker.py")

keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)


# --------------------------------------------------------------------------- #
# Key -> file name
# --------------------------------------------------------------------------- #


@given(keys, keys)
def test_file_names_are_injective_even_without_case(a: str, b: str) -> None:
    name_a, name_b = file_name(a.encode()), file_name(b.encode())
    if a != b:
        assert name_a != name_b
        assert name_a.lower() != name_b.lower()  # case-insensitive file systems
    else:
        assert name_a == name_b


@given(keys)
def test_file_names_are_plain_names(key: str) -> None:
    name = file_name(key.encode())
    assert "/" not in name
    assert "\\" not in name
    assert "." not in name
    assert name not in ("", ".", "..")
    assert len(name) <= max(MAX_PLAIN_NAME, 65)


def test_readable_keys_keep_readable_names() -> None:
    assert file_name(b"order-42") == "order-42"
    assert file_name(b"Order/42") == "%4Frder%2F42"
    assert file_name(b"x" * 200).startswith("~")


@pytest.mark.parametrize(
    "key", ["../escape", "../../etc/passwd", "/absolute", ".", "..", "a/../../b", "~", "%2F"]
)
async def test_no_key_escapes_the_root(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    async with FileLockManager(root) as manager:
        lease = await manager.acquire(key, ttl=60)
        assert Path(manager.record_path(key)).parent == root / ".locks" / "keys"
        await manager.release(lease)
    assert [p.name async for p in anyio.Path(tmp_path).iterdir()] == ["root"]
    assert [p.name async for p in anyio.Path(root).iterdir()] == [".locks"]


async def test_long_keys_work_and_too_long_keys_are_refused(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as manager:
        long_key = "é" * 1000  # 2000 bytes: stored under a hashed name
        lease = await manager.acquire(long_key, ttl=60)
        with pytest.raises(LockTimeout):
            await manager.acquire(long_key)
        await manager.release(lease)
        with pytest.raises(InvalidKey, match="2048"):
            await manager.acquire("x" * 2049)


# --------------------------------------------------------------------------- #
# Process death and liveness
# --------------------------------------------------------------------------- #


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes, killed (and resumed first, if stopped) at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def start_holder(
    processes: list[subprocess.Popen[str]], *args: str
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a worker that takes a lease; return it and its "acquired" fields."""
    proc = spawn(*args)
    processes.append(proc)
    assert proc.stdout is not None
    line = await anyio.to_thread.run_sync(proc.stdout.readline)
    fields = line.split()
    assert fields[:1] == ["acquired"], line
    return proc, fields[1:]


@pytest.mark.slow
async def test_a_killed_holder_frees_its_lease_at_once(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    holder, (token,) = await start_holder(processes, "hold", str(tmp_path), "k", "600")
    async with FileLockManager(tmp_path) as manager:
        with pytest.raises(LockTimeout):
            await manager.acquire("k")  # alive: its lease holds
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
        started = time.monotonic()
        lease = await manager.acquire("k")  # no wait: free at once, 600 s early
        assert time.monotonic() - started < 1.0
        assert lease.token == int(token) + 1
    sessions = list((tmp_path / ".locks" / "sessions").iterdir())
    assert sessions == []  # the dead holder's session file was cleared away


@pytest.mark.slow
async def test_a_stopped_holder_keeps_its_lease_until_the_ttl(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Alive but not renewing (paused): the OS lock says "alive", the record's
    # expiry still ends the lease after the TTL.
    holder, (token,) = await start_holder(processes, "hold", str(tmp_path), "k", "1.0")
    holder.send_signal(signal.SIGSTOP)
    async with FileLockManager(tmp_path) as manager:
        with pytest.raises(LockTimeout) as info:
            await manager.acquire("k")
        assert info.value.expires_at is not None
        lease = await manager.acquire("k", wait=5)
        assert time.time() >= info.value.expires_at
        assert lease.token == int(token) + 1


@pytest.mark.slow
async def test_a_forked_child_does_not_keep_a_dead_holders_lease(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    holder, (_, child_pid) = await start_holder(
        processes, "hold-and-fork", str(tmp_path), "k", "600"
    )
    try:
        holder.kill()
        holder.wait()
        async with FileLockManager(tmp_path) as manager:
            await manager.acquire("k")  # the forked child is alive, the holder is not
    finally:
        os.kill(int(child_pid), signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_takes_leases_in_its_own_name(tmp_path: Path) -> None:
    """The child's copy of a manager forgets the parent's session and opens its own."""
    code = """
import asyncio, json, os, sys
from durable_state.locks import FileLockManager

from durable_state.locks.file import _decode

async def acquire(manager, key):
    await manager.acquire(key, ttl=60)
    path = manager.record_path(key)
    with open(path, "rb") as f:
        return _decode(f.read(), path).record.session

manager = FileLockManager(sys.argv[1])
parent = asyncio.run(acquire(manager, "parent"))
pid = os.fork()
if pid == 0:
    child = asyncio.run(acquire(manager, "child"))
    os._exit(0 if child != parent else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(os.listdir(manager._store.sessions_dir)))
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The child's own session (its process is gone, so its file stays until swept).
    assert result.stdout.split() == ["0", "2"]


async def test_closing_a_manager_frees_its_leases(tmp_path: Path) -> None:
    first = FileLockManager(tmp_path)
    lease = await first.acquire("k", ttl=600)
    async with FileLockManager(tmp_path) as second:
        with pytest.raises(LockTimeout):
            await second.acquire("k")
        await first.aclose()
        taken = await second.acquire("k")
        assert taken.token == lease.token + 1


async def test_stale_session_files_are_swept(tmp_path: Path) -> None:
    sessions = tmp_path / ".locks" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / ("0" * 32)).write_text("pid 1\n")  # nobody holds its lock
    async with FileLockManager(tmp_path) as manager:
        await manager.acquire("k", ttl=60)
        assert [p.name for p in sessions.iterdir()] != ["0" * 32]
        assert not (sessions / ("0" * 32)).exists()


# --------------------------------------------------------------------------- #
# Failures
# --------------------------------------------------------------------------- #


async def test_a_corrupt_record_is_reported_not_overwritten(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as manager:
        lease = await manager.acquire("k", ttl=60)
        path = anyio.Path(manager.record_path("k"))
        await path.write_text("{not json")
        with pytest.raises(LockUnavailable, match="corrupt") as info:
            await manager.acquire("k")
        assert info.value.operation == "acquire"
        with pytest.raises(LockUnavailable, match="corrupt"):
            await manager.renew(lease)
        assert await path.read_text() == "{not json"


async def test_an_unusable_root_is_reported(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    async with FileLockManager(not_a_dir) as manager:
        with pytest.raises(LockUnavailable) as info:
            await manager.acquire("k")
    assert isinstance(info.value.__cause__, OSError)


class CriticalSections:
    """Holds keys' critical-section locks through other open file descriptions.

    As a process stopped inside its critical section would.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []

    def hold(self, manager: FileLockManager, key: str) -> None:
        fd = os.open(manager.record_path(key), os.O_RDWR)
        self.fds.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)

    def release_all(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


@pytest.fixture
def sections() -> Iterator[CriticalSections]:
    held = CriticalSections()
    yield held
    held.release_all()


async def test_a_stuck_critical_section_times_out(
    tmp_path: Path, sections: CriticalSections
) -> None:
    async with FileLockManager(tmp_path, contention_timeout=0.3) as manager:
        lease = await manager.acquire("k", ttl=60)
        sections.hold(manager, "k")
        started = time.monotonic()
        with pytest.raises(LockUnavailable, match=r"critical section .* stayed locked") as info:
            await manager.renew(lease)
        assert 0.3 <= time.monotonic() - started < 3
        assert info.value.operation == "renew"
        assert isinstance(info.value.__cause__, TimeoutError)
        sections.release_all()
        await manager.renew(lease)


async def test_a_cancelled_wait_for_a_critical_section_changes_nothing(
    tmp_path: Path, sections: CriticalSections
) -> None:
    """The wait is on the event loop: a cancel ends it, and no attempt runs later."""
    async with FileLockManager(tmp_path) as manager:
        lease = await manager.acquire("k", ttl=60)
        record = anyio.Path(manager.record_path("k"))
        before = await record.read_bytes()
        sections.hold(manager, "k")
        with anyio.move_on_after(0.2) as scope:
            await manager.renew(lease)
        assert scope.cancelled_caught
        sections.release_all()
        await anyio.sleep(0.1)
        assert await record.read_bytes() == before
        await manager.renew(lease)  # the section is free again
        assert await record.read_bytes() != before


def test_contention_timeout_is_the_storages(tmp_path: Path) -> None:
    """Same argument, same default, same checks as LocalFileStorage."""
    assert FileLockManager(tmp_path).contention_timeout == 10.0
    assert LocalFileStorage(tmp_path).contention_timeout == 10.0
    assert FileLockManager(tmp_path, contention_timeout=2).contention_timeout == 2.0
    for backend in (FileLockManager, LocalFileStorage):
        with pytest.raises(ValueError, match="contention_timeout must be positive"):
            backend(tmp_path, contention_timeout=0)
        with pytest.raises(ValueError, match="contention_timeout must be positive"):
            backend(tmp_path, contention_timeout=float("nan"))
        with pytest.raises(TypeError, match="contention_timeout must be a number"):
            backend(tmp_path, contention_timeout=True)


async def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write and os.pwrite may write fewer bytes than asked: records and session files are whole."""
    real_write, real_pwrite = os.write, os.pwrite
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:5])))
    monkeypatch.setattr(os, "pwrite", lambda fd, data, at: real_pwrite(fd, bytes(data[:5]), at))
    async with FileLockManager(tmp_path) as manager:
        lease = await manager.acquire("k", ttl=60)  # a new file: renamed into place
        await manager.release(lease)
        lease = await manager.acquire("k", ttl=60)  # written in place
        monkeypatch.undo()
        assert await manager.peek("k") == lease
        (session,) = (tmp_path / ".locks" / "sessions").iterdir()
        assert session.read_text() == f"pid {os.getpid()}\n"


# --------------------------------------------------------------------------- #
# The record file: two slots written in place
# --------------------------------------------------------------------------- #

SLOT = lease_files._SLOT_SIZE


def _slots(path: str) -> list[dict[str, object] | None]:
    raw = Path(path).read_bytes()
    decoded = [lease_files._decode_slot(raw[i * SLOT : (i + 1) * SLOT]) for i in range(2)]
    return [
        None if d is None else {"seq": d[0], "acquired": d[1], "token": d[2].token} for d in decoded
    ]


def _content(path: str) -> bytes:
    return Path(path).read_bytes()


def _tear(path: str, slot: int) -> None:
    """What a power loss in the middle of writing ``slot`` may leave."""
    with open(path, "r+b") as f:
        f.seek(slot * SLOT + 100)
        f.write(b"\xff" * 50)


async def test_updates_go_beside_the_acquisition_and_are_not_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An acquisition is flushed once, in place; a renewal or a release is neither flushed nor renamed."""
    calls: list[str] = []
    for name in ("fsync", "fdatasync", "replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    async with FileLockManager(tmp_path) as manager:
        path = manager.record_path("k")
        first = await manager.acquire("k", ttl=60)
        assert "replace" in calls  # a new file is renamed into place whole
        assert _slots(path) == [{"seq": 1, "acquired": True, "token": 1}, None]
        calls.clear()
        await manager.renew(first)
        await manager.release(first)
        assert calls == []
        assert _slots(path) == [
            {"seq": 1, "acquired": True, "token": 1},
            {"seq": 3, "acquired": False, "token": 1},
        ]
        second = await manager.acquire("k", ttl=60)
        assert calls == ["fdatasync"]
        # Over the update, never over the acquisition of the token before it.
        assert _slots(path) == [
            {"seq": 1, "acquired": True, "token": 1},
            {"seq": 4, "acquired": True, "token": 2},
        ]
        await manager.renew(second)
        assert _slots(path)[0] == {"seq": 5, "acquired": False, "token": 2}
        assert _slots(path)[1] == {"seq": 4, "acquired": True, "token": 2}


async def test_a_torn_update_leaves_the_acquisition_and_its_token(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as holder:
        lease = await holder.acquire("k", ttl=600)
        await holder.renew(lease)
        _tear(holder.record_path("k"), 1)
        # The acquisition is what is left: still held by a live holder, same token.
        assert await holder.peek("k") == lease
        renewed = await holder.renew(lease)
        assert renewed.token == lease.token
    async with FileLockManager(tmp_path) as other:  # the holder's session is gone
        taken = await other.acquire("k", ttl=60)
        assert taken.token == lease.token + 1


async def test_a_write_never_covers_the_only_whole_record(tmp_path: Path) -> None:
    """A torn acquisition leaves the update before it; the next write goes over the torn slot."""
    async with FileLockManager(tmp_path) as manager:
        first = await manager.acquire("k", ttl=60)
        await manager.release(first)
        second = await manager.acquire("k", ttl=60)  # slot 1
        path = manager.record_path("k")
        await manager.release(second)  # slot 0
        _tear(path, 1)  # as if the second acquisition had never reached the disk
        assert _slots(path)[1] is None
        third = await manager.acquire("k", ttl=60)
        assert third.token == second.token + 1
        assert _slots(path)[0] == {"seq": 4, "acquired": False, "token": 2}
        assert _slots(path)[1] == {"seq": 5, "acquired": True, "token": 3}


async def test_a_record_with_no_whole_slot_is_reported_not_overwritten(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as manager:
        lease = await manager.acquire("k", ttl=60)
        await manager.renew(lease)
        path = manager.record_path("k")
        _tear(path, 0)
        _tear(path, 1)
        before = _content(path)
        with pytest.raises(LockUnavailable, match="no whole record"):
            await manager.acquire("k", ttl=60)
        with pytest.raises(LockUnavailable, match="no whole record"):
            await manager.renew(lease)
        assert _content(path) == before


def _legacy_record(path: str, **fields: object) -> None:
    """A record as the previous release wrote it: one JSON object, replaced by rename."""
    record = {
        "v": 1,
        "key": "k",
        "owner": "old:1:a",
        "token": 41,
        "expires_at": time.time() + 600,
        "ttl": 600.0,
        "released": True,
        "session": "0" * 32,
        **fields,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record))


async def test_a_record_of_the_previous_format_keeps_its_token(tmp_path: Path) -> None:
    async with FileLockManager(tmp_path) as manager:
        path = manager.record_path("k")
        _legacy_record(path)
        assert await manager.peek("k") is None  # released
        lease = await manager.acquire("k", ttl=60)
        assert lease.token == 42
        assert _slots(path) == [{"seq": 1, "acquired": True, "token": 42}, None]
        await manager.release(lease)
        assert (await manager.acquire("k", ttl=60)).token == 43


async def test_a_lease_held_in_the_previous_format_is_respected(tmp_path: Path) -> None:
    """A process of the previous release that holds a lease keeps it."""
    async with FileLockManager(tmp_path) as old, FileLockManager(tmp_path) as new:
        await old.acquire("other", ttl=60)  # opens the session a live holder has
        session = old._store.session_id
        _legacy_record(new.record_path("k"), released=False, session=session)
        before = _content(new.record_path("k"))
        held = await new.peek("k")
        assert held is not None
        assert (held.owner, held.token) == ("old:1:a", 41)
        with pytest.raises(LockTimeout):
            await new.acquire("k", ttl=60, wait=0.2)
        assert _content(new.record_path("k")) == before


async def test_a_conversion_waits_for_the_previous_formats_critical_section(
    tmp_path: Path, sections: CriticalSections
) -> None:
    """A process of the previous release inside its critical section (the ``.lock`` file)
    keeps a first acquisition out until it leaves."""
    async with FileLockManager(tmp_path, contention_timeout=0.3) as manager:
        path = manager.record_path("k")
        _legacy_record(path)
        guard = os.open(Path(path).with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
        sections.fds.append(guard)
        fcntl.flock(guard, fcntl.LOCK_EX)
        with pytest.raises(LockUnavailable, match="stayed locked"):
            await manager.acquire("k", ttl=60)
        assert json.loads(_content(path))["token"] == 41  # untouched
        sections.release_all()
        assert (await manager.acquire("k", ttl=60)).token == 42


async def test_a_record_renamed_into_place_meanwhile_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first acquisition that locked a file since replaced starts over on the new one."""
    async with FileLockManager(tmp_path) as manager:
        path = manager.record_path("k")
        _legacy_record(path)
        real_lock_file = lease_files._posix.lock_file
        swapped = []

        def lock_file(target: str, **kwargs: object) -> int | None:
            if target.endswith(".lock") and not swapped:
                # What a process of the previous release does in its section.
                swapped.append(True)
                _legacy_record(path + ".new", token=99)
                os.replace(path + ".new", path)
            return real_lock_file(target, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(lease_files._posix, "lock_file", lock_file)
        assert (await manager.acquire("k", ttl=60)).token == 100


async def test_set_record_keeps_the_ttl_and_session_and_gives_new_records_its_own(
    tmp_path: Path,
) -> None:
    async with FileLockManager(tmp_path) as holder, FileLockManager(tmp_path) as operator:
        lease = await holder.acquire("k", ttl=60)
        record = await operator.record("k")
        assert record == LeaseRecord(lease.owner, lease.token, lease.expires_at, False)
        await operator.set_record("k", replace(record, owner="other", token=7))
        taken = await holder.peek("k")  # the holder's session still vouches for it
        assert taken is not None
        assert (taken.owner, taken.token, taken.ttl) == ("other", 7, 60.0)
        with pytest.raises(LockLost):
            await holder.renew(lease)
        await operator.set_record("k", None)
        assert await operator.record("k") is None
        assert not await anyio.Path(holder.record_path("k")).exists()
        await operator.set_record("new", LeaseRecord("someone", 3, time.time() + 60))
        fresh = await holder.peek("new")  # vouched for by the operator's session
        assert fresh is not None
        assert (fresh.owner, fresh.token) == ("someone", 3)
    async with FileLockManager(tmp_path) as later:
        assert await later.peek("new") is None  # the operator has gone
        assert (await later.acquire("new", ttl=60)).token == 4
