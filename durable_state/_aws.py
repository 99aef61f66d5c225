"""One aioboto3 client per backend instance, bound to the event loop that uses it.

Both AWS backends (``S3Storage``, ``DynamoDBLockManager``) keep one client for
their whole life, created on first use, so that a warm Lambda or a long-lived
worker pays for the connection pool once. An aiobotocore client belongs to the
event loop it was created on; when an instance is used from a new loop after
the old one finished (a Lambda handler that calls ``asyncio.run`` once per
invocation), the old client is closed and a new one made. A loop that is still
running elsewhere means the instance is shared between threads, which is
refused. A client passed in by the user is used as is and never closed.

This module imports no AWS library at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio

__all__ = ("LoopBoundClient",)

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

    @property
    def owns_client(self) -> bool:
        """Whether clients are created (and closed) here rather than passed in."""
        return self._user_client is None

    @property
    def current(self) -> Any:
        """The client created here and not yet closed, or ``None``."""
        return self._client

    async def get(self) -> Any:
        """The client for the running loop, created on first use.

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
        if self._create_lock is None or self._create_lock_loop is not loop:
            self._create_lock = asyncio.Lock()
            self._create_lock_loop = loop
        async with self._create_lock:
            if self._client is not None and self._loop is loop:
                return self._client
            if self._stack is not None:
                await self._drop_client_of_other_loop()
            return await self._create(loop)

    async def aclose(self) -> None:
        """Close the created client, if any; a later :meth:`get` makes a new one.

        Raises:
            Exception: whatever closing raised (botocore, aiohttp errors).
        """
        stack, self._stack = self._stack, None
        self._client, self._loop = None, None
        if stack is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stack.aclose()

    async def _create(self, loop: asyncio.AbstractEventLoop) -> Any:
        if self._session is None:
            import aioboto3

            self._session = aioboto3.Session()
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                self._session.client(
                    self.service, region_name=self._region_name, endpoint_url=self._endpoint_url
                )
            )
        except BaseException:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stack.aclose()
            raise
        self._stack, self._client, self._loop = stack, client, loop
        return client

    async def _drop_client_of_other_loop(self) -> None:
        old_loop, stack = self._loop, self._stack
        if old_loop is not None and old_loop.is_running():
            raise RuntimeError(
                f"{self._owner!r} is in use on another running event loop; "
                "create one instance per event loop"
            )
        self._stack, self._client, self._loop = None, None, None
        if stack is None:
            return
        logger.debug(
            "%r: the event loop changed; replacing the %s client", self._owner, self.service
        )
        try:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stack.aclose()
        except Exception:
            logger.debug("%r: could not close the previous client", self._owner, exc_info=True)
