"""Real OS processes contending for one key, on the file and DynamoDB backends."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from .conftest import create_lock_table

WORKER = os.path.join(os.path.dirname(__file__), "_lock_worker.py")
PROCESSES = 4
ROUNDS = 5

pytestmark = pytest.mark.slow


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"},
    )


async def contend(args: list[str]) -> list[dict[str, Any]]:
    """Run PROCESSES contenders with ``args`` from one start line; return their records."""
    procs = [spawn("contend", *args) for _ in range(PROCESSES)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            assert line.strip() == "ready", line + (proc.stderr.read() if proc.stderr else "")
        for proc in procs:  # as close to simultaneous as it gets
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        records: list[dict[str, Any]] = []
        for proc in procs:
            out, err = await anyio.to_thread.run_sync(proc.communicate, None, 60)
            assert proc.returncode == 0, err
            records.extend(json.loads(out.strip().splitlines()[-1]))
        return records
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def assert_exclusive(records: list[dict[str, Any]]) -> None:
    assert len(records) == PROCESSES * ROUNDS
    ordered = sorted(records, key=lambda r: r["enter"])
    for before, after in itertools.pairwise(ordered):
        assert after["enter"] > before["exit"], f"critical sections overlap: {before} {after}"
        # Fencing tokens follow the order in which the key was held.
        assert after["token"] > before["token"], (before, after)


async def test_processes_exclude_each_other_on_the_file_backend(tmp_path: Path) -> None:
    records = await contend(["file", "shared-key", str(ROUNDS), str(tmp_path / "root")])
    assert_exclusive(records)


async def test_processes_exclude_each_other_on_dynamodb(moto_server: Any, aws_session: Any) -> None:
    table = await create_lock_table(moto_server, aws_session)
    records = await contend(
        ["dynamodb", "shared-key", str(ROUNDS), table, moto_server.url, moto_server.region]
    )
    assert_exclusive(records)
