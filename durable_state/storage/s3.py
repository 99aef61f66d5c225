"""``S3Storage``: one object per key in an S3 bucket, compare-and-set by ETag.

aioboto3 (the ``aws`` extra) is imported only when an ``S3Storage`` is
constructed, so ``import durable_state`` never pulls in boto.

Versions and envelopes. The version of a key is the ETag S3 returns, and the
conditions are S3's own conditional writes: ``IfNoneMatch="*"`` (must not
exist) and ``IfMatch=<etag>`` (must still be that version) on PutObject, and
``IfMatch`` on DeleteObject; S3 checks and writes atomically. For a plain
upload the ETag is the MD5 of the bytes, so writing the same bytes twice would
give the same version and a writer holding the old one would wrongly succeed
(A-B-A). Every object is therefore stored in an envelope::

    b"\\x00dsenv1\\x00" + 16 random bytes + data

which makes every write's bytes, hence its ETag, new. Reads strip the envelope.
An object without the envelope (uploaded by another tool) reads as its raw
bytes; its first write through this class wraps it.

The nonce is the write's id (see :mod:`durable_state.storage._base`): when a
PUT's response is lost and botocore sends it again, the resend fails its own
``If-Match``/``If-None-Match`` with 412; reading the first bytes of the
object back shows our nonce, and the write is reported as the success it was.

The due index lives under ``prefix + ".durable-state/due/"``: one empty object
per entry, named ``<due ms, 15 digits>/<key>`` (a key too long for that is
named ``<due ms>~<SHA-256 of the key>`` and kept in the object's body). S3 lists keys in
ascending order, so finding what is due reads the index from its start and
stops at the first entry in the future. Keys that start with
``.durable-state/`` are reserved for it (and for values a ``DynamoDBStorage``
spills here).

With ``cache=True`` an instance remembers the value and ETag it last read or
wrote per key (see :mod:`durable_state.storage._cache`): ``cached_read``
then answers from memory, and an optimistic step costs only its conditional
PutObject.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio

from .._aws import (
    LoopBoundClient,
    aws_errors,
    describe,
    error_code,
    http_status,
)
from .._retry import backoff
from ..errors import (
    InvalidKey,
    SnapshotCorrupt,
    StorageError,
    StorageUnavailable,
    VersionConflict,
)
from ._base import prefix_bytes
from ._cache import CachingStorage, make_cache
from ._keys import MAX_KEY_BYTES, check_key
from ._protocol import ANY_VERSION, DueEntry, IfVersion, Stored

__all__ = ("ENVELOPE_MAGIC", "S3Storage")

logger: logging.Logger = logging.getLogger("durable_state.storage")

#: First bytes of every object this class writes (NUL never starts a text document).
ENVELOPE_MAGIC: Final = b"\x00dsenv1\x00"
_NONCE_BYTES: Final = 16
_HEADER_BYTES: Final = len(ENVELOPE_MAGIC) + _NONCE_BYTES

#: How often a write or delete answered with 409 ConditionalRequestConflict
#: (another conditional request on the key in flight) is retried.
CONFLICT_RETRIES: Final = 4
_CONFLICT_BACKOFF: Final = 0.05
_SSE_VALUES: Final = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})


#: Where the due index lives, below the storage's prefix; reserved for it.
RESERVED_PREFIX: Final = ".durable-state/"
_DUE_PREFIX: Final = RESERVED_PREFIX + "due/"


def wrap(data: bytes, nonce: bytes | None = None) -> bytes:
    """Put ``data`` in an envelope (the nonce makes every write's ETag new)."""
    return ENVELOPE_MAGIC + (nonce or secrets.token_bytes(_NONCE_BYTES)) + data


def unwrap(raw: bytes, key: str) -> bytes:
    """Take the data out of an envelope; bytes without one are returned as they are.

    Raises:
        SnapshotCorrupt: the envelope is truncated.
    """
    if not raw.startswith(ENVELOPE_MAGIC):
        return raw
    if len(raw) < _HEADER_BYTES:
        raise SnapshotCorrupt(key, "truncated storage envelope")
    return raw[_HEADER_BYTES:]


class S3Storage(CachingStorage):
    """A :class:`~durable_state.storage.Storage` in an S3 bucket.

    Each key is the object ``prefix + key``; the version is its ETag.
    Conditional writes and deletes are S3's own, so compare-and-set holds
    across every process, host and Lambda sharing the bucket. The bucket must
    exist (this class never creates one). Keys starting with
    ``.durable-state/`` are reserved for the due index.

    The client is created on first use (one per instance, even when the first
    calls are concurrent) and reused by every later call, so a module-level
    ``S3Storage`` in a Lambda handler keeps its connections warm across
    invocations that run on the same event loop. If it is used from another
    event loop (e.g. one ``asyncio.run`` per invocation) a new client is made
    for that loop and the old one is closed. Pass ``client`` to use an
    aiobotocore S3 client you own; :meth:`aclose` then leaves it open.

    Cancellation: a cancelled call stops waiting at once, but its request may
    already be on its way, so a cancelled write can still take effect shortly
    afterwards. Its condition still holds it to the version it was given, so
    no update is lost; a writer that must know the outcome re-reads.

    Credentials come from botocore's default provider chain (environment,
    config files, container or instance role) unless ``session`` or ``client``
    carries others.

    An operation raises ``RuntimeError`` if the instance's client belongs to
    another event loop that is still running: an instance serves one loop at
    a time (share it between threads only through one loop).

    Args:
        bucket: the bucket name.
        prefix: prepended to every key (e.g. ``"actors/"``); its UTF-8 bytes
            count towards S3's 1024-byte key limit. :meth:`list` strips it.
        client: an open aiobotocore S3 client to use instead of creating one.
        session: an ``aioboto3.Session`` to create the client from.
        region_name: the client's region (default: from the provider chain).
        endpoint_url: another S3 endpoint (MinIO, a moto server, a VPC endpoint).
        sse: server-side encryption for writes: ``"AES256"``, ``"aws:kms"`` or
            ``"aws:kms:dsse"``; ``None`` uses the bucket's default.
        kms_key_id: the KMS key for SSE-KMS (implies ``sse="aws:kms"`` when
            ``sse`` is not given).
        cache: keep a version cache of what this instance read and wrote,
            for :meth:`cached_read` (an optimistic step then costs only its
            conditional write): ``True`` (1,024 entries) or a number of
            entries. Off by default.

    Raises:
        MissingDependency: aioboto3 is not installed (``pip install
            "durable-state[aws]"``).
        ValueError: ``bucket`` is empty, ``prefix`` is too long or contains
            NUL, ``sse`` is unknown, or ``cache`` is a number below 1.
        TypeError: ``cache`` is neither a bool nor an int.
    """

    max_key_bytes = MAX_KEY_BYTES

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: Any = None,
        session: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        cache: bool | int = False,
    ) -> None:
        self._client_error, self._driver_errors = aws_errors("S3Storage", client)
        if not isinstance(bucket, str) or not bucket:
            raise ValueError("S3Storage needs a bucket name")
        self._prefix_bytes = prefix_bytes(prefix)
        if self._prefix_bytes >= MAX_KEY_BYTES - 64:
            raise ValueError(f"the prefix leaves no room for keys ({self._prefix_bytes} bytes)")
        if kms_key_id is not None and sse is None:
            sse = "aws:kms"
        if sse is not None and sse not in _SSE_VALUES:
            raise ValueError(f"sse must be one of {sorted(_SSE_VALUES)}, not {sse!r}")

        self.bucket = bucket
        self.prefix = prefix
        self._cache = make_cache(cache)
        self._put_extra: dict[str, str] = {"ContentType": "application/octet-stream"}
        if sse is not None:
            self._put_extra["ServerSideEncryption"] = sse
        if kms_key_id is not None:
            self._put_extra["SSEKMSKeyId"] = kms_key_id
        self._aws = LoopBoundClient(
            "s3",
            owner=self,
            client=client,
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    async def connect(self) -> None:
        """Create the client now rather than on the first request.

        Raises:
            StorageUnavailable: the client could not be created.
        """
        await self._get_client("connect", None)

    # -- primitives ---------------------------------------------------------- #

    async def _read(self, key: str) -> Stored | None:
        # Data and ETag come from one GetObject response, so they always match.
        raw_etag = await self._get(key, self.prefix + key)
        if raw_etag is None:
            return None
        raw, etag = raw_etag
        return Stored(unwrap(raw, key), etag)

    async def _write(self, key: str, data: bytes, if_version: IfVersion, write_id: str) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "Body": wrap(data, bytes.fromhex(write_id)),
            **self._put_extra,
        }
        if if_version is None:
            params["IfNoneMatch"] = "*"
        elif if_version != ANY_VERSION:
            params["IfMatch"] = if_version
        response = await self._conditional("write", key, if_version, "put_object", params)
        etag: str = response["ETag"]
        return etag

    async def _delete(self, key: str, if_version: str | None) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        if if_version is None:
            await self._conditional("delete", key, ANY_VERSION, "delete_object", params)
            return
        # A conditional delete whose answer is lost is resent (by botocore or
        # by aiohttp, which retries an idempotent request on a dropped
        # connection without telling botocore) and the resend finds the key
        # gone: S3 answers 404, some servers 412. So the version is checked
        # first (one HEAD: deletes are rare), and a refusal of a key that
        # was at that version a moment ago and is gone now is a success: the
        # version to delete is gone, whoever deleted it.
        current = await self._head(key)
        if current != if_version:
            raise VersionConflict(key, expected=if_version, actual=current)
        params["IfMatch"] = if_version
        try:
            await self._conditional("delete", key, if_version, "delete_object", params)
        except VersionConflict:
            if await self._head(key) is None:
                return
            raise

    async def _head(self, key: str) -> str | None:
        """The ETag stored at ``key`` (a HeadObject request), or ``None``."""
        client = await self._get_client("exists", key)
        try:
            response = await client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client_error as exc:
            if http_status(exc) == 404:
                return None
            raise self._unavailable("exists", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("exists", key, exc) from exc
        etag: str = response["ETag"]
        return etag

    async def _exists(self, key: str) -> bool:
        # A HEAD response has no error body, so a missing bucket also reads as
        # False here (read and write tell the two apart).
        client = await self._get_client("exists", key)
        try:
            await client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client_error as exc:
            if http_status(exc) == 404:
                return False
            raise self._unavailable("exists", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("exists", key, exc) from exc
        return True

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        # ListObjectsV2 under self.prefix + prefix, always with a Prefix (the
        # IAM policy may restrict listing to it); S3 lists in UTF-8 byte order,
        # which is code-point order.
        strip = len(self.prefix)
        async for s3_key in self._keys(self.prefix + prefix, "list"):
            key = s3_key[strip:]
            if not key.startswith(RESERVED_PREFIX):
                yield key

    async def _landed(self, key: str, write_id: str) -> str | None:
        # The envelope's header is enough: a ranged GET of its bytes.
        got = await self._get(key, self.prefix + key, byte_range=f"bytes=0-{_HEADER_BYTES - 1}")
        if got is None:
            return None
        head, etag = got
        return etag if head == ENVELOPE_MAGIC + bytes.fromhex(write_id) else None

    async def _add_due(self, key: str, due_ms: int) -> None:
        name, body = self._due_name(due_ms, key)
        client = await self._get_client("add_due", key)
        try:
            await client.put_object(Bucket=self.bucket, Key=name, Body=body, **self._put_extra)
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("add_due", key, exc) from exc

    async def _list_due(self, now_ms: int, limit: int | None) -> list[DueEntry]:
        index = self.prefix + _DUE_PREFIX
        entries: list[DueEntry] = []
        async for s3_key in self._keys(index, "list_due"):
            name = s3_key[len(index) :]
            due_text, mark, tail = name[:15], name[15:16], name[16:]
            if not due_text.isdigit() or mark not in ("/", "~") or not tail:
                continue  # not an entry
            due_ms = int(due_text)
            if due_ms > now_ms or (limit is not None and len(entries) >= limit):
                break  # entries list in due order: the rest is later
            if mark == "~":  # a hashed name: the key is the body
                got = await self._get(None, s3_key)
                if got is None:
                    continue
                tail = got[0].decode("utf-8")
            entries.append(DueEntry(due_ms, tail))
        entries.sort()
        return entries

    async def _remove_due(self, entry: DueEntry) -> None:
        name, _ = self._due_name(entry.due_ms, entry.key)
        client = await self._get_client("remove_due", entry.key)
        try:
            await client.delete_object(Bucket=self.bucket, Key=name)
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("remove_due", entry.key, exc) from exc

    async def _aclose(self) -> None:
        # Only a client this instance created; the instance stays usable (a
        # later call creates a new client).
        try:
            await self._aws.aclose()
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable("close", None, exc) from exc

    # -- internals ----------------------------------------------------------- #

    def _check_key(self, key: object) -> bytes:
        encoded = check_key(key, max_bytes=MAX_KEY_BYTES, reserved=self._prefix_bytes)
        if isinstance(key, str) and key.startswith(RESERVED_PREFIX):
            raise InvalidKey(key, f"keys starting with {RESERVED_PREFIX!r} are reserved")
        return encoded

    def _due_name(self, due_ms: int, key: str) -> tuple[str, bytes]:
        """The index object for an entry, and its body (the key, when hashed)."""
        name = f"{self.prefix}{_DUE_PREFIX}{due_ms:015d}/{key}"
        if len(name.encode("utf-8")) <= MAX_KEY_BYTES:
            return name, b""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self.prefix}{_DUE_PREFIX}{due_ms:015d}~{digest}", key.encode("utf-8")

    async def _get(
        self, key: str | None, s3_key: str, *, byte_range: str | None = None
    ) -> tuple[bytes, str] | None:
        """GetObject: the bytes and ETag, or ``None`` if there is no such object."""
        client = await self._get_client("read", key)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": s3_key}
        if byte_range is not None:
            params["Range"] = byte_range
        try:
            response = await client.get_object(**params)
            async with response["Body"] as body:
                raw: bytes = await body.read()
            etag: str = response["ETag"]
        except self._client_error as exc:
            if error_code(exc) in ("NoSuchKey", "InvalidRange"):
                return None
            raise self._unavailable("read", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("read", key, exc) from exc
        return raw, etag

    async def _keys(self, prefix: str, operation: str) -> AsyncIterator[str]:
        client = await self._get_client(operation, None)
        paginator = client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    s3_key: str = item["Key"]
                    yield s3_key
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable(operation, None, exc) from exc

    async def _conditional(
        self, operation: str, key: str, expected: IfVersion, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A conditional PutObject/DeleteObject; 409 ConditionalRequestConflict is retried.

        S3 answers 409 when another conditional request on the key is in
        flight; AWS documents retrying it. The same request is sent again
        (same body, so the same write id).
        """
        client = await self._get_client(operation, key)
        attempt = 0
        while True:
            try:
                response: dict[str, Any] = await getattr(client, method)(**params)
            except self._client_error as exc:
                if attempt < CONFLICT_RETRIES and _is_retryable_conflict(exc):
                    attempt += 1
                    await anyio.sleep(backoff(attempt, initial=_CONFLICT_BACKOFF, maximum=1.0))
                    continue
                raise self._translate_conditional(operation, key, expected, exc) from exc
            except self._driver_errors as exc:
                raise self._unavailable(operation, key, exc) from exc
            return response

    async def _get_client(self, operation: str, key: str | None) -> Any:
        try:
            return await self._aws.get()
        except (self._client_error, *self._driver_errors) as exc:
            raise self._unavailable(operation, key, exc) from exc

    def _translate_conditional(
        self, operation: str, key: str, expected: IfVersion, exc: Exception
    ) -> Exception:
        status, code = http_status(exc), error_code(exc)
        conditional = expected != ANY_VERSION
        if conditional and (
            status == 412
            or code == "ConditionalRequestConflict"  # retries exhausted: still contended
            or (code == "NoSuchKey" and expected is not None)  # If-Match on a missing key
        ):
            return VersionConflict(key, expected=expected)
        return self._unavailable(operation, key, exc)

    def _unavailable(self, operation: str, key: str | None, exc: BaseException) -> StorageError:
        detail = describe(exc)
        if error_code(exc) == "NoSuchBucket":
            detail += f" [bucket {self.bucket!r}]"
        return StorageUnavailable(operation, key, detail)


def _is_retryable_conflict(exc: BaseException) -> bool:
    return http_status(exc) == 409 and error_code(exc) == "ConditionalRequestConflict"
