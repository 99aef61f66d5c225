"""Installing the npm packages some tests run (xstate, dynalite), once per package.json."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: How long one ``npm install`` may take.
NPM_TIMEOUT_S = 300


class NpmInstallFailed(RuntimeError):
    """``npm install`` exited with an error (its stderr is in the message)."""


def install_into(npm: str, package_json: Path, target: Path, *, package: str) -> None:
    """Install ``package_json``'s dependencies into ``target``, whole or not at all.

    The install runs in a staging directory that is renamed into place, so
    concurrent sessions never see half an install; when another session won
    the rename, its ``node_modules/<package>`` is used. No install scripts
    run (the packages used here ship what they need).

    Raises:
        NpmInstallFailed: npm failed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    try:
        shutil.copyfile(package_json, staging / "package.json")
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise NpmInstallFailed(
                f"npm install of {package} failed in {staging} (exit {proc.returncode}):\n"
                f"{proc.stderr[-4000:]}"
            )
        try:
            staging.rename(target)
        except OSError:
            # Another session installed it meanwhile; theirs is as good.
            if not (target / "node_modules" / package).is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
