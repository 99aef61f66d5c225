"""The aiohttp integration, through aiohttp's own test server and client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("aiohttp")
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from durable_state import Machine, PersistedActor, persisted_actor
from durable_state.integrations.aiohttp import (
    actor_for_request,
    error_middleware,
    install_error_handlers,
)
from durable_state.storage import Storage

from .conftest import load_example


def _view(actor: PersistedActor) -> dict[str, Any]:
    snap = actor.snapshot
    return {"value": snap.value, "context": dict(snap.context), "status": snap.status}


def make_app(machine: Machine, storage: Storage, locks: Any) -> web.Application:
    async def send(request: web.Request) -> web.Response:
        event = await request.json()
        async with actor_for_request(request, machine, storage=storage, lock=locks) as actor:
            await actor.send(event)
            view = _view(actor)
        return web.json_response(view)

    async def show(request: web.Request) -> web.Response:
        async with actor_for_request(
            request, machine, storage=storage, lock=locks, match_info="order_id", create=False
        ) as actor:
            view = _view(actor)
        return web.json_response(view)

    async def race(request: web.Request) -> web.Response:
        async with actor_for_request(request, machine, storage=storage) as actor:
            await actor.send({"type": "ADD", "by": 1})
            async with persisted_actor(actor.actor_id, machine, storage=storage) as other:
                await other.send({"type": "ADD", "by": 100})
            view = _view(actor)
        return web.json_response(view)

    async def no_id(request: web.Request) -> web.Response:
        async with actor_for_request(request, machine, storage=storage):
            pass
        return web.json_response({})

    app = web.Application()
    install_error_handlers(app)
    app.router.add_post("/orders/{actor_id}/events", send)
    app.router.add_get("/orders/{order_id}", show)
    app.router.add_post("/race/{actor_id}", race)
    app.router.add_post("/no-id", no_id)
    return app


@pytest.fixture
async def client(
    machine: Machine, storage: Storage, locks: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(machine, storage, locks))) as c:
        yield c


async def _stored_context(storage: Storage, key: str) -> dict[str, Any]:
    stored = await storage.read(key)
    assert stored is not None, f"{key} was not saved"
    context: dict[str, Any] = json.loads(stored.data)["context"]
    return context


async def test_create_then_send_events(client: TestClient[Any, Any], storage: Storage) -> None:
    r = await client.post("/orders/a-1/events", json={"type": "ADD", "by": 2})
    assert r.status == 200, await r.text()
    assert await r.json() == {"value": "cart", "context": {"items": 2}, "status": "active"}
    r = await client.post("/orders/a-1/events", json={"type": "CHECKOUT"})
    assert (await r.json())["value"] == "paid"
    assert await _stored_context(storage, "a-1") == {"items": 2}
    r = await client.get("/orders/a-1")
    assert r.status == 200
    assert (await r.json())["status"] == "done"


async def test_unknown_actor_is_404(client: TestClient[Any, Any], storage: Storage) -> None:
    r = await client.get("/orders/nobody")
    assert r.status == 404
    assert await r.json() == {
        "error": "actor_not_found",
        "detail": "no such actor",
        "actorId": "nobody",
    }
    assert not await storage.exists("nobody")


async def test_bad_event_is_422(client: TestClient[Any, Any], storage: Storage) -> None:
    r = await client.post("/orders/a-2/events", json=["ADD"])
    assert r.status == 422
    assert (await r.json())["error"] == "invalid_event"
    assert not await storage.exists("a-2")


async def test_held_lease_is_409(client: TestClient[Any, Any], locks: Any) -> None:
    lease = await locks.acquire("a-3", ttl=30)
    try:
        r = await client.post("/orders/a-3/events", json={"type": "ADD"})
        assert r.status == 409
        assert r.headers["Retry-After"] == "1"
        assert (await r.json())["error"] == "actor_busy"
    finally:
        await locks.release(lease)
    r = await client.post("/orders/a-3/events", json={"type": "ADD"})
    assert r.status == 200
    await locks.release(await locks.acquire("a-3", ttl=30))


async def test_failed_save_is_409(client: TestClient[Any, Any], storage: Storage) -> None:
    assert (await client.post("/orders/a-4/events", json={"type": "ADD"})).status == 200
    r = await client.post("/race/a-4")
    assert r.status == 409
    assert (await r.json())["error"] == "version_conflict"
    assert await _stored_context(storage, "a-4") == {"items": 101}


async def test_route_without_the_id_is_a_server_error(client: TestClient[Any, Any]) -> None:
    # A programming error, not a client error: it must not be dressed as a 4xx.
    r = await client.post("/no-id")
    assert r.status == 500


def test_error_middleware_is_the_one_installed() -> None:
    app = web.Application()
    install_error_handlers(app)
    assert list(app.middlewares) == [error_middleware]


def test_missing_aiohttp_raises_missing_dependency() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if the extra were not installed\n"
        "from durable_state.errors import MissingDependency\n"
        "try:\n"
        "    import durable_state.integrations.aiohttp\n"
        "except MissingDependency as exc:\n"
        "    assert exc.extra == 'aiohttp', exc.extra\n"
        "else:\n"
        "    raise SystemExit('no MissingDependency')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_example_app(storage: Storage, locks: Any) -> None:
    example = load_example("aiohttp_app")
    async with TestClient(TestServer(example.create_app(storage, locks))) as c:
        assert (await c.get("/orders/ex-1")).status == 404
        r = await c.post("/orders/ex-1/events", json={"type": "ADD", "by": 2})
        assert r.status == 200, await r.text()
        r = await c.post("/orders/ex-1/events", json={"type": "CHECKOUT"})
        assert await r.json() == {
            "id": "ex-1",
            "state": "paid",
            "context": {"items": 2},
            "status": "done",
        }
        assert (await c.get("/orders/ex-1")).status == 200
