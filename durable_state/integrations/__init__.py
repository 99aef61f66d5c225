"""Glue between persisted actors and the places they run: web handlers, Lambda, workers.

Each integration is a module behind its own extra and imports its framework
only when the module itself is imported:

* :mod:`durable_state.integrations.fastapi` -- a request-scoped actor
  dependency and exception handlers (``pip install "durable-state[fastapi]"``);
* :mod:`durable_state.integrations.aiohttp` -- ``actor_for_request`` and an
  error middleware (``pip install "durable-state[aiohttp]"``);
* :mod:`durable_state.integrations.aws_lambda` -- an SQS batch handler with
  partial batch failures (no framework needed; S3 and DynamoDB backends need
  ``durable-state[aws]``).

Every integration takes an :class:`~durable_state.ActorSystem` (or, as
before, a machine plus storage, lock and session options, from which it
builds a system of one machine). Through the system, requests for the same
actor in one process take turns in arrival order instead of racing for the
lease, and :func:`send_event` group-commits concurrent events.

Importing this package imports no framework. What it holds is shared by the
integrations: :func:`send_event`, and how a durable_state error becomes an
HTTP response. The mapping is one table, so FastAPI and aiohttp answer the
same error with the same status and JSON body (status, ``"error"`` code,
extra header):

* ``ActorNotFound``: 404, ``actor_not_found``
* ``InvalidKey``: 400, ``invalid_actor_id``
* ``InvalidEvent``: 422, ``invalid_event``
* ``ActorStopped``: 409, ``actor_stopped``
* ``UnhandledEvent``: 409 (configurable), ``event_unhandled``: the actor's
  state does not handle the event, nothing changed
* ``LockTimeout``: 409, ``actor_busy``, ``Retry-After: 1``
* ``VersionConflict``: 409, ``version_conflict``, ``Retry-After: 1``
* ``LockLost``: 503, ``lease_lost``, ``Retry-After: 1``
* ``LockUnavailable``, ``StorageUnavailable``: 503, ``backend_unavailable``,
  ``Retry-After: 1``

A held lease is a 409 (the request conflicts with another one in flight on
the same actor; retrying later is right), not WebDAV's 423. These errors
mean nothing was saved, except a backend failure during the save itself,
whose outcome is unknown (a retry carrying the same event id is applied at
most once). The ``Retry-After`` header marks the errors a plain retry is
expected to get past. Other errors (a corrupt or incompatible snapshot, a
context that cannot be stored, a bug in an action) are server faults: they
are left to the framework's 500 handling and logging. Response bodies never
carry lease owners (host names, process ids) or stored data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
    ActorNotFound,
    ActorStopped,
    DurableStateError,
    InvalidEvent,
    InvalidKey,
    LockLost,
    LockTimeout,
    LockUnavailable,
    StorageUnavailable,
    UnhandledEvent,
    VersionConflict,
)
from ..persisted import SessionArgs, SessionOptions
from ..statechart import Machine
from ..system import ActorSystem, SendResult

if TYPE_CHECKING:
    from ..locks import LockManager
    from ..storage import Storage

__all__ = (
    "HANDLED_ERRORS",
    "HttpError",
    "http_error",
    "send_event",
    "system_of",
)


@dataclass(frozen=True)
class HttpError:
    """The HTTP answer to a durable_state error.

    Attributes:
        status: the HTTP status code.
        code: a stable, machine-readable error code (``"actor_busy"``...).
        detail: a human-readable message that reveals no internals.
        headers: extra response headers (``Retry-After``).
        actor_id: the actor the error is about, when known.
    """

    status: int
    code: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)
    actor_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": code, "detail": detail, "actorId": ...}``."""
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.actor_id is not None:
            body["actorId"] = self.actor_id
        return body


#: The error classes :func:`http_error` answers (handlers are registered for these).
HANDLED_ERRORS: tuple[type[DurableStateError], ...] = (
    ActorNotFound,
    InvalidKey,
    InvalidEvent,
    ActorStopped,
    UnhandledEvent,
    LockTimeout,
    VersionConflict,
    LockLost,
    LockUnavailable,
    StorageUnavailable,
)

_RETRY = {"Retry-After": "1"}


def http_error(exc: BaseException, *, unhandled_status: int = 409) -> HttpError | None:
    """Map a durable_state error to its HTTP answer (see the module table).

    Args:
        exc: any exception.
        unhandled_status: the status for :class:`~durable_state.errors.UnhandledEvent`.

    Returns:
        The answer, or ``None`` if ``exc`` is not one of :data:`HANDLED_ERRORS`
        (the framework's own error handling should take it).
    """
    # Most specific first: each class below is a leaf of the hierarchy, and
    # InvalidKey and ActorNotFound share StorageError with StorageUnavailable.
    if isinstance(exc, ActorNotFound):
        return HttpError(404, "actor_not_found", "no such actor", actor_id=exc.key)
    if isinstance(exc, InvalidKey):
        return HttpError(400, "invalid_actor_id", f"invalid actor id: {exc.reason}")
    if isinstance(exc, InvalidEvent):
        return HttpError(422, "invalid_event", f"invalid event: {exc.reason}")
    if isinstance(exc, ActorStopped):
        return HttpError(409, "actor_stopped", f"the actor is {exc.status}; it takes no events")
    if isinstance(exc, UnhandledEvent):
        reason = (
            "the actor has finished"
            if exc.status != "active"
            else "the actor's current state does not handle this event"
        )
        return HttpError(
            unhandled_status, "event_unhandled", f"{reason}; nothing changed", actor_id=exc.key
        )
    if isinstance(exc, LockTimeout):
        return HttpError(
            409, "actor_busy", "the actor is busy with another request", _RETRY, exc.key
        )
    if isinstance(exc, VersionConflict):
        return HttpError(
            409,
            "version_conflict",
            "the actor was changed by another request; nothing was saved",
            _RETRY,
            exc.key,
        )
    if isinstance(exc, LockLost):
        return HttpError(
            503, "lease_lost", "the actor's lease was lost; nothing was saved", _RETRY, exc.key
        )
    if isinstance(exc, LockUnavailable | StorageUnavailable):
        return HttpError(503, "backend_unavailable", "the state backend is unavailable", _RETRY)
    return None


async def send_event(
    system: ActorSystem,
    actor_id: str,
    event: Mapping[str, Any] | str,
    *,
    machine: Machine | str | None = None,
    event_id: str | None = None,
    input: Any = None,
    create: bool = True,
) -> SendResult:
    """:meth:`ActorSystem.send <durable_state.ActorSystem.send>`, for a request handler.

    Concurrent calls for one actor are group-committed. An event that the
    actor's state does not handle raises :class:`~durable_state.errors.UnhandledEvent`
    (answered 409 by the error handlers, configurable), so that a request
    that changed nothing does not look like a success.

    Returns:
        The result: applied, or a duplicate (a redelivered ``event_id``).

    Raises:
        UnhandledEvent: no transition handled the event.
        Exception: as :meth:`ActorSystem.send <durable_state.ActorSystem.send>`.
    """
    result = await system.send(
        actor_id, event, machine=machine, event_id=event_id, input=input, create=create
    )
    if result.unhandled:
        snapshot = result.snapshot
        event_type = event if isinstance(event, str) else str(event.get("type"))
        raise UnhandledEvent(actor_id, event_type, snapshot.value, snapshot.status)
    return result


def system_of(
    target: ActorSystem | Machine,
    *,
    storage: Storage | None,
    lock: LockManager | None,
    options: SessionOptions | None,
    overrides: SessionArgs,
) -> tuple[ActorSystem, SessionArgs]:
    """The system an integration serves: ``target`` itself, or a system of one machine.

    Returns:
        The system, and the session options to apply per session (when
        ``target`` is a system, ``overrides`` change its options for this
        integration's sessions only).

    Raises:
        TypeError: ``target`` is neither; or a system was given together with
            ``storage``, ``lock`` or ``options`` (they belong to the system).
    """
    if isinstance(target, ActorSystem):
        if storage is not None or lock is not None or options is not None:
            raise TypeError("storage, lock and options belong to the ActorSystem given")
        return target, overrides
    if not isinstance(target, Machine):
        raise TypeError(f"expected an ActorSystem or a Machine, not {type(target).__name__}")
    if storage is None:
        raise TypeError("a Machine needs storage= (or pass an ActorSystem)")
    system = ActorSystem([target], storage=storage, lock=lock, options=options, **overrides)
    return system, {}
