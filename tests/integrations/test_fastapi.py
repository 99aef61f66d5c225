"""The FastAPI integration, driven over ASGI with httpx (real files, real leases).

No ``from __future__ import annotations`` here: FastAPI resolves endpoint
annotations at run time, and the ``Annotated`` aliases are local to ``make_app``.
"""

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")
import httpx
from fastapi import FastAPI, HTTPException

from durable_state import Machine, PersistedActor, persisted_actor
from durable_state.integrations.fastapi import actor_dependency, install_error_handlers
from durable_state.storage import Storage

from .conftest import load_example


def _view(actor: PersistedActor) -> dict[str, Any]:
    snap = actor.snapshot
    return {"value": snap.value, "context": dict(snap.context), "status": snap.status}


def make_app(machine: Machine, storage: Storage, locks: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    Order = Annotated[PersistedActor, actor_dependency(machine, storage=storage, lock=locks)]
    Existing = Annotated[
        PersistedActor,
        actor_dependency(machine, storage=storage, lock=locks, create=False),
    ]
    ByOrderId = Annotated[
        PersistedActor,
        actor_dependency(machine, storage=storage, lock=locks, path_param="order_id"),
    ]
    Optimistic = Annotated[PersistedActor, actor_dependency(machine, storage=storage)]

    @app.post("/orders/{actor_id}/events")
    async def send(actor: Order, event: dict[str, Any]) -> dict[str, Any]:
        await actor.send(event)
        return _view(actor)

    @app.get("/orders/{actor_id}")
    async def show(actor: Existing) -> dict[str, Any]:
        return _view(actor)

    @app.post("/v2/orders/{order_id}/add")
    async def add(actor: ByOrderId) -> dict[str, Any]:
        await actor.send("ADD")
        return _view(actor)

    @app.post("/orders/{actor_id}/refuse")
    async def refuse(actor: Order) -> None:
        await actor.send({"type": "ADD", "by": 50})
        raise HTTPException(status_code=400, detail="refused")

    @app.post("/race/{actor_id}")
    async def race(actor: Optimistic) -> dict[str, Any]:
        # Another writer saves the same actor while this request holds it
        # (optimistic mode): this request's save must fail, and say so.
        await actor.send({"type": "ADD", "by": 1})
        async with persisted_actor(actor.actor_id, machine, storage=storage) as other:
            await other.send({"type": "ADD", "by": 100})
        return _view(actor)

    return app


@pytest.fixture
async def client(
    machine: Machine, storage: Storage, locks: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(machine, storage, locks)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _stored_context(storage: Storage, key: str) -> dict[str, Any]:
    stored = await storage.read(key)
    assert stored is not None, f"{key} was not saved"
    context: dict[str, Any] = json.loads(stored.data)["context"]
    return context


async def test_create_then_send_events(client: httpx.AsyncClient, storage: Storage) -> None:
    r1 = await client.post("/orders/o-1/events", json={"type": "ADD", "by": 2})
    assert r1.status_code == 200, r1.text
    assert r1.json() == {"value": "cart", "context": {"items": 2}, "status": "active"}
    r2 = await client.post("/orders/o-1/events", json={"type": "ADD", "by": 3})
    assert r2.json()["context"] == {"items": 5}
    r3 = await client.post("/orders/o-1/events", json={"type": "CHECKOUT"})
    assert r3.json() == {"value": "paid", "context": {"items": 5}, "status": "done"}
    # Saved before the responses were sent, and readable through another route.
    assert await _stored_context(storage, "o-1") == {"items": 5}
    shown = await client.get("/orders/o-1")
    assert shown.status_code == 200
    assert shown.json()["value"] == "paid"


async def test_unknown_actor_is_404_without_creating_it(
    client: httpx.AsyncClient, storage: Storage
) -> None:
    r = await client.get("/orders/nobody")
    assert r.status_code == 404
    assert r.json() == {"error": "actor_not_found", "detail": "no such actor", "actorId": "nobody"}
    assert not await storage.exists("nobody")


async def test_bad_event_is_422_and_nothing_is_saved(
    client: httpx.AsyncClient, storage: Storage
) -> None:
    r = await client.post("/orders/o-2/events", json={"by": 1})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_event"
    assert "type" in body["detail"]
    # The endpoint raised: the newly created actor was discarded, not saved.
    assert not await storage.exists("o-2")


async def test_held_lease_is_409_and_released_after_requests(
    client: httpx.AsyncClient, locks: Any
) -> None:
    assert (await client.post("/orders/o-3/events", json={"type": "ADD"})).status_code == 200
    lease = await locks.acquire("o-3", ttl=30)
    try:
        r = await client.post("/orders/o-3/events", json={"type": "ADD"})
        assert r.status_code == 409
        assert r.headers["retry-after"] == "1"
        assert r.json() == {
            "error": "actor_busy",
            "detail": "the actor is busy with another request",
            "actorId": "o-3",
        }
        assert lease.owner not in r.text  # no host names or pids leak
    finally:
        await locks.release(lease)
    r = await client.post("/orders/o-3/events", json={"type": "ADD"})
    assert r.status_code == 200
    assert r.json()["context"] == {"items": 2}
    # The request released its lease on the way out.
    await locks.release(await locks.acquire("o-3", ttl=30))


async def test_failed_save_becomes_the_response(
    client: httpx.AsyncClient, storage: Storage
) -> None:
    assert (await client.post("/orders/o-4/events", json={"type": "ADD"})).status_code == 200
    r = await client.post("/race/o-4")
    # The endpoint returned 200 data, but its save lost the compare-and-set:
    # the client must hear about it.
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "version_conflict"
    assert await _stored_context(storage, "o-4") == {"items": 101}


async def test_endpoint_error_discards_events(client: httpx.AsyncClient, storage: Storage) -> None:
    assert (await client.post("/orders/o-5/events", json={"type": "ADD"})).status_code == 200
    r = await client.post("/orders/o-5/refuse")
    assert r.status_code == 400
    assert await _stored_context(storage, "o-5") == {"items": 1}


async def test_configurable_path_param(client: httpx.AsyncClient, storage: Storage) -> None:
    r = await client.post("/v2/orders/o-6/add")
    assert r.status_code == 200
    assert await _stored_context(storage, "o-6") == {"items": 1}
    schema = (await client.get("/openapi.json")).json()
    params = schema["paths"]["/v2/orders/{order_id}/add"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in params] == [("order_id", "path", True)]


def test_path_param_must_be_an_identifier(machine: Machine, storage: Storage) -> None:
    with pytest.raises(ValueError, match="identifier"):
        actor_dependency(machine, storage=storage, path_param="order-id")


def test_importing_integrations_imports_no_framework() -> None:
    code = (
        "import sys, durable_state.integrations\n"
        "heavy = {'fastapi', 'starlette', 'aiohttp', 'aioboto3', 'botocore'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_fastapi_raises_missing_dependency() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # as if the extra were not installed\n"
        "from durable_state.errors import MissingDependency\n"
        "try:\n"
        "    import durable_state.integrations.fastapi\n"
        "except MissingDependency as exc:\n"
        "    assert exc.extra == 'fastapi', exc.extra\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no MissingDependency')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True
    )
    assert 'pip install "durable-state[fastapi]"' in out.stdout


async def test_example_app(storage: Storage, locks: Any) -> None:
    example = load_example("fastapi_app")
    app = example.create_app(storage, locks)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        assert (await c.get("/orders/ex-1")).status_code == 404
        r = await c.post("/orders/ex-1/events", json={"type": "ADD", "by": 2})
        assert r.status_code == 200, r.text
        r = await c.post("/orders/ex-1/events", json={"type": "CHECKOUT"})
        assert r.json() == {
            "id": "ex-1",
            "state": "paid",
            "context": {"items": 2},
            "status": "done",
        }
        assert (await c.post("/orders/ex-1/events", json={"by": 2})).status_code == 422
        assert (await c.get("/orders/ex-1")).json()["state"] == "paid"
