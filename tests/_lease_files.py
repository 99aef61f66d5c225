"""Look at or change a ``FileLockManager`` lease record behind the managers' backs.

As another process would: inside the key's critical section (the record
file's ``flock``), writing one slot in place, the way the managers do.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from typing import Any

from durable_state.locks import file as lease_files


def read_record(path: str) -> dict[str, Any] | None:
    """The newest record's fields (``owner``, ``token``, ``expires_at``, ...); ``None`` if none."""
    try:
        with open(path, "rb") as f:
            found = lease_files._decode(f.read(), path)
    except FileNotFoundError:
        return None
    return None if found.record is None else dataclasses.asdict(found.record)


def change_record(path: str, **changes: Any) -> None:
    """Write the newest record with ``changes`` (a changed token as an acquisition)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = lease_files._decode(os.pread(fd, lease_files._FILE_SIZE, 0), path)
        assert found.settled, f"no record to change in {path}"
        assert found.record is not None, f"no record to change in {path}"
        record = dataclasses.replace(found.record, **changes)
        acquired = record.token != found.record.token
        slot = lease_files._encode_slot(record, found.seq + 1, acquired=acquired)
        os.pwrite(fd, slot, found.offset)
    finally:
        os.close(fd)
