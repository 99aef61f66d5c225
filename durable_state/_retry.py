"""One backoff rule for every retry loop: exponential, capped, with equal jitter."""

from __future__ import annotations

import random

__all__ = ("backoff",)


def backoff(attempt: int, *, initial: float, maximum: float) -> float:
    """The delay before retry number ``attempt`` (0 for the first retry), in seconds.

    The ceiling doubles with each attempt from ``initial`` up to ``maximum``;
    the delay is half the ceiling plus a random part of up to the other half
    ("equal jitter"), so that contenders spread apart instead of retrying in
    lockstep, and no delay is ever much shorter than intended.
    """
    ceiling = min(maximum, initial * 2.0 ** min(attempt, 60))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
