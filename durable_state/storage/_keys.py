"""Argument checks shared by every storage backend.

Keeping them in one place is what makes the backends agree on which keys are
valid: a key accepted by ``MemoryStorage`` in a test is accepted by
``LocalFileStorage`` and ``S3Storage`` in production.
"""

from __future__ import annotations

from ..errors import InvalidKey

__all__ = ("MAX_KEY_BYTES", "check_data", "check_key", "check_version")

#: The longest key, in UTF-8 bytes, that every bundled backend accepts
#: (S3's own limit; for ``S3Storage`` the prefix counts too).
MAX_KEY_BYTES = 1024


def check_key(key: object, *, max_bytes: int = MAX_KEY_BYTES, reserved: int = 0) -> bytes:
    """Validate a key and return its UTF-8 encoding.

    Args:
        key: the candidate key.
        max_bytes: the backend's limit in UTF-8 bytes.
        reserved: bytes of the limit already used (e.g. an S3 prefix).

    Returns:
        The key encoded as UTF-8.

    Raises:
        InvalidKey: ``key`` is not a str, is empty, contains NUL, is not
            encodable as UTF-8 (a lone surrogate) or is too long.
    """
    if not isinstance(key, str):
        raise InvalidKey(key, f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey(key, "a key must not be empty")
    if "\x00" in key:
        raise InvalidKey(key, "a key must not contain NUL")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(key, "a key must be encodable as UTF-8 (no lone surrogates)") from exc
    if len(encoded) + reserved > max_bytes:
        extra = f" including the {reserved}-byte prefix" if reserved else ""
        raise InvalidKey(
            key,
            f"a key may have at most {max_bytes} UTF-8 bytes{extra}, not {len(encoded) + reserved}",
        )
    return encoded


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
