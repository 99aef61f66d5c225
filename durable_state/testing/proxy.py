"""A fault-injecting HTTP/1.1 proxy for testing backends over real connections.

Put it between a client and a server (moto, SeaweedFS, dynalite, AWS itself)
and it forwards requests one by one, optionally adding latency, cutting the
connection before a request reaches the server, or dropping the server's
response after the server has applied the request: the case where a client
cannot tell whether its write happened. Every rule can be limited to the
requests a predicate picks, and to a number of times::

    proxy = FaultProxy("127.0.0.1", 5000)
    proxy.start()
    proxy.drop_response(lambda r: r.method == "PUT" and r.path.endswith("/order-42"))
    storage = S3Storage("bucket", endpoint_url=proxy.url)

It runs on an event loop of its own in a daemon thread, so it serves
clients on any loop and in any process that can reach its port. It speaks
only what AWS SDKs send: requests with ``Content-Length`` bodies (an
``Expect: 100-continue`` is answered by the proxy itself), responses with
``Content-Length`` or chunked bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ("FaultProxy", "Request")

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Request:
    """What a rule's predicate sees of a request.

    Attributes:
        method: the HTTP method (``"PUT"``).
        path: the request target (path and query).
        headers: the request headers, names in lower case.
        body: the request body.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Predicate = Callable[[Request], bool]


@dataclass
class _Rule:
    action: str  # "drop" (drop the response) or "cut" (close before forwarding)
    match: Predicate
    times: int | None  # None: every matching request
    hits: int = 0


@dataclass
class _Counters:
    requests: int = 0
    dropped: int = 0
    cut: int = 0
    seen: list[Request] = field(default_factory=list)


class FaultProxy:
    """A TCP proxy that understands HTTP/1.1 request boundaries.

    Args:
        host: the server's host.
        port: the server's port.
        latency: seconds added before each request is forwarded (a round trip's
            worth of network delay).
        record: keep every request in :attr:`requests` (for counting tests).
    """

    def __init__(self, host: str, port: int, *, latency: float = 0.0, record: bool = False) -> None:
        self.target: tuple[str, int] = (host, port)
        self.latency = latency
        self._record = record
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._ready = threading.Event()

    # -- control (thread-safe) ------------------------------------------------ #

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the endpoint to give the client."""
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def requests(self) -> list[Request]:
        """Every request forwarded so far (with ``record=True``)."""
        with self._lock:
            return list(self._counters.seen)

    @property
    def request_count(self) -> int:
        """How many requests reached the proxy."""
        with self._lock:
            return self._counters.requests

    @property
    def dropped(self) -> int:
        """How many responses were dropped after the server answered."""
        with self._lock:
            return self._counters.dropped

    def reset_counts(self) -> None:
        """Forget the requests counted and recorded so far."""
        with self._lock:
            self._counters = _Counters()

    def drop_response(self, match: Predicate, *, times: int | None = 1) -> None:
        """Forward matching requests, then close the connection instead of answering.

        The server has applied the request; the client sees a dropped
        connection and, typically, retries.
        """
        with self._lock:
            self._rules.append(_Rule("drop", match, times))

    def cut(self, match: Predicate, *, times: int | None = 1) -> None:
        """Close the connection when a matching request arrives, without forwarding it."""
        with self._lock:
            self._rules.append(_Rule("cut", match, times))

    def clear(self) -> None:
        """Remove every rule (latency stays)."""
        with self._lock:
            self._rules.clear()

    def start(self) -> FaultProxy:
        """Start serving on an ephemeral port of 127.0.0.1.

        Returns:
            The proxy itself.
        """
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy's own loop -------------------------------------------------- #

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                # Let the transports closed above finish closing.
                loop.run_until_complete(asyncio.sleep(0.01))
            loop.close()

    def _decide(self, request: Request) -> str | None:
        with self._lock:
            self._counters.requests += 1
            if self._record:
                self._counters.seen.append(request)
            for rule in self._rules:
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if rule.match(request):
                    rule.hits += 1
                    if rule.action == "drop":
                        self._counters.dropped += 1
                    else:
                        self._counters.cut += 1
                    return rule.action
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, path, headers = _parse_request_head(head)
                if headers.get("expect", "").lower() == "100-continue":
                    # Answered here, so that the body follows at once; the
                    # server gets the request without the expectation.
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                    head = _without_header(head, b"expect")
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                action = self._decide(Request(method, path, headers, body))
                if action == "cut":
                    return
                if self.latency:
                    await asyncio.sleep(self.latency)
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.target)
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                response = await _read_response(up_reader, method)
                if response is None:
                    return
                if action == "drop":
                    # Applied by the server, never answered: close both sides.
                    return
                writer.write(response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        except asyncio.CancelledError:
            # Only the proxy's own shutdown cancels this task, on a loop that
            # is about to close. Ending normally keeps asyncio's stream
            # callback (task.exception()) from reporting the cancellation.
            return
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await w.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise ValueError("header too large") from exc
    if len(head) > _MAX_HEAD:
        raise ValueError("header too large")
    return head


def _parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    return method, path, _headers(lines[1:])


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(name + b":")]
    return b"\r\n".join(kept)


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


async def _read_response(reader: asyncio.StreamReader, method: str) -> bytes | None:
    head = await _read_head(reader)
    if head is None:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = _headers(lines[1:])
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return head
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head + bytes(body)
    length = headers.get("content-length")
    if length is None:
        raise ValueError("a response without a length")
    return head + await reader.readexactly(int(length))
