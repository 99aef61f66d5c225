"""S3Storage against SeaweedFS: lost answers and racing conditional writes.

The contract suite runs against SeaweedFS as the ``s3-seaweedfs`` backend
(tests/storage/conftest.py), lost requests and deletes in
test_lost_answers.py. Here: the lost-answer tests of
tests/storage/test_s3.py, unchanged (this module's fixtures point the
endpoint they use, ``moto_server``, at SeaweedFS), and races that only a
server with its own concurrency can show (moto's conditional writes are
serialised by tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from storage.conftest import create_bucket

# Collected here too, against this module's fixtures: the same test on SeaweedFS.
from storage.test_s3 import (  # noqa: F401  (pytest collects and uses them by name)
    dropping_proxy,
    test_a_write_whose_answer_was_lost_is_not_a_conflict,
)

from durable_state.errors import VersionConflict
from durable_state.storage import S3Storage

pytestmark = pytest.mark.servers


@pytest.fixture
def moto_server(seaweedfs_server: Any) -> Any:
    """The S3 endpoint of the tests reused from test_s3.py: here, SeaweedFS."""
    return seaweedfs_server


@pytest.fixture
def aws_session(seaweedfs_session: Any) -> Any:
    """The session of the reused tests: SeaweedFS's keys."""
    return seaweedfs_session


@pytest.fixture
async def s3_bucket(seaweedfs_server: Any, seaweedfs_session: Any) -> str:
    """A new, empty bucket on SeaweedFS."""
    return await create_bucket(seaweedfs_server, seaweedfs_session)


def _storage(server: Any, bucket: str, session: Any) -> S3Storage:
    return S3Storage(bucket, session=session, **server.client_kwargs())


async def test_racing_creates_have_exactly_one_winner(
    s3_bucket: str, seaweedfs_server: Any, seaweedfs_session: Any
) -> None:
    """``If-None-Match: *`` in many requests at once: one write lands per key.

    SeaweedFS checked this condition before storing, without a lock, until
    4.17; the contract's counter test races six writers on ``If-Match``.
    """
    won: dict[str, list[bytes]] = {}
    async with _storage(seaweedfs_server, s3_bucket, seaweedfs_session) as storage:

        async def create(key: str, data: bytes) -> None:
            try:
                await storage.write(key, data, if_version=None)
            except VersionConflict:
                return
            won.setdefault(key, []).append(data)

        keys = [f"k{i}" for i in range(10)]
        async with anyio.create_task_group() as tg:
            for key in keys:
                for writer in range(12):
                    tg.start_soon(create, key, f"{key}-{writer}".encode())
        for key in keys:
            assert len(won[key]) == 1, (key, won[key])
            stored = await storage.read(key)
            assert stored is not None
            assert stored.data == won[key][0]


async def test_interleaved_writers_never_lose_an_update(
    s3_bucket: str, seaweedfs_server: Any, seaweedfs_session: Any
) -> None:
    """Two storages (two clients, as two processes would have) append to one list."""
    rounds = 25

    async def appender(name: str, storage: S3Storage) -> None:
        for i in range(rounds):
            while True:
                stored = await storage.read("log")
                assert stored is not None
                try:
                    await storage.write(
                        "log", stored.data + f"{name}{i};".encode(), if_version=stored.version
                    )
                except VersionConflict:
                    continue
                break

    async with (
        _storage(seaweedfs_server, s3_bucket, seaweedfs_session) as a,
        _storage(seaweedfs_server, s3_bucket, seaweedfs_session) as b,
    ):
        await a.write("log", b"", if_version=None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(appender, "a", a)
            tg.start_soon(appender, "b", b)
        stored = await b.read("log")
    assert stored is not None
    entries = stored.data.decode().split(";")[:-1]
    assert sorted(entries) == sorted(
        [f"a{i}" for i in range(rounds)] + [f"b{i}" for i in range(rounds)]
    )


def test_the_reused_tests_talk_to_seaweedfs(moto_server: Any, seaweedfs_server: Any) -> None:
    assert moto_server is seaweedfs_server
    assert moto_server.name.startswith("seaweedfs-")
