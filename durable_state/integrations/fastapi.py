"""FastAPI integration: a request-scoped persisted actor and JSON error responses.

::

    from typing import Annotated
    from fastapi import FastAPI
    from durable_state import ActorSystem, PersistedActor
    from durable_state.integrations import send_event
    from durable_state.integrations.fastapi import actor_dependency, install_error_handlers

    system = ActorSystem([order_machine], storage=storage, lock=locks)
    app = FastAPI()
    install_error_handlers(app)
    Order = Annotated[PersistedActor, actor_dependency(system, "order")]

    @app.post("/orders/{actor_id}/events")          # one event: group-committed
    async def send(actor_id: str, event: dict) -> dict:
        result = await send_event(system, actor_id, event, machine="order")
        return {"value": result.snapshot.value}

    @app.post("/orders/{actor_id}/checkout")        # a body of several steps
    async def checkout(actor: Order) -> dict:
        await actor.send("CHECKOUT")
        return {"value": actor.snapshot.value}

The dependency opens the actor (lease, load) before the endpoint runs and
saves it (compare-and-set, then release) after the endpoint returns. An
endpoint that raises, ``HTTPException`` included, discards its events.
Requests for one actor in one process take turns in arrival order (the
system's queue), so none of them fails because another one holds the lease.
:func:`~durable_state.integrations.send_event` is the cheaper path for a
single event: concurrent events for one actor share one load and one save.

When the save runs. FastAPI runs the exit code of a ``yield`` dependency
*after the response has been sent* by default (since FastAPI 0.118), so a
failed save there could not change the response: the client would see a
success for a write that was lost. The dependency is therefore declared with
``Depends(..., scope="function")`` (FastAPI 0.121 and later), which runs the
save after the endpoint returns but before the response is sent: a
:class:`~durable_state.errors.VersionConflict`, a lost lease or a storage
failure becomes the error response. FastAPI 0.106 to 0.117 ran every exit
before sending and is accepted as is; other versions are refused with an
explanation (open the actor with ``async with persisted_actor(...)`` inside
the endpoint instead).

Needs the ``fastapi`` extra: ``pip install "durable-state[fastapi]"``.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependency

try:
    import fastapi
    from fastapi.responses import JSONResponse
except ImportError as _missing:  # the extra is not installed
    raise MissingDependency("durable_state.integrations.fastapi", "fastapi") from _missing

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
    from ..locks import LockManager
    from ..storage import Storage

__all__ = ("actor_dependency", "durable_state_error_handler", "install_error_handlers")

logger: logging.Logger = logging.getLogger("durable_state.integrations")


def actor_dependency(
    target: ActorSystem | Machine,
    machine: Machine | str | None = None,
    *,
    storage: Storage | None = None,
    lock: LockManager | None = None,
    path_param: str = "actor_id",
    create: bool = True,
    input: Any = None,
    options: SessionOptions | None = None,
    **overrides: Unpack[SessionArgs],
) -> Any:
    """A FastAPI dependency that holds the persisted actor named by a path parameter.

    Use the result as a default value or in ``Annotated``::

        Order = Annotated[PersistedActor, actor_dependency(system, "order")]

        @app.post("/orders/{actor_id}/events")
        async def send(actor: Order, event: dict) -> dict: ...

    The path parameter is declared by the dependency (a string, documented
    in the OpenAPI schema), so the endpoint need not repeat it. The actor is
    opened with :meth:`ActorSystem.actor <durable_state.ActorSystem.actor>`;
    it is saved after the endpoint returns and before the response is sent
    (see the module docs), and discarded if the endpoint raises. Install
    :func:`install_error_handlers` so that a busy or missing actor, a bad
    event or a failed save become JSON error responses.

    Args:
        target: the :class:`~durable_state.ActorSystem` to serve, or a machine
            (then give ``storage`` and, optionally, ``lock`` and options: a
            system of that one machine is made).
        machine: with a system, the machine (or machine id) of new actors;
            ``None`` takes the one the stored snapshot names.
        storage: with a machine: where snapshots are kept.
        lock: with a machine: a lock manager, or ``None`` for optimistic mode.
        path_param: the name of the path parameter that holds the actor id.
        create: create a missing actor; when False a missing actor is a 404.
        input: machine input for a newly created actor.
        options: with a machine: the session options.
        **overrides: session options (``locking``, ``lock_ttl``, ``lock_wait``
            ...; see :class:`~durable_state.SessionOptions`).

    Returns:
        A ``fastapi.params.Depends`` that yields a
        :class:`~durable_state.PersistedActor`.

    Raises:
        ValueError: ``path_param`` is not a valid identifier.
        TypeError: a system together with storage, lock or options.
        RuntimeError: the installed FastAPI would save after the response is
            sent (see the module docs).
    """
    if not path_param.isidentifier():
        raise ValueError(f"path_param must be a Python identifier, not {path_param!r}")
    system, session_args = system_of(
        target, storage=storage, lock=lock, options=options, overrides=overrides
    )
    chosen = machine if machine is not None else (target if isinstance(target, Machine) else None)

    async def dependency(**params: str) -> AsyncIterator[PersistedActor]:
        async with system.actor(
            params[path_param], chosen, input=input, create=create, **session_args
        ) as actor:
            yield actor

    # FastAPI reads a dependency's parameters from its signature; this one
    # takes a path parameter whose name is only known now.
    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # a function attribute inspect honours
        [
            inspect.Parameter(
                path_param,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=str,
                default=fastapi.Path(description="The actor's id."),
            )
        ]
    )
    return _depends_before_response(dependency)


def _depends_before_response(dependency: Any) -> Any:
    """``Depends(dependency)`` whose exit code runs before the response is sent."""
    if "scope" in inspect.signature(fastapi.Depends).parameters:
        return fastapi.Depends(dependency, scope="function")
    if (0, 106) <= _version(fastapi.__version__) < (0, 118):
        return fastapi.Depends(dependency)
    raise RuntimeError(
        f"FastAPI {fastapi.__version__} runs the exit code of yield dependencies after "
        "the response is sent, so a failed save could not turn into an error response. "
        "Use FastAPI >= 0.121, or open the actor with `async with persisted_actor(...)` "
        "inside the endpoint."
    )


def _version(text: str) -> tuple[int, int]:
    parts = [*text.split("."), "0", "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return (0, 0)


async def durable_state_error_handler(request: fastapi.Request, exc: Exception) -> fastapi.Response:
    """Answer a durable_state error with its status and JSON body (unhandled events: 409).

    See :mod:`durable_state.integrations` for the table (404 for a missing
    actor, 409 for a busy actor or a version conflict, 422 for a bad event,
    503 for a lost lease or an unavailable backend).

    Returns:
        A ``JSONResponse``: ``{"error": code, "detail": message, "actorId": id}``.

    Raises:
        Exception: ``exc`` itself if it is not one of the mapped errors, so
            that FastAPI's default handling (a logged 500) applies.
    """
    return _answer(request, exc, 409)


def _answer(request: fastapi.Request, exc: Exception, unhandled_status: int) -> fastapi.Response:
    answer = http_error(exc, unhandled_status=unhandled_status)
    if answer is None:
        raise exc
    if answer.status >= 500:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, answer.status, exc)
    else:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, answer.status, exc)
    return JSONResponse(answer.body(), status_code=answer.status, headers=dict(answer.headers))


def install_error_handlers(app: fastapi.FastAPI, *, unhandled_status: int = 409) -> None:
    """Register a JSON error handler for every mapped error class.

    Handlers registered by the application for the same classes before or
    after this call replace these (FastAPI keeps the last one per class).

    Args:
        app: the application.
        unhandled_status: the status for an event the actor's state does not
            handle (:class:`~durable_state.errors.UnhandledEvent`).
    """

    async def handler(request: fastapi.Request, exc: Exception) -> fastapi.Response:
        return _answer(request, exc, unhandled_status)

    for error_class in HANDLED_ERRORS:
        app.add_exception_handler(error_class, handler)
