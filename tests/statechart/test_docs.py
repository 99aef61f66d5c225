"""The examples of docs/statecharts.md run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "statecharts.md"


def test_statecharts_guide_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {"__name__": "statecharts_md"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{DOC.name}[block {i}]", "exec")
        exec(code, namespace)
