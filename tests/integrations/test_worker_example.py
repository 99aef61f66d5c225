"""examples/worker_pool.py, run as a real process on a real directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from durable_state.storage import LocalFileStorage

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "worker_pool.py"


def run_pool(root: Path, actors: int, events: int, workers: int) -> str:
    args = ["--actors", actors, "--events", events, "--workers", workers, "--root", root]
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), *map(str, args), "--check"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_worker_pool_steps_every_actor_to_its_final_state(tmp_path: Path) -> None:
    actors, events = 24, 4
    first = run_pool(tmp_path, actors, events, workers=4)
    sessions = re.search(r"^(\d+) sessions .* (\d+) events/s.* (\d+) already applied$", first, re.M)
    assert sessions is not None, first
    assert int(sessions.group(1)) == actors * events
    assert int(sessions.group(2)) > 0
    assert int(sessions.group(3)) == 0

    storage = LocalFileStorage(tmp_path)
    keys = [key async for key in storage.list("order-")]
    assert len(keys) == actors
    for key in keys:
        stored = await storage.read(key)
        assert stored is not None
        data = json.loads(stored.data)
        assert (data["value"], data["status"], data["context"]) == (
            "paid",
            "done",
            {"items": events - 1},
        )
        assert len(data["$durable"]["processed"]) == events

    # The same jobs again, as after a crash of the producer: nothing applies twice.
    again = run_pool(tmp_path, actors, events, workers=3)
    assert f"{actors * events} already applied" in again
    for key in keys:
        stored = await storage.read(key)
        assert stored is not None
        assert json.loads(stored.data)["context"] == {"items": events - 1}
