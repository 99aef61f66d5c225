"""A save whose answer was lost is a save: the event is applied once.

S3 (the moto server) behind a proxy that forwards the actor's PUT, lets S3
apply it, and cuts the connection instead of answering. botocore sends the
same conditional PUT again, which now fails its own condition with 412; the
storage recognises its own write and the session succeeds. Before, the
session raised ``VersionConflict`` and the documented retry stored n = 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import MemoryLockManager
from durable_state.storage import S3Storage
from durable_state.testing import FaultProxy

COUNTER = Machine(
    {
        "id": "counter",
        "initial": "on",
        "context": {"n": 0},
        "states": {"on": {"on": {"INC": {"actions": "inc"}}}},
    },
    actions={"inc": assign(lambda context, event: {"n": context["n"] + 1})},
)


@pytest.fixture
def proxy(moto_server: Any) -> Iterator[FaultProxy]:
    host, port = moto_server.url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as running:
        yield running


@pytest.mark.parametrize("locking", ["read-write", "write", None])
@pytest.mark.parametrize("existing", [False, True], ids=["create", "update"])
async def test_one_send_with_a_lost_answer_stores_one_increment(
    proxy: FaultProxy,
    moto_server: Any,
    unique_name: str,
    locking: str | None,
    existing: bool,
) -> None:
    storage = S3Storage(unique_name, endpoint_url=proxy.url, region_name=moto_server.region)
    locks = MemoryLockManager()
    async with storage:
        client = await storage._aws.get()
        await client.create_bucket(Bucket=unique_name)
        if existing:
            async with persisted_actor("c", COUNTER, storage=storage, lock=locks) as actor:
                await actor.send("INC")
        proxy.drop_response(lambda r: r.method == "PUT" and r.path.split("?")[0].endswith("/c"))
        async with persisted_actor(
            "c",
            COUNTER,
            storage=storage,
            lock=locks,
            locking=locking,  # type: ignore[arg-type]
        ) as actor:
            await actor.send("INC")
        assert proxy.dropped == 1
        stored = await storage.read("c")
        assert stored is not None
        assert json.loads(stored.data)["context"]["n"] == (2 if existing else 1)
