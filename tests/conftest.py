"""Fixtures shared by the whole suite.

AWS services are real HTTP endpoints: one moto server per test session,
started in a thread on 127.0.0.1 with an ephemeral port. Clients reach it
through aioboto3 with ``endpoint_url`` and dummy credentials, exactly as they
would reach AWS. (moto's in-process ``mock_aws`` patches botocore and does not
work with aiobotocore, so it is never used.)

Beside moto, two independent implementations run as child processes on
127.0.0.1 with ephemeral ports, one each per session: SeaweedFS's S3 gateway
(``seaweedfs_server``) and dynalite (``dynalite_server``); see
``tests/servers``. The tests that use them are marked ``servers``.

``DURABLE_STATE_SLOW=1`` asks for the slow checks, as ``.ci/run`` and ``nox -s
slow`` do: tests marked ``long`` (minutes each: a fresh virtualenv, the
sdist's own test run, a terraform apply) or ``servers`` are skipped without
it, so that the default ``pytest`` stays fast, and soak tests read it to run
their full number of rounds. In that mode a server that cannot run here
(no ``weed`` binary, no node or npm) fails its tests instead of skipping them.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

#: Set to 1 for the slow checks: the tests marked ``long``, full soak counts.
SLOW_ENV = "DURABLE_STATE_SLOW"

T = TypeVar("T")


def slow_checks_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for the slow checks."""
    return environ.get(SLOW_ENV, "").strip().lower() in ("1", "true", "yes")


#: Markers whose tests run only when the slow checks are switched on, and why.
SLOW_ONLY = {
    "long": "long test",
    "servers": "needs SeaweedFS or dynalite (tests/servers)",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``long`` and ``servers`` tests unless the environment switches them on."""
    if slow_checks_enabled():
        return
    skips = {
        name: pytest.mark.skip(
            reason=f"{why}: set {SLOW_ENV}=1 to run it (.ci/run and nox -s slow do)"
        )
        for name, why in SLOW_ONLY.items()
    }
    for item in items:
        for name, skip in skips.items():
            if item.get_closest_marker(name) is not None:
                item.add_marker(skip)
                break


@dataclass(frozen=True)
class AwsEndpoint:
    """Where an AWS-compatible server listens, plus the settings a client needs.

    ``access_key``/``secret_key`` are the server's own keys (SeaweedFS checks
    signatures); ``None`` leaves credentials to botocore's provider chain (the
    dummy ones the moto fixture puts in the environment).
    """

    url: str
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    name: str = "moto"

    def client_kwargs(self) -> dict[str, str]:
        return {"endpoint_url": self.url, "region_name": self.region}

    def session(self) -> Any:
        """An aioboto3 session carrying this server's keys (if it has its own)."""
        aioboto3 = pytest.importorskip("aioboto3")
        if self.access_key is None:
            return aioboto3.Session()
        return aioboto3.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key
        )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[AwsEndpoint]:
    """A moto server on 127.0.0.1 for the whole session (S3, DynamoDB, SQS...)."""
    pytest.importorskip("moto.server", reason="moto[server] is part of the test extra")
    from moto.server import ThreadedMotoServer

    # Dummy credentials: botocore's default provider chain finds these, and no
    # real credentials from the machine can ever be used by a test.
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    restore = _atomic_conditional_writes()
    restore_header = _one_server_header()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield AwsEndpoint(url=f"http://{host}:{port}")
    finally:
        server.stop()
        restore()
        restore_header()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _atomic_conditional_writes() -> Callable[[], None]:
    """Make moto apply each conditional write atomically, as AWS does.

    moto's threaded server handles requests side by side and, by its own
    account, is not thread-safe (getmoto/moto#7164, #7166): a DynamoDB
    ``UpdateItem`` reads the item, checks its condition and writes with
    nothing held in between, and an S3 ``PutObject`` compares ``If-Match``
    with the current ETag and then stores. Two racing conditional writes can
    then both succeed (seen here: two lease holders with one token, a lost
    increment), which AWS never allows. Serialising those operations under
    one lock restores AWS's per-request atomicity; every request still goes
    over HTTP and reads stay concurrent.

    Returns:
        A function that undoes the patch.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.s3.responses import S3Response

    lock = threading.RLock()
    targets = [
        (DynamoDBBackend, name)
        for name in ("put_item", "update_item", "delete_item", "get_item", "transact_write_items")
    ] + [(S3Response, name) for name in ("put_object", "delete_object")]
    originals = [(cls, name, getattr(cls, name)) for cls, name in targets]

    def serialised(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return method

    for cls, name, original in originals:
        setattr(cls, name, serialised(original))

    def restore() -> None:
        for cls, name, original in originals:
            setattr(cls, name, original)

    return restore


def _one_server_header() -> Callable[[], None]:
    """Send one ``Server`` header per response, as HTTP requires.

    The WSGI server under moto writes its own ``Server`` header and moto adds
    another; aiohttp's strict parser (on in ``python -X dev``) rejects such a
    response as malformed. AWS sends one.

    Returns:
        A function that undoes the patch.
    """
    from werkzeug.serving import WSGIRequestHandler

    original = WSGIRequestHandler.send_response

    def send_response(self: Any, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    WSGIRequestHandler.send_response = send_response  # type: ignore[method-assign]

    def restore() -> None:
        WSGIRequestHandler.send_response = original  # type: ignore[method-assign]

    return restore


_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a bucket, table or key prefix (lowercase, S3-safe)."""
    return f"t-{uuid.uuid4().hex[:20]}"


# --------------------------------------------------------------------------- #
# Independent servers (tests/servers): SeaweedFS for S3, dynalite for DynamoDB
# --------------------------------------------------------------------------- #


def _server_step(step: Callable[[], T], failure: str) -> T:
    """Run a step of setting a server up; report why it cannot run, or why it failed.

    A server that cannot run here (``ServerUnavailable``: no binary, node or
    npm) skips its tests, or fails them in the slow run, so that CI never
    passes by skipping a server; one that is there but failed fails them.
    """
    from servers._process import ServerFailed, ServerUnavailable

    try:
        return step()
    except ServerUnavailable as exc:
        unavailable, message = True, str(exc)
    except ServerFailed as exc:
        unavailable, message = False, f"{failure}: {exc}"
    # Reported outside the handlers: pytest then shows no chained traceback.
    if unavailable and not slow_checks_enabled():
        pytest.skip(message)
    if unavailable:
        message += f" ({SLOW_ENV}=1: every server must run here)"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsEndpoint]:
    """SeaweedFS's S3 gateway (``weed mini``) on 127.0.0.1 for the whole session."""
    pytest.importorskip("botocore", reason="botocore comes with the aws extra")
    from servers._seaweedfs import SeaweedFS, fits_socket_paths

    directory = tmp_path_factory.mktemp("seaweedfs")
    if not fits_socket_paths(directory):  # a long --basetemp
        directory = Path(tempfile.mkdtemp(prefix="ds-weed-"))
    server = _server_step(lambda: SeaweedFS(directory), "SeaweedFS cannot run")
    endpoint = _server_step(server.start, f"SeaweedFS {server.version} did not start")
    try:
        yield AwsEndpoint(
            url=endpoint.url,
            access_key=endpoint.access_key,
            secret_key=endpoint.secret_key,
            name=f"seaweedfs-{endpoint.version}",
        )
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dynalite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsEndpoint]:
    """dynalite (DynamoDB in node, in memory) on 127.0.0.1 for the whole session."""
    pytest.importorskip("botocore", reason="botocore comes with the aws extra")
    from servers._dynalite import CREDENTIALS, Dynalite

    directory = tmp_path_factory.mktemp("dynalite")
    server = _server_step(lambda: Dynalite(directory), "dynalite could not be installed")
    endpoint = _server_step(server.start, f"dynalite {server.version} did not start")
    try:
        yield AwsEndpoint(
            url=endpoint.url,
            access_key=CREDENTIALS["aws_access_key_id"],
            secret_key=CREDENTIALS["aws_secret_access_key"],
            name=f"dynalite-{endpoint.version}",
        )
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs_session(seaweedfs_server: AwsEndpoint) -> Any:
    """An aioboto3 session signing with SeaweedFS's keys."""
    return seaweedfs_server.session()


@pytest.fixture(scope="session")
def dynalite_session(dynalite_server: AwsEndpoint) -> Any:
    """An aioboto3 session for dynalite (which checks no signature)."""
    return dynalite_server.session()
