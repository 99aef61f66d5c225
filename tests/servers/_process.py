"""Running a server as a child process: free ports, a log file, a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

#: How long a server may take to answer its first request.
READY_TIMEOUT_S = 60.0
#: How long a server may take to stop after it was asked to.
STOP_TIMEOUT_S = 15.0


class ServerUnavailable(Exception):
    """The server cannot run on this machine (a missing binary, node or npm).

    The fixture skips on it, or fails in the slow run (``DURABLE_STATE_SLOW=1``),
    where every server must be there.
    """


class ServerFailed(Exception):
    """The server is installed but did not start, or did not answer in time."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets stay bound until every port is chosen, so the ports are
    distinct; another process may still take one before the server binds it,
    which the caller handles by starting again.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class ChildServer:
    """A server process in a session of its own, its output in a log file.

    Args:
        args: the command line.
        log_path: where stdout and stderr go.
        env: the environment (default: this process's).
        stdin: ``subprocess.PIPE`` to keep a pipe the child may watch: closing
            it is the first, polite way to stop the child.
        stdout: ``subprocess.PIPE`` to read the child's stdout (stderr still
            goes to the log).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            self.args,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=self._log if stdout is None else stdout,
            stderr=self._log,
            # Its own session: a stop reaches its children, and a Ctrl-C in
            # the terminal reaches pytest alone, which then stops it in order.
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return text[-limit:]

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``ready`` until it returns true; the child must stay alive meanwhile.

        Raises:
            ServerFailed: the child exited, or ``ready`` stayed false for ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ServerFailed(
                    f"{what} exited with {self.process.returncode} before it was ready; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{what} did not answer within {timeout:.0f}s; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, *, polite: Callable[[], None] | None = None) -> int | None:
        """Stop the child: ``polite()`` (or SIGTERM), then SIGKILL for its whole session.

        Returns:
            The child's exit status (negative: the signal that ended it).
        """
        try:
            if self.alive():
                if polite is not None:
                    polite()
                else:
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.send_signal(signal.SIGTERM)
                    try:
                        self.process.wait(STOP_TIMEOUT_S / 3)
                    except subprocess.TimeoutExpired:
                        pass
            # Anything the child left behind in its session goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)
            return self.process.returncode
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self._log.close()


def describe(exc: BaseException) -> str:
    """One line for a probe's failure, for a readiness error message."""
    return f"{type(exc).__name__}: {exc}"


def botocore_client(service: str, url: str, region: str, **credentials: Any) -> Any:
    """A plain botocore client (sync, one attempt, short timeouts) for readiness probes."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        service,
        endpoint_url=url,
        region_name=region,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
        **credentials,
    )
