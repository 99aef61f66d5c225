"""``DynamoDBLockManager``: leases in a DynamoDB table, one conditional write each.

The table is durable-x-state's: partition key ``id`` (a String) and TTL
enabled on ``expireAt`` (a Number, epoch seconds), so its Terraform keeps
working. An item::

    id        S     the key
    owner     S     the current (or last) holder's owner id
    token     N     the fencing token of the last acquisition
    expireAt  N     when that lease runs out (epoch seconds, microsecond digits)
    released  BOOL  whether that lease was given back

Every operation is one ``UpdateItem`` with a condition that compares the
stored attributes themselves:

* **acquire**: succeeds when the item is absent, ``released``, or
  ``expireAt <= now - skew_margin``; sets the owner and expiry and
  increments the token. ``ReturnValuesOnConditionCheckFailure=ALL_OLD``
  tells who holds the key without a second read.
* **renew**: ``SET expireAt`` if owner and token match and not released.
* **release**: ``SET released = true`` if owner and token match. The item is
  kept, not deleted, so the next acquisition continues its token.

DynamoDB's TTL deletion is never trusted for correctness: it runs lazily (AWS
documents "typically within a few days"), so an expired item may be read for
days, and conditions above treat it as free anyway. TTL only collects garbage
(released and expired items). A deletion would lose the token counter, so the
counter restarts from the acquirer's clock in epoch milliseconds
(``if_not_exists(token, now_ms) + 1``): the item cannot be deleted before its
``expireAt`` has passed, so the restarted token is larger than any token
handed out before, as long as acquisitions of one key come less than once a
millisecond on average and clocks agree to within the lease TTL.

Clock assumption: expiry compares timestamps written by one client's clock
with another client's clock. A holder stops relying on its lease at
``expires_at`` on its own clock; a contender takes over only at
``expireAt + skew_margin`` on its clock. Exclusion holds while clocks differ
by less than ``skew_margin`` (EC2, Lambda and most hosts run NTP, with skew
in milliseconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._aws import LoopBoundClient, describe, error_code, http_status, response_of
from .._dynamodb import TTL_ATTRIBUTE, bool_attr, float_attr, int_attr, str_attr
from ..errors import LockLost, LockUnavailable, MissingDependency
from ._base import BaseLockManager
from ._lease import DEFAULT_TTL, Busy, Lease

__all__ = ("DynamoDBLockManager",)

_NAMES: Final = {
    "#id": "id",
    "#owner": "owner",
    "#token": "token",
    "#exp": TTL_ATTRIBUTE,
    "#rel": "released",
    "#ttl": "ttl",
}

_ACQUIRE_UPDATE: Final = (
    "SET #owner = :owner, #exp = :exp, #rel = :false, #ttl = :ttl, "
    "#token = if_not_exists(#token, :seed) + :one"
)
_ACQUIRE_CONDITION: Final = "attribute_not_exists(#id) OR #rel = :true OR #exp <= :cutoff"
_CURRENT_CONDITION: Final = "#owner = :owner AND #token = :token AND #rel = :false"


def _number(value: float) -> str:
    """A DynamoDB Number in plain decimal notation (never an exponent)."""
    return f"{value:.6f}"


@dataclass(frozen=True)
class _Rejected:
    """A condition check failed; ``item`` is the item as it was (if reported)."""

    item: Mapping[str, Any] | None


class DynamoDBLockManager(BaseLockManager):
    """Leases in a DynamoDB table (durable-x-state's ``lockingTable`` shape).

    One client per manager, created on first use and reused across calls and
    warm Lambda invocations; used from a new event loop after the old one
    finished (one ``asyncio.run`` per invocation), the manager closes the old
    client and makes a new one. Or pass your own aioboto3 DynamoDB client,
    which :meth:`aclose` leaves open. aioboto3 is imported here, never by
    ``import durable_state``.

    Args:
        table_name: the table (partition key ``id`` of type S).
        default_ttl: the lease duration when ``ttl`` is not given (seconds).
        client: an open aioboto3 DynamoDB client to use instead of creating one.
        session: an ``aioboto3.Session`` to create the client from.
        region_name: the AWS region for the created client.
        endpoint_url: a non-AWS endpoint for the created client (DynamoDB
            Local, moto).
        clock: epoch seconds for every expiry decision (default
            :func:`time.time`).
        skew_margin: how much later than a lease's ``expireAt`` (by this
            manager's clock) the lease is taken over, in seconds; cover the
            largest clock difference between hosts sharing the table.

    Raises:
        MissingDependency: aioboto3 is not installed (the ``aws`` extra).
        TypeError: an argument has the wrong type.
        ValueError: ``table_name`` is empty, or ``default_ttl`` or
            ``skew_margin`` is out of range.

    Attributes:
        table_name: the table.
        skew_margin: the takeover margin, in seconds.
    """

    def __init__(
        self,
        table_name: str = "lockingTable",
        *,
        default_ttl: float = DEFAULT_TTL,
        client: Any = None,
        session: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], float] | None = None,
        skew_margin: float = 1.0,
    ) -> None:
        try:
            import aioboto3  # noqa: F401 - only checks that the aws extra is there
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:
            raise MissingDependency("DynamoDBLockManager", "aws") from exc
        super().__init__(default_ttl=default_ttl, clock=clock)
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty str, not {table_name!r}")
        if isinstance(skew_margin, bool) or not isinstance(skew_margin, int | float):
            raise TypeError(f"skew_margin must be a number of seconds, not {skew_margin!r}")
        if not math.isfinite(skew_margin) or skew_margin < 0:
            raise ValueError(f"skew_margin must be a finite number >= 0, not {skew_margin!r}")
        self.table_name = table_name
        self.skew_margin: float = float(skew_margin)
        self._client_error: type[Exception] = ClientError
        self._botocore_error: type[Exception] = BotoCoreError
        self._aws = LoopBoundClient(
            "dynamodb",
            owner=self,
            client=client,
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
        )

    @property
    def endpoint(self) -> tuple[object, ...]:
        """What this instance's requests reach (a client passed in, or endpoint and region)."""
        return self._aws.target

    def __repr__(self) -> str:
        return (
            f"DynamoDBLockManager({self.table_name!r}, default_ttl={self.default_ttl!r}, "
            f"skew_margin={self.skew_margin!r})"
        )

    # ------------------------------------------------------------------ #
    # Development helper
    # ------------------------------------------------------------------ #

    async def create_table(self) -> None:
        """Create the table for development and tests, if it does not exist.

        On-demand billing (PAY_PER_REQUEST), partition key ``id`` (S), TTL
        enabled on ``expireAt``; waits until the table is active. Production
        tables come from infrastructure code (``infra/``), not from here.

        Raises:
            LockUnavailable: DynamoDB refused or failed.
            RuntimeError: the manager is closed.
        """
        self._check_open()
        where = self.table_name
        client = await self._get_client("create_table", where)
        try:
            try:
                await client.create_table(
                    TableName=self.table_name,
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except self._client_error as exc:
                if error_code(exc) != "ResourceInUseException":  # it exists already
                    raise
            waiter = client.get_waiter("table_exists")
            await waiter.wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            described = await client.describe_time_to_live(TableName=self.table_name)
            status = described.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
            if status not in ("ENABLED", "ENABLING"):
                await client.update_time_to_live(
                    TableName=self.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
        except (self._client_error, self._botocore_error, OSError) as exc:
            raise LockUnavailable("create_table", where, describe(exc)) from exc

    # ------------------------------------------------------------------ #
    # The backend primitives
    # ------------------------------------------------------------------ #

    async def _try_acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | Busy:
        expires = _number(now + ttl)
        outcome = await self._update(
            "acquire",
            key,
            UpdateExpression=_ACQUIRE_UPDATE,
            ConditionExpression=_ACQUIRE_CONDITION,
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":exp": {"N": expires},
                ":ttl": {"N": _number(ttl)},
                ":false": {"BOOL": False},
                ":true": {"BOOL": True},
                ":one": {"N": "1"},
                ":seed": {"N": str(max(int(now * 1000), 0))},
                ":cutoff": {"N": _number(now - self.skew_margin)},
            },
            ReturnValues="ALL_NEW",
        )
        if not isinstance(outcome, _Rejected):
            token = int_attr(outcome, "token")
            if token is None:
                raise LockUnavailable("acquire", key, f"unexpected item returned: {outcome!r}")
            return Lease(key=key, owner=owner, token=token, expires_at=float(expires), ttl=ttl)
        item = outcome.item
        if item is None:
            # The item exists but its old image was not reported (an emulator
            # without ReturnValuesOnConditionCheckFailure): read it instead.
            item = await self._read(key)
            if item is None:
                return Busy()  # deleted in between: simply try again
        holder = str_attr(item, "owner")
        expires_at = float_attr(item, TTL_ATTRIBUTE)
        token = int_attr(item, "token")
        if holder == owner and not bool_attr(item, "released") and token is not None:
            # Our own earlier attempt landed but its response was lost (and
            # the SDK retried): the lease is ours.
            return Lease(key, owner, token, expires_at if expires_at is not None else now, ttl)
        available = None if expires_at is None else expires_at + self.skew_margin
        return Busy(holder, expires_at, available)

    async def _renew(self, lease: Lease, now: float) -> Lease:
        expires = _number(now + lease.ttl)
        outcome = await self._update(
            "renew",
            lease.key,
            UpdateExpression="SET #exp = :exp",
            ConditionExpression=_CURRENT_CONDITION,
            ExpressionAttributeValues={
                ":owner": {"S": lease.owner},
                ":token": {"N": str(lease.token)},
                ":false": {"BOOL": False},
                ":exp": {"N": expires},
            },
        )
        if isinstance(outcome, _Rejected):
            raise LockLost(
                lease.key,
                owner=lease.owner,
                token=lease.token,
                reason=_stale(await self._old_item(outcome, lease.key), lease),
            )
        return Lease(lease.key, lease.owner, lease.token, float(expires), lease.ttl)

    async def _release(self, lease: Lease, now: float) -> str | None:
        # expireAt moves to now as well, so that the item reads as expired to
        # anything that looks only at expireAt, and TTL may collect it.
        outcome = await self._update(
            "release",
            lease.key,
            UpdateExpression="SET #rel = :true, #exp = :now",
            ConditionExpression="#owner = :owner AND #token = :token",
            ExpressionAttributeValues={
                ":owner": {"S": lease.owner},
                ":token": {"N": str(lease.token)},
                ":true": {"BOOL": True},
                ":now": {"N": _number(now)},
            },
        )
        if isinstance(outcome, _Rejected):
            return _stale(await self._old_item(outcome, lease.key), lease)
        return None

    async def _abandon(self, key: str, owner: str, now: float) -> None:
        await self._update(
            "release",
            key,
            UpdateExpression="SET #rel = :true",
            ConditionExpression="#owner = :owner AND #rel = :false",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":true": {"BOOL": True},
                ":false": {"BOOL": False},
            },
        )

    async def _connect(self, key: str) -> None:
        await self._get_client("acquire", key)

    async def _aclose(self) -> None:
        await self._aws.aclose()

    # ------------------------------------------------------------------ #
    # Plumbing
    # ------------------------------------------------------------------ #

    async def _get_client(self, operation: str, key: str) -> Any:
        """The client, created on first use (one per manager and event loop)."""
        try:
            return await self._aws.get()
        except (self._client_error, self._botocore_error, OSError) as exc:
            raise LockUnavailable(operation, key, describe(exc)) from exc

    async def _update(
        self, operation: str, key: str, **kwargs: Any
    ) -> Mapping[str, Any] | _Rejected:
        """One conditional UpdateItem: the new item, or the old one if rejected."""
        client = await self._get_client(operation, key)
        try:
            response = await client.update_item(
                TableName=self.table_name,
                Key={"id": {"S": key}},
                ExpressionAttributeNames=_used_names(kwargs),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **kwargs,
            )
        except self._client_error as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return _Rejected(response_of(exc).get("Item"))
            raise LockUnavailable(operation, key, describe(exc)) from exc
        except (self._botocore_error, OSError) as exc:
            raise LockUnavailable(operation, key, describe(exc)) from exc
        attributes: Mapping[str, Any] = response.get("Attributes") or {}
        return attributes

    async def _old_item(self, rejected: _Rejected, key: str) -> Mapping[str, Any] | None:
        """The item a refused write found: from the refusal, else read (emulators omit it)."""
        if rejected.item is not None:
            return rejected.item
        return await self._read(key, operation="renew")

    async def _peek(self, key: str, now: float) -> Lease | None:
        item = await self._read(key, operation="peek")
        if item is None or bool_attr(item, "released"):
            return None
        owner = str_attr(item, "owner")
        token = int_attr(item, "token")
        expires_at = float_attr(item, TTL_ATTRIBUTE)
        if owner is None or token is None or expires_at is None:
            return None
        # The acquire condition's test: taken over once expireAt <= now - skew.
        if expires_at <= now - self.skew_margin:
            return None
        ttl = float_attr(item, "ttl") or max(expires_at - now, 0.0)
        return Lease(key, owner, token, expires_at, ttl)

    async def _read(self, key: str, operation: str = "acquire") -> Mapping[str, Any] | None:
        client = await self._get_client(operation, key)
        try:
            response = await client.get_item(
                TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True
            )
        except (self._client_error, self._botocore_error, OSError) as exc:
            raise LockUnavailable(operation, key, describe(exc)) from exc
        item: Mapping[str, Any] | None = response.get("Item")
        return item

    def _may_have_applied(self, exc: BaseException) -> bool:
        # DynamoDB answered with a client error (4xx: throttled, validation,
        # missing table): the write was certainly not applied.
        cause = exc.__cause__ if isinstance(exc, LockUnavailable) else None
        if isinstance(cause, self._client_error):
            status = http_status(cause)
            if status is not None and 400 <= status < 500:
                return False
        return True


def _used_names(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The ``#name`` placeholders an expression uses (DynamoDB rejects unused ones)."""
    text = " ".join(str(kwargs.get(k, "")) for k in ("UpdateExpression", "ConditionExpression"))
    return {placeholder: name for placeholder, name in _NAMES.items() if placeholder in text}


def _stale(item: Mapping[str, Any] | None, lease: Lease) -> str:
    """Why an item (as it was when a condition failed) shows ``lease`` is not current."""
    if not item:
        return "the lease item is gone"
    owner, token = str_attr(item, "owner"), int_attr(item, "token")
    if owner != lease.owner or token != lease.token:
        return f"the key is now leased to {owner!r} (token {token})"
    return "the lease was released"
