"""Fixtures shared by the whole suite.

AWS services are real HTTP endpoints: one moto server per test session,
started in a thread on 127.0.0.1 with an ephemeral port. Clients reach it
through aioboto3 with ``endpoint_url`` and dummy credentials, exactly as they
would reach AWS. (moto's in-process ``mock_aws`` patches botocore and does not
work with aiobotocore, so it is never used.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class AwsEndpoint:
    """Where the moto server listens, plus the settings a client needs."""

    url: str
    region: str = "us-east-1"

    def client_kwargs(self) -> dict[str, str]:
        return {"endpoint_url": self.url, "region_name": self.region}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[AwsEndpoint]:
    """A moto server on 127.0.0.1 for the whole session (S3, DynamoDB, SQS...)."""
    pytest.importorskip("moto.server", reason="moto[server] is part of the test extra")
    from moto.server import ThreadedMotoServer

    # Dummy credentials: botocore's default provider chain finds these, and no
    # real credentials from the machine can ever be used by a test.
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield AwsEndpoint(url=f"http://{host}:{port}")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
