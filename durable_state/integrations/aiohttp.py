"""aiohttp integration: open the actor a request names, answer errors with JSON.

::

    from aiohttp import web
    from durable_state import ActorSystem
    from durable_state.integrations import send_event
    from durable_state.integrations.aiohttp import actor_for_request, error_middleware

    system = ActorSystem([order_machine], storage=storage, lock=locks)

    async def send(request: web.Request) -> web.Response:      # one event: group-committed
        event = await request.json()
        result = await send_event(system, request.match_info["actor_id"], event, machine="order")
        return web.json_response({"value": result.snapshot.value})

    async def checkout(request: web.Request) -> web.Response:  # a body of several steps
        async with actor_for_request(request, system, "order") as actor:
            await actor.send("CHECKOUT")
            value = actor.snapshot.value
        return web.json_response({"value": value})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/orders/{actor_id}/events", send)
    app.router.add_post("/orders/{actor_id}/checkout", checkout)

The actor is saved when the ``async with`` block ends, inside the handler and
so before the response exists: a failed save (a version conflict, a lost
lease) propagates from the block and :func:`error_middleware` turns it into
the error response. Build the response after the block.

Needs the ``aiohttp`` extra: ``pip install "durable-state[aiohttp]"``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependency

try:
    from aiohttp import web
except ImportError as _missing:  # the extra is not installed
    raise MissingDependency("durable_state.integrations.aiohttp", "aiohttp") from _missing

from ..persisted import SessionArgs, SessionOptions

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack
from ..persisted import PersistedActor
from ..statechart import Machine
from ..system import ActorSystem
from . import HANDLED_ERRORS, http_error, system_of

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

    from ..locks import LockManager
    from ..storage import Storage

__all__ = (
    "actor_for_request",
    "error_middleware",
    "install_error_handlers",
    "make_error_middleware",
)

logger: logging.Logger = logging.getLogger("durable_state.integrations")


@asynccontextmanager
async def actor_for_request(
    request: web.Request,
    target: ActorSystem | Machine,
    machine: Machine | str | None = None,
    *,
    storage: Storage | None = None,
    lock: LockManager | None = None,
    match_info: str = "actor_id",
    create: bool = True,
    input: Any = None,
    options: SessionOptions | None = None,
    **overrides: Unpack[SessionArgs],
) -> AsyncIterator[PersistedActor]:
    """Hold the persisted actor whose id is in the request's URL.

    :meth:`ActorSystem.actor <durable_state.ActorSystem.actor>` for the id
    found in ``request.match_info[match_info]``: the lease is taken and the
    actor loaded on entry; on a normal exit it is saved (compare-and-set) and
    the lease released; an exception in the block discards its events.
    Requests for one actor in one process take turns in arrival order.

    Args:
        request: the request; its route must have a ``{match_info}`` part.
        target: the :class:`~durable_state.ActorSystem` to serve, or a machine
            (then give ``storage`` and, optionally, ``lock`` and options). A
            machine makes a new system on every call, without turns between
            requests: build one system per application instead.
        machine: with a system, the machine (or id) of new actors.
        storage: with a machine: where snapshots are kept.
        lock: with a machine: a lock manager, or ``None`` for optimistic mode.
        match_info: the name of the URL part that holds the actor id.
        create: create a missing actor; when False a missing actor raises
            :class:`~durable_state.errors.ActorNotFound` (a 404).
        input: machine input for a newly created actor.
        options: with a machine: the session options.
        **overrides: session options (see :class:`~durable_state.SessionOptions`).

    Yields:
        The loaded :class:`~durable_state.PersistedActor`.

    Raises:
        LookupError: the route has no ``{match_info}`` part.
        LockTimeout: the actor is held by another process (a 409).
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
    system, session_args = system_of(
        target, storage=storage, lock=lock, options=options, overrides=overrides
    )
    chosen = machine if machine is not None else (target if isinstance(target, Machine) else None)
    async with system.actor(actor_id, chosen, input=input, create=create, **session_args) as actor:
        yield actor


def make_error_middleware(*, unhandled_status: int = 409) -> Middleware:
    """An :func:`error_middleware` with another status for unhandled events.

    Args:
        unhandled_status: the status for an event the actor's state does not
            handle (:class:`~durable_state.errors.UnhandledEvent`).

    Returns:
        The middleware.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _answer(request, handler, unhandled_status)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    return await _answer(request, handler, 409)


async def _answer(
    request: web.Request, handler: Handler, unhandled_status: int
) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except HANDLED_ERRORS as exc:
        answer = http_error(exc, unhandled_status=unhandled_status)
        assert answer is not None  # every HANDLED_ERRORS class is mapped
        level = logging.WARNING if answer.status >= 500 else logging.INFO
        logger.log(level, "%s %s -> %d: %s", request.method, request.path, answer.status, exc)
        return web.json_response(answer.body(), status=answer.status, headers=answer.headers)
    return response


def install_error_handlers(app: web.Application, *, unhandled_status: int = 409) -> None:
    """Add the error middleware to an application that has not started yet.

    Args:
        app: the application.
        unhandled_status: the status for an event the actor's state does not
            handle (:class:`~durable_state.errors.UnhandledEvent`).

    Raises:
        RuntimeError: the application is already running (aiohttp freezes
            its middleware list on startup).
    """
    app.middlewares.append(
        error_middleware
        if unhandled_status == 409
        else make_error_middleware(unhandled_status=unhandled_status)
    )
