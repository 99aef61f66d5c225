"""A small vocabulary shared by the statechart tests.

Most tests record what happened in ``context["log"]`` with the ``log`` action
(an assign that appends its ``tag`` param), because the context is exactly
what xstate reports too: the same config run in xstate v5 with an equivalent
``log`` action gives the same list, which is how the expected values marked
"verified against xstate" were obtained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from durable_state import Machine, Snapshot, assign, raise_event

__all__ = ("ACTIONS", "GUARDS", "log", "logs", "make", "raise_", "run", "set_", "when")


def log(tag: str) -> dict[str, Any]:
    """An action reference that appends ``tag`` to ``context["log"]``."""
    return {"type": "log", "params": {"tag": tag}}


def set_(key: str, value: Any) -> dict[str, Any]:
    """An action reference that sets ``context[key] = value``."""
    return {"type": "set", "params": {"key": key, "value": value}}


def raise_(event_type: str) -> dict[str, Any]:
    """An action reference that raises an event of this type."""
    return {"type": "raise", "params": {"type": event_type}}


def when(key: str) -> dict[str, Any]:
    """A guard reference that holds while ``context[key]`` is truthy."""
    return {"type": "flag", "params": {"key": key}}


ACTIONS: dict[str, Any] = {
    "log": assign(lambda context, event, tag: {"log": [*context.get("log", []), tag]}),
    "log_event": assign(lambda context, event: {"log": [*context.get("log", []), event["type"]]}),
    "set": assign(lambda context, event, key, value: {key: value}),
    "inc": assign(lambda context, event, key="n": {key: context.get(key, 0) + 1}),
    "raise": raise_event(lambda context, event, type: {"type": type}),
}

GUARDS: dict[str, Any] = {
    "flag": lambda context, event, key: bool(context.get(key)),
    "below": lambda context, event, key="n", limit=1: context.get(key, 0) < limit,
}


def make(config: Mapping[str, Any], **kwargs: Any) -> Machine:
    """A Machine with the shared vocabulary (extra implementations are added to it)."""
    actions = {**ACTIONS, **kwargs.pop("actions", {})}
    guards = {**GUARDS, **kwargs.pop("guards", {})}
    return Machine(config, actions=actions, guards=guards, **kwargs)


def run(machine: Machine, *events: Any, input: Any = None) -> Snapshot:
    """The snapshot after starting and sending ``events`` through the pure API."""
    snap = machine.initial_snapshot(input)
    for event in events:
        snap, _ = machine.transition(snap, event)
    return snap


def logs(snapshot: Snapshot) -> list[str]:
    """The ``log`` list of a snapshot's context."""
    return list(snapshot.context.get("log", []))
