"""Finding node, installing the pinned xstate, running ``runner.mjs``.

The oracle is ``runner.mjs`` running the exact xstate version pinned in
``package.json``. It is installed with npm on first use into a cache
directory outside the source tree (keyed by the contents of
``package.json``), so a fresh clone needs nothing but ``node`` and ``npm``
on the PATH, and no ``node_modules`` or lockfile ever lands in the repo.
Set ``DURABLE_STATE_COMPAT_DIR`` to choose the cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _npm import install_into

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
RUNNER = HERE / "runner.mjs"
MIN_NODE = 18
RUN_TIMEOUT_S = 120


@dataclass(frozen=True)
class XstateRunner:
    """Runs batches of cases through ``runner.mjs`` in one node process each.

    Attributes:
        node: the node executable.
        script: the installed copy of ``runner.mjs`` (next to its node_modules).
        version: the xstate version the runner loads.
    """

    node: str
    script: Path
    version: str

    def run(self, cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Runs ``cases`` (runner input dicts) and returns the results by case id.

        Raises:
            RuntimeError: if node fails or prints something that is not the
                runner's JSON answer.
        """
        proc = subprocess.run(
            [self.node, str(self.script)],
            input=json.dumps({"cases": cases}),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"runner.mjs exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
        try:
            answer = json.loads(proc.stdout)
        except ValueError as exc:
            raise RuntimeError(f"runner.mjs printed no JSON:\n{proc.stdout[:2000]}") from exc
        return {r["id"]: r for r in answer["results"]}


def _node_major(node: str) -> int | None:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    return int(match.group(1)) if match else None


def _cache_dir() -> Path:
    override = os.environ.get("DURABLE_STATE_COMPAT_DIR")
    if override:
        return Path(override)
    digest = hashlib.sha256(PACKAGE_JSON.read_bytes()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "durable-state-compat" / digest


def find_runner() -> XstateRunner | str:
    """The xstate oracle, installed on first use, or why it cannot run here.

    Returns:
        The runner, or a skip reason when node (or npm, for a first install)
        is missing or too old.

    Raises:
        RuntimeError: if npm fails to install the pinned xstate.
    """
    node = shutil.which("node")
    if node is None:
        return "node is not installed: the xstate differential suite needs node >= 18"
    major = _node_major(node)
    if major is None or major < MIN_NODE:
        return f"node {major} is too old: the xstate differential suite needs node >= 18"
    target = _cache_dir()
    installed = target / "node_modules" / "xstate" / "package.json"
    if not installed.is_file():
        npm = shutil.which("npm")
        if npm is None:
            return "npm is not installed: the xstate differential suite installs xstate with it"
        install_into(npm, PACKAGE_JSON, target, package="xstate")
    version = json.loads(installed.read_text())["version"]
    pinned = json.loads(PACKAGE_JSON.read_text())["dependencies"]["xstate"]
    if version != pinned:
        raise RuntimeError(f"{target} holds xstate {version}, package.json pins {pinned}")
    # The runner must sit next to node_modules: ES modules resolve bare
    # imports from their own location (NODE_PATH does not apply to them).
    script = target / "runner.mjs"
    if not script.is_file() or script.read_bytes() != RUNNER.read_bytes():
        tmp = target / f".runner-{os.getpid()}.mjs"
        shutil.copyfile(RUNNER, tmp)
        tmp.replace(script)
    return XstateRunner(node=node, script=script, version=version)
