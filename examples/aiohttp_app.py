"""An order service on aiohttp: one persisted actor per order.

Run it (with ``pip install "durable-state[aiohttp]"``)::

    DURABLE_STATE_DIR=/tmp/orders python examples/aiohttp_app.py
    curl -X POST localhost:8080/orders/o-1/events -d '{"type": "ADD", "by": 2}'
    curl localhost:8080/orders/o-1
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from durable_state import Machine, PersistedActor, assign
from durable_state.integrations.aiohttp import actor_for_request, error_middleware
from durable_state.locks import FileLockManager, LockManager
from durable_state.storage import LocalFileStorage, Storage

machine = Machine(
    {
        "id": "order",
        "initial": "cart",
        "context": {"items": 0},
        "states": {
            "cart": {
                "on": {
                    "ADD": {"actions": "add"},
                    "CHECKOUT": {"target": "paid", "guard": "has_items"},
                }
            },
            "paid": {"type": "final", "output": {"ok": True}},
        },
    },
    actions={
        "add": assign(lambda context, event: {"items": context["items"] + event.get("by", 1)})
    },
    guards={"has_items": lambda context, event: context["items"] > 0},
)


def _out(actor: PersistedActor) -> dict[str, Any]:
    snap = actor.snapshot
    return {
        "id": actor.actor_id,
        "state": snap.value,
        "context": dict(snap.context),
        "status": snap.status,
    }


def create_app(storage: Storage, locks: LockManager) -> web.Application:
    """The application, on the given storage and lock manager (closed on cleanup)."""

    async def send_event(request: web.Request) -> web.Response:
        event = await request.json()
        async with actor_for_request(
            request, machine, storage=storage, lock=locks, lock_wait=2.0
        ) as actor:
            await actor.send(event)
            body = _out(actor)
        # Built after the block: the block's exit is the save, which may fail.
        return web.json_response(body)

    async def show_order(request: web.Request) -> web.Response:
        async with actor_for_request(request, machine, storage=storage, create=False) as actor:
            body = _out(actor)
        return web.json_response(body)

    async def close_locks(app: web.Application) -> AsyncIterator[None]:
        yield
        await locks.aclose()

    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(close_locks)
    app.router.add_post("/orders/{actor_id}/events", send_event)
    app.router.add_get("/orders/{actor_id}", show_order)
    return app


if __name__ == "__main__":
    root = os.environ.get("DURABLE_STATE_DIR", ".durable-state")
    web.run_app(create_app(LocalFileStorage(root), FileLockManager(root)))
