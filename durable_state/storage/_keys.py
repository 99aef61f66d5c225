"""Argument checks shared by every storage backend.

Keeping them in one place is what makes the backends agree on which keys are
valid: a key accepted by ``MemoryStorage`` in a test is accepted by
``LocalFileStorage`` and ``S3Storage`` in production.
"""

from __future__ import annotations

from .._keys import check_key as _check_key

__all__ = ("MAX_KEY_BYTES", "check_data", "check_key", "check_version")

#: The longest key, in UTF-8 bytes, that every bundled backend accepts
#: (S3's own limit; for ``S3Storage`` the prefix counts too).
MAX_KEY_BYTES = 1024


def check_key(key: object, *, max_bytes: int = MAX_KEY_BYTES, reserved: int = 0) -> bytes:
    """Validate a storage key (see :func:`durable_state._keys.check_key`).

    Raises:
        InvalidKey: ``key`` is not a str, is empty, contains NUL, is not
            encodable as UTF-8 (a lone surrogate) or is too long.
    """
    return _check_key(key, max_bytes=max_bytes, reserved=reserved)


def check_data(data: object) -> bytes:
    """Return ``data`` as immutable bytes.

    A ``bytearray`` or ``memoryview`` is copied so that a caller mutating its
    buffer later cannot change what was stored.

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"storage data must be bytes, not {type(data).__name__}")


def check_version(if_version: object) -> None:
    """Validate an ``if_version`` argument.

    Raises:
        TypeError: it is neither a str nor None.
        ValueError: it is an empty string (which would silently mean
            "unconditional" to some backends).
    """
    if if_version is None:
        return
    if not isinstance(if_version, str):
        raise TypeError(f"if_version must be '*', None or a version str, not {if_version!r}")
    if not if_version:
        raise ValueError("if_version must be '*', None or a non-empty version string")
