"""The README's set-up commands work on a fresh copy of the checkout.

The README promises that a machine with nothing but Python 3.10+ needs
exactly two commands: one that installs the package and runs the demo, one
that installs the test extra and runs the tests. ``.ci/run`` runs the second
one verbatim, with ``DURABLE_STATE_LONG_TESTS=1`` exported so that the tests
marked ``long`` run too (a plain ``pytest`` skips them; tests/conftest.py).

* The fast tests keep the README, the quickstart and ``.ci/run`` in sync and
  check that the ``long`` switch works.
* The ``long`` one runs both commands verbatim with ``bash`` in a copy of the
  checkout, building a new ``.venv`` there (it needs the package index and is
  skipped, with the reason, when it cannot be reached).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/durable-state demo"
)
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/python -m pip install -q -e ".[test]" '
    "&& .venv/bin/python -m pytest"
)
LONG_TESTS_ENV = "DURABLE_STATE_LONG_TESTS"

#: What is copied: everything the two commands and the test subset need.
COPIED = ("pyproject.toml", "README.md", "CHANGELOG.md", "durable_state", "tests", "examples")
COPIED_OPTIONAL = ("LICENSE", "docs", ".ci")
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "node_modules", ".durable-state", ".pytest_cache", ".hypothesis"
)
#: pip's words for "the network is not there" (not for a bad requirement).
OFFLINE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable"
    r"|Max retries exceeded|ConnectTimeout|ReadTimeoutError|Name or service not known"
)


def readme_commands(page: Path) -> list[str]:
    """The ``python3 -m venv ...`` lines of a page's shell blocks."""
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", page.read_text(), re.DOTALL)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("python3 -m venv")
    ]


def test_the_two_commands_are_in_sync() -> None:
    assert readme_commands(ROOT / "README.md") == [DEMO_COMMAND, TEST_COMMAND]
    assert readme_commands(ROOT / "docs" / "quickstart.md") == [DEMO_COMMAND, TEST_COMMAND]


def test_ci_runs_exactly_the_readme_test_command_with_the_long_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # Nothing but shell set-up before the README's command, and nothing after it.
    assert commands == [
        "set -euo pipefail",
        'cd "$(dirname "$0")/.."',
        f"export {LONG_TESTS_ENV}=1",
        TEST_COMMAND,
    ]


def test_long_tests_are_skipped_unless_switched_on(request: pytest.FixtureRequest) -> None:
    """The conftest hook, as it acted on this very run."""
    long_items = [i for i in request.session.items if i.get_closest_marker("long") is not None]
    if not long_items:
        pytest.skip("no test marked long was collected in this run")
    switched_on = os.environ.get(LONG_TESTS_ENV, "").strip().lower() in ("1", "true", "yes")
    for item in long_items:
        skipped = any(mark.name == "skip" for mark in item.iter_markers())
        assert skipped is not switched_on, item.nodeid


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no active venv, this venv's bin not on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", LONG_TESTS_ENV)
    }
    ours = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != ours)
    return env


def _bash(
    command: str, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _skip_if_offline(proc: subprocess.CompletedProcess[str]) -> None:
    match = OFFLINE.search(proc.stderr)
    if proc.returncode != 0 and match:
        pytest.skip(f"the package index cannot be reached ({match.group(0)})")


@pytest.mark.long
@pytest.mark.timeout(600)
def test_the_two_commands_work_in_a_fresh_venv(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run the commands as written")
    env = _clean_env()
    probe = _bash(
        "python3 -c 'import sys, venv, ensurepip; print(sys.version_info >= (3, 10))'",
        tmp_path,
        env,
        60,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "True":
        pytest.skip(f"no python3 >= 3.10 with venv and ensurepip on PATH: {probe.stderr.strip()}")

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in COPIED + COPIED_OPTIONAL:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=IGNORED)
        elif source.exists():
            shutil.copy2(source, checkout / name)

    demo = _bash(DEMO_COMMAND, checkout, env, 240)
    _skip_if_offline(demo)
    assert demo.returncode == 0, demo.stderr[-3000:]
    for expected in ("already applied, skipped", '"outcome": "shipped"', "Done in"):
        assert expected in demo.stdout
    assert (checkout / ".durable-state").is_dir()

    env_tests = {
        **env,
        # A quick subset, without the long tests (this one among them): the
        # point is that the test extra installs and pytest runs with its config.
        "PYTEST_ADDOPTS": "-q -p no:cacheprovider -m 'not slow' -k 'not s3' "
        "tests/test_cli.py tests/test_docs_examples.py",
    }
    tests = _bash(TEST_COMMAND, checkout, env_tests, 300)
    _skip_if_offline(tests)
    assert tests.returncode == 0, (tests.stdout + tests.stderr)[-3000:]
    assert re.search(r"\d+ passed", tests.stdout)
    assert " failed" not in tests.stdout
