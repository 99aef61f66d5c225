"""durable_state.testing: the contract suites a backend written elsewhere runs.

The suites need pytest, so ``import durable_state`` (and the FaultProxy in
``durable_state.testing``) must not import it. The "Writing a backend" page's
example is run here as what it claims to be: a test module, collected by
pytest in a fresh directory with pytest-asyncio in its default strict mode
and every warning an error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs_examples import ROOT, runnable_blocks

PAGE = ROOT / "docs" / "backends.md"


def test_the_package_imports_without_pytest() -> None:
    code = (
        "import json, sys\n"
        "import durable_state\n"
        "from durable_state import *\n"
        "import durable_state.testing, durable_state.storage, durable_state.locks\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('pytest', '_pytest', 'pytest_asyncio'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_the_writing_a_backend_example_runs_as_a_test_module(tmp_path: Path) -> None:
    module = tmp_path / "test_backends_example.py"
    module.write_text("\n\n".join(code for _, code in runnable_blocks(PAGE)))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n    error\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", module.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Everything passed: nothing skipped, xfailed or deselected.
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ passed in .* =+", summary), proc.stdout
    passed = re.findall(r"::(Test\w+)::\S+ PASSED", proc.stdout)
    counts = {name: passed.count(name) for name in set(passed)}
    assert counts.keys() == {"TestMemoryStorage", "TestMemoryLocks", "TestFileLocks"}, counts
    assert counts["TestMemoryLocks"] == counts["TestFileLocks"]  # the same suite
    assert counts["TestMemoryStorage"] > 50
