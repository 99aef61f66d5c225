"""``DynamoDBStorage``: one item per key in a DynamoDB table, compare-and-set by a version attribute.

aioboto3 (the ``aws`` extra) is imported only when a ``DynamoDBStorage`` is
constructed, so ``import durable_state`` never pulls in boto.

The table is the lock manager's (partition key ``id``, TTL on ``expireAt``;
see :mod:`durable_state._dynamodb` for every kind of item in it), plus one
sparse global secondary index, ``dueIndex``, for the due index. Items::

    snapshot   id = "state#" + prefix + key
               version  S   the write id of the write that stored the value
               data     B   the value (when it fits in the item), or
               spill    M   {bucket, key, sha256, size}: the value in S3
    due entry  id = "due#" + <due ms, 15 digits> + "#" + prefix + key
               dueShard S   "due#" + prefix    (dueIndex partition key)
               dueAt    N   due time, epoch ms  (dueIndex sort key)

**Never collected by TTL**: neither kind of item ever carries ``expireAt``,
the attribute the table's TTL reads; only the lock manager's lease items do.
A lease kept in a snapshot's own item (reserved attributes ``leaseOwner``,
``leaseToken``, ``leaseUntil``, ``leaseReleased``) expires by ``leaseUntil``,
which TTL does not read. Every write of a snapshot is one ``UpdateItem`` that
sets and removes only the attributes above, so attributes it does not know
(such a lease) are kept.

**Versions and conditions.** The version is the write id
stored in ``version``: it never repeats, not even after a delete and
re-create. A write with ``if_version=None`` is conditional on
``attribute_not_exists(version)``, with a version on ``version = :expected``;
DynamoDB checks and writes atomically. A refused write asks for the item as
it was (``ReturnValuesOnConditionCheckFailure=ALL_OLD``), which gives the
conflict's ``actual`` version and, when the item already carries this
write's id (a resend by botocore of a write whose answer was lost), tells
that the write landed, at no extra request.

**Spill to S3.** A value larger than ``spill_threshold`` (400,000 bytes by
default: the 400 KB item limit less room for the key and other attributes)
is written first as a new S3 object under a name no other write uses,
``.durable-state/spill/<hash of the item id>/<write id>`` in the ``spill``
storage; the item's conditional ``UpdateItem`` then stores a pointer to it
(bucket, key, SHA-256, size). That ``UpdateItem`` is the commit: a reader
sees the old pointer or the new one, each naming an object that was complete
before it was named. A write refused by its condition deletes its object at
once; a successful write deletes the object of the value it replaced
(``ReturnValues=UPDATED_OLD`` says which), and a delete that of the value it
deleted. Objects remain only when the outcome was never known (a write
whose answer was lost, a cancelled write, a crash between the two steps):
unreferenced objects under ``.durable-state/spill/``, safe to delete once
no item names them.

**The due index** is the sparse global secondary index ``dueIndex``
(partition key ``dueShard``, sort key ``dueAt``, keys only): every entry of
one storage is in the partition ``"due#" + prefix``, read with ``dueAt <=
now`` in ascending order, so finding what is due reads the due entries
only. Index reads are eventually consistent (on AWS typically well under a
second): a new entry may be seen one poll late and a removed one once more,
which for a hint costs a load, nothing else. One partition per storage
accepts about 1,000 entry writes a second.

**Listing** (:meth:`~DynamoDBStorage.list`) is a table scan filtered on the
id prefix: it reads the whole table (lease items included) to list a
storage's keys, so it is for administration, never for a request path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import anyio

from .._aws import (
    LoopBoundClient,
    aws_errors,
    describe,
    error_code,
    response_of,
)
from .._dynamodb import (
    DATA,
    DUE_AT,
    DUE_INDEX,
    DUE_PREFIX,
    DUE_SHARD,
    LEASE_OWNER,
    LEASE_RELEASED,
    LEASE_TOKEN,
    LEASE_UNTIL,
    PARTITION_KEY,
    SPILL,
    STATE_PREFIX,
    TTL_ATTRIBUTE,
    VERSION,
    due_id,
    due_shard,
    parse_due_id,
    state_id,
    str_attr,
)
from ..errors import (
    LockLost,
    SnapshotCorrupt,
    StorageError,
    StorageUnavailable,
    VersionConflict,
)
from ._base import new_write_id, prefix_bytes
from ._cache import CachingStorage, make_cache
from ._keys import MAX_KEY_BYTES
from ._protocol import ANY_VERSION, DueEntry, IfVersion, Stored
from .s3 import RESERVED_PREFIX, S3Storage, unwrap

__all__ = ("DEFAULT_SPILL_THRESHOLD", "MAX_PREFIX_BYTES", "DynamoDBStorage")

logger: logging.Logger = logging.getLogger("durable_state.storage")

#: Values larger than this many bytes go to S3: the 400 KB (409,600-byte)
#: item limit less room for the id (up to 1,542 bytes), the version, attribute
#: names and a lease kept in the item.
DEFAULT_SPILL_THRESHOLD: Final = 400_000
#: The longest prefix, in UTF-8 bytes (ids must stay within DynamoDB's
#: 2,048-byte partition key limit).
MAX_PREFIX_BYTES: Final = 512
#: Where spilled values live in the spill storage (below its reserved prefix).
SPILL_DIRECTORY: Final = RESERVED_PREFIX + "spill/"
#: How often a read retries when the object a pointer named was replaced.
_SPILL_READ_ATTEMPTS: Final = 5

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
#: Part of every condition the storage writes with: the item is not a lock
#: manager's lease (whose ``expireAt`` TTL reads). With the lock manager's own
#: acquire condition (the item is absent, released or expired), this keeps
#: any item from ever holding both a value and ``expireAt``, whatever lock
#: keys are used on the table.
_NOT_A_LEASE: Final = "attribute_not_exists(#ttl)"


class DynamoDBStorage(CachingStorage):
    """A :class:`~durable_state.storage.Storage` in a DynamoDB table.

    Each key is the item ``"state#" + prefix + key`` of the table (the same
    table as :class:`~durable_state.locks.DynamoDBLockManager`'s, or another
    one of the same shape); the version is a random write id kept in the
    item. Conditions are DynamoDB condition expressions, so compare-and-set
    holds across every process, host and Lambda sharing the table. The table
    must exist with the due index (Terraform in ``infra/``, or
    :meth:`create_table` for development).

    Values over ``spill_threshold`` bytes are stored in S3 through ``spill``
    and the item keeps a pointer; without ``spill`` such a write raises
    ``ValueError``. See the module documentation for the item layout.

    The client is created on first use (one per instance) and reused, as
    for :class:`~durable_state.storage.S3Storage`, including the switch to
    a new client when used from a new event loop; pass ``client`` (an open
    aiobotocore DynamoDB client) to use your own, which :meth:`aclose` leaves
    open. Credentials come from botocore's default provider chain unless
    ``session`` or ``client`` carries others.

    Cancellation: a cancelled call stops waiting at once, but its request may
    already be on its way and take effect shortly after; its condition still
    holds it to the version it was given.

    Args:
        table: the table name.
        prefix: prepended to every key inside the item id (like an S3 prefix;
            end it with a separator such as ``"/"``), at most 512 UTF-8 bytes.
        endpoint_url: another DynamoDB endpoint (DynamoDB Local, a moto server).
        region_name: the client's region (default: from the provider chain).
        client: an open aiobotocore DynamoDB client to use instead of creating one.
        session: an ``aioboto3.Session`` to create the client from.
        cache: keep a :class:`~durable_state.storage._cache.VersionCache` of
            what this instance read and wrote, for :meth:`cached_read`:
            ``True`` (1,024 entries) or a number of entries.
        spill: where values too large for an item go: an
            :class:`~durable_state.storage.S3Storage` (yours: :meth:`aclose`
            leaves it open), or ``"BUCKET"`` or ``"BUCKET/PREFIX"`` (an
            ``S3Storage`` is made with this instance's session, region and
            endpoint, and closed with it).
        spill_threshold: the largest value, in bytes, kept in the item.

    Raises:
        MissingDependency: aioboto3 is not installed (``pip install
            "durable-state[aws]"``).
        TypeError: an argument has the wrong type.
        ValueError: ``table`` is empty, ``prefix`` is too long, contains
            NUL or is not UTF-8, ``spill_threshold`` is negative, or
            ``cache`` is a number below 1.
    """

    max_key_bytes = MAX_KEY_BYTES

    def __init__(
        self,
        table: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        session: Any = None,
        cache: bool | int = False,
        spill: S3Storage | str | None = None,
        spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
    ) -> None:
        self._client_error, self._driver_errors = aws_errors("DynamoDBStorage", client)
        if not isinstance(table, str) or not table:
            raise ValueError("DynamoDBStorage needs a table name")
        if prefix_bytes(prefix) > MAX_PREFIX_BYTES:
            raise ValueError(f"the prefix may have at most {MAX_PREFIX_BYTES} UTF-8 bytes")
        if isinstance(spill_threshold, bool) or not isinstance(spill_threshold, int):
            raise TypeError(f"spill_threshold must be an int, not {spill_threshold!r}")
        if spill_threshold < 0:
            raise ValueError(f"spill_threshold must be >= 0, not {spill_threshold}")

        self.table = table
        self.prefix = prefix
        self.spill_threshold = spill_threshold
        self._cache = make_cache(cache)
        self._aws = LoopBoundClient(
            "dynamodb",
            owner=self,
            client=client,
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
        )
        self._spill: S3Storage | None
        self._owns_spill = isinstance(spill, str)
        if isinstance(spill, str):
            bucket, _, spill_prefix = spill.partition("/")
            self._spill = S3Storage(
                bucket,
                prefix=spill_prefix,
                session=session,
                region_name=region_name,
                endpoint_url=endpoint_url,
            )
        elif spill is None or isinstance(spill, S3Storage):
            self._spill = spill
        else:
            raise TypeError(f"spill must be an S3Storage or a bucket name, not {spill!r}")

    @property
    def endpoint(self) -> tuple[object, ...]:
        """What this instance's requests reach (a client passed in, or endpoint and region)."""
        return self._aws.target

    def __repr__(self) -> str:
        spill = f", spill={self._spill.bucket!r}" if self._spill is not None else ""
        return f"DynamoDBStorage(table={self.table!r}, prefix={self.prefix!r}{spill})"

    @property
    def spill(self) -> S3Storage | None:
        """The S3 storage that takes values too large for an item, if any."""
        return self._spill

    async def connect(self) -> None:
        """Create the clients now (DynamoDB, and S3 for spill) rather than on first use.

        Raises:
            StorageUnavailable: a client could not be created.
        """
        await self._get_client("connect", None)
        if self._spill is not None:
            await self._spill.connect()

    # ------------------------------------------------------------------ #
    # A lease kept in the snapshot's own item
    # ------------------------------------------------------------------ #

    async def client(self) -> Any:
        """The aiobotocore DynamoDB client this storage uses (made on first use).

        For code that keeps leases in this storage's items (see
        :meth:`item_key`); everything else goes through the storage's methods.

        Raises:
            StorageUnavailable: the client could not be created.
        """
        return await self._get_client("connect", None)

    def item_key(self, key: str) -> dict[str, Any]:
        """The DynamoDB ``Key`` of the item holding ``key`` (``{"id": {"S": ...}}``).

        Raises:
            InvalidKey: the key is not acceptable.
        """
        self._check_key(key)
        return self._key(key)

    async def stored_from_item(self, key: str, item: Mapping[str, Any]) -> Stored | None:
        """The value an item (as DynamoDB returned it) holds, or ``None`` if it holds none.

        For a read that came with another request (an ``UpdateItem`` that
        took a lease kept in the item and returned it). A spilled value is
        fetched from S3; if it was replaced meanwhile, the item is read again.

        Raises:
            SnapshotCorrupt: the item is malformed.
            StorageUnavailable: the backend failed.
        """
        if VERSION not in item:
            return None
        version = _str(item, VERSION)
        if not version:
            raise SnapshotCorrupt(key, "the item's version is not a string")
        data = await self._value(key, item)
        if data is None:  # the spilled object was replaced: read the item again
            return await self.read(key)
        stored = Stored(data, version)
        if self._cache is not None:
            self._cache.put(key, stored)
        return stored

    async def write_and_release(
        self,
        key: str,
        data: bytes,
        *,
        if_version: IfVersion,
        owner: str,
        token: int,
        now: float,
    ) -> str:
        """Write ``data`` and give back the lease kept in the item, in one request.

        The write is conditional on ``if_version`` (as :meth:`write`) and on
        the item's lease still being ``owner``'s with fencing token ``token``,
        unreleased; it then marks the lease released (``leaseUntil = now``).

        Returns:
            The new version.

        Raises:
            VersionConflict: the version condition did not hold; nothing was
                written and the lease is still held.
            LockLost: the lease is not ``owner``'s any more; nothing was written.
            StorageUnavailable: the backend failed; the item holds its old or
                its new value.
        """
        self._check_key(key)
        write_id = new_write_id()
        try:
            version = await self._write(key, data, if_version, write_id, (owner, token, now))
        except (VersionConflict, StorageUnavailable) as exc:
            landed = await self._recognise(key, write_id, exc)
            if landed is None:
                if self._cache is not None:
                    self._cache.drop(key)
                raise
            version = landed
        except BaseException:
            if self._cache is not None:
                self._cache.drop(key)
            raise
        if self._cache is not None:
            self._cache.put(key, Stored(data, version))
        return version

    # ------------------------------------------------------------------ #
    # Development helper
    # ------------------------------------------------------------------ #

    async def create_table(self) -> None:
        """Create the table with its due index for development and tests, if needed.

        On-demand billing, partition key ``id`` (S), TTL enabled on
        ``expireAt`` (so :class:`~durable_state.locks.DynamoDBLockManager`
        can share it), and the global secondary index ``dueIndex``
        (``dueShard`` S, ``dueAt`` N, keys only). An existing table (e.g.
        one the lock manager created) gets the index added. Waits until the
        table and the index are active. Production tables come from
        infrastructure code (``infra/``), not from here.

        Raises:
            StorageUnavailable: DynamoDB refused or failed, or the index did
                not become active within two minutes.
        """
        client = await self._get_client("create_table", None)
        definitions = [
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": DUE_SHARD, "AttributeType": "S"},
            {"AttributeName": DUE_AT, "AttributeType": "N"},
        ]
        index = {
            "IndexName": DUE_INDEX,
            "KeySchema": [
                {"AttributeName": DUE_SHARD, "KeyType": "HASH"},
                {"AttributeName": DUE_AT, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
        try:
            try:
                await client.create_table(
                    TableName=self.table,
                    KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
                    AttributeDefinitions=definitions,
                    GlobalSecondaryIndexes=[index],
                    BillingMode="PAY_PER_REQUEST",
                )
            except self._client_error as exc:
                if error_code(exc) != "ResourceInUseException":  # it exists already
                    raise
            waiter = client.get_waiter("table_exists")
            await waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            described = await client.describe_table(TableName=self.table)
            indexes = described["Table"].get("GlobalSecondaryIndexes") or []
            if not any(i.get("IndexName") == DUE_INDEX for i in indexes):
                await client.update_table(
                    TableName=self.table,
                    AttributeDefinitions=definitions,
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )
            for _ in range(120):
                described = await client.describe_table(TableName=self.table)
                indexes = described["Table"].get("GlobalSecondaryIndexes") or []
                status = {i.get("IndexName"): i.get("IndexStatus") for i in indexes}
                if status.get(DUE_INDEX) == "ACTIVE":
                    break
                await anyio.sleep(1.0)
            else:
                raise StorageUnavailable(
                    "create_table", None, f"the index {DUE_INDEX!r} did not become active"
                )
            ttl = await client.describe_time_to_live(TableName=self.table)
            if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in (
                "ENABLED",
                "ENABLING",
            ):
                await client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("create_table", None, exc) from exc

    # ------------------------------------------------------------------ #
    # Primitives
    # ------------------------------------------------------------------ #

    async def _read(self, key: str) -> Stored | None:
        # A spilled value's object is deleted when the value is replaced: a
        # reader that was shown the old pointer finds it gone (404, or 403
        # where the role may not list the bucket without a prefix) and reads
        # the item again. The same pointer failing twice is the answer.
        tried: str | None = None
        failure: StorageError | None = None
        for _ in range(_SPILL_READ_ATTEMPTS):
            item = await self._get_item("read", key)
            if item is None or VERSION not in item:
                return None
            version = _str(item, VERSION)
            if not version:
                raise SnapshotCorrupt(key, "the item's version is not a string")
            s3_key = _spilled_key(item)
            if s3_key is not None and s3_key == tried:
                if failure is not None:
                    raise failure
                raise SnapshotCorrupt(key, f"the spilled object {s3_key!r} is missing")
            try:
                data = await self._value(key, item)
            except StorageUnavailable as exc:
                if s3_key is None:
                    raise
                data, failure = None, exc
            else:
                failure = None
            if data is not None:
                return Stored(data, version)
            tried = s3_key
        raise StorageUnavailable(
            "read", key, "the spilled value kept being replaced while it was read"
        )

    async def _write(
        self,
        key: str,
        data: bytes,
        if_version: IfVersion,
        write_id: str,
        release: tuple[str, int, float] | None = None,
    ) -> str:
        pointer = await self._spill_out(key, data, write_id) if self._spills(key, data) else None
        values: dict[str, Any] = {":version": {"S": write_id}}
        names = {"#data": DATA, "#version": VERSION, "#spill": SPILL, "#ttl": TTL_ATTRIBUTE}
        if pointer is None:
            update = "SET #data = :data, #version = :version"
            values[":data"] = {"B": data}
            remove = " REMOVE #spill"
        else:
            update = "SET #spill = :spill, #version = :version"
            values[":spill"] = {"M": pointer}
            remove = " REMOVE #data"
        condition = _NOT_A_LEASE
        if if_version is None:
            condition += " AND attribute_not_exists(#version)"
        elif if_version != ANY_VERSION:
            condition += " AND #version = :expected"
            values[":expected"] = {"S": if_version}
        if release is not None:
            # The lease kept in this item is checked and given back in the
            # same request (see write_and_release).
            owner, token, now = release
            update += ", #lr = :true, #lu = :now"
            condition += " AND #lo = :owner AND #lt = :token AND #lr = :false"
            names.update(
                {"#lo": LEASE_OWNER, "#lt": LEASE_TOKEN, "#lu": LEASE_UNTIL, "#lr": LEASE_RELEASED}
            )
            values.update(
                {
                    ":owner": {"S": owner},
                    ":token": {"N": str(token)},
                    ":true": {"BOOL": True},
                    ":false": {"BOOL": False},
                    ":now": {"N": f"{now:.6f}"},
                }
            )
        params: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._key(key),
            "UpdateExpression": update + remove,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if self._spill is not None:
            # The replaced value's pointer, if any: its object is garbage now.
            params["ReturnValues"] = "UPDATED_OLD"
        client = await self._get_client("write", key)
        try:
            response = await client.update_item(**params)
        except self._client_error as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise self._unavailable("write", key, exc) from exc
            old: Mapping[str, Any] | None = response_of(exc).get("Item")
            if old is not None and _str(old, VERSION) == write_id:
                # A resend of this very write, whose first answer was lost.
                return write_id
            if old is not None and pointer is not None:
                # Somebody else's item is there: ours was never stored.
                await self._discard(pointer)
            if old is not None and TTL_ATTRIBUTE in old:
                raise self._lease_there("write", key) from exc
            actual_now = (_str(old, VERSION) or None) if old is not None else None
            newer = if_version != ANY_VERSION and actual_now != if_version
            if (
                release is not None
                and old is not None
                and not newer
                and _lease_of(old) != release[:2]
            ):
                # The version still matches: only the lease failed the check.
                owner, token, _ = release
                holder = _str(old, LEASE_OWNER) or None
                raise LockLost(
                    key,
                    owner=owner,
                    token=token,
                    reason=f"the lease is now held by {holder!r}, or was released, before saving",
                ) from exc
            actual = (_str(old, VERSION) or None) if old is not None else None
            raise VersionConflict(key, expected=if_version, actual=actual) from exc
        except self._driver_errors as exc:
            raise self._unavailable("write", key, exc) from exc
        replaced = response.get("Attributes", {}).get(SPILL)
        # A resend of an unconditional write replaces its own first attempt:
        # that object is the one the item names now.
        if (
            isinstance(replaced, Mapping)
            and "M" in replaced
            and (pointer is None or _str(replaced["M"], "key") != _str(pointer, "key"))
        ):
            await self._discard(replaced["M"])
        return write_id

    async def _delete(self, key: str, if_version: str | None) -> None:
        condition = _NOT_A_LEASE
        names = {"#ttl": TTL_ATTRIBUTE}
        params: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._key(key),
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if if_version is not None:
            condition += " AND #version = :expected"
            names["#version"] = VERSION
            params["ExpressionAttributeValues"] = {":expected": {"S": if_version}}
        params["ConditionExpression"] = condition
        if self._spill is not None:
            params["ReturnValues"] = "ALL_OLD"
        client = await self._get_client("delete", key)
        try:
            response = await client.delete_item(**params)
        except self._client_error as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise self._unavailable("delete", key, exc) from exc
            if if_version is None:
                return  # a lease item, not a value: there is nothing to delete
            old = response_of(exc).get("Item")
            actual = (_str(old, VERSION) or None) if old is not None else None
            raise VersionConflict(key, expected=if_version, actual=actual) from exc
        except self._driver_errors as exc:
            raise self._unavailable("delete", key, exc) from exc
        deleted = response.get("Attributes", {}).get(SPILL)
        if isinstance(deleted, Mapping) and "M" in deleted:
            await self._discard(deleted["M"])

    async def _exists(self, key: str) -> bool:
        item = await self._get_item("exists", key, projection=True)
        return item is not None and VERSION in item

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        # A scan: DynamoDB keeps no order across partition keys. Only the ids
        # come back, filtered on the server, and are sorted here.
        strip = len(STATE_PREFIX) + len(self.prefix)
        client = await self._get_client("list", None)
        paginator = client.get_paginator("scan")
        keys: list[str] = []
        try:
            async for page in paginator.paginate(
                TableName=self.table,
                ProjectionExpression="#id",
                FilterExpression="begins_with(#id, :prefix) AND attribute_exists(#version)",
                ExpressionAttributeNames={"#id": PARTITION_KEY, "#version": VERSION},
                ExpressionAttributeValues={":prefix": {"S": state_id(self.prefix, prefix)}},
                ConsistentRead=True,
            ):
                keys.extend(_str(item, PARTITION_KEY)[strip:] for item in page.get("Items", ()))
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("list", None, exc) from exc
        for key in sorted(keys):
            yield key

    async def _landed(self, key: str, write_id: str) -> str | None:
        item = await self._get_item("write", key, projection=True)
        if item is not None and _str(item, VERSION) == write_id:
            return write_id
        return None

    async def _add_due(self, key: str, due_ms: int) -> None:
        client = await self._get_client("add_due", key)
        try:
            await client.update_item(
                TableName=self.table,
                Key={PARTITION_KEY: {"S": due_id(self.prefix, due_ms, key)}},
                UpdateExpression="SET #shard = :shard, #at = :at",
                ConditionExpression=_NOT_A_LEASE,
                ExpressionAttributeNames={
                    "#shard": DUE_SHARD,
                    "#at": DUE_AT,
                    "#ttl": TTL_ATTRIBUTE,
                },
                ExpressionAttributeValues={
                    ":shard": {"S": due_shard(self.prefix)},
                    ":at": {"N": str(due_ms)},
                },
            )
        except self._client_error as exc:
            if error_code(exc) == _CONDITION_FAILED:
                raise self._lease_there("add_due", key) from exc
            raise self._unavailable("add_due", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("add_due", key, exc) from exc

    async def _list_due(self, now_ms: int, limit: int | None) -> list[DueEntry]:
        # dueAt ascending; entries with equal dueAt come in no defined order,
        # so reading stops only past the due time of the limit-th entry (its
        # ties are all read), and the entries are sorted here.
        client = await self._get_client("list_due", None)
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "#shard = :shard AND #at <= :now",
            "ExpressionAttributeNames": {"#shard": DUE_SHARD, "#at": DUE_AT},
            "ExpressionAttributeValues": {
                ":shard": {"S": due_shard(self.prefix)},
                ":now": {"N": str(now_ms)},
            },
            "ScanIndexForward": True,
        }
        if limit is not None:
            params["Limit"] = limit + 1
        entries: list[DueEntry] = []
        try:
            while True:
                page = await client.query(**params)
                for item in page.get("Items", ()):
                    parsed = parse_due_id(self.prefix, _str(item, PARTITION_KEY))
                    if parsed is not None:
                        entries.append(DueEntry(*parsed))
                last = page.get("LastEvaluatedKey")
                if not last or (
                    limit is not None
                    and len(entries) > limit
                    and entries[-1].due_ms > entries[limit - 1].due_ms
                ):
                    break
                params["ExclusiveStartKey"] = last
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("list_due", None, exc) from exc
        entries.sort()
        return entries if limit is None else entries[:limit]

    async def _remove_due(self, entry: DueEntry) -> None:
        client = await self._get_client("remove_due", entry.key)
        try:
            await client.delete_item(
                TableName=self.table,
                Key={PARTITION_KEY: {"S": due_id(self.prefix, entry.due_ms, entry.key)}},
                ConditionExpression=_NOT_A_LEASE,
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
            )
        except self._client_error as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return  # a lease item, not an entry: there is nothing to remove
            raise self._unavailable("remove_due", entry.key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("remove_due", entry.key, exc) from exc

    async def _aclose(self) -> None:
        try:
            await self._aws.aclose()
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("close", None, exc) from exc
        finally:
            if self._owns_spill and self._spill is not None:
                await self._spill.aclose()

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    def _key(self, key: str) -> dict[str, Any]:
        return {PARTITION_KEY: {"S": state_id(self.prefix, key)}}

    async def _get_item(
        self, operation: str, key: str, *, projection: bool = False
    ) -> Mapping[str, Any] | None:
        """GetItem, strongly consistent; with ``projection``, the version only."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._key(key),
            "ConsistentRead": True,
        }
        if projection:
            params["ProjectionExpression"] = "#version"
            params["ExpressionAttributeNames"] = {"#version": VERSION}
        client = await self._get_client(operation, key)
        try:
            response = await client.get_item(**params)
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable(operation, key, exc) from exc
        item: Mapping[str, Any] | None = response.get("Item")
        return item

    async def _value(self, key: str, item: Mapping[str, Any]) -> bytes | None:
        """The value an item holds, or ``None`` if its spilled object is gone (replaced).

        Raises:
            SnapshotCorrupt: the item has neither data nor a valid pointer, or
                the object does not match its pointer.
            StorageUnavailable: the item is spilled and there is no spill
                storage for its bucket, or S3 failed.
        """
        inline = item.get(DATA)
        if isinstance(inline, Mapping) and "B" in inline:
            return bytes(inline["B"])
        pointer = item.get(SPILL)
        if not isinstance(pointer, Mapping) or not isinstance(pointer.get("M"), Mapping):
            raise SnapshotCorrupt(key, "the item has a version but neither data nor a pointer")
        fields = pointer["M"]
        bucket, s3_key = _str(fields, "bucket"), _str(fields, "key")
        digest, size = _str(fields, "sha256"), fields.get("size", {}).get("N")
        if not (bucket and s3_key and digest and size):
            raise SnapshotCorrupt(key, f"malformed spill pointer {dict(fields)!r}")
        spill = self._spill
        if spill is None or spill.bucket != bucket:
            raise StorageUnavailable(
                "read",
                key,
                f"the value is stored in S3 bucket {bucket!r}; "
                "give DynamoDBStorage(spill=...) that bucket",
            )
        got = await spill._get(key, s3_key)
        if got is None:
            return None
        data = unwrap(got[0], key)
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != digest:
            raise SnapshotCorrupt(key, f"the spilled object {s3_key!r} does not match its pointer")
        return data

    def _spills(self, key: str, data: bytes) -> bool:
        if len(data) <= self.spill_threshold:
            return False
        if self._spill is None:
            raise ValueError(
                f"the value for {key!r} has {len(data)} bytes, more than a DynamoDB item "
                f"takes here ({self.spill_threshold}); give DynamoDBStorage a spill bucket"
            )
        return True

    async def _spill_out(self, key: str, data: bytes, write_id: str) -> dict[str, Any]:
        """Write ``data`` to a new S3 object; return the item's pointer to it."""
        spill = self._spill
        assert spill is not None
        item_hash = hashlib.sha256(state_id(self.prefix, key).encode("utf-8")).hexdigest()
        name = f"{SPILL_DIRECTORY}{item_hash[:32]}/{write_id}"
        try:
            # The name is new (the write id is), so an unconditional PUT
            # overwrites nothing; a resend of it writes the same bytes.
            await spill._write(name, data, ANY_VERSION, write_id)
        except StorageError as exc:
            raise StorageUnavailable(
                "write", key, f"spilling the value to S3 failed: {exc}"
            ) from exc
        return {
            "bucket": {"S": spill.bucket},
            "key": {"S": spill.prefix + name},
            "sha256": {"S": hashlib.sha256(data).hexdigest()},
            "size": {"N": str(len(data))},
        }

    async def _discard(self, pointer: Mapping[str, Any]) -> None:
        """Delete a spilled object no item names any more (best effort)."""
        spill = self._spill
        s3_key = _str(pointer, "key")
        if spill is None or _str(pointer, "bucket") != spill.bucket:
            return
        if not s3_key.startswith(spill.prefix + SPILL_DIRECTORY):
            return
        try:
            await spill._delete(s3_key[len(spill.prefix) :], None)
        except StorageError:
            logger.warning("could not delete the unreferenced object %r", s3_key, exc_info=True)

    async def _get_client(self, operation: str, key: str | None) -> Any:
        try:
            return await self._aws.get()
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable(operation, key, exc) from exc

    def _lease_there(self, operation: str, key: str) -> StorageError:
        return StorageUnavailable(
            operation,
            key,
            f"its item in table {self.table!r} is a lease of a lock manager sharing the "
            f"table (a lock key starting with {STATE_PREFIX!r} or {DUE_PREFIX!r}); "
            "nothing was written",
        )

    def _unavailable(self, operation: str, key: str | None, exc: BaseException) -> StorageError:
        detail = describe(exc)
        if error_code(exc) == "ResourceNotFoundException":
            detail += f" [table {self.table!r}]"
        return StorageUnavailable(operation, key, detail)


def _lease_of(item: Mapping[str, Any]) -> tuple[str, int] | None:
    """The unreleased lease an item holds: ``(owner, token)``, or ``None``."""
    released = item.get(LEASE_RELEASED, {})
    if isinstance(released, Mapping) and released.get("BOOL") is True:
        return None
    token = item.get(LEASE_TOKEN, {})
    raw = token.get("N") if isinstance(token, Mapping) else None
    owner = _str(item, LEASE_OWNER)
    return (owner, int(raw)) if owner and raw is not None else None


def _spilled_key(item: Mapping[str, Any]) -> str | None:
    """The S3 key an item's spill pointer names, or ``None`` if it has none."""
    pointer = item.get(SPILL)
    fields = pointer.get("M") if isinstance(pointer, Mapping) else None
    return (_str(fields, "key") or None) if isinstance(fields, Mapping) else None


def _str(item: Mapping[str, Any], name: str) -> str:
    """A String attribute of an item as the low-level client returns it ('' if absent)."""
    return str_attr(item, name) or ""
