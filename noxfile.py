"""Development sessions: ``nox -l`` lists them, ``nox -s lint typecheck docs`` runs some.

* ``tests-3.10`` ... ``tests-3.13``: the test suite on each Python found on this
  machine (on ``PATH`` or under ``~/.pyenv/versions``); a missing one is skipped.
  Like a plain ``pytest``, it skips the tests marked ``long``.
* ``slow``: the slow checks as CI runs them (``DURABLE_STATE_SLOW=1``): the
  tests marked ``long`` (minutes each: the README's commands in a fresh
  virtualenv, the sdist's own test run, the terraform apply) and ``servers``,
  which the default run skips, and those marked ``slow``, soaks at their full rounds.
* ``servers``: only the tests against SeaweedFS and dynalite (``tests/servers``,
  the ``s3-seaweedfs`` and ``dynamodb-dynalite`` contract backends); needs
  node and npm for dynalite, which is installed on first use.
* ``lint``: ``ruff check`` and ``ruff format --check``.
* ``typecheck``: ``mypy --strict`` on the package, and ``pyright --verifytypes``
  (the type completeness users see; it must score 100%).
* ``docs``: ``mkdocs build --strict``.
* ``compat``: the differential suite against xstate on node, with more cases
  (``DURABLE_STATE_COMPAT_CASES``, default here 2000).
* ``bench``: the benchmarks in ``bench/``; the statechart one writes ``docs/assets/benchmarks/``.

Environments are made with uv when it is installed, else with virtualenv.
Arguments after ``--`` go to the session's main tool, e.g.
``nox -s tests-3.12 -- -k cli -x``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "slow", "docs"]
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).resolve().parent
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
BENCHMARKS = ("bench_statechart.py", "bench_storage.py", "bench_locks.py", "bench_persisted.py")


def _works(python: str) -> bool:
    # A pyenv shim is on PATH for every version pyenv knows, but fails for
    # versions that are not selected: ask the interpreter itself.
    try:
        proc = subprocess.run(
            [python, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _find(version: str) -> str | None:
    """The directory holding a working ``python<version>``, or None."""
    name = f"python{version}"
    on_path = shutil.which(name)
    if on_path and _works(on_path):
        return os.path.dirname(on_path)
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/{name}")
    for candidate in sorted(glob.glob(pattern), reverse=True):
        if _works(candidate):
            return os.path.dirname(candidate)
    return None


def _pythons() -> list[str]:
    """The supported versions found here; their directories go first on PATH for nox."""
    found = []
    for version in SUPPORTED:
        directory = _find(version)
        if directory is None:
            continue
        found.append(version)
        if directory not in os.environ.get("PATH", "").split(os.pathsep)[:1]:
            os.environ["PATH"] = directory + os.pathsep + os.environ.get("PATH", "")
    return found


PYTHONS = _pythons()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (including the S3/DynamoDB tests against a local moto server)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """The tests marked ``long``, ``servers`` or ``slow``, with ``DURABLE_STATE_SLOW=1`` as in CI."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-m",
        "long or servers or slow",
        *session.posargs,
        env={"DURABLE_STATE_SLOW": "1"},
    )


@nox.session
def servers(session: nox.Session) -> None:
    """The tests against SeaweedFS (S3) and dynalite (DynamoDB), as CI runs them."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-m",
        "servers",
        *session.posargs,
        env={"DURABLE_STATE_SLOW": "1"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, and pyright's type completeness score for its users.

    ``pyright --verifytypes`` finds the package through the ``python`` first
    on ``PATH``, which in a session is the session's own.
    """
    session.install("-e", ".[test]", "mypy>=1.10", "pyright>=1.1.390")
    session.run("mypy", "--strict", *(session.posargs or ["durable_state"]))
    session.run("pyright", "--verifytypes", "durable_state", "--ignoreexternal")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning (broken link, bad docstring) fails it."""
    session.install("-e", ".[docs]", "ruff")  # ruff formats the rendered signatures
    site = session.create_tmp() if "--keep" not in session.posargs else "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def compat(session: nox.Session) -> None:
    """The xstate differential suite with more generated cases (needs node)."""
    if shutil.which("node") is None:
        session.skip("node is not installed; the differential suite runs xstate on node")
    session.install("-e", ".[test]")
    cases = os.environ.get("DURABLE_STATE_COMPAT_CASES", "2000")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/compat",
        "-m",
        "compat",
        *session.posargs,
        env={"DURABLE_STATE_COMPAT_CASES": cases},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks that exist in bench/ (figures for the docs land in docs/assets/benchmarks/)."""
    scripts = [ROOT / "bench" / name for name in BENCHMARKS if (ROOT / "bench" / name).exists()]
    if not scripts:
        session.skip("no benchmark scripts in bench/")
    session.install("-e", ".[bench]")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    for script in scripts:
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)
