"""The documentation's examples run.

A Python code block in ``README.md`` or ``docs/*.md`` is executed when the
line before its opening fence is the HTML comment ``<!-- runnable -->``
(invisible on GitHub and in the built site). The runnable blocks of one page
run in order in one namespace, the way a reader runs them, in a fresh working
directory; a block must finish without raising. ``examples/quickstart.py``
``examples/order.py`` and ``examples/saga.py`` run as scripts in real processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- runnable -->"
_BLOCK = re.compile(
    r"^" + re.escape(MARKER) + r"[ \t]*\n```python[^\n]*\n(?P<code>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def runnable_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's runnable Python blocks, with the line number of each block's first line."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append((line, match.group("code")))
    # A marker that is not followed by a Python fence is a mistake, not a skip.
    assert text.count(MARKER) == len(blocks), f"{page}: a {MARKER} marker without a python block"
    return blocks


PAGES = sorted(
    page
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if page.exists() and MARKER in page.read_text(encoding="utf-8")
)


def test_the_readme_and_the_quickstart_have_runnable_examples() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "quickstart.md"} <= names
    assert len(runnable_blocks(ROOT / "README.md")) == 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for line, code in runnable_blocks(page):
        # Compiled against the page's own name and line, so that a failure
        # points into the Markdown file.
        compiled = compile("\n" * (line - 1) + code, str(page), "exec")
        exec(compiled, namespace)
    capsys.readouterr()


def test_the_readme_example_prints_what_its_comment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (line, code), *_ = runnable_blocks(ROOT / "README.md")
    exec(compile("\n" * (line - 1) + code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.splitlines() == [
        "open {'items': 1}",
        "open {'items': 1}",
        "ordered {'items': 1}",
    ]
    assert (tmp_path / ".durable-state").is_dir()


@pytest.mark.parametrize(
    ("script", "last_line"),
    [
        ("quickstart.py", "ordered {'items': 1}"),
        (
            "order.py",
            "{'outcome': 'shipped', 'items': ['book'], 'total': 12.5, 'tracking': 'TRK-1'}",
        ),
        ("saga.py", "stock left 999745 of 1000000, charged 2550"),
    ],
)
def test_example_scripts(script: str, last_line: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == last_line
