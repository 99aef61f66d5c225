"""The AWS clients the backends keep: one per loop, refused across threads, closed at exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from durable_state.locks import DynamoDBLockManager
from durable_state.testing import FaultProxy


@pytest.fixture
def counting_proxy(moto_server: Any) -> Iterator[FaultProxy]:
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        yield proxy


def test_module_level_backends_close_their_clients_when_asyncio_run_ends(
    moto_server: Any, unique_name: str
) -> None:
    """The Lambda pattern used from a script: no "Unclosed client session" at exit."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from durable_state import DynamoDBLockManager, S3Storage

        storage = S3Storage({unique_name!r}, endpoint_url={moto_server.url!r})
        locks = DynamoDBLockManager({unique_name!r}, endpoint_url={moto_server.url!r})

        async def main():
            client = await storage._aws.get()
            await client.create_bucket(Bucket={unique_name!r})
            await storage.write("k", b"x")
            await locks.create_table()
            await locks.release(await locks.acquire("k"))

        asyncio.run(main())
        asyncio.run(main())  # a second loop: a second pair of clients, closed too
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Unclosed" not in proc.stderr


async def test_a_second_threads_loop_is_refused_before_any_request(
    counting_proxy: FaultProxy, moto_server: Any, unique_name: str
) -> None:
    locks = DynamoDBLockManager(
        unique_name, endpoint_url=counting_proxy.url, region_name=moto_server.region
    )
    async with locks:
        await locks.create_table()
        lease = await locks.acquire("mine", ttl=60)
        before = counting_proxy.request_count
        outcome: list[BaseException | str] = []

        def other_thread() -> None:
            async def use() -> None:
                await locks.acquire("theirs", ttl=60)

            try:
                asyncio.run(use())
                outcome.append("acquired")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.to_thread(thread.join, 30)
        (result,) = outcome
        assert isinstance(result, RuntimeError)
        assert "another running event loop" in str(result)
        assert counting_proxy.request_count == before  # not one request went out
        assert await locks.peek("theirs") is None
        await locks.release(lease)


async def test_the_lease_clock_starts_after_the_client_exists(
    moto_server: Any, unique_name: str
) -> None:
    """A cold process spends its first second making a client: not out of the lease."""
    import time

    locks: DynamoDBLockManager
    seen: list[bool] = []

    def clock() -> float:
        seen.append(locks._aws.current is not None)
        return time.time()

    async with DynamoDBLockManager(unique_name, **moto_server.client_kwargs()) as maker:
        await maker.create_table()
    locks = DynamoDBLockManager(unique_name, clock=clock, **moto_server.client_kwargs())
    async with locks:
        await locks.release(await locks.acquire("k", ttl=2))
    assert seen
    assert seen[0], "the clock was read before the client existed"
