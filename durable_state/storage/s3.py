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
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio

from .._aws import LoopBoundClient
from ..errors import (
    MissingDependency,
    SnapshotCorrupt,
    StorageError,
    StorageUnavailable,
    VersionConflict,
)
from ._keys import MAX_KEY_BYTES, check_data, check_key, check_version
from ._protocol import ANY_VERSION, ClosingContext, IfVersion, Stored

__all__ = ("ENVELOPE_MAGIC", "S3Storage")

logger = logging.getLogger("durable_state.storage")

#: First bytes of every object this class writes (NUL never starts a text document).
ENVELOPE_MAGIC: Final = b"\x00dsenv1\x00"
_NONCE_BYTES: Final = 16
_HEADER_BYTES: Final = len(ENVELOPE_MAGIC) + _NONCE_BYTES

#: How often a write or delete answered with 409 ConditionalRequestConflict
#: (another conditional request on the key in flight) is retried.
CONFLICT_RETRIES: Final = 4
_CONFLICT_BACKOFF: Final = 0.05
_CLOSE_TIMEOUT: Final = 10.0
_SSE_VALUES: Final = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})


def wrap(data: bytes) -> bytes:
    """Put ``data`` in a fresh envelope (the nonce makes every write's ETag new)."""
    return ENVELOPE_MAGIC + secrets.token_bytes(_NONCE_BYTES) + data


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


class S3Storage(ClosingContext):
    """A :class:`~durable_state.storage.Storage` in an S3 bucket.

    Each key is the object ``prefix + key``; the version is its ETag.
    Conditional writes and deletes are S3's own, so compare-and-set holds
    across every process, host and Lambda sharing the bucket. The bucket must
    exist (this class never creates one).

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

    Raises:
        MissingDependency: aioboto3 is not installed (``pip install
            "durable-state[aws]"``).
        ValueError: ``bucket`` is empty, ``prefix`` is too long or contains
            NUL, or ``sse`` is unknown.
    """

    #: The longest key in UTF-8 bytes, prefix included.
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
    ) -> None:
        try:
            import aiohttp
            import botocore.exceptions

            if client is None:
                import aioboto3  # noqa: F401  (checked here, used when the client is made)
        except ImportError as exc:
            raise MissingDependency("S3Storage", "aws") from exc

        if not isinstance(bucket, str) or not bucket:
            raise ValueError("S3Storage needs a bucket name")
        if not isinstance(prefix, str) or "\x00" in prefix:
            raise ValueError("the prefix must be a str without NUL")
        self._prefix_bytes = len(prefix.encode("utf-8"))
        if self._prefix_bytes >= MAX_KEY_BYTES:
            raise ValueError(f"the prefix leaves no room for keys ({self._prefix_bytes} bytes)")
        if kms_key_id is not None and sse is None:
            sse = "aws:kms"
        if sse is not None and sse not in _SSE_VALUES:
            raise ValueError(f"sse must be one of {sorted(_SSE_VALUES)}, not {sse!r}")

        self.bucket = bucket
        self.prefix = prefix
        self._put_extra: dict[str, str] = {"ContentType": "application/octet-stream"}
        if sse is not None:
            self._put_extra["ServerSideEncryption"] = sse
        if kms_key_id is not None:
            self._put_extra["SSEKMSKeyId"] = kms_key_id

        self._client_error: type[Exception] = botocore.exceptions.ClientError
        # Everything a driver call can raise besides ClientError: botocore's own
        # errors (connection, timeouts, credentials), aiohttp's, and OS errors.
        self._driver_errors: tuple[type[BaseException], ...] = (
            botocore.exceptions.BotoCoreError,
            aiohttp.ClientError,
            asyncio.TimeoutError,
            OSError,
        )
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

    # -- the contract -------------------------------------------------------- #

    async def read(self, key: str) -> Stored | None:
        """Read the bytes and version (ETag) stored at ``key``.

        Data and ETag come from one GetObject response, so they always match.

        Returns:
            The stored value, or ``None`` if the object does not exist.

        Raises:
            InvalidKey: the key is not acceptable.
            SnapshotCorrupt: the object's envelope is truncated.
            StorageUnavailable: S3 failed (including a missing bucket).
        """
        s3_key = self._s3_key(key)
        client = await self._get_client("read", key)
        try:
            response = await client.get_object(Bucket=self.bucket, Key=s3_key)
            async with response["Body"] as body:
                raw: bytes = await body.read()
            etag: str = response["ETag"]
        except self._client_error as exc:
            if _code(exc) == "NoSuchKey":
                return None
            raise self._unavailable("read", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("read", key, exc) from exc
        return Stored(unwrap(raw, key), etag)

    async def write(self, key: str, data: bytes, *, if_version: IfVersion = ANY_VERSION) -> str:
        """Store ``data`` at ``key`` if the condition holds.

        See :meth:`durable_state.storage.Storage.write`. A 409
        ConditionalRequestConflict from S3 is retried a few times with backoff.

        Returns:
            The new version (ETag).

        Raises:
            VersionConflict: the condition did not hold (S3 does not say which
                version it found, so ``actual`` is ``None``); nothing was written.
            InvalidKey: the key is not acceptable.
            TypeError: ``data`` is not bytes-like.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: S3 failed; the key holds either its old or its
                new value.
        """
        s3_key = self._s3_key(key)
        payload = check_data(data)
        check_version(if_version)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": s3_key, **self._put_extra}
        if if_version is None:
            params["IfNoneMatch"] = "*"
        elif if_version != ANY_VERSION:
            params["IfMatch"] = if_version
        client = await self._get_client("write", key)
        attempt = 0
        while True:
            # A fresh envelope per attempt: a retried request must not reuse an
            # ETag that a previous attempt might have produced.
            params["Body"] = wrap(payload)
            try:
                response = await client.put_object(**params)
            except self._client_error as exc:
                if attempt < CONFLICT_RETRIES and _is_retryable_conflict(exc):
                    attempt += 1
                    await _backoff(attempt)
                    continue
                raise self._translate_conditional("write", key, if_version, exc) from exc
            except self._driver_errors as exc:
                raise self._unavailable("write", key, exc) from exc
            etag: str = response["ETag"]
            return etag

    async def delete(self, key: str, *, if_version: str | None = None) -> None:
        """Delete ``key``, unconditionally or only if still at ``if_version``.

        See :meth:`durable_state.storage.Storage.delete`. The condition is S3's
        ``If-Match`` on DeleteObject (atomic on S3's side).

        Raises:
            VersionConflict: a version was given and the object has another
                ETag or does not exist.
            InvalidKey: the key is not acceptable.
            ValueError: ``if_version`` is an empty string.
            StorageUnavailable: S3 failed.
        """
        s3_key = self._s3_key(key)
        check_version(if_version)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": s3_key}
        if if_version is not None and if_version != ANY_VERSION:
            params["IfMatch"] = if_version
        client = await self._get_client("delete", key)
        attempt = 0
        while True:
            try:
                await client.delete_object(**params)
            except self._client_error as exc:
                if attempt < CONFLICT_RETRIES and _is_retryable_conflict(exc):
                    attempt += 1
                    await _backoff(attempt)
                    continue
                expected = params.get("IfMatch", ANY_VERSION)
                raise self._translate_conditional("delete", key, expected, exc) from exc
            except self._driver_errors as exc:
                raise self._unavailable("delete", key, exc) from exc
            return

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object (a HeadObject request).

        A HEAD response has no error body, so a missing bucket also reads as
        ``False`` here (``read`` and ``write`` tell the two apart).

        Raises:
            InvalidKey: the key is not acceptable.
            StorageUnavailable: S3 failed.
        """
        s3_key = self._s3_key(key)
        client = await self._get_client("exists", key)
        try:
            await client.head_object(Bucket=self.bucket, Key=s3_key)
        except self._client_error as exc:
            if _status(exc) == 404:
                return False
            raise self._unavailable("exists", key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("exists", key, exc) from exc
        return True

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys that start with ``prefix``, in ascending order.

        Pages through ListObjectsV2 under ``self.prefix + prefix`` and strips
        ``self.prefix`` (S3 lists in UTF-8 byte order, which is code-point order).

        Yields:
            The stored keys, exactly as written.

        Raises:
            TypeError: ``prefix`` is not a str.
            StorageUnavailable: S3 failed (raised while iterating).
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        client = await self._get_client("list", None)
        strip = len(self.prefix)
        paginator = client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", ()):
                    key: str = item["Key"]
                    yield key[strip:]
        except self._client_error as exc:
            raise self._unavailable("list", None, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("list", None, exc) from exc

    async def aclose(self) -> None:
        """Close the client this instance created (not one that was passed in).

        The instance stays usable: a later call creates a new client.

        Raises:
            StorageUnavailable: closing the client failed.
        """
        try:
            await self._aws.aclose()
        except self._client_error as exc:
            raise self._unavailable("close", None, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable("close", None, exc) from exc

    # -- internals ----------------------------------------------------------- #

    def _s3_key(self, key: str) -> str:
        check_key(key, max_bytes=MAX_KEY_BYTES, reserved=self._prefix_bytes)
        return self.prefix + key

    async def _get_client(self, operation: str, key: str | None) -> Any:
        try:
            return await self._aws.get()
        except self._client_error as exc:
            raise self._unavailable(operation, key, exc) from exc
        except self._driver_errors as exc:
            raise self._unavailable(operation, key, exc) from exc

    def _translate_conditional(
        self, operation: str, key: str, expected: str | None, exc: Exception
    ) -> Exception:
        status, code = _status(exc), _code(exc)
        conditional = expected != ANY_VERSION
        if conditional and (
            status == 412
            or code == "ConditionalRequestConflict"  # retries exhausted: still contended
            or (code == "NoSuchKey" and expected is not None)  # If-Match on a missing key
        ):
            return VersionConflict(key, expected=expected)
        return self._unavailable(operation, key, exc)

    def _unavailable(self, operation: str, key: str | None, exc: BaseException) -> StorageError:
        if isinstance(exc, self._client_error):
            detail = f"{_code(exc) or 'error'} (HTTP {_status(exc)}): {_message(exc)}"
            if _code(exc) == "NoSuchBucket":
                detail += f" [bucket {self.bucket!r}]"
        else:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return StorageUnavailable(operation, key, detail)


def _response(exc: BaseException) -> dict[str, Any]:
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else {}


def _status(exc: BaseException) -> int | None:
    status = _response(exc).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def _code(exc: BaseException) -> str:
    code = _response(exc).get("Error", {}).get("Code", "")
    return code if isinstance(code, str) else ""


def _message(exc: BaseException) -> str:
    message = _response(exc).get("Error", {}).get("Message", "")
    return message if isinstance(message, str) and message else str(exc)


def _is_retryable_conflict(exc: BaseException) -> bool:
    # S3 answers 409 ConditionalRequestConflict when another conditional
    # request on the same key is in flight; AWS documents retrying it.
    return _status(exc) == 409 and _code(exc) == "ConditionalRequestConflict"


async def _backoff(attempt: int) -> None:
    await anyio.sleep(_CONFLICT_BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random()))
