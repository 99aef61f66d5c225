"""Backends named by URL, for the command line and for configuration by environment.

Storage URLs:

* ``file://DIR`` -- a :class:`~durable_state.storage.LocalFileStorage` in ``DIR``
  (``file:///srv/state`` is absolute, ``file://.durable-state`` relative to the
  working directory, ``file://~/state`` under the home directory);
* ``s3://BUCKET/PREFIX`` -- an :class:`~durable_state.storage.S3Storage`; the
  path is the key prefix, a trailing ``/`` is added when it lacks one;
* ``dynamodb://TABLE/PREFIX`` -- a :class:`~durable_state.storage.DynamoDBStorage`
  in ``TABLE`` (the lock table can hold it); the path is the key prefix, as
  for ``s3://``. ``spill=BUCKET`` or ``spill=BUCKET/PREFIX`` names where
  values too large for an item go.

Lock URLs:

* ``file://DIR`` -- a :class:`~durable_state.locks.FileLockManager` in ``DIR``;
* ``dynamodb://TABLE`` -- a :class:`~durable_state.locks.DynamoDBLockManager`;
* ``none`` -- no lock: saves are compare-and-set only (optimistic).

``s3://`` and ``dynamodb://`` take the query parameters ``region`` and
``endpoint_url`` (another endpoint: DynamoDB Local, MinIO, a moto server);
``s3://`` also takes ``sse`` and ``kms_key_id``, a ``dynamodb://`` storage
``spill`` (its S3 client uses the same region and endpoint). An endpoint given by the
``DURABLE_STATE_ENDPOINT_URL`` environment variable applies when the URL
names none.

Parsing is separate from construction: :func:`parse_storage_url` and
:func:`parse_lock_url` only look at the text (so a typo is reported before
anything is imported), :meth:`StorageSpec.open` and :meth:`LockSpec.open`
build the backend (and raise :class:`~durable_state.errors.MissingDependency`
when an AWS backend is asked for without the ``aws`` extra).

A ``timeout`` given to ``open`` bounds every S3 or DynamoDB request: it is
the connect and the read timeout of each attempt, and a request makes at most
:data:`ATTEMPTS` attempts. botocore's defaults (60 s each, several retries)
suit a long-lived service, not a command a person waits for. The backends
are given an aioboto3 session whose clients carry that configuration, so
they need no option of their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import BackendURLError, MissingDependency

if TYPE_CHECKING:
    from .locks import LockManager
    from .storage import Storage

__all__ = (
    "ATTEMPTS",
    "DEFAULT_DIR",
    "ENV_ENDPOINT",
    "ENV_LOCK",
    "ENV_STORAGE",
    "BackendURLError",
    "LockSpec",
    "StorageSpec",
    "parse_lock_url",
    "parse_storage_url",
    "resolve_backends",
)

#: The directory of the embedded default (file storage and file locks).
DEFAULT_DIR = ".durable-state"
#: Environment variable naming the storage when ``--storage`` is not given.
ENV_STORAGE = "DURABLE_STATE_STORAGE"
#: Environment variable naming the lock when ``--lock`` is not given.
ENV_LOCK = "DURABLE_STATE_LOCK"
#: Environment variable with an endpoint for ``s3://`` and ``dynamodb://``.
ENV_ENDPOINT = "DURABLE_STATE_ENDPOINT_URL"

#: Attempts per S3 or DynamoDB request when ``open`` is given a timeout (one retry).
ATTEMPTS: Final = 2

_STORAGE_FORMS = "file://DIR, s3://BUCKET/PREFIX or dynamodb://TABLE/PREFIX"
_LOCK_FORMS = "file://DIR, dynamodb://TABLE or none"
_AWS_PARAMS = frozenset({"region", "endpoint_url"})
_S3_PARAMS = _AWS_PARAMS | {"sse", "kms_key_id"}
_DYNAMODB_STORAGE_PARAMS = _AWS_PARAMS | {"spill"}
# S3's naming rules for new buckets (3-63 characters, lower case, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# DynamoDB's table name rules.
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


@dataclass(frozen=True)
class StorageSpec:
    """A parsed storage URL.

    Attributes:
        scheme: ``"file"``, ``"s3"`` or ``"dynamodb"``.
        location: the directory (``file``), the bucket (``s3``) or the table
            (``dynamodb``).
        prefix: the key prefix (``s3`` and ``dynamodb``).
        options: the query parameters (``region``, ``endpoint_url``; ``sse``,
            ``kms_key_id`` for ``s3``; ``spill`` for ``dynamodb``).
    """

    scheme: Literal["file", "s3", "dynamodb"]
    location: str
    prefix: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.location}"
        return f"{self.scheme}://{self.location}/{self.prefix}"

    def open(self, *, timeout: float | None = None) -> Storage:
        """Build the storage this URL names.

        Args:
            timeout: for ``s3://`` and ``dynamodb://`` (and its spill
                bucket), the connect and read timeout of each attempt of a
                request, in seconds (at most :data:`ATTEMPTS` attempts);
                ``None`` keeps botocore's defaults.

        Returns:
            A new, unopened storage (use it with ``async with``).

        Raises:
            MissingDependency: ``s3://`` or ``dynamodb://`` without the ``aws`` extra.
            ValueError: an option the backend rejects (e.g. an unknown ``sse``).
        """
        if self.scheme == "file":
            from .storage.local import LocalFileStorage

            return LocalFileStorage(self.location)
        if self.scheme == "dynamodb":
            from .storage.dynamodb import DynamoDBStorage

            return DynamoDBStorage(
                self.location,
                prefix=self.prefix,
                session=_session_with_timeout("DynamoDBStorage", timeout),
                region_name=self.options.get("region"),
                endpoint_url=self.options.get("endpoint_url"),
                spill=self.options.get("spill"),
            )
        from .storage.s3 import S3Storage

        return S3Storage(
            self.location,
            prefix=self.prefix,
            session=_session_with_timeout("S3Storage", timeout),
            region_name=self.options.get("region"),
            endpoint_url=self.options.get("endpoint_url"),
            sse=self.options.get("sse"),
            kms_key_id=self.options.get("kms_key_id"),
        )


@dataclass(frozen=True)
class LockSpec:
    """A parsed lock URL.

    Attributes:
        scheme: ``"file"``, ``"dynamodb"`` or ``"none"``.
        location: the directory (``file``) or the table (``dynamodb``).
        options: the query parameters (``region``, ``endpoint_url``).
    """

    scheme: Literal["file", "dynamodb", "none"]
    location: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.scheme == "none":
            return "none"
        return f"{self.scheme}://{self.location}"

    def open(self, *, timeout: float | None = None) -> LockManager | None:
        """Build the lock manager this URL names (``None`` for ``none``).

        Args:
            timeout: for ``dynamodb://``, the connect and read timeout of each
                attempt of a request, in seconds (at most :data:`ATTEMPTS`
                attempts); ``None`` keeps botocore's defaults.

        Returns:
            A new lock manager (use it with ``async with``), or ``None``.

        Raises:
            MissingDependency: ``dynamodb://`` without the ``aws`` extra.
        """
        if self.scheme == "none":
            return None
        if self.scheme == "file":
            from .locks.file import FileLockManager

            return FileLockManager(self.location)
        from .locks.dynamodb import DynamoDBLockManager

        return DynamoDBLockManager(
            self.location,
            session=_session_with_timeout("DynamoDBLockManager", timeout),
            region_name=self.options.get("region"),
            endpoint_url=self.options.get("endpoint_url"),
        )


class _TimedSession:
    """An aioboto3 session whose clients all get one botocore ``Config``.

    The backends only ever call ``session.client(service, ...)``; this adds
    the configuration to each such call (merged over one the caller passes).
    """

    def __init__(self, session: Any, config: Any) -> None:
        self._session = session
        self.config = config

    def client(self, service_name: str, **kwargs: Any) -> Any:
        given = kwargs.get("config")
        kwargs["config"] = self.config if given is None else given.merge(self.config)
        return self._session.client(service_name, **kwargs)


def _session_with_timeout(feature: str, timeout: float | None) -> Any:
    """A session whose requests give up after ``timeout`` per attempt, or ``None``.

    Raises:
        MissingDependency: the ``aws`` extra is not installed.
    """
    if timeout is None:
        return None
    try:
        import aioboto3
        from botocore.config import Config
    except ImportError as exc:
        raise MissingDependency(feature, "aws") from exc
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
    )
    return _TimedSession(aioboto3.Session(), config)


def parse_storage_url(url: str, *, endpoint_url: str | None = None) -> StorageSpec:
    """Parse ``file://DIR``, ``s3://BUCKET/PREFIX`` or ``dynamodb://TABLE/PREFIX``.

    Args:
        url: the URL.
        endpoint_url: an endpoint for ``s3://`` and ``dynamodb://`` when the URL names none
            (the ``DURABLE_STATE_ENDPOINT_URL`` variable, for instance).

    Returns:
        The parsed spec.

    Raises:
        BackendURLError: the URL is not one of the accepted forms.
    """
    scheme, rest = _split_scheme(url, _STORAGE_FORMS)
    if scheme == "file":
        return StorageSpec("file", _directory(url, rest))
    if scheme == "s3":
        parts = urlsplit(url)
        bucket = parts.netloc
        if not bucket:
            raise BackendURLError(url, f"no bucket name (expected {_STORAGE_FORMS})")
        _bucket(url, bucket)
        prefix = _prefix(url, parts.path)
        options = _options(url, parts.query, _S3_PARAMS, endpoint_url)
        return StorageSpec("s3", bucket, prefix, options)
    if scheme == "dynamodb":
        parts = urlsplit(url)
        table = _table(url, parts.netloc, _STORAGE_FORMS)
        prefix = _prefix(url, parts.path)
        options = _options(url, parts.query, _DYNAMODB_STORAGE_PARAMS, endpoint_url)
        spill = options.get("spill")
        if spill is not None:
            _bucket(url, spill.partition("/")[0])
        return StorageSpec("dynamodb", table, prefix, options)
    raise BackendURLError(url, f"unknown storage scheme {scheme!r} (expected {_STORAGE_FORMS})")


def parse_lock_url(url: str, *, endpoint_url: str | None = None) -> LockSpec:
    """Parse ``file://DIR``, ``dynamodb://TABLE`` or ``none``.

    Args:
        url: the URL.
        endpoint_url: an endpoint for ``dynamodb://`` when the URL names none.

    Returns:
        The parsed spec.

    Raises:
        BackendURLError: the URL is not one of the accepted forms.
    """
    if url.strip().lower() in ("none", "none://"):
        return LockSpec("none")
    scheme, rest = _split_scheme(url, _LOCK_FORMS)
    if scheme == "file":
        return LockSpec("file", _directory(url, rest))
    if scheme == "dynamodb":
        parts = urlsplit(url)
        table = _table(url, parts.netloc, _LOCK_FORMS)
        if parts.path not in ("", "/"):
            raise BackendURLError(url, "a DynamoDB lock URL has no path: dynamodb://TABLE")
        options = _options(url, parts.query, _AWS_PARAMS, endpoint_url)
        return LockSpec("dynamodb", table, options)
    raise BackendURLError(url, f"unknown lock scheme {scheme!r} (expected {_LOCK_FORMS})")


def resolve_backends(
    storage: str | None,
    lock: str | None,
    *,
    directory: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[StorageSpec, LockSpec]:
    """Decide which storage and lock to use, from options, environment and defaults.

    Precedence, for each of the two: the explicit option, then ``directory``
    (``--dir DIR`` means ``file://DIR`` for both), then the environment
    variable, then the default. The default storage is ``file://.durable-state``;
    the default lock is ``file://`` of the storage's directory for a file
    storage, ``dynamodb://TABLE`` of the storage's own table for a DynamoDB
    storage, and ``none`` for an S3 storage (give ``--lock dynamodb://TABLE``
    to lock S3 actors).

    Args:
        storage: the ``--storage`` option, if given.
        lock: the ``--lock`` option, if given.
        directory: the ``--dir`` option, if given.
        environ: the environment (default: ``os.environ``).

    Returns:
        The storage and lock specs.

    Raises:
        BackendURLError: a URL is not one of the accepted forms.
    """
    env = os.environ if environ is None else environ
    endpoint = env.get(ENV_ENDPOINT) or None
    dir_url = f"file://{directory}" if directory is not None else None
    storage_url = storage or dir_url or env.get(ENV_STORAGE) or f"file://{DEFAULT_DIR}"
    storage_spec = parse_storage_url(storage_url, endpoint_url=endpoint)
    lock_url = lock or dir_url or env.get(ENV_LOCK)
    if lock_url:
        lock_spec = parse_lock_url(lock_url, endpoint_url=endpoint)
    elif storage_spec.scheme == "file":
        lock_spec = LockSpec("file", storage_spec.location)
    elif storage_spec.scheme == "dynamodb":
        options = {k: v for k, v in storage_spec.options.items() if k in _AWS_PARAMS}
        lock_spec = LockSpec("dynamodb", storage_spec.location, options)
    else:
        lock_spec = LockSpec("none")
    return storage_spec, lock_spec


def _split_scheme(url: str, forms: str) -> tuple[str, str]:
    if not isinstance(url, str) or not url.strip():
        raise BackendURLError(str(url), f"empty URL (expected {forms})")
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise BackendURLError(url, f"not a URL (expected {forms})")
    return scheme.lower(), rest


def _bucket(url: str, bucket: str) -> str:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise BackendURLError(
            url,
            f"{bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lower-case letters, digits, dots, hyphens)",
        )
    return bucket


def _table(url: str, table: str, forms: str) -> str:
    if not table:
        raise BackendURLError(url, f"no table name (expected {forms})")
    if not _TABLE.fullmatch(table):
        raise BackendURLError(
            url,
            f"{table!r} is not a valid DynamoDB table name "
            "(3-255 characters: letters, digits, '_', '-', '.')",
        )
    return table


def _prefix(url: str, path: str) -> str:
    """A key prefix from a URL path: unquoted, ending with ``/`` unless empty."""
    prefix = unquote(path.lstrip("/"))
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if "\x00" in prefix:
        raise BackendURLError(url, "the prefix must not contain NUL")
    return prefix


def _directory(url: str, rest: str) -> str:
    if "?" in rest or "#" in rest:
        raise BackendURLError(url, "a file:// URL takes no query or fragment")
    path = unquote(rest)
    if not path:
        raise BackendURLError(url, "no directory (expected file://DIR, e.g. file://.durable-state)")
    if "\x00" in path:
        raise BackendURLError(url, "the directory must not contain NUL")
    # file://localhost/srv/x names /srv/x, as in RFC 8089.
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    return os.path.expanduser(path)


def _options(
    url: str, query: str, allowed: frozenset[str], endpoint_url: str | None
) -> dict[str, str]:
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise BackendURLError(url, f"malformed query string ({exc})") from None
    for name, value in pairs:
        if name not in allowed:
            raise BackendURLError(
                url, f"unknown parameter {name!r} (accepted: {', '.join(sorted(allowed))})"
            )
        if not value:
            raise BackendURLError(url, f"parameter {name!r} has no value")
        options[name] = value
    if "endpoint_url" not in options and endpoint_url:
        options["endpoint_url"] = endpoint_url
    endpoint = options.get("endpoint_url")
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise BackendURLError(url, f"endpoint_url {endpoint!r} is not an http(s) URL")
    return options
