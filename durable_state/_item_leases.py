"""Leases kept in a DynamoDBStorage's own snapshot items: a locked step in two requests.

With snapshots in DynamoDB (:class:`~durable_state.storage.DynamoDBStorage`)
and leases in DynamoDB (:class:`~durable_state.locks.DynamoDBLockManager`) on
the same table, an actor's lease can live in the item that holds its
snapshot (the ``lease*`` attributes of :mod:`durable_state._dynamodb`). Then a
read-write step takes two requests instead of four:

1. one conditional ``UpdateItem`` takes the lease and, with
   ``ReturnValues=ALL_NEW``, returns the snapshot it guards;
2. one conditional ``UpdateItem`` writes the new snapshot, checks the
   fencing token and the version read, and gives the lease back.

:class:`ItemLeases` is the lock manager of such leases (renewals, releases,
``peek`` and the rest of the contract work as for any lock manager), and
:func:`leases_for` is where a session decides: given a DynamoDB storage and a
DynamoDB lock manager on the same table and endpoint, every session of every
process with that configuration keeps its leases in the snapshot items, so
they all exclude each other. Lease expiry there is ``leaseUntil``, which
DynamoDB's TTL never reads: a snapshot item is never collected.

This module composes a storage with a lock manager: it lives above both.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Final

from ._aws import describe, error_code, response_of
from ._dynamodb import (
    LEASE_OWNER,
    LEASE_RELEASED,
    LEASE_TOKEN,
    LEASE_TTL,
    LEASE_UNTIL,
    TTL_ATTRIBUTE,
    bool_attr,
    float_attr,
    int_attr,
    str_attr,
)
from .errors import LockLost, LockUnavailable, StorageError
from .locks._base import BaseLockManager
from .locks._lease import Busy, Lease
from .locks.dynamodb import DynamoDBLockManager
from .storage.dynamodb import DynamoDBStorage

__all__ = ("ItemLeases", "leases_for")

_NAMES: Final = {
    "#lo": LEASE_OWNER,
    "#lt": LEASE_TOKEN,
    "#lu": LEASE_UNTIL,
    "#lr": LEASE_RELEASED,
    "#lttl": LEASE_TTL,
    "#ttl": TTL_ATTRIBUTE,
}
_FREE: Final = "(attribute_not_exists(#lo) OR #lr = :true OR #lu <= :cutoff)"
_CURRENT: Final = "#lo = :owner AND #lt = :token AND #lr = :false"
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"

#: One ItemLeases per (storage, lock manager) pair, for as long as both live.
_PAIRS: weakref.WeakKeyDictionary[DynamoDBStorage, dict[int, ItemLeases]] = (
    weakref.WeakKeyDictionary()
)


def leases_for(storage: object, lock: Any) -> Any:
    """The lock manager a session should use for ``storage``.

    :class:`ItemLeases` when ``storage`` is a DynamoDBStorage and ``lock`` a
    DynamoDBLockManager on the same table and endpoint (the snapshot items
    then hold the leases); ``lock`` itself otherwise.
    """
    if not isinstance(storage, DynamoDBStorage) or not isinstance(lock, DynamoDBLockManager):
        return lock
    if storage.table != lock.table_name or storage.endpoint != lock.endpoint:
        return lock
    pairs = _PAIRS.setdefault(storage, {})
    leases = pairs.get(id(lock))
    if leases is None or leases.lock is not lock:
        leases = pairs[id(lock)] = ItemLeases(storage, lock)
    return leases


class ItemLeases(BaseLockManager):
    """Leases in a :class:`~durable_state.storage.DynamoDBStorage`'s snapshot items.

    Takes its default TTL, clock and skew margin from the lock manager it
    stands in for. An acquisition returns the item it took (the snapshot
    with it): :meth:`taken_item` hands it to the session, which then needs
    no read; :meth:`DynamoDBStorage.write_and_release
    <durable_state.storage.DynamoDBStorage.write_and_release>` saves and
    releases in one request.

    Args:
        storage: the storage whose items hold the leases.
        lock: the lock manager on the same table it stands in for.
    """

    def __init__(self, storage: DynamoDBStorage, lock: DynamoDBLockManager) -> None:
        super().__init__(default_ttl=lock.default_ttl, clock=lock.clock)
        self.storage = storage
        self.lock = lock
        self.skew_margin = lock.skew_margin
        # The item each acquisition found, until its session takes it.
        self._taken: dict[str, Mapping[str, Any]] = {}

    def __repr__(self) -> str:
        return f"ItemLeases({self.storage!r})"

    def taken_item(self, lease: Lease) -> Mapping[str, Any] | None:
        """The item as the acquisition of ``lease`` left it (once; ``None`` after)."""
        return self._taken.pop(lease.owner, None)

    async def _connect(self, key: str) -> None:
        try:
            await self.storage.client()
        except StorageError as exc:
            raise LockUnavailable("acquire", key, str(exc)) from exc

    async def _try_acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        until = now + ttl
        outcome = await self._update(
            "acquire",
            key,
            UpdateExpression=(
                "SET #lo = :owner, #lu = :until, #lr = :false, #lttl = :ttl, "
                "#lt = if_not_exists(#lt, :seed) + :one"
            ),
            ConditionExpression=f"{_FREE} AND attribute_not_exists(#ttl)",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":until": {"N": _number(until)},
                ":ttl": {"N": _number(ttl)},
                ":false": {"BOOL": False},
                ":true": {"BOOL": True},
                ":one": {"N": "1"},
                ":seed": {"N": str(max(int(now * 1000), 0))},
                ":cutoff": {"N": _number(now - self.skew_margin)},
            },
            ReturnValues="ALL_NEW",
        )
        if isinstance(outcome, _Refused):
            item = outcome.item if outcome.item is not None else await self._get(key, "acquire")
            if item is None:
                return Busy()  # gone in between: try again
            if TTL_ATTRIBUTE in item:
                raise LockUnavailable(
                    "acquire", key, "the item is a lock manager's lease, not a snapshot"
                )
            holder, token = str_attr(item, LEASE_OWNER), int_attr(item, LEASE_TOKEN)
            held_until = float_attr(item, LEASE_UNTIL)
            if holder == owner and not bool_attr(item, LEASE_RELEASED) and token is not None:
                # Our own earlier attempt landed and its answer was lost.
                self._taken[owner] = item
                return Lease(key, owner, token, held_until or until, ttl)
            available = None if held_until is None else held_until + self.skew_margin
            return Busy(holder, held_until, available)
        token = int_attr(outcome, LEASE_TOKEN)
        if token is None:
            raise LockUnavailable("acquire", key, f"unexpected item returned: {outcome!r}")
        self._taken[owner] = outcome
        return Lease(key, owner, token, float(_number(until)), ttl)

    async def _renew(self, lease: Lease, now: float) -> Lease:
        until = now + lease.ttl
        outcome = await self._update(
            "renew",
            lease.key,
            UpdateExpression="SET #lu = :until",
            ConditionExpression=_CURRENT,
            ExpressionAttributeValues={
                **_current(lease),
                ":until": {"N": _number(until)},
            },
        )
        if isinstance(outcome, _Refused):
            raise LockLost(
                lease.key,
                owner=lease.owner,
                token=lease.token,
                reason=await self._stale(outcome, lease),
            )
        return Lease(lease.key, lease.owner, lease.token, float(_number(until)), lease.ttl)

    async def _release(self, lease: Lease, now: float) -> str | None:
        self._taken.pop(lease.owner, None)
        outcome = await self._update(
            "release",
            lease.key,
            UpdateExpression="SET #lr = :true, #lu = :now",
            ConditionExpression="#lo = :owner AND #lt = :token",
            ExpressionAttributeValues={
                ":owner": {"S": lease.owner},
                ":token": {"N": str(lease.token)},
                ":true": {"BOOL": True},
                ":now": {"N": _number(now)},
            },
        )
        return await self._stale(outcome, lease) if isinstance(outcome, _Refused) else None

    async def _abandon(self, key: str, owner: str, now: float) -> None:
        self._taken.pop(owner, None)
        await self._update(
            "release",
            key,
            UpdateExpression="SET #lr = :true",
            ConditionExpression="#lo = :owner AND #lr = :false",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":true": {"BOOL": True},
                ":false": {"BOOL": False},
            },
        )

    async def _peek(self, key: str, now: float) -> Lease | None:
        item = await self._get(key, "peek")
        if item is None or bool_attr(item, LEASE_RELEASED):
            return None
        owner, token, until = (
            str_attr(item, LEASE_OWNER),
            int_attr(item, LEASE_TOKEN),
            float_attr(item, LEASE_UNTIL),
        )
        if not owner or token is None or until is None or until <= now - self.skew_margin:
            return None
        ttl = float_attr(item, LEASE_TTL) or max(until - now, 0.0)
        return Lease(key, owner, token, until, ttl)

    async def _aclose(self) -> None:
        self._taken.clear()  # the storage and the lock manager belong to their owner

    # -- plumbing ------------------------------------------------------------- #

    async def _update(
        self, operation: str, key: str, **kwargs: Any
    ) -> Mapping[str, Any] | _Refused:
        text = " ".join(str(kwargs.get(k, "")) for k in ("UpdateExpression", "ConditionExpression"))
        names = {p: n for p, n in _NAMES.items() if p in text}
        try:
            client = await self.storage.client()
            response = await client.update_item(
                TableName=self.storage.table,
                Key=self.storage.item_key(key),
                ExpressionAttributeNames=names,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **kwargs,
            )
        except StorageError as exc:
            raise LockUnavailable(operation, key, str(exc)) from exc
        except Exception as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return _Refused(response_of(exc).get("Item"))
            if error_code(exc) or isinstance(exc, OSError) or _is_driver_error(exc):
                raise LockUnavailable(operation, key, describe(exc)) from exc
            raise
        attributes: Mapping[str, Any] = response.get("Attributes") or {}
        return attributes

    async def _get(self, key: str, operation: str) -> Mapping[str, Any] | None:
        try:
            client = await self.storage.client()
            response = await client.get_item(
                TableName=self.storage.table,
                Key=self.storage.item_key(key),
                ConsistentRead=True,
            )
        except StorageError as exc:
            raise LockUnavailable(operation, key, str(exc)) from exc
        except Exception as exc:
            if error_code(exc) or isinstance(exc, OSError) or _is_driver_error(exc):
                raise LockUnavailable(operation, key, describe(exc)) from exc
            raise
        item: Mapping[str, Any] | None = response.get("Item")
        return item

    async def _stale(self, refused: _Refused, lease: Lease) -> str:
        item = refused.item if refused.item is not None else await self._get(lease.key, "renew")
        if not item or LEASE_OWNER not in item:
            return "the lease is gone"
        owner, token = str_attr(item, LEASE_OWNER), int_attr(item, LEASE_TOKEN)
        if owner != lease.owner or token != lease.token:
            return f"the key is now leased to {owner!r} (token {token})"
        return "the lease was released"

    def _may_have_applied(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if isinstance(exc, LockUnavailable) else None
        status = (
            response_of(cause).get("ResponseMetadata", {}).get("HTTPStatusCode") if cause else None
        )
        return not (isinstance(status, int) and 400 <= status < 500)


class _Refused:
    """A condition failed; ``item`` is the item as it was (if the server said)."""

    __slots__ = ("item",)

    def __init__(self, item: Mapping[str, Any] | None) -> None:
        self.item = item


def _current(lease: Lease) -> dict[str, Any]:
    return {
        ":owner": {"S": lease.owner},
        ":token": {"N": str(lease.token)},
        ":false": {"BOOL": False},
    }


def _is_driver_error(exc: BaseException) -> bool:
    from ._aws import driver_errors

    return isinstance(exc, driver_errors())


def _number(value: float) -> str:
    return f"{value:.6f}"
