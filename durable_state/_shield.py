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
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

__all__ = ("BodyCanceller", "shielded")

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
                await _done_or_timeout(task, remaining)
            except asyncio.CancelledError as exc:
                interrupted = exc
        if not task.done():
            # Cancelled for running out of time: give it a moment to unwind.
            try:
                await _done_or_timeout(task, 1.0)
            except asyncio.CancelledError as exc:
                interrupted = exc
    if interrupted is not None:
        if task.done() and not task.cancelled() and task.exception() is not None:
            interrupted.__context__ = task.exception()
        raise interrupted
    if not task.done() or task.cancelled():
        raise TimeoutError(f"gave up after {within:g} s")
    return task.result()


async def _done_or_timeout(task: asyncio.Task[Any], seconds: float) -> None:
    """Return once ``task`` is done or ``seconds`` have passed.

    ``asyncio.wait((task,), timeout=seconds)`` for one task, without its
    sets and its second future (it is on the path of every release): a
    cancellation of the caller propagates, and ``task`` goes on.
    """
    loop = task.get_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(seconds, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)


class BodyCanceller:
    """Cancels the task that made it, from another task, and tells whether that ended it.

    A lease's renewal runs in a task of its own; when it finds the lease lost
    it must cancel the body that relies on the lease. On Python 3.11+ this
    is asyncio's own ``Task.cancel()``, matched at the exit by
    ``Task.uncancel()``, so that an outer cancellation arriving meanwhile (an
    ``asyncio.timeout``) still goes through: it costs nothing while nothing
    is lost. On 3.10, which cannot count cancellations, an anyio cancel
    scope does the same.

    Must be made and :meth:`exit`-ed in the body's task.
    """

    __slots__ = ("_cancelled", "_done", "_scope", "_task")

    def __init__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a BodyCanceller needs a running task")
        self._task = task
        self._cancelled = False
        self._done = False
        self._scope: anyio.CancelScope | None = None
        if not _COUNTS_CANCELLATIONS:  # pragma: no cover - Python 3.10
            self._scope = anyio.CancelScope()
            self._scope.__enter__()

    def cancel(self) -> None:
        """Cancel the body (once); a no-op once it has ended.

        Called from the body's own task, it does nothing: the body found the
        loss itself and raises it.
        """
        if self._done or self._cancelled:
            return
        if self._scope is not None:  # pragma: no cover - Python 3.10
            self._scope.cancel()
            return
        if asyncio.current_task() is self._task:
            return
        self._cancelled = True
        self._task.cancel("the lease was lost")

    def exit(self, exc_type: type[BaseException] | None) -> bool:
        """End the body; True when its cancellation was this canceller's and nobody else's."""
        self._done = True
        if self._scope is not None:  # pragma: no cover - Python 3.10
            exc = exc_type() if exc_type is not None else None
            return bool(self._scope.__exit__(exc_type, exc, None))
        if not self._cancelled:
            return False
        if sys.version_info >= (3, 11):
            others = self._task.uncancel()
        else:  # pragma: no cover - Python 3.10 uses the scope above
            others = 0
        return others == 0 and exc_type is not None and issubclass(exc_type, asyncio.CancelledError)


_COUNTS_CANCELLATIONS = sys.version_info >= (3, 11)
