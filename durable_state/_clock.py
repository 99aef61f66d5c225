"""Clocks: the only place where durable_state reads the time.

The statechart core never reads a clock; the shell (actors, leases) is given
one. :class:`SystemClock` is wall time on the running asyncio loop;
:class:`ManualClock` moves only when told to, so tests of timers and lease
expiry are exact and instant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ("Clock", "ManualClock", "SystemClock", "TimerHandle")


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Cancel the callback; a no-op when it already ran or was cancelled."""


@runtime_checkable
class Clock(Protocol):
    """A source of time and a scheduler of callbacks at absolute times.

    Times are epoch milliseconds (floats) for :meth:`now_ms` and
    :meth:`call_at`, epoch seconds for :meth:`time` (the unit lease expiry uses).
    Callbacks are plain synchronous callables run on the event loop; they must
    not block.
    """

    def now_ms(self) -> float:
        """The current time in epoch milliseconds."""

    def time(self) -> float:
        """The current time in epoch seconds."""

    def call_at(self, due_ms: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once the clock reaches ``due_ms`` (at once if it has)."""


class SystemClock:
    """Wall-clock time; callbacks are scheduled on the running asyncio loop."""

    def now_ms(self) -> float:
        """The wall-clock time in epoch milliseconds."""
        return time.time() * 1000.0

    def time(self) -> float:
        """The wall-clock time in epoch seconds (:func:`time.time`)."""
        return time.time()

    def call_at(self, due_ms: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the running loop once the wall clock reaches ``due_ms``.

        Raises:
            RuntimeError: no asyncio event loop is running.
        """
        loop = asyncio.get_running_loop()
        delay = max(0.0, (due_ms - self.now_ms()) / 1000.0)
        return loop.call_later(delay, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "due_ms", "seq")

    def __init__(self, due_ms: float, seq: int, callback: Callable[[], None]) -> None:
        self.due_ms = due_ms
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.due_ms, self.seq) < (other.due_ms, other.seq)


class ManualClock:
    """A clock that moves only when :meth:`advance` or :meth:`set` is awaited.

    Behaves like xstate's ``SimulatedClock``: advancing moves time forward and
    fires every callback due by the new time, in due order (ties in scheduling
    order). A callback scheduled while firing counts from the new time.

    Args:
        start_ms: the initial time in epoch milliseconds (default 0).

    Example:
        >>> clock = ManualClock(start_ms=1_000)
        >>> clock.now_ms()
        1000.0
    """

    def __init__(self, start_ms: float = 0.0) -> None:
        self._now = float(start_ms)
        self._heap: list[_ManualTimer] = []
        self._seq = itertools.count()

    def now_ms(self) -> float:
        """The clock's time in epoch milliseconds."""
        return self._now

    def time(self) -> float:
        """The clock's time in epoch seconds."""
        return self._now / 1000.0

    def call_at(self, due_ms: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` when :meth:`advance` or :meth:`set` reaches ``due_ms``.

        A callback already due fires on the next ``advance`` or ``set``.
        """
        timer = _ManualTimer(float(due_ms), next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    @property
    def pending(self) -> int:
        """How many scheduled callbacks have neither fired nor been cancelled."""
        return sum(1 for t in self._heap if not t.cancelled)

    async def advance(self, ms: float) -> None:
        """Move time forward by ``ms`` and fire everything that falls due.

        Raises:
            ValueError: if ``ms`` is negative (time never goes backwards).
        """
        if ms < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {ms} ms)")
        await self.set(self._now + ms)

    async def set(self, now_ms: float) -> None:
        """Move time forward to ``now_ms`` and fire everything that falls due.

        Time jumps to ``now_ms`` first, as xstate's ``SimulatedClock`` does:
        callbacks fire in due order (ties in scheduling order) and a timer
        scheduled by a callback counts from ``now_ms``. Between callbacks the
        event loop runs, so the work they start makes progress in order.

        Raises:
            ValueError: if ``now_ms`` is earlier than the current time.
        """
        if now_ms < self._now:
            raise ValueError(f"a clock cannot go backwards ({now_ms} < {self._now})")
        target = float(now_ms)
        self._now = target
        await asyncio.sleep(0)
        while self._heap and self._heap[0].due_ms <= target:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            timer.callback()
            # Let the callback's consequences (actor mailboxes, tasks) settle.
            for _ in range(3):
                await asyncio.sleep(0)
