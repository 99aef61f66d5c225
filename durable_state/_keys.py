"""Keys: validation and the file names they map to, shared by storage and locks.

An actor id is both a storage key and a lock key, so the two layers must agree
on which keys are valid and, on a local disk, on how a key becomes a file
name. Both rules live here.

File names: the key's UTF-8 bytes with every byte outside ``[a-z0-9_-]``
written as ``%XX`` (upper-case hex). The mapping is injective and reversible,
never produces ``/``, ``.`` or ``..``, and stays injective on case-insensitive
file systems (a literal letter is always lower case, a hex digit always upper
case and behind a ``%``). An encoded name longer than :data:`MAX_PLAIN_NAME`
characters is replaced by ``~`` + the SHA-256 of the key.
"""

from __future__ import annotations

import hashlib
from typing import Final

from .errors import InvalidKey

__all__ = ("MAX_PLAIN_NAME", "check_key", "decode_key", "encode_key", "key_file_stem")

#: Encoded names longer than this many characters are stored under a hash.
#: 120 (plus a short suffix) fits every common file system's name limit,
#: including eCryptfs (143).
MAX_PLAIN_NAME: Final = 120

_PLAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_ENCODE: Final = tuple(chr(b) if chr(b) in _PLAIN else f"%{b:02X}" for b in range(256))
_HEX: Final = frozenset("0123456789ABCDEF")


def check_key(key: object, *, max_bytes: int, reserved: int = 0, what: str = "key") -> bytes:
    """Validate a key and return its UTF-8 encoding.

    Args:
        key: the candidate key.
        max_bytes: the backend's limit in UTF-8 bytes.
        reserved: bytes of the limit already used (e.g. an S3 prefix).
        what: how messages name the key (``"key"``, ``"lock key"``).

    Returns:
        The key encoded as UTF-8.

    Raises:
        InvalidKey: ``key`` is not a str, is empty, contains NUL, is not
            encodable as UTF-8 (a lone surrogate) or is too long.
    """
    if not isinstance(key, str):
        raise InvalidKey(key, f"a {what} must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey(key, f"a {what} must not be empty")
    if "\x00" in key:
        raise InvalidKey(key, f"a {what} must not contain NUL")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(key, f"a {what} must be encodable as UTF-8 (no lone surrogates)") from exc
    if len(encoded) + reserved > max_bytes:
        extra = f" including the {reserved}-byte prefix" if reserved else ""
        raise InvalidKey(
            key,
            f"a {what} may have at most {max_bytes} UTF-8 bytes{extra}, "
            f"not {len(encoded) + reserved}",
        )
    return encoded


def encode_key(key_bytes: bytes) -> str:
    """Percent-encode a key's UTF-8 bytes into ``[a-z0-9_%A-F-]`` characters."""
    return "".join([_ENCODE[b] for b in key_bytes])


def decode_key(encoded: str) -> str | None:
    """Invert :func:`encode_key`; ``None`` if ``encoded`` is not one of its outputs."""
    out = bytearray()
    i, n = 0, len(encoded)
    while i < n:
        ch = encoded[i]
        if ch == "%":
            pair = encoded[i + 1 : i + 3]
            if len(pair) != 2 or not _HEX.issuperset(pair):
                return None
            out.append(int(pair, 16))
            i += 3
        elif ch in _PLAIN:
            out.append(ord(ch))
            i += 1
        else:
            return None
    try:
        key = out.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Only canonical spellings count (e.g. "%61" for "a" is foreign).
    return key if encode_key(bytes(out)) == encoded else None


def key_file_stem(key_bytes: bytes) -> str:
    """The file name (without suffix) for a key: encoded, or ``~`` + SHA-256 when long."""
    encoded = encode_key(key_bytes)
    if len(encoded) > MAX_PLAIN_NAME:
        return "~" + hashlib.sha256(key_bytes).hexdigest()
    return encoded
