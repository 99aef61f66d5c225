"""The lease value and the argument checks every lock backend shares.

Keeping the checks in one place is what makes the backends agree: a key, TTL
or wait accepted by ``MemoryLockManager`` in a test is accepted by
``FileLockManager`` and ``DynamoDBLockManager`` in production.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import Final, Protocol

from .._keys import check_key as _check_key
from .._unique import unique_hex

__all__ = (
    "DEFAULT_TTL",
    "MAX_KEY_BYTES",
    "Busy",
    "Lease",
    "LeaseRecord",
    "check_key",
    "check_ttl",
    "check_wait",
    "new_owner",
)

#: The default lease duration in seconds (durable-x-state's lock TTL).
DEFAULT_TTL: Final = 900.0

#: The longest key, in UTF-8 bytes, that every bundled backend accepts
#: (DynamoDB's limit for a partition key).
MAX_KEY_BYTES: Final = 2048


@dataclass(frozen=True)
class Lease:
    """A time-limited, exclusive claim on a key.

    A lease is a value: renewing returns a new ``Lease`` with a later
    :attr:`expires_at` and the same :attr:`owner` and :attr:`token`.

    Attributes:
        key: the locked key.
        owner: an id unique to this acquisition (host, process id and a random
            part); renew and release succeed only while the backend still
            records this owner.
        token: the fencing token: an integer that increases on every
            acquisition of ``key`` (never reused, even after expiry or
            release). Pass it to any system the lease protects so that it can
            reject work from a holder whose lease was taken over.
        expires_at: when the lease runs out unless renewed, in epoch seconds
            on the manager's clock.
        ttl: the lease duration in seconds; each renewal extends the lease to
            ``now + ttl``.
    """

    key: str
    owner: str
    token: int
    expires_at: float
    ttl: float


@dataclass(frozen=True)
class LeaseRecord:
    """The last lease taken on a key, as a backend keeps it.

    Backends keep the record after release and expiry, so that fencing
    tokens keep increasing; :meth:`LockManager.peek` shows only a live one.

    Attributes:
        owner: the owner id of the lease (:attr:`Lease.owner`).
        token: its fencing token.
        expires_at: when it runs out, in epoch seconds.
        released: whether it was released.
    """

    owner: str
    token: int
    expires_at: float
    released: bool = False


@dataclass(frozen=True)
class Busy:
    """What a backend saw when an acquisition attempt found the key held.

    Attributes:
        holder: the current holder's owner id, when known.
        expires_at: when the current holder's lease runs out, when known.
        available_at: the earliest time (on the manager's clock) at which the
            key may become acquirable, for the backoff to aim at; ``None``
            when unknown.
    """

    holder: str | None = None
    expires_at: float | None = None
    available_at: float | None = None


_HOST_PID: tuple[int, str] | None = None  # (pid, "host:pid:") of the process that made it


def new_owner() -> str:
    """A fresh owner id: ``host:pid:`` and an id that never repeats (``durable_state._unique``).

    Unique across processes and restarts, without a system call per
    acquisition (the host name is read once per process).
    """
    global _HOST_PID
    pid = os.getpid()
    if _HOST_PID is None or _HOST_PID[0] != pid:
        # gethostname() is a syscall, not I/O that blocks; once per process.
        _HOST_PID = (pid, f"{socket.gethostname() or 'localhost'}:{pid}:")
    return _HOST_PID[1] + unique_hex()


def check_key(key: object, *, max_bytes: int = MAX_KEY_BYTES) -> bytes:
    """Validate a lock key (see :func:`durable_state._keys.check_key`).

    Raises:
        InvalidKey: ``key`` is not a str, is empty, contains NUL, is not
            encodable as UTF-8 (a lone surrogate) or is too long.
    """
    return _check_key(key, max_bytes=max_bytes, what="lock key")


def check_ttl(ttl: object, *, name: str = "ttl") -> float:
    """Validate a lease duration.

    Returns:
        ``ttl`` as a float.

    Raises:
        TypeError: ``ttl`` is not a real number.
        ValueError: ``ttl`` is not finite or not positive.
    """
    if type(ttl) is float and 0.0 < ttl < math.inf:
        return ttl  # the common case (a session passes its options' float)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {ttl!r}")
    value = float(ttl)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {ttl!r}")
    return value


def check_wait(wait: object) -> float | None:
    """Validate a ``wait`` argument (``None``: try once; ``math.inf``: no limit).

    Returns:
        ``wait`` as a float, or ``None``.

    Raises:
        TypeError: ``wait`` is neither None nor a real number.
        ValueError: ``wait`` is negative or NaN.
    """
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        raise TypeError(f"wait must be None or a number of seconds, not {wait!r}")
    value = float(wait)
    if math.isnan(value) or value < 0:
        raise ValueError(f"wait must be None or a number of seconds >= 0, not {wait!r}")
    return value


class LeaseRecordLike(Protocol):
    """What a backend records about the last lease on a key (for :func:`stale_reason`)."""

    @property
    def owner(self) -> str: ...

    @property
    def token(self) -> int: ...

    @property
    def released(self) -> bool: ...


def stale_reason(record: LeaseRecordLike | None, lease: Lease) -> str | None:
    """Why ``record`` shows that ``lease`` is no longer current, or ``None`` if it is."""
    if record is None:
        return "the lease record is gone"
    if record.owner != lease.owner or record.token != lease.token:
        return f"the key is now leased to {record.owner!r} (token {record.token})"
    if record.released:
        return "the lease was released"
    return None
