"""One aioboto3 client per backend instance, bound to the event loop that uses it.

Both AWS backends (``S3Storage``, ``DynamoDBLockManager``) keep one client for
their whole life, created on first use, so that a warm Lambda or a long-lived
worker pays for the connection pool once. An aiobotocore client belongs to the
event loop it was created on; when an instance is used from a new loop after
the old one finished (a Lambda handler that calls ``asyncio.run`` once per
invocation), the old client is closed and a new one made. A loop that is still
running elsewhere means the instance is shared between threads, which is
refused. A client passed in by the user is used as is and never closed.

It also holds what every AWS backend needs to read botocore's errors
(:func:`error_code`, :func:`http_status`, :func:`describe`) and the tuple of
driver exceptions to translate (:func:`driver_errors`), so that no
botocore type and no error-code string handling is repeated per backend.

This module imports no AWS library at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator
from typing import Any

import anyio.to_thread

from ._shield import shielded
from .errors import MissingDependency

__all__ = (
    "LoopBoundClient",
    "client_error",
    "describe",
    "driver_errors",
    "error_code",
    "error_message",
    "http_status",
    "response_of",
)

logger = logging.getLogger("durable_state.aws")

#: How long closing a client may take, shielded from cancellation.
CLOSE_TIMEOUT = 10.0


class LoopBoundClient:
    """A lazily created aioboto3 client for one service, one event loop at a time.

    Args:
        service: the service name, e.g. ``"s3"`` or ``"dynamodb"``.
        owner: the backend this client serves, for messages.
        client: a user-owned client to use instead (never closed here).
        session: an ``aioboto3.Session`` to create clients from (default: a
            new session, i.e. the default credential provider chain).
        region_name: the region for created clients.
        endpoint_url: a non-AWS endpoint for created clients (moto, LocalStack).
    """

    def __init__(
        self,
        service: str,
        *,
        owner: object,
        client: Any = None,
        session: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.service = service
        self._owner = owner
        self._user_client = client
        self._session = session
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        # An asyncio.Lock belongs to one loop: one per loop, made on demand.
        self._create_lock: asyncio.Lock | None = None
        self._create_lock_loop: asyncio.AbstractEventLoop | None = None
        # Guards the claim of the instance by a loop (threads may race for it).
        self._claim = threading.Lock()

    @property
    def owns_client(self) -> bool:
        """Whether clients are created (and closed) here rather than passed in."""
        return self._user_client is None

    @property
    def target(self) -> tuple[object, ...]:
        """What the requests reach: the user's client, or (endpoint, region)."""
        if self._user_client is not None:
            return ("client", id(self._user_client))
        return ("endpoint", self._endpoint_url, self._region_name)

    @property
    def current(self) -> Any:
        """The client created here and not yet closed, or ``None``."""
        return self._client

    async def get(self) -> Any:
        """The client for the running loop, created on first use.

        The instance is claimed for the running loop before anything is
        awaited, so a second thread's loop is refused before it could send
        a single request.

        Raises:
            RuntimeError: the instance is in use on another running loop.
            Exception: whatever creating the client raised (botocore errors);
                callers translate it into their own error family.
        """
        if self._user_client is not None:
            return self._user_client
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        stale: contextlib.AsyncExitStack | None = None
        with self._claim:
            owner = self._loop
            if owner is not None and owner is not loop:
                if owner.is_running():
                    raise RuntimeError(
                        f"{self._owner!r} is in use on another running event loop; "
                        "create one instance per event loop"
                    )
                # The old loop has finished (one asyncio.run per invocation).
                stale, self._stack, self._client = self._stack, None, None
            self._loop = loop
            if self._create_lock is None or self._create_lock_loop is not loop:
                self._create_lock = asyncio.Lock()
                self._create_lock_loop = loop
            create_lock = self._create_lock
        if stale is not None:
            await self._close_stale(stale)
        async with create_lock:
            if self._client is not None and self._loop is loop:
                return self._client
            return await self._create(loop)

    async def aclose(self) -> None:
        """Close the created client, if any; a later :meth:`get` makes a new one.

        Raises:
            Exception: whatever closing raised (botocore, aiohttp errors).
        """
        stack, self._stack = self._stack, None
        self._client, self._loop = None, None
        if stack is not None:
            await _close(stack)

    async def _create(self, loop: asyncio.AbstractEventLoop) -> Any:
        if self._session is None:
            import aioboto3

            self._session = aioboto3.Session()
        # Reading and parsing botocore's JSON models takes a tenth of a second
        # or more: done in a worker thread, so that creating the client does
        # not stall the loop (and every lease renewal on it).
        await anyio.to_thread.run_sync(_preload_models, self._session, self.service)
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                self._session.client(
                    self.service, region_name=self._region_name, endpoint_url=self._endpoint_url
                )
            )
            # A client still open when asyncio.run() ends its loop would print
            # "Unclosed client session": an async generator is what the loop
            # finalizes at shutdown (shutdown_asyncgens), and this one closes
            # the client then, unless aclose() came first.
            closer = self._close_at_shutdown(stack)
            await closer.__anext__()
            stack.push_async_callback(_finish_generator, closer)
        except BaseException:
            await _close(stack)
            raise
        self._stack, self._client, self._loop = stack, client, loop
        return client

    async def _close_at_shutdown(
        self, stack: contextlib.AsyncExitStack
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._stack is stack:
                self._stack, self._client, self._loop = None, None, None
                await _close(stack)

    async def _close_stale(self, stack: contextlib.AsyncExitStack) -> None:
        logger.debug(
            "%r: the event loop changed; replacing the %s client", self._owner, self.service
        )
        try:
            await _close(stack)
        except Exception:
            logger.debug("%r: could not close the previous client", self._owner, exc_info=True)


async def _close(stack: contextlib.AsyncExitStack) -> None:
    """Close a client's stack, whatever cancels the caller meanwhile."""
    try:
        await shielded(stack.aclose(), within=CLOSE_TIMEOUT)
    except TimeoutError:
        logger.warning("closing an AWS client took over %.0fs; gave up", CLOSE_TIMEOUT)


async def _finish_generator(generator: AsyncGenerator[None, None]) -> None:
    # Runs inside the generator's own close when the loop shuts down: then the
    # generator is already running and must not be closed again.
    if getattr(generator, "ag_running", False):
        return
    await generator.aclose()


def _preload_models(session: Any, service: str) -> None:
    """Load the data files a client of ``service`` needs into the session's cache."""
    botocore_session = getattr(session, "_session", None)
    get_component = getattr(botocore_session, "get_component", None)
    if get_component is None:
        return  # not an aioboto3 session: nothing known to preload
    try:
        loader = get_component("data_loader")
        for type_name in ("service-2", "endpoint-rule-set-1"):
            loader.load_service_model(service, type_name)
        for name in ("partitions", "endpoints", "sdk-default-configuration", "_retry"):
            loader.load_data(name)
    except Exception:
        # Only an optimisation: the client loads what it needs itself.
        logger.debug("could not preload the %s models", service, exc_info=True)


# --------------------------------------------------------------------------- #
# botocore's errors, read in one place
# --------------------------------------------------------------------------- #


def aws_errors(owner: str, client: Any) -> tuple[type[Exception], tuple[type[BaseException], ...]]:
    """What a backend catches around its calls: ``(client_error(), driver_errors())``.

    Also checks that the ``aws`` extra is there: aioboto3 is needed unless
    the caller brings its own ``client``.

    Args:
        owner: the backend's name, for the error.
        client: the user's client, or ``None``.

    Raises:
        MissingDependency: the ``aws`` extra is not installed.
    """
    try:
        caught = client_error(), driver_errors()
        if client is None:
            import aioboto3  # noqa: F401  (checked here, used when the client is made)
    except ImportError as exc:
        raise MissingDependency(owner, "aws") from exc
    return caught


def client_error() -> type[Exception]:
    """botocore's ``ClientError`` (an answer from the service).

    Raises:
        ImportError: botocore is not installed.
    """
    from botocore.exceptions import ClientError

    return ClientError  # type: ignore[no-any-return]


def driver_errors() -> tuple[type[BaseException], ...]:
    """What a driver call can raise besides ``ClientError``.

    botocore's own errors (connection, timeouts, credentials), aiohttp's, and
    OS errors: all mean the service could not be reached or did not answer.

    Raises:
        ImportError: botocore or aiohttp is not installed.
    """
    import aiohttp
    from botocore.exceptions import BotoCoreError

    return (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def response_of(exc: BaseException) -> dict[str, Any]:
    """The parsed error response a ``ClientError`` carries (``{}`` if none)."""
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else {}


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a service error, if known."""
    status = response_of(exc).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def error_code(exc: BaseException) -> str:
    """The service's error code (``"NoSuchKey"``), or ``""``."""
    code = response_of(exc).get("Error", {}).get("Code", "")
    return code if isinstance(code, str) else ""


def error_message(exc: BaseException) -> str:
    """The service's error message, or the exception's text."""
    message = response_of(exc).get("Error", {}).get("Message", "")
    return message if isinstance(message, str) and message else str(exc)


def describe(exc: BaseException) -> str:
    """One line for a log or an error: ``"Code (HTTP 403): message"`` or the exception."""
    code = error_code(exc)
    if code or response_of(exc):
        return f"{code or 'Error'} (HTTP {http_status(exc)}): {error_message(exc)}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
