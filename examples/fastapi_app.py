"""An order service on FastAPI: one persisted actor per order.

Run it (with ``pip install "durable-state[fastapi]" uvicorn``)::

    DURABLE_STATE_DIR=/tmp/orders uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/orders/o-1/events -H 'content-type: application/json' \\
         -d '{"type": "ADD", "by": 2}'
    curl localhost:8000/orders/o-1

Snapshots and leases live in ``DURABLE_STATE_DIR`` (files, for one host);
swap in ``S3Storage`` and ``DynamoDBLockManager`` to run several hosts.

(No ``from __future__ import annotations``: FastAPI reads the endpoints'
annotations at run time, and the ``Annotated`` aliases are local to ``create_app``.)
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from durable_state import Machine, PersistedActor, assign
from durable_state.integrations.fastapi import actor_dependency, install_error_handlers
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


class EventIn(BaseModel):
    """An event: a ``type`` plus whatever fields the machine reads."""

    model_config = ConfigDict(extra="allow")
    type: str


class OrderOut(BaseModel):
    id: str
    state: Any
    context: dict[str, Any]
    status: str


def _out(actor: PersistedActor) -> OrderOut:
    snap = actor.snapshot
    return OrderOut(
        id=actor.actor_id, state=snap.value, context=dict(snap.context), status=snap.status
    )


def create_app(storage: Storage, locks: LockManager) -> FastAPI:
    """The application, on the given storage and lock manager (closed on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with locks:
            yield

    app = FastAPI(title="orders", lifespan=lifespan)
    install_error_handlers(app)
    # Writes hold the order's lease (waiting up to 2 s for a concurrent request);
    # reads take none: the compare-and-set save still guards due timers.
    Order = Annotated[
        PersistedActor, actor_dependency(machine, storage=storage, lock=locks, lock_wait=2.0)
    ]
    ExistingOrder = Annotated[
        PersistedActor, actor_dependency(machine, storage=storage, create=False)
    ]

    @app.post("/orders/{actor_id}/events")
    async def send_event(actor: Order, event: EventIn) -> OrderOut:
        await actor.send(event.model_dump())
        return _out(actor)

    @app.get("/orders/{actor_id}")
    async def show_order(actor: ExistingOrder) -> OrderOut:
        return _out(actor)

    return app


_root = os.environ.get("DURABLE_STATE_DIR", ".durable-state")
app = create_app(LocalFileStorage(_root), FileLockManager(_root))
