"""The Python side of the differential suite: vocabulary, drivers, comparison.

The named actions, guards and delays here mean exactly what the same names
mean in ``runner.mjs``; a case's config may use nothing else. The drivers run
a :class:`~gen.Case` through durable_state and produce a trace in the
runner's shape, one record for the started machine and one after every step.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gen import Case

from durable_state import Actor, Machine, ManualClock, assign, raise_event, state_in

__all__ = (
    "RECORD_KEYS",
    "build_machine",
    "describe_mismatch",
    "first_mismatch",
    "normalize_persisted",
    "plain",
    "run_actor",
    "run_pure",
)

#: What is compared after every step.
RECORD_KEYS = ("value", "context", "status", "output")

Json = Any


def plain(value: Any) -> Json:
    """``value`` as plain JSON data (mappings -> dicts, sequences -> lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


def _inc(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str, by: int) -> Json:
    return {key: context[key] + by}


def _set(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str, value: Any) -> Json:
    return {key: value}


def _push(context: Mapping[str, Any], event: Mapping[str, Any], *, tag: Any = None) -> Json:
    return {"log": [*context["log"], event["type"] if tag is None else tag]}


def _push_out(context: Mapping[str, Any], event: Mapping[str, Any]) -> Json:
    return {"log": [*context["log"], event.get("output")]}


def _from_event(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str) -> Json:
    n = event.get("n")
    # JavaScript's `typeof n === "number"`: booleans are not numbers there.
    is_number = isinstance(n, int | float) and not isinstance(n, bool)
    return {key: n if is_number else 0}


def _raise(context: Mapping[str, Any], event: Mapping[str, Any], *, type: str) -> Json:
    return {"type": type}


def _ctx_gt(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str, n: int) -> bool:
    return bool(context[key] > n)


def _ctx_lt(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str, n: int) -> bool:
    return bool(context[key] < n)


def _ctx_even(context: Mapping[str, Any], event: Mapping[str, Any], *, key: str) -> bool:
    return bool(context[key] % 2 == 0)


def _ev_flag(context: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    return bool(event.get("flag"))


def _short(context: Mapping[str, Any], event: Mapping[str, Any]) -> int:
    return 40


def _by_a(context: Mapping[str, Any], event: Mapping[str, Any]) -> int:
    return 25 + 10 * (int(context["a"]) % 4)


ACTIONS: dict[str, Any] = {
    "inc": assign(_inc),
    "set": assign(_set),
    "push": assign(_push),
    "pushOut": assign(_push_out),
    "fromEvent": assign(_from_event),
    "raiseE": raise_event(_raise),
    "perKey": assign(
        {
            "a": lambda context, event, by: context["a"] + by,
            "b": lambda context, event, **params: context["a"] * 10,
            "log": lambda context, event, **params: [*context["log"], "pk"],
            "c": 7,
        }
    ),
}
GUARDS: dict[str, Any] = {
    "ctxGt": _ctx_gt,
    "ctxLt": _ctx_lt,
    "ctxEven": _ctx_even,
    "evFlag": _ev_flag,
}
DELAYS: dict[str, Any] = {"short": _short, "byA": _by_a}


def build_machine(case: Case) -> Machine:
    """The durable_state machine for ``case``, with the shared vocabulary.

    Raises:
        durable_state.InvalidMachine: if durable_state rejects the config.
    """
    guards = dict(GUARDS)
    for name, target in case.state_in.items():
        guards[name] = state_in(target)
    return Machine(copy.deepcopy(case.config), actions=ACTIONS, guards=guards, delays=DELAYS)


def _record(snapshot: Any) -> dict[str, Json]:
    return {
        "value": plain(snapshot.value),
        "context": plain(snapshot.context),
        "status": snapshot.status,
        "output": plain(snapshot.output),
    }


def _round_trip(data: Mapping[str, Any]) -> Json:
    # Exactly what a storage backend does to a persisted snapshot.
    return json.loads(json.dumps(data))


def run_pure(case: Case, *, persist_each: bool) -> list[dict[str, Json]]:
    """Drives ``case`` through ``Machine.transition`` (no clock; untimed cases).

    With ``persist_each`` the snapshot is persisted, sent through JSON and
    restored after every step, as the xstate side does.

    Raises:
        Exception: whatever durable_state raises; the caller reports it.
    """
    machine = build_machine(case)
    snap = machine.initial_snapshot()
    trace = [_record(snap)]
    for step in case.steps:
        snap, _effects = machine.transition(snap, step["send"])
        if persist_each:
            snap = machine.restore_snapshot(_round_trip(machine.persisted_snapshot(snap)))
        trace.append(_record(snap))
    return trace


async def run_actor(case: Case, *, persist_each: bool) -> list[dict[str, Json]]:
    """Drives ``case`` through an :class:`Actor` on a :class:`ManualClock`.

    With ``persist_each`` the actor is persisted, stopped and replaced by a
    new actor restored from the JSON copy after every step (its timers come
    back as due times on the same clock).

    Raises:
        Exception: whatever durable_state raises; the caller reports it.
    """
    machine = build_machine(case)
    clock = ManualClock(start_ms=0)
    actor = Actor(machine, snapshot=None, clock=clock)
    try:
        await actor.start()
        trace = [_record(actor.snapshot)]
        for step in case.steps:
            if "advance" in step:
                await clock.advance(step["advance"])
            else:
                await actor.send(step["send"])
            if persist_each:
                data = _round_trip(actor.persisted_snapshot())
                await actor.stop()
                actor = Actor(machine, snapshot=data, clock=clock)
                await actor.start()
            trace.append(_record(actor.snapshot))
    finally:
        await actor.stop()
    return trace


def normalize_persisted(data: Mapping[str, Any]) -> Json:
    """A persisted snapshot reduced to what both sides must agree on.

    Drops ``$durable`` (durable_state's own metadata) and absent-or-null
    fields (xstate leaves ``output``/``error`` out when undefined), and sorts
    each history entry (the set of remembered states is what counts).
    """
    out = {k: plain(v) for k, v in data.items() if k != "$durable" and v is not None}
    history = out.get("historyValue")
    if isinstance(history, dict):
        out["historyValue"] = {
            k: sorted(v, key=lambda item: json.dumps(item, sort_keys=True))
            for k, v in sorted(history.items())
        }
    return out


def first_mismatch(
    expected: list[dict[str, Json]], actual: list[dict[str, Json]]
) -> tuple[int, str] | None:
    """The first (step index, field) where the traces differ, or None."""
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for key in RECORD_KEYS:
            if want.get(key) != got.get(key):
                return index, key
    if len(expected) != len(actual):
        return min(len(expected), len(actual)), "length"
    return None


def describe_mismatch(
    case: Case,
    mode: str,
    expected: list[dict[str, Json]],
    actual: list[dict[str, Json]],
    where: tuple[int, str],
) -> str:
    """A failure message that is enough to reproduce and minimise the case."""
    index, key = where
    step = "start" if index == 0 else json.dumps(case.steps[index - 1])
    lines = [
        f"{case.id} [{mode}]: durable_state and xstate differ in {key!r} after step {index} "
        f"({step})",
        f"  xstate:        {json.dumps(_pick(expected, index), sort_keys=True)}",
        f"  durable_state: {json.dumps(_pick(actual, index), sort_keys=True)}",
    ]
    if index > 0:
        lines.append(f"  before (both): {json.dumps(_pick(expected, index - 1), sort_keys=True)}")
    lines += [
        f"config = {json.dumps(case.config)}",
        f"state_in = {json.dumps(case.state_in)}",
        f"steps = {json.dumps(case.steps)}",
    ]
    if case.id.startswith("seed-"):
        seed = case.id.removeprefix("seed-")
        lines.append(
            f"reproduce: DURABLE_STATE_COMPAT_SEEDS={seed} pytest tests/compat -k '{case.id}-'"
        )
    return "\n".join(lines)


def _pick(trace: list[dict[str, Json]], index: int) -> Json:
    if index >= len(trace):
        return None
    return {k: trace[index].get(k) for k in RECORD_KEYS}
