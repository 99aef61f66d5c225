"""dynalite as a test server: an independent DynamoDB on 127.0.0.1, in node.

The version pinned in ``package.json`` beside this file is installed with npm
on first use into a cache directory outside the source tree (keyed by the
contents of ``package.json``; ``DURABLE_STATE_SERVERS_DIR`` chooses another),
as the xstate oracle of ``tests/compat`` is. A fresh clone needs nothing but
``node`` (>= 20, dynalite's own floor) and ``npm`` on the PATH. Tables live in
memory; ``dynalite_server.js`` starts it on an ephemeral port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _npm import NpmInstallFailed, install_into

from ._process import (
    READY_TIMEOUT_S,
    ChildServer,
    ServerFailed,
    ServerUnavailable,
    botocore_client,
)

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
LAUNCHER = HERE / "dynalite_server.js"
#: Chooses the directory the pinned dynalite is installed into.
CACHE_ENV = "DURABLE_STATE_SERVERS_DIR"
MIN_NODE = 20
REGION = "us-east-1"
#: dynalite checks no signature; botocore still signs, with these.
CREDENTIALS = {"aws_access_key_id": "dynalite", "aws_secret_access_key": "dynalite"}


#: Lock contract tests that fail on dynalite, and why (each an expected failure).
#: (A refused renew or release reads the item when the refusal carries no old
#: image, as dynalite's never does: the reason names the new holder.)
LOCK_CONTRACT_XFAILS: dict[str, str] = {}


@dataclass(frozen=True)
class DynaliteEndpoint:
    """A running dynalite: its URL and version."""

    url: str
    version: str


def _pinned() -> str:
    version: str = json.loads(PACKAGE_JSON.read_text())["dependencies"]["dynalite"]
    return version


def cache_dir() -> Path:
    """Where the pinned dynalite is (or will be) installed."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    digest = hashlib.sha256(PACKAGE_JSON.read_bytes()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "durable-state-servers" / digest


def find_node() -> str:
    """A node new enough for dynalite.

    Raises:
        ServerUnavailable: node is missing or too old.
    """
    node = shutil.which("node")
    if node is None:
        raise ServerUnavailable(f"node is not installed: dynalite needs node >= {MIN_NODE}")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    major = int(match.group(1)) if match else None
    if major is None or major < MIN_NODE:
        raise ServerUnavailable(f"node {out.stdout.strip()} is too old: dynalite needs >= 20")
    return node


def install(target: Path | None = None) -> Path:
    """The directory holding ``node_modules/dynalite`` at the pinned version.

    Installs it with npm the first time (into a staging directory renamed
    into place, so concurrent sessions never see half an install).

    Raises:
        ServerUnavailable: it is not installed and npm is missing.
        ServerFailed: npm failed, or the cache holds another version.
    """
    target = target or cache_dir()
    installed = target / "node_modules" / "dynalite" / "package.json"
    if not installed.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise ServerUnavailable("npm is not installed: the tests install dynalite with it")
        try:
            install_into(npm, PACKAGE_JSON, target, package="dynalite")
        except NpmInstallFailed as exc:
            raise ServerFailed(str(exc)) from exc
    version: str = json.loads(installed.read_text())["version"]
    if version != _pinned():
        raise ServerFailed(f"{target} holds dynalite {version}, package.json pins {_pinned()}")
    return target


class Dynalite:
    """A dynalite process on 127.0.0.1; its log in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.node = find_node()
        self.home = install()
        self.version = _pinned()
        self._child: ChildServer | None = None

    def start(self) -> DynaliteEndpoint:
        """Start dynalite and wait until it lists tables.

        Raises:
            ServerFailed: it did not come up (the message ends with its log).
        """
        self._child = ChildServer(
            [self.node, str(LAUNCHER), str(self.home)],
            log_path=self.directory / "dynalite.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        port = self._read_port(self._child)
        url = f"http://127.0.0.1:{port}"
        self._child.wait_until(lambda: self._serves(url), "dynalite", READY_TIMEOUT_S)
        return DynaliteEndpoint(url, self.version)

    @staticmethod
    def _read_port(child: ChildServer) -> int:
        """The port from the launcher's first line of output."""
        stdout = child.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not selector.select(timeout=0.1):
                if not child.alive() or time.monotonic() > deadline:
                    raise ServerFailed(
                        f"dynalite did not report its port; its log ({child.log_path}) "
                        f"ends with:\n{child.log_tail()}"
                    )
        line = stdout.readline()
        try:
            port: int = json.loads(line)["port"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerFailed(f"dynalite's launcher printed {line!r}, not its port") from exc
        return port

    @staticmethod
    def _serves(url: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        client = botocore_client("dynamodb", url, REGION, **CREDENTIALS)
        try:
            client.list_tables()
        except (BotoCoreError, ClientError, OSError):
            return False
        finally:
            client.close()
        return True

    def stop(self) -> None:
        """Close its stdin (the launcher then closes the server), then signals if needed."""
        child, self._child = self._child, None
        if child is None:
            return

        def close_stdin() -> None:
            if child.process.stdin is not None:
                child.process.stdin.close()

        child.stop(polite=close_stdin)
