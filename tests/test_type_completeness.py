"""The package is completely typed for its users, as pyright --verifytypes sees it.

``pyright --verifytypes durable_state --ignoreexternal`` checks every public
symbol: annotations that leave no room for a checker's inference, no
unknown types, a docstring on every public function and class. The score
must stay at 100%. pyright is a development tool, so the test is skipped
where it is not installed beside the running interpreter.

pyright finds the package through the ``python`` first on ``PATH`` (its
``--pythonpath`` option does not apply to ``--verifytypes``), so it runs in a
clean environment whose ``PATH`` starts with this interpreter's directory:
a virtualenv that is not activated, or another Python ahead on ``PATH``,
would otherwise make it report that the package cannot be found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What pyright needs of the environment besides PATH: its own install and cache.
PASSED_THROUGH = ("HOME", "XDG_CACHE_HOME", "SYSTEMROOT", "TMPDIR")


def clean_environment(bin_dir: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PYRIGHT_PYTHON_")})
    env["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", os.defpath)])
    return env


def test_pyright_verifytypes_scores_100_percent() -> None:
    bin_dir = str(Path(sys.executable).parent)
    pyright = shutil.which("pyright", path=bin_dir)
    if pyright is None:
        pytest.skip("pyright is a development tool")
    proc = subprocess.run(
        [pyright, "--verifytypes", "durable_state", "--ignoreexternal", "--outputjson"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env=clean_environment(bin_dir),
    )
    report = json.loads(proc.stdout)
    problems = [
        f"{symbol['name']}: {diagnostic['message']}"
        for symbol in report["typeCompleteness"]["symbols"]
        for diagnostic in symbol["diagnostics"]
        if diagnostic["severity"] in ("error", "warning")
    ]
    general = [d["message"] for d in report["generalDiagnostics"]]
    assert general == [], general  # e.g. the package was not found
    assert problems == [], "\n".join(problems)
    assert report["typeCompleteness"]["completenessScore"] == 1.0
    assert report["typeCompleteness"]["missingFunctionDocStringCount"] == 0
    assert report["typeCompleteness"]["missingClassDocStringCount"] == 0
