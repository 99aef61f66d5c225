"""The implementation types of Machine and the built-ins, as a type checker sees them.

One snippet of user code goes through mypy --strict (and pyright --strict
when it is installed): the lines marked ``# error`` must be reported, every
other line must pass. A misspelt name of the package is one of them: the
package's lazy ``__getattr__`` must stay hidden from type checkers. The checkers are development tools, so the test is
skipped where they are not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SNIPPET = """\
from typing import Any

import durable_state
from durable_state import Machine, Snapshot, assign, emit, raise_event, state_in
from durable_state import cancel, enqueue_actions, log, send_parent, send_to, spawn_child, stop_child
from durable_state.statechart import Effect, TimerQueue


def has_items(context: Any, event: Any, minimum: int = 1) -> bool:
    return bool(context["items"] >= minimum)


async def charge(input: Any) -> dict[str, Any]:
    return {"ok": True}


machine = Machine(
    {"id": "order", "initial": "cart", "context": {"items": 0}, "states": {"cart": {}}},
    actions={
        "add": assign(lambda context, event: {"items": context["items"] + 1}),
        "per_key": assign({"items": lambda context, event: context["items"] + 1, "tag": "x"}),
        "ping": raise_event("PING", delay=100, id="ping"),
        "later": raise_event(lambda context, event: {"type": "LATER"}),
        "tell": emit({"type": "TOLD"}),
        "log": lambda context, event: print(context),
    },
    guards={
        "has_items": has_items,
        "positive": lambda context, event: context["items"] > 0,
        "paid": state_in("#order.paid"),
        "paying": state_in({"checkout": "paying"}),
        "both": {"type": "and", "guards": ["has_items", "paid"]},
    },
    delays={"soon": 100, "later": 1.5, "by_items": lambda context, event: 10.0 * context["items"]},
    actors={"charge": charge},
)
snapshot: Snapshot = machine.initial_snapshot()
after: tuple[Snapshot, list[Effect]] = machine.transition(snapshot, {"type": "ADD"})
timers: TimerQueue = after[0].timers
status: str = after[0].status
talker = Machine(
    {"id": "talker", "context": {"who": "shop", "n": 1}},
    actions={
        "tell": send_to("inventory", {"type": "RESERVE"}, machine="inventory"),
        "tell_fn": send_to(lambda context, event: str(context["who"]), lambda context, event: {"type": "X"}),
        "up": send_parent("UP", delay=10, id="up"),
        "spawn": spawn_child("child", id="c", input=lambda context, event: {"n": context["n"]}),
        "stop": stop_child(lambda context, event: "c"),
        "cancel": cancel("up"),
        "log": log(lambda context, event: context["n"]),
        "enq": enqueue_actions(lambda q, context, event: q.send_parent({"type": "BIG"}) if q.check("big") else q("tell")),
    },
    guards={"big": lambda context, event: context["n"] > 10},
    actors={"child": machine},
)
bad_target = send_to(3, {"type": "X"})  # error
bad_guards = Machine({"id": "m"}, guards={"g": lambda: "x"})  # error
bad_guard_result = Machine({"id": "m"}, guards={"g": lambda context, event: 3})  # error
bad_delay = Machine({"id": "m"}, delays={"d": "later"})  # error
bad_action = Machine({"id": "m"}, actions={"a": 42})  # error
bad_assign = assign(lambda context, event: 3)  # error
bad_actor = Machine({"id": "m"}, actors={"a": lambda: None})  # error
misspelt = durable_state.Machien  # error
"""

ERROR = re.compile(r"#\s*error\s*$")


def expected_lines() -> set[int]:
    return {i for i, line in enumerate(SNIPPET.splitlines(), 1) if ERROR.search(line)}


@pytest.fixture
def snippet(tmp_path: Path) -> Path:
    path = tmp_path / "user_code.py"
    path.write_text(SNIPPET)
    return path


def test_mypy_strict_accepts_the_implementations_and_refuses_anything_else(
    snippet: Path,
) -> None:
    api = pytest.importorskip("mypy.api", reason="mypy is a development tool")
    out, _, _ = api.run(
        [str(snippet), "--strict", "--no-incremental", "--no-error-summary", "--show-error-codes"]
    )
    lines = {int(m.group(1)) for m in re.finditer(rf"{re.escape(snippet.name)}:(\d+): error", out)}
    assert lines == expected_lines(), out


def test_pyright_strict_infers_the_parameters_of_the_readme_lambdas(snippet: Path) -> None:
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("pyright is a development tool")
    (snippet.parent / "pyrightconfig.json").write_text(
        json.dumps({"typeCheckingMode": "strict", "reportUnusedVariable": False})
    )
    proc = subprocess.run(
        [pyright, "--outputjson", "--pythonpath", sys.executable, str(snippet)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=snippet.parent,
    )
    report = json.loads(proc.stdout)
    lines = {d["range"]["start"]["line"] + 1 for d in report["generalDiagnostics"]}
    assert lines == expected_lines(), json.dumps(report["generalDiagnostics"], indent=1)
