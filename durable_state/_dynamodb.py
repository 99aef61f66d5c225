"""The layout of durable_state's DynamoDB table, shared by the lock manager and the storage.

One table serves both :class:`~durable_state.locks.DynamoDBLockManager` and
:class:`~durable_state.storage.DynamoDBStorage`: partition key ``id`` (S),
DynamoDB's TTL enabled on ``expireAt`` (durable-x-state's table), and one
sparse global secondary index for the storage's due index. Three kinds of
item live in it, told apart by their ``id``::

    lease       id = <lock key>                        (DynamoDBLockManager)
                owner S, token N, expireAt N, released BOOL, ttl N

    snapshot    id = "state#" + <storage prefix> + <key>   (DynamoDBStorage)
                version S      the write id of the write that stored the value
                data    B      the value, when it is stored in the item
                spill   M      {bucket S, key S, sha256 S, size N}: where the
                               value is in S3, when it is too large for an item
                lease*  ...    a lease kept in the snapshot's own item (leaseOwner,
                               leaseToken, leaseUntil, leaseReleased, leaseTtl)

    due entry   id = "due#" + <due ms, 15 digits> + "#" + <storage prefix> + <key>
                dueShard S     "due#" + <storage prefix>  (the index's partition key)
                dueAt    N     the due time, epoch ms     (the index's sort key)

**TTL never touches a snapshot or a due entry**: only lease items carry
``expireAt``, and the storage never writes it. A lease kept in a snapshot's
item (the ``lease*`` attributes, for a locked step that takes the lease and
reads the snapshot in one ``UpdateItem``, then saves and releases in another)
expires by ``leaseUntil``, which TTL does not read, so that item can never be
collected while it holds state.

The storage changes a snapshot item only with ``UpdateItem`` ``SET``/``REMOVE``
of its own attributes, so attributes it does not know (a lease) survive every
save; an item with lease attributes but no ``version`` holds no value.

A lock key may be any string, so one could be spelled like a storage id
(``"state#o-1"``). Such a key still never meets a value: every write and
delete of the storage is conditional on ``attribute_not_exists(expireAt)``
(it refuses to touch a lease item), and the lock manager takes over only an
item that is absent, released or expired, which an item holding a value
never is. Keep lock keys out of ``state#`` and ``due#`` all the same: such a
lease and such a value exclude each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = (
    "DATA",
    "DUE_AT",
    "DUE_INDEX",
    "DUE_PREFIX",
    "DUE_SHARD",
    "LEASE_OWNER",
    "LEASE_RELEASED",
    "LEASE_TOKEN",
    "LEASE_TTL",
    "LEASE_UNTIL",
    "PARTITION_KEY",
    "SPILL",
    "STATE_PREFIX",
    "TTL_ATTRIBUTE",
    "VERSION",
    "bool_attr",
    "due_id",
    "due_shard",
    "float_attr",
    "int_attr",
    "parse_due_id",
    "state_id",
    "str_attr",
)

#: The table's partition key (a String).
PARTITION_KEY: Final = "id"
#: The attribute DynamoDB's TTL is enabled on (durable-x-state's name). Only
#: lease items carry it.
TTL_ATTRIBUTE: Final = "expireAt"

# -- snapshot items ------------------------------------------------------------ #

#: ``id`` of a snapshot item: this + the storage prefix + the key.
STATE_PREFIX: Final = "state#"
#: The version of the stored value: the write id of the write that stored it
#: (32 hex digits that never repeat, not even after a delete).
VERSION: Final = "version"
#: The value's bytes (Binary), when it is kept in the item.
DATA: Final = "data"
#: Where the value is in S3 (a Map), when it is too large for the item.
SPILL: Final = "spill"

#: Reserved for a lease kept in a snapshot's own item: the holder's owner id.
LEASE_OWNER: Final = "leaseOwner"
#: Reserved: the fencing token of the last acquisition (a Number).
LEASE_TOKEN: Final = "leaseToken"
#: Reserved: when that lease runs out (epoch seconds); deliberately not
#: :data:`TTL_ATTRIBUTE`, so TTL never deletes an item holding state.
LEASE_UNTIL: Final = "leaseUntil"
#: Reserved: whether that lease was given back (a Boolean).
LEASE_RELEASED: Final = "leaseReleased"
#: Reserved: that lease's duration in seconds (a Number), for ``peek``.
LEASE_TTL: Final = "leaseTtl"

# -- due entries ----------------------------------------------------------------- #

#: ``id`` of a due entry starts with this.
DUE_PREFIX: Final = "due#"
#: The sparse global secondary index over due entries (only they carry its keys).
DUE_INDEX: Final = "dueIndex"
#: The index's partition key: ``"due#" + storage prefix`` (one per storage).
DUE_SHARD: Final = "dueShard"
#: The index's sort key: the due time in epoch ms (a Number).
DUE_AT: Final = "dueAt"

_DUE_DIGITS: Final = 15


def state_id(prefix: str, key: str) -> str:
    """The ``id`` of the item holding ``key`` of a storage with ``prefix``."""
    return STATE_PREFIX + prefix + key


def due_shard(prefix: str) -> str:
    """The due index partition of a storage with ``prefix``."""
    return DUE_PREFIX + prefix


def due_id(prefix: str, due_ms: int, key: str) -> str:
    """The ``id`` of the due entry ``(due_ms, key)`` of a storage with ``prefix``."""
    return f"{DUE_PREFIX}{due_ms:0{_DUE_DIGITS}d}#{prefix}{key}"


def parse_due_id(prefix: str, item_id: str) -> tuple[int, str] | None:
    """Invert :func:`due_id`: ``(due_ms, key)``, or ``None`` if ``item_id`` is not one."""
    head = len(DUE_PREFIX)
    digits = item_id[head : head + _DUE_DIGITS]
    rest = item_id[head + _DUE_DIGITS :]
    if (
        not item_id.startswith(DUE_PREFIX)
        or not (digits.isascii() and digits.isdigit())
        or not rest.startswith("#")
    ):
        return None
    prefixed = rest[1:]
    if not prefixed.startswith(prefix) or len(prefixed) == len(prefix):
        return None
    return int(digits), prefixed[len(prefix) :]


# Attributes of an item as the low-level client returns them ({"S": ...}):
# what an item holds, or None (False) when it is missing or malformed.


def str_attr(item: Mapping[str, Any], name: str) -> str | None:
    """A string attribute (``S``)."""
    value = item.get(name)
    text = value.get("S") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else None


def float_attr(item: Mapping[str, Any], name: str) -> float | None:
    """A number attribute (``N``) as a float."""
    value = item.get(name)
    raw = value.get("N") if isinstance(value, Mapping) else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def int_attr(item: Mapping[str, Any], name: str) -> int | None:
    """A number attribute (``N``) as an int."""
    value = item.get(name)
    raw = value.get("N") if isinstance(value, Mapping) else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def bool_attr(item: Mapping[str, Any], name: str) -> bool:
    """A boolean attribute (``BOOL``); missing is False."""
    value = item.get(name)
    return bool(value.get("BOOL")) if isinstance(value, Mapping) else False
