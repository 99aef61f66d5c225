"""Deterministic JSON encoding with precise errors for values JSON cannot hold."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import NotSerializable

__all__ = ("check_json", "dumps", "loads")


def check_json(value: Any, path: str) -> None:
    """Raise :class:`NotSerializable` at the first value JSON cannot round-trip.

    Accepted: ``None``, ``bool``, ``int``, finite ``float``, ``str``, lists and
    tuples of accepted values, and mappings with ``str`` keys. Everything else
    (sets, bytes, datetimes, NaN, non-string keys that JSON would silently turn
    into strings) is rejected, so that a restored snapshot equals the saved one.

    Args:
        value: the value to check.
        path: the name of the value, used as the start of the reported path.

    Raises:
        NotSerializable: with the path of the first offending value.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, str | bool | int):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise NotSerializable(p, "float", f"{v!r} is not a finite number")
            continue
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise NotSerializable(
                        f"{p}[{k!r}]",
                        type(k).__name__,
                        f"mapping keys must be strings, not {type(k).__name__}",
                    )
                stack.append((item, f"{p}.{k}" if _plain(k) else f"{p}[{k!r}]"))
            continue
        if isinstance(v, list | tuple):
            for i, item in enumerate(v):
                stack.append((item, f"{p}[{i}]"))
            continue
        raise NotSerializable(p, type(v).__name__)


def _plain(key: str) -> bool:
    return key.isidentifier()


def dumps(value: Any) -> bytes:
    """Encode as compact, key-sorted UTF-8 JSON (same value, same bytes)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises ``ValueError`` (``json.JSONDecodeError``) on bad input."""
    return json.loads(data)
