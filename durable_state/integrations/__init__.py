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

Importing this package imports no framework. What it holds is shared by the
web integrations: how a durable_state error becomes an HTTP response. The
mapping is one table, so FastAPI and aiohttp answer the same error with the
same status and JSON body (status, ``"error"`` code, extra header):

* ``ActorNotFound``: 404, ``actor_not_found``
* ``InvalidKey``: 400, ``invalid_actor_id``
* ``InvalidEvent``: 422, ``invalid_event``
* ``ActorStopped``: 409, ``actor_stopped``
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
from typing import Any

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
    VersionConflict,
)

__all__ = ("HANDLED_ERRORS", "HttpError", "http_error")


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
    LockTimeout,
    VersionConflict,
    LockLost,
    LockUnavailable,
    StorageUnavailable,
)

_RETRY = {"Retry-After": "1"}


def http_error(exc: BaseException) -> HttpError | None:
    """Map a durable_state error to its HTTP answer (see the module table).

    Args:
        exc: any exception.

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
