"""aiohttp integration: open the actor a request names, answer errors with JSON.

::

    from aiohttp import web
    from durable_state.integrations.aiohttp import actor_for_request, error_middleware

    async def send(request: web.Request) -> web.Response:
        event = await request.json()
        async with actor_for_request(request, machine, storage=storage, lock=locks) as actor:
            await actor.send(event)
            value = actor.snapshot.value
        return web.json_response({"value": value})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/orders/{actor_id}/events", send)

The actor is saved when the ``async with`` block ends, inside the handler and
so before the response exists: a failed save (a version conflict, a lost
lease) propagates from the block and :func:`error_middleware` turns it into
the error response. Build the response after the block.

Needs the ``aiohttp`` extra: ``pip install "durable-state[aiohttp]"``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependency

try:
    from aiohttp import web
except ImportError as exc:  # the extra is not installed
    raise MissingDependency("durable_state.integrations.aiohttp", "aiohttp") from exc

from ..persisted import Locking, PersistedActor, persisted_actor
from . import HANDLED_ERRORS, http_error

if TYPE_CHECKING:
    from .._clock import Clock
    from ..locks import LockManager
    from ..statechart import Machine
    from ..storage import Storage

__all__ = ("actor_for_request", "error_middleware", "install_error_handlers")

logger = logging.getLogger("durable_state.integrations")


@asynccontextmanager
async def actor_for_request(
    request: web.Request,
    machine: Machine,
    *,
    storage: Storage,
    lock: LockManager | None = None,
    match_info: str = "actor_id",
    locking: Locking = "read-write",
    lock_ttl: float = 900.0,
    lock_wait: float | None = None,
    create: bool = True,
    input: Any = None,
    clock: Clock | None = None,
    processed_limit: int = 100,
) -> AsyncIterator[PersistedActor]:
    """Hold the persisted actor whose id is in the request's URL.

    :func:`~durable_state.persisted_actor` for the id found in
    ``request.match_info[match_info]``: the lease is taken and the actor loaded
    on entry; on a normal exit it is saved (compare-and-set) and the lease
    released; an exception in the block discards its events.

    Args:
        request: the request; its route must have a ``{match_info}`` part.
        machine: the machine the actors run.
        storage: where snapshots are kept (created once, shared by requests).
        lock: a lock manager, or ``None`` for optimistic compare-and-set only.
        match_info: the name of the URL part that holds the actor id.
        locking: ``"read-write"``, ``"write"`` or ``None``.
        lock_ttl: lease duration in seconds (renewed while the block runs).
        lock_wait: how long to wait for a held lease (``None``: fail at once).
        create: create a missing actor; when False a missing actor raises
            :class:`~durable_state.errors.ActorNotFound` (a 404).
        input: machine input for a newly created actor.
        clock: the clock for timers (default: wall clock).
        processed_limit: how many recent event ids are remembered.

    Yields:
        The loaded :class:`~durable_state.PersistedActor`.

    Raises:
        LookupError: the route has no ``{match_info}`` part.
        LockTimeout: the actor is held by another request (a 409).
        ActorNotFound: the actor does not exist and ``create`` is False.
        VersionConflict: another writer saved first; nothing was written.
        LockLost: the lease was lost; nothing was written.
        Exception: as :func:`~durable_state.persisted_actor`.
    """
    try:
        actor_id = request.match_info[match_info]
    except KeyError:
        raise LookupError(
            f"the route {request.match_info.route.resource!r} has no {{{match_info}}} part"
        ) from None
    async with persisted_actor(
        actor_id,
        machine,
        storage=storage,
        lock=lock,
        locking=locking,
        lock_ttl=lock_ttl,
        lock_wait=lock_wait,
        input=input,
        create=create,
        clock=clock,
        processed_limit=processed_limit,
    ) as actor:
        yield actor


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer durable_state errors with their status and JSON body.

    See :mod:`durable_state.integrations` for the table (404 for a missing
    actor, 409 for a busy actor or a version conflict, 422 for a bad event,
    503 for a lost lease or an unavailable backend). Other exceptions pass
    through untouched.

    Returns:
        The handler's response, or a JSON error response
        ``{"error": code, "detail": message, "actorId": id}``.

    Raises:
        Exception: whatever the handler raised that is not a mapped error.
    """
    try:
        response: web.StreamResponse = await handler(request)
    except HANDLED_ERRORS as exc:
        answer = http_error(exc)
        assert answer is not None  # every HANDLED_ERRORS class is mapped
        level = logging.WARNING if answer.status >= 500 else logging.INFO
        logger.log(level, "%s %s -> %d: %s", request.method, request.path, answer.status, exc)
        return web.json_response(answer.body(), status=answer.status, headers=answer.headers)
    return response


def install_error_handlers(app: web.Application) -> None:
    """Add :func:`error_middleware` to an application that has not started yet.

    Args:
        app: the application.

    Raises:
        RuntimeError: the application is already running (aiohttp freezes
            its middleware list on startup).
    """
    app.middlewares.append(error_middleware)
