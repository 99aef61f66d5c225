"""Machines and backend specs shared by the persisted-actor tests and their child processes.

Kept free of pytest and of relative imports, so that ``_worker.py`` (run as a
script in a child process) can import it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from durable_state import Machine, assign, emit
from durable_state.locks.file import FileLockManager
from durable_state.storage import LocalFileStorage, S3Storage

__all__ = (
    "counter_machine",
    "emitter_machine",
    "open_backend",
    "timer_machine",
    "versioned_machine",
)


def counter_machine() -> Machine:
    """A counter.

    ``INC`` adds ``by`` (default 1) to ``count``; ``SET`` stores ``value``
    under ``key``; ``BOOM`` runs a custom action that raises; ``INC_BOOM``
    increments, then raises from a custom action (the step is taken);
    ``NOOP`` is handled and changes nothing.
    """
    return Machine(
        {
            "id": "counter",
            "initial": "counting",
            "context": {"count": 0},
            "states": {
                "counting": {
                    "on": {
                        "INC": {"actions": "inc"},
                        "SET": {"actions": "set"},
                        "BOOM": {"actions": "boom"},
                        "INC_BOOM": {"actions": ["inc", "boom"]},
                        "NOOP": {},
                    }
                }
            },
        },
        actions={
            "inc": assign(lambda c, e: {"count": c["count"] + e.get("by", 1)}),
            "set": assign(lambda c, e: {e["key"]: e["value"]}),
            "boom": _boom,
        },
    )


def _boom(context: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    raise RuntimeError("boom")


def emitter_machine() -> Machine:
    """``PING`` counts and emits ``pinged`` with the new count."""
    return Machine(
        {
            "id": "emitter",
            "initial": "on",
            "context": {"pings": 0, "extra": None},
            "states": {
                "on": {
                    "on": {
                        "PING": {"actions": ["count", "announce"]},
                        "SET": {"actions": "set"},
                    }
                }
            },
        },
        actions={
            "count": assign(lambda c, e: {"pings": c["pings"] + 1}),
            "announce": emit(lambda c, e: {"type": "pinged", "pings": c["pings"]}),
            "set": assign(lambda c, e: {"extra": e["value"]}),
        },
    )


def timer_machine() -> Machine:
    """Durable timers.

    ``waiting`` moves to ``ringing`` 1000 ms after it is entered, and
    ``ringing`` to ``done`` 1000 ms after that. In ``racing`` (a parallel
    state entered by ``RACE``) region ``slow`` logs ``"slow"`` after 2000 ms
    and region ``fast`` logs ``"fast"`` after 1000 ms: due order is the
    opposite of document order. ``LOOK`` copies the log so far into
    ``seen`` (what the body's first event could see). ``SHORT`` enters
    ``short``, which moves to ``rang`` after 400 ms.
    """
    return Machine(
        {
            "id": "timers",
            "initial": "waiting",
            "context": {"log": [], "seen": None},
            "on": {"LOOK": {"actions": "look"}},
            "states": {
                "waiting": {
                    "after": {"1000": "ringing"},
                    "on": {"RACE": "racing", "SHORT": "short"},
                },
                "ringing": {"after": {"1000": "done"}},
                "done": {},
                "racing": {
                    "type": "parallel",
                    "states": {
                        "slow": {
                            "initial": "idle",
                            "states": {
                                "idle": {
                                    "after": {"2000": {"target": "over", "actions": "log_slow"}}
                                },
                                "over": {},
                            },
                        },
                        "fast": {
                            "initial": "idle",
                            "states": {
                                "idle": {
                                    "after": {"1000": {"target": "over", "actions": "log_fast"}}
                                },
                                "over": {},
                            },
                        },
                    },
                },
                "short": {"after": {"400": "rang"}},
                "rang": {},
            },
        },
        actions={
            "look": assign(lambda c, e: {"seen": list(c["log"])}),
            "log_slow": assign(lambda c, e: {"log": [*c["log"], "slow"]}),
            "log_fast": assign(lambda c, e: {"log": [*c["log"], "fast"]}),
        },
    )


def versioned_machine(version: int, *, migrations: Mapping[int, Any] | None = None) -> Machine:
    """The same little machine at several versions.

    Version 1 keeps ``n``; version 2 calls it ``count``; version 3 adds
    ``unit``. Every version has states ``a`` and ``b`` (``GO``), and
    ``TOUCH`` sets ``touched`` anywhere.
    """
    contexts: dict[int, dict[str, Any]] = {
        1: {"n": 0},
        2: {"count": 0},
        3: {"count": 0, "unit": "x"},
    }
    context = contexts[version]
    return Machine(
        {
            "id": "versioned",
            "initial": "a",
            "context": context,
            "on": {"TOUCH": {"actions": "touch"}},
            "states": {"a": {"on": {"GO": "b"}}, "b": {}},
        },
        actions={"touch": assign(lambda c, e: {"touched": True})},
        version=version,
        migrations=migrations,
    )


def open_backend(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """Build ``(storage, lock)`` from a JSON-able spec (what child processes receive).

    ``{"kind": "file", "root": ...}`` or ``{"kind": "aws", "bucket": ...,
    "table": ..., "endpoint": ..., "region": ..., "skew": ...}``.
    """
    if spec["kind"] == "file":
        return LocalFileStorage(spec["root"]), FileLockManager(spec["root"])
    if spec["kind"] == "aws":
        from durable_state.locks.dynamodb import DynamoDBLockManager

        storage = S3Storage(
            spec["bucket"],
            prefix=spec.get("prefix", ""),
            endpoint_url=spec["endpoint"],
            region_name=spec["region"],
        )
        lock = DynamoDBLockManager(
            spec["table"],
            endpoint_url=spec["endpoint"],
            region_name=spec["region"],
            skew_margin=spec.get("skew", 0.2),
        )
        return storage, lock
    if spec["kind"] == "dynamodb":
        from durable_state.locks.dynamodb import DynamoDBLockManager
        from durable_state.storage import DynamoDBStorage

        kwargs = {"endpoint_url": spec["endpoint"], "region_name": spec["region"]}
        storage = DynamoDBStorage(spec["table"], prefix=spec["prefix"], **kwargs)
        lock = DynamoDBLockManager(spec["table"], skew_margin=spec.get("skew", 0.2), **kwargs)
        return storage, lock
    raise ValueError(f"unknown backend kind {spec['kind']!r}")


def child_env(spec: Mapping[str, Any]) -> dict[str, str]:
    """The environment for a child process: this one's, with dummy AWS credentials."""
    env = dict(os.environ)
    if spec["kind"] in ("aws", "dynamodb"):
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": spec["region"],
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
    return env


async def spawn_worker(
    script: str, spec: Mapping[str, Any] | None, command: str, *args: str, stdin: bool = False
) -> asyncio.subprocess.Process:
    """Start ``python script command SPEC args...`` with pipes, in the backend's environment."""
    assert spec is not None, "a backend a child process can open (not memory)"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        command,
        json.dumps(spec),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(spec),
    )
