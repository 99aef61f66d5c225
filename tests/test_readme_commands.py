"""The README's set-up commands work, on a fresh copy of the checkout and from the sdist.

The README promises that a machine with nothing but Python 3.10+ needs
exactly two commands: one that installs the package and runs the demo, one
that installs the test extra and runs the tests. ``.ci/run`` runs the second
one verbatim, with ``DURABLE_STATE_SLOW=1`` exported so that the tests marked
``long`` run too (a plain ``pytest`` skips them; tests/conftest.py).

* The fast tests keep the README, the quickstart and ``.ci/run`` in sync,
  check that the ``long`` switch works, and build the sdist to check that it
  ships every path the tests read.
* The ``long`` ones run both commands verbatim with ``bash`` in a copy of the
  checkout, building a new ``.venv`` there (they need the package index and
  are skipped, with the reason, when it cannot be reached), and run the tests
  that read files outside ``tests/`` from the unpacked sdist.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/durable-state demo"
)
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/python -m pip install -q -e ".[test]" '
    "&& .venv/bin/python -m pytest"
)
SLOW_ENV = "DURABLE_STATE_SLOW"

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
        f"export {SLOW_ENV}=1",
        TEST_COMMAND,
    ]


def test_long_tests_are_skipped_unless_switched_on(request: pytest.FixtureRequest) -> None:
    """The conftest hook, as it acted on this very run."""
    long_items = [i for i in request.session.items if i.get_closest_marker("long") is not None]
    if not long_items:
        pytest.skip("no test marked long was collected in this run")
    switched_on = os.environ.get(SLOW_ENV, "").strip().lower() in ("1", "true", "yes")
    for item in long_items:
        skipped = any(mark.name == "skip" for mark in item.iter_markers())
        assert skipped is not switched_on, item.nodeid


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no active venv, this venv's bin not on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", SLOW_ENV)
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


# --------------------------------------------------------------------------- #
# The sdist ships what its tests read
# --------------------------------------------------------------------------- #

#: Read by the tests without being named in their source, and why.
IMPLICIT_READS = {
    "pyproject.toml": "pytest's configuration; pip install -e builds from it",
    "mkdocs.yml": "tests/test_docs_build.py runs mkdocs build in the root",
    "LICENSE": "pyproject.toml declares the licence",
}
#: Never part of a source distribution.
STRAY = re.compile(
    r"(^|/)(__pycache__|\.terraform|\.durable-state|node_modules|\.pytest_cache)(/|$)"
    r"|\.py[co]$|\.tfstate(\.|$)|\.terraform\.lock\.hcl$"
)


def _path_parts(
    node: ast.expr, assigned: dict[str, ast.expr], depth: int = 0
) -> tuple[list[str], bool] | None:
    """The string components of a path built with ``/``, e.g. ``ROOT / "infra" / "main.tf"``.

    Returns ``(components, complete)``, or ``None`` for a path that does not
    start in the checkout (``tmp_path / "x"``: a name that is not a module
    constant). A module constant is replaced by its value (``INFRA = ROOT /
    "infra"``); an expression on ``__file__`` is the anchor and adds nothing;
    a component that is not a string (a loop variable) ends the path there.
    """
    if depth > 20:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value], True
    if isinstance(node, ast.Name):
        if node.id not in assigned:
            return None
        return _path_parts(assigned[node.id], assigned, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _path_parts(node.left, assigned, depth + 1)
        if left is None or not left[1]:
            return left
        right = _path_parts(node.right, assigned, depth + 1)
        if right is None:
            return left[0], False
        return [*left[0], *right[0]], right[1]
    if any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node)):
        return [], True
    return None


def paths_named_in(source: str) -> set[str]:
    """Relative paths a test module builds (``ROOT / "a" / "b"``) or spells out (``"a/b"``)."""
    tree = ast.parse(source)
    assigned = {
        target.id: stmt.value
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inner.add(id(node.left))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and id(node) not in inner:
            result = _path_parts(node, assigned)
            if result is not None and result[0]:
                found.add(str(PurePosixPath(*result[0])))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if "/" in text and not any(c.isspace() for c in text) and "://" not in text:
                found.add(text)
    return found


def paths_the_tests_read(root: Path) -> set[str]:
    """Every file or directory outside ``tests/`` that some test module names and that exists."""
    needed = set(IMPLICIT_READS)
    for module in sorted((root / "tests").rglob("*.py")):
        for name in paths_named_in(module.read_text(encoding="utf-8")):
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                continue
            if path.parts[0] in ("tests", "durable_state") or not (root / path).exists():
                continue
            needed.add(str(path))
    return needed


def test_the_path_scan_follows_names_and_drops_what_it_cannot_know() -> None:
    source = (
        "from pathlib import Path\n"
        "ROOT = Path(__file__).resolve().parents[1]\n"
        'INFRA = ROOT / "infra"\n'
        "def f(script, tmp_path):\n"
        '    (INFRA / "examples" / "moto" / "run.py").read_text()\n'
        '    ROOT / "examples" / script / "never.py"\n'
        '    tmp_path / "bench"\n'
        '    open(".ci/run")\n'
    )
    found = paths_named_in(source)
    assert found == {"infra", "infra/examples/moto/run.py", "examples", ".ci/run"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist built from this checkout with the project's build backend, unpacked."""
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is in the test extra")
    out = tmp_path_factory.mktemp("sdist")
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    archive = out / build.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+
            tar.extractall(out / "unpacked", filter="data")
        else:  # pragma: no cover - older patch releases
            tar.extractall(out / "unpacked")  # our own archive, built just now
    (top,) = (out / "unpacked").iterdir()
    return top


def test_the_sdist_ships_every_path_the_tests_read(sdist: Path) -> None:
    needed = paths_the_tests_read(ROOT)
    # The scan must keep seeing the reads that made the sdist incomplete once.
    assert {"examples", "infra", ".ci/run", "README.md", "docs"} <= needed, needed
    missing = sorted(path for path in needed if not (sdist / path).exists())
    assert not missing, f"the sdist lacks what the tests read: {missing}"
    # Directories come whole: every file the checkout has there (and git tracks
    # or does not ignore) is in the sdist too.
    for top in ("examples", "infra", ".ci"):
        for path in (ROOT / top).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and not STRAY.search(relative):
                assert (sdist / relative).is_file(), f"{relative} is not in the sdist"


def test_the_sdist_holds_no_stray_files(sdist: Path) -> None:
    shipped = [p.relative_to(sdist).as_posix() for p in sdist.rglob("*") if p.is_file()]
    assert not [p for p in shipped if STRAY.search(p)]
    # Only the project's own top-level entries (an unanchored include pattern
    # once pulled in bench/README.md and infra/tests without infra/*.tf).
    tops = {PurePosixPath(p).parts[0] for p in shipped}
    assert tops <= {
        "durable_state",
        "tests",
        "docs",
        "examples",
        "infra",
        ".ci",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "mkdocs.yml",
        "noxfile.py",
        "pyproject.toml",
        "PKG-INFO",
        ".gitignore",
    }, tops
    assert not (sdist / "bench").exists()
    # The module's tests come with the module they test.
    assert list((sdist / "infra" / "tests").glob("*.tftest.hcl"))
    assert (sdist / "infra" / "main.tf").is_file()


@pytest.mark.long
@pytest.mark.timeout(600)
def test_the_tests_that_read_the_checkout_pass_from_the_sdist(sdist: Path) -> None:
    """Run, inside the unpacked sdist, every test module that reads files outside tests/."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", SLOW_ENV)}
    # The package under test must be the sdist's own copy, not the checkout's
    # (python -m puts the working directory first on sys.path).
    where = subprocess.run(
        [sys.executable, "-c", "import durable_state; print(durable_state.__file__)"],
        cwd=sdist,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(sdist), where.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_docs_examples.py",
            "tests/test_docs_build.py",
            "tests/test_infra.py",
            "tests/test_readme_commands.py",
            "tests/integrations",
        ],
        cwd=sdist,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert re.search(r"\d+ passed", proc.stdout)
