"""Awaiting the coroutines that actions and listeners return."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ("await_all", "close_all")

logger = logging.getLogger("durable_state.actor")


async def await_all(pending: list[Awaitable[Any]], error: Exception | None = None) -> None:
    """Await every coroutine; raise the first failure (``error`` if given) after all ran."""
    for aw in pending:
        try:
            await aw
        except Exception as exc:
            if error is None:
                error = exc
            else:
                logger.exception("another async action or listener failed as well")
    if error is not None:
        raise error


def close_all(pending: list[Awaitable[Any]]) -> None:
    """Close coroutines that will never be awaited (no "never awaited" warning)."""
    for aw in pending:
        if inspect.iscoroutine(aw):
            aw.close()
