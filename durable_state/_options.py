"""The options of a persisted actor session, in one place.

Every way to open a persisted actor -- :func:`~durable_state.persisted_actor`,
:class:`~durable_state.PersistedActor`, an :class:`~durable_state.ActorSystem`
and the web and Lambda integrations built on it -- takes the same options
with the same defaults. They are defined (and documented, and checked) once
here: :class:`SessionOptions` is the frozen value, :class:`SessionArgs` the
keyword arguments that override it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal, TypedDict

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ("Locking", "SessionArgs", "SessionOptions", "Unpack")

Locking = Literal["read-write", "write"] | None
"""``"read-write"`` (lease from before the read until after the save), ``"write"``
(lease only around the save) or ``None`` (no lease: compare-and-set only)."""

_LOCKING_MODES = ("read-write", "write", None)


class SessionArgs(TypedDict, total=False):
    """Keyword arguments that override :class:`SessionOptions` fields (see there)."""

    locking: Locking
    lock_ttl: float
    lock_wait: float | None
    processed_limit: int
    clock: Clock | None
    save_on_error: bool
    batch_size: int


@dataclass(frozen=True)
class SessionOptions:
    """How persisted actor sessions are run.

    Attributes:
        locking: ``"read-write"`` (the default: the lease is held from before
            the read until after the save), ``"write"`` (read without the
            lease, take it only to save) or ``None`` (no lease: the save's
            compare-and-set alone decides). Without a lock manager every
            session is optimistic, whatever this says.
        lock_ttl: the lease duration in seconds; renewed in the background
            while a session holds it (default 900, durable-x-state's).
        lock_wait: how long to wait for a lease held by someone else, in
            seconds (``None``: try once and raise ``LockTimeout``).
        processed_limit: how many recent ``event_id`` values each actor
            remembers for idempotent delivery (0: none).
        clock: the clock for timers (default: the wall clock).
        save_on_error: save the state reached so far even when the body of
            a session raised (default: discard the body's events).
        batch_size: the most events one group-committed session applies
            (:meth:`ActorSystem.send <durable_state.ActorSystem.send>`).

    Raises:
        ValueError: an option is out of range.
        TypeError: an option has the wrong type.
    """

    locking: Locking = "read-write"
    lock_ttl: float = 900.0
    lock_wait: float | None = None
    processed_limit: int = 100
    clock: Clock | None = None
    save_on_error: bool = False
    batch_size: int = 100

    def __post_init__(self) -> None:
        if self.locking not in _LOCKING_MODES:
            raise ValueError(f"locking must be 'read-write', 'write' or None, not {self.locking!r}")
        if not _number(self.lock_ttl) or not 0 < self.lock_ttl < math.inf:
            raise ValueError(
                f"lock_ttl must be a positive number of seconds, not {self.lock_ttl!r}"
            )
        if self.lock_wait is not None and (not _number(self.lock_wait) or self.lock_wait < 0):
            raise ValueError(f"lock_wait must be None or >= 0 seconds, not {self.lock_wait!r}")
        if not isinstance(self.processed_limit, int) or self.processed_limit < 0:
            raise ValueError(f"processed_limit must be an int >= 0, not {self.processed_limit!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, not {self.batch_size!r}")
        if self.clock is not None and not callable(getattr(self.clock, "now_ms", None)):
            raise TypeError(f"clock must be a Clock (with now_ms and call_at), not {self.clock!r}")

    def merged(self, **changes: Unpack[SessionArgs]) -> SessionOptions:
        """These options with some fields changed (checked again).

        Raises:
            TypeError: a name is not an option.
            ValueError: a value is out of range.
        """
        if not changes:
            return self
        # A session is opened for every step, mostly with the same options:
        # the same changes to the same options give the options made before.
        key = _key(self, changes)
        found = _MERGED.get(key) if key is not None else None
        if found is not None and found[0] is self:
            return found[1]
        unknown = set(changes) - _FIELDS
        if unknown:
            raise TypeError(f"unknown session option(s): {', '.join(sorted(unknown))}")
        merged = replace(self, **changes)
        if key is not None:
            if len(_MERGED) >= _MERGED_LIMIT:
                _MERGED.clear()
            _MERGED[key] = (self, merged)
        return merged


_FIELDS = frozenset(f.name for f in fields(SessionOptions))

# (id of the options, the changes) -> (the options, merged); see _key.
_MERGED: dict[tuple[object, ...], tuple[SessionOptions, SessionOptions]] = {}
_MERGED_LIMIT = 256
_SCALARS = (str, int, float, bool, type(None))


def _key(options: SessionOptions, changes: Mapping[str, object]) -> tuple[object, ...] | None:
    """What makes ``options.merged(**changes)`` that result, or ``None``: not cached.

    Values are told apart by type as well as value (``1`` and ``1.0`` and
    ``True`` stay apart); the options and a clock by identity (the cache
    keeps both alive, so their ids are not reused meanwhile).
    """
    parts: list[object] = [id(options)]
    for name, value in changes.items():
        kind = type(value)
        if kind in _SCALARS:
            parts.append((name, kind, value))
        elif name == "clock":
            parts.append((name, id(value)))
        else:
            return None
    return tuple(parts)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
