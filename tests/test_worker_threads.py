"""The worker threads of the file backends (``durable_state._posix.run_in_thread``)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading

import pytest

from durable_state import _posix


async def test_results_and_errors_reach_the_caller() -> None:
    assert await _posix.run_in_thread(lambda a, b: a + b, 2, 3) == 5
    assert await _posix.run_in_thread(threading.current_thread) is not threading.current_thread()

    def fail() -> None:
        raise OSError(5, "boom")

    with pytest.raises(OSError, match="boom"):
        await _posix.run_in_thread(fail)
    assert await _posix.run_in_thread(lambda: "still serving") == "still serving"


async def test_a_call_whose_caller_left_before_it_started_never_runs() -> None:
    release = threading.Event()
    busy = [
        asyncio.ensure_future(_posix.run_in_thread(release.wait, 10))
        for _ in range(_posix._IO_THREADS)
    ]
    ran: list[bool] = []
    queued = asyncio.ensure_future(_posix.run_in_thread(ran.append, True))
    await asyncio.sleep(0.05)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    assert await asyncio.gather(*busy) == [True] * _posix._IO_THREADS
    await _posix.run_in_thread(lambda: None)  # behind it in the queue
    assert ran == []


async def test_a_cancelled_caller_does_not_stop_a_running_call() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait(10)
        finished.set()

    call = asyncio.ensure_future(_posix.run_in_thread(work))
    await asyncio.to_thread(started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)


async def test_a_background_call_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def fail() -> None:
        done.set()
        raise OSError("disk gone")

    with caplog.at_level(logging.ERROR, logger="durable_state"):
        _posix.start_in_thread(fail)
        await asyncio.to_thread(done.wait, 10)
        assert await _posix.run_in_thread(lambda: 1) == 1  # the thread goes on
        for _ in range(_posix._IO_THREADS):
            await _posix.run_in_thread(lambda: None)
    assert "a background file-system call failed" in caplog.text
    assert "disk gone" in caplog.text


def test_callers_on_several_event_loops_get_their_own_results() -> None:
    results: dict[int, list[int]] = {}

    def loop_thread(n: int) -> None:
        async def main() -> list[int]:
            return list(
                await asyncio.gather(*(_posix.run_in_thread(int, n * 100 + i) for i in range(50)))
            )

        results[n] = asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: [n * 100 + i for i in range(50)] for n in range(4)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_has_worker_threads_of_its_own() -> None:
    code = """
import asyncio, os
from durable_state import _posix

async def call():
    return await _posix.run_in_thread(os.getpid)

parent = asyncio.run(call())
pid = os.fork()
if pid == 0:
    os._exit(0 if asyncio.run(call()) == os.getpid() else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), parent == os.getpid())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]
