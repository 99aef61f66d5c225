"""How the command line, the demo and the diagrams write values for people.

One place for each: a state value (``payment.pending``), a context
(``items=["mug"] total=8``), a span of time (``1.5 s``, ``15 min``), a moment
(``2026-11-27 22:25:11 (in 15 min)``), a delay from a config (``1.5 s``) and
the name of a pending timer (``after retry_backoff in #order.payment.declined``).
Standard library only: every surface module may use it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

__all__ = (
    "AFTER_PREFIX",
    "delay",
    "duration",
    "format_context",
    "format_value",
    "timer_name",
    "when",
)

#: The event type of an ``after`` timer is ``xstate.after.<delay>.<state id>``.
AFTER_PREFIX: Final = "xstate.after."

# Without the machine's state ids: a number (``1000``, ``1.5``) or a name
# without dots is the delay, the rest is the state id.
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")
_AFTER: Final = re.compile(re.escape(AFTER_PREFIX) + rf"({_NUMBER.pattern}|[^.]+)\.(.+)")


def format_value(value: Any) -> str:
    """A state value as dotted text: ``"cart"``, ``"payment.pending"``, ``"{a.x, b.y}"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        parts = [
            f"{key}.{format_value(sub)}" if sub not in ({}, None) else str(key)
            for key, sub in value.items()
        ]
        return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"
    return json.dumps(value)


def format_context(context: Mapping[str, Any]) -> str:
    """A context as ``key=value`` pairs (JSON values), leaving out the ``null`` ones."""
    return " ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}"
        for key, value in sorted(context.items())
        if value is not None
    )


def duration(seconds: float) -> str:
    """A span of time to the precision a reader needs: ``1.5 s``, ``15 min``, ``2.5 h``, ``3 days``.

    Negative spans keep their sign (``-1.5 s``).
    """
    if seconds < 0:
        return f"-{duration(-seconds)}"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def when(epoch_s: float, now: float) -> str:
    """A moment in local time and how far it is from ``now``: ``2026-11-27 22:00:58 (in 1.5 s)``."""
    stamp = _dt.datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S")
    delta = epoch_s - now
    if delta >= 0:
        return f"{stamp} (in {duration(delta)})"
    return f"{stamp} ({duration(-delta)} ago)"


def delay(ms: float) -> str:
    """A delay from a config, exactly, in the largest unit that keeps it short.

    ``250 ms``, ``1.5 s``, ``15 min``, ``2 h``: unlike :func:`duration`
    nothing is rounded, since the number is the one the config gives.
    """
    if ms >= 2 * 3_600_000:
        return f"{ms / 3_600_000:g} h"
    if ms >= 2 * 60_000:
        return f"{ms / 60_000:g} min"
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    return f"{ms:g} ms"


def timer_name(event_type: str, state_ids: Collection[str] = ()) -> str:
    """Name a pending timer by its delay and state: ``after retry_backoff in #order.payment``.

    An ``after`` timer's event type is ``xstate.after.<delay>.<state id>``;
    a numeric delay is written with its unit (``after 1.5 s in #m.a``). With
    the machine's ``state_ids`` the state id is matched exactly (the longest
    one that ends the event type); without them a delay is taken to be a
    number or a name without dots. Any other delayed event (``raise_event(...,
    delay=...)``) is named by its type.

    Args:
        event_type: the timer's event type.
        state_ids: the machine's state ids, when the machine is at hand.

    Returns:
        The name.
    """
    rest = event_type.removeprefix(AFTER_PREFIX)
    if rest == event_type:
        return event_type
    label: str | None = None
    state_id = ""
    for candidate in sorted(state_ids, key=len, reverse=True):
        if rest.endswith("." + candidate) and len(rest) > len(candidate) + 1:
            label, state_id = rest[: -len(candidate) - 1], candidate
            break
    if label is None:
        match = _AFTER.fullmatch(event_type)
        if match is None:
            return event_type
        label, state_id = match.group(1), match.group(2)
    shown = delay(float(label)) if _NUMBER.fullmatch(label) else label
    return f"after {shown} in #{state_id}"
