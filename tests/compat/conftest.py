"""Fixtures of the xstate differential suite (see ``compat_node``).

The oracle is ``runner.mjs`` running the exact xstate version pinned in
``package.json``, installed with npm on first use into a cache directory
outside the source tree (``DURABLE_STATE_COMPAT_DIR`` overrides it). A
machine without node skips the suite; a failing npm install fails it.
"""

from __future__ import annotations

import pytest
from compat_node import XstateRunner, find_runner


@pytest.fixture(scope="session")
def xstate() -> XstateRunner:
    """The xstate oracle; skips the suite when node is missing."""
    runner = find_runner()
    if isinstance(runner, str):
        pytest.skip(runner)
    return runner
