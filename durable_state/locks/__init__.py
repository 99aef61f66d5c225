"""Leases with fencing tokens and a background heartbeat.

A lease is an exclusive, time-limited claim on a key. Every backend honours
the contract of :class:`LockManager`: one conditional operation per acquire,
renew and release; expiry decided by comparing stored expiry times (never by
a lazy background deletion); a fencing token that increases on every
acquisition; renew and release that succeed only for the current holder.

* :class:`MemoryLockManager` -- in one process (tests, single-process apps).
* :class:`FileLockManager` -- across the processes of one host.
* :class:`DynamoDBLockManager` -- across hosts, in a DynamoDB table
  (needs the ``aws`` extra; imported lazily).

``manager.hold(key)`` keeps a lease for an ``async with`` block, renews it in
the background and cancels the block with :class:`~durable_state.errors.LockLost`
if the lease is lost.
"""

from ._hold import HeldLease as HeldLease
from ._lease import DEFAULT_TTL as DEFAULT_TTL
from ._lease import Lease as Lease
from ._lease import LeaseRecord as LeaseRecord
from ._protocol import LockManager as LockManager
from .dynamodb import DynamoDBLockManager as DynamoDBLockManager
from .file import FileLockManager as FileLockManager
from .memory import MemoryLockManager as MemoryLockManager

__all__ = (
    "DEFAULT_TTL",
    "DynamoDBLockManager",
    "FileLockManager",
    "HeldLease",
    "Lease",
    "LeaseRecord",
    "LockManager",
    "MemoryLockManager",
)
