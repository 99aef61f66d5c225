"""Work that must finish even when its caller is cancelled.

Releasing a lease, abandoning a half-taken one or closing a client is
clean-up: it usually runs while a cancellation is already on its way out, and
an interrupted release leaves a key blocked for a whole lease TTL.

anyio's shielded cancel scopes stop anyio's own cancellation, but not
asyncio's: ``Task.cancel()`` (which is what ``asyncio.timeout`` and
``asyncio.wait_for`` call) throws ``CancelledError`` into whatever the task
awaits, shield or not. :func:`shielded` therefore runs the work in a task of
its own and waits for it, absorbing every cancellation of the waiting task
until the work is done (or its time is up), then delivers the cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

__all__ = ("shielded",)

T = TypeVar("T")


async def shielded(work: Coroutine[Any, Any, T], *, within: float) -> T:
    """Run ``work`` to completion in its own task, whatever happens to the caller.

    A cancellation of the caller, native (``Task.cancel()``) or anyio's, is
    held back until ``work`` has finished, then re-raised: the caller still
    ends cancelled, but only after the work is done. ``work`` is given at most
    ``within`` seconds; after that it is cancelled.

    Args:
        work: the coroutine to run (it is always awaited or closed).
        within: the longest the work may take, in seconds.

    Returns:
        What ``work`` returned, when the caller was not cancelled meanwhile.

    Raises:
        TimeoutError: ``work`` did not finish within ``within`` seconds (it was cancelled).
        asyncio.CancelledError: the caller was cancelled while the work ran.
        Exception: whatever ``work`` raised (unless the caller was cancelled).
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    deadline = loop.time() + within
    interrupted: asyncio.CancelledError | None = None
    # The anyio shield keeps anyio from re-delivering a scope's cancellation
    # on every pass of this loop; native cancellations are caught below.
    with anyio.CancelScope(shield=True):
        while not task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                task.cancel()
                break
            try:
                await asyncio.wait((task,), timeout=remaining)
            except asyncio.CancelledError as exc:
                interrupted = exc
        if not task.done():
            # Cancelled for running out of time: give it a moment to unwind.
            try:
                await asyncio.wait((task,), timeout=1.0)
            except asyncio.CancelledError as exc:
                interrupted = exc
    if interrupted is not None:
        if task.done() and not task.cancelled() and task.exception() is not None:
            interrupted.__context__ = task.exception()
        raise interrupted
    if not task.done() or task.cancelled():
        raise TimeoutError(f"gave up after {within:g} s")
    return task.result()
