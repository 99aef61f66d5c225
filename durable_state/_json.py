"""Deterministic JSON encoding with precise errors for values JSON cannot hold."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import NotSerializable

__all__ = ("check_json", "dumps", "find_unserializable", "loads")


def check_json(value: Any, path: str) -> None:
    """Raise :class:`NotSerializable` at the first value JSON cannot round-trip.

    Accepted: ``None``, ``bool``, ``int``, finite ``float``, ``str``, lists and
    tuples of accepted values, and mappings with ``str`` keys. Everything else
    (sets, bytes, datetimes, NaN, non-string keys that JSON would silently turn
    into strings) is rejected, so that a restored snapshot equals the saved one.

    The common case, plain JSON data in dicts and lists, is checked in one
    walk that builds no paths; only when that walk finds something unusual
    (a failure, or a subclass or another Mapping type it does not decide) is
    the value walked again to decide precisely and name the path.

    Args:
        value: the value to check.
        path: the name of the value, used as the start of the reported path
            (``""`` for a document whose keys start the path).

    Raises:
        NotSerializable: with the path of the first offending value.
    """
    try:
        if _plain(value):
            return
    except RecursionError:
        pass  # deeper than the fast walk goes: the iterative walk decides
    problem = find_unserializable(value, path)
    if problem is not None:
        raise NotSerializable(*problem)


def find_unserializable(value: Any, path: str) -> tuple[str, str, str] | None:
    """The first value JSON cannot round-trip: ``(path, type name, reason)``, or None.

    Iterative (any depth) and exact; :func:`check_json` uses it only after
    its fast walk declined to decide.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, str | bool | int):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                return p, "float", f"{v!r} is not a finite number"
            continue
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    tn = type(k).__name__
                    return f"{p}[{k!r}]", tn, f"mapping keys must be strings, not {tn}"
                stack.append((item, _child(p, k)))
            continue
        if isinstance(v, list | tuple):
            for i, item in enumerate(v):
                stack.append((item, f"{p}[{i}]"))
            continue
        return p, type(v).__name__, ""
    return None


def _plain(v: Any) -> bool:
    """True when ``v`` is plain JSON data built of exact dicts, lists and scalars.

    False means "not decided here", not "invalid": a str subclass or a
    mapping proxy is fine JSON that only the exact walk recognises.
    """
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return True
    if t is float:
        return bool(v - v == 0.0)  # False for inf and nan
    if t is dict:
        for k, x in v.items():
            if type(k) is not str:
                return False
            tx = type(x)
            if tx is str or tx is int or tx is bool or x is None:
                continue
            if not _plain(x):
                return False
        return True
    if t is list or t is tuple:
        for x in v:
            tx = type(x)
            if tx is str or tx is int or tx is bool or x is None:
                continue
            if not _plain(x):
                return False
        return True
    return False


def _child(path: str, key: str) -> str:
    if not path:
        return key  # the top-level keys of a document name themselves
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


# Made once: json.dumps with options makes an encoder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_DECODER = json.JSONDecoder()


def dumps(value: Any) -> bytes:
    """Encode as compact, key-sorted UTF-8 JSON (same value, same bytes).

    Raises:
        NotSerializable: a value JSON cannot hold (the error names its path).
    """
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except (TypeError, ValueError):
        check_json(value, "")  # names the value, when it is one JSON cannot hold
        raise


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises ``ValueError`` (``json.JSONDecodeError``) on bad input."""
    if type(data) is bytes and data[:1] == b"{" and data[1:2] != b"\x00":
        # A JSON object in UTF-8 (what dumps writes), decoded as json.loads
        # decodes bytes it finds to be UTF-8.
        return _DECODER.decode(data.decode("utf-8", "surrogatepass"))
    return json.loads(data)
