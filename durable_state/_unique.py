"""Ids that never repeat, without a system call each.

Write ids (the versions of every storage), lease owner ids and temp file
names must be unique across processes, hosts and restarts. Drawing 128 random bits for each
costs a ``getrandom`` system call, which on a busy event loop releases the
GIL and lets a worker thread take it: measured on local files, those waits
were an eighth of the event loop's time per step. Instead, 80 random bits are
drawn once per process (and again in a forked child) and a counter follows.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading

__all__ = ("unique_hex",)

_prefix: str | None = None
_pid: int | None = None
_counter = itertools.count(1)
_lock = threading.Lock()


def unique_hex() -> str:
    """32 lower-case hex digits: 80 random bits of this process, a 48-bit counter.

    Thread-safe; a forked child draws its own random part.
    """
    global _prefix, _pid
    pid = os.getpid()
    if _prefix is None or pid != _pid:
        with _lock:
            if _prefix is None or pid != _pid:
                _prefix, _pid = secrets.token_hex(10), pid
    return f"{_prefix}{next(_counter) & 0xFFFF_FFFF_FFFF:012x}"
