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

from durable_state import (
    Actor,
    Machine,
    ManualClock,
    SystemIdTaken,
    UnknownActor,
    assign,
    cancel,
    enqueue_actions,
    log,
    raise_event,
    send_parent,
    send_to,
    spawn_child,
    state_in,
    stop_child,
)
from durable_state.statechart import ActionQueue

__all__ = (
    "RECORD_KEYS",
    "REFUSALS",
    "build_machine",
    "describe_mismatch",
    "first_mismatch",
    "normalize_persisted",
    "plain",
    "restore_actor_trace",
    "run_actor",
    "run_actor_persisted",
    "run_pure",
)

#: What is compared after every step.
RECORD_KEYS = ("value", "context", "status", "output", "children")

#: The exceptions with which durable_state refuses a step that xstate takes
#: into status "error" (docs/compatibility.md, row 2).
REFUSALS: dict[str, type[Exception]] = {
    "Unable to send event to actor": UnknownActor,
    "already exists": SystemIdTaken,
}

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


def _sent(context: Mapping[str, Any], event: Mapping[str, Any], **params: Any) -> Json:
    return {"type": params["type"], "n": context["a"]}


def _just_type(context: Mapping[str, Any], event: Mapping[str, Any], **params: Any) -> Json:
    return {"type": params["type"]}


def _from_input(context: Mapping[str, Any], event: Mapping[str, Any]) -> Json:
    given = event.get("input")
    n = given.get("n") if isinstance(given, Mapping) else None
    is_number = isinstance(n, int | float) and not isinstance(n, bool)
    return {"a": n if is_number else 0}


def _boom(context: Mapping[str, Any], event: Mapping[str, Any]) -> Json:
    raise RuntimeError("boom")


def _enq(q: ActionQueue, context: Mapping[str, Any], event: Mapping[str, Any], **p: Any) -> None:
    holds = p.get("guard") is None or q.check(p["guard"])
    for action in p.get("then" if holds else "else") or ():
        q(action)


def _enq_assign_up(
    q: ActionQueue, context: Mapping[str, Any], event: Mapping[str, Any], *, type: str
) -> None:
    q.assign({"a": lambda context, event: context["a"] + 1})
    q.send_parent(lambda context, event: {"type": type, "n": context["a"]})


ACTIONS.update(
    {
        "sendTo": send_to(lambda context, event, **p: p["to"], _sent),
        "sendSys": send_to(lambda context, event, **p: p["sys"], _sent),
        "sendUp": send_parent(_sent),
        "sendLater": send_to(lambda context, event, **p: p["to"], _just_type, delay=40, id="later"),
        "sendUpLater": send_parent(_just_type, delay=60, id="upLater"),
        "raiseLater": raise_event(_just_type, delay=30, id="raiseLater"),
        "cancelId": cancel(lambda context, event, *, id: id),
        "spawnA1": spawn_child("childA", id="a1", input=lambda context, event: {"n": context["a"]}),
        "spawnA2": spawn_child("childA", id="a2", input=lambda context, event: {"n": context["b"]}),
        "spawnB1": spawn_child("childB", id="b1", input=lambda context, event: {"n": context["c"]}),
        "stopId": stop_child(lambda context, event, *, id: id),
        "fromInput": assign(_from_input),
        "logA": log(lambda context, event: context["a"]),
        "boom": assign(_boom),
        "enq": enqueue_actions(_enq),
        "enqAssignUp": enqueue_actions(_enq_assign_up),
    }
)

DELAYS: dict[str, Any] = {"short": _short, "byA": _by_a}


def build_machine(case: Case) -> Machine:
    """The durable_state machine for ``case``, with the shared vocabulary.

    Raises:
        durable_state.InvalidMachine: if durable_state rejects the config.
    """
    guards = dict(GUARDS)
    for name, target in case.state_in.items():
        guards[name] = state_in(target)
    actors = {
        src: Machine(copy.deepcopy(config), actions=ACTIONS, guards=guards, delays=DELAYS)
        for src, config in case.actors.items()
    }
    return Machine(
        copy.deepcopy(case.config), actions=ACTIONS, guards=guards, delays=DELAYS, actors=actors
    )


def _record(snapshot: Any, actor: Actor | None = None) -> dict[str, Json]:
    rec = {
        "value": plain(snapshot.value),
        "context": plain(snapshot.context),
        "status": snapshot.status,
        "output": plain(snapshot.output),
        "children": {},
    }
    if actor is not None and snapshot.status == "active":
        rec["children"] = {
            cid: _record(child.snapshot, child)
            for cid, child in actor.children.items()
            if cid in snapshot.children and child.snapshot.status == "active"
        }
    return rec


def _refused(exc: Exception) -> dict[str, Json]:
    return {"refused": type(exc).__name__, "message": str(exc)}


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
        try:
            await actor.start()
        except (UnknownActor, SystemIdTaken) as exc:
            return [_refused(exc)]
        trace = [_record(actor.snapshot, actor)]
        for step in case.steps:
            if "advance" in step:
                await clock.advance(step["advance"])
            else:
                try:
                    await actor.send(step["send"])
                except (UnknownActor, SystemIdTaken) as exc:
                    # The step was refused; the caller compares this with
                    # xstate's failure there, and nothing after it.
                    trace.append(_refused(exc))
                    break
            if persist_each:
                data = _round_trip(actor.persisted_snapshot())
                await actor.stop()
                actor = Actor(machine, snapshot=data, clock=clock)
                await actor.start()
            trace.append(_record(actor.snapshot, actor))
    finally:
        await actor.stop()
    return trace


async def run_actor_persisted(case: Case, steps: int) -> list[Json]:
    """The actor's persisted snapshot (children nested) after start and each of ``steps`` steps.

    Raises:
        Exception: whatever durable_state raises; the caller reports it.
    """
    machine = build_machine(case)
    clock = ManualClock(start_ms=0)
    out: list[Json] = []
    async with Actor(machine, clock=clock) as actor:
        out.append(_round_trip(actor.persisted_snapshot()))
        for step in case.steps[:steps]:
            await actor.send(step["send"])
            out.append(_round_trip(actor.persisted_snapshot()))
    return out


def _with_metadata(data: Mapping[str, Any], machine_id: str) -> Json:
    """An xstate persisted snapshot with durable_state's metadata, children included."""
    out = dict(data)
    out["$durable"] = {"machine": machine_id, "version": 1, "timers": []}
    children = {}
    for cid, entry in (data.get("children") or {}).items():
        entry = dict(entry)
        entry["snapshot"] = _with_metadata(entry["snapshot"], entry["src"])
        children[cid] = entry
    out["children"] = children
    return out


async def restore_actor_trace(
    case: Case, persisted: Mapping[str, Any], event: Mapping[str, Any]
) -> dict[str, Json]:
    """What an actor restored from xstate's nested snapshot reports after ``event``.

    Raises:
        Exception: whatever durable_state raises; the caller reports it.
    """
    machine = build_machine(case)
    data = _with_metadata(persisted, str(case.config["id"]))
    async with Actor(machine, snapshot=data, clock=ManualClock(start_ms=0)) as actor:
        try:
            await actor.send(event)
        except (UnknownActor, SystemIdTaken) as exc:
            return _refused(exc)
        return _record(actor.snapshot, actor)


def normalize_persisted(data: Mapping[str, Any]) -> Json:
    """A persisted snapshot reduced to what both sides must agree on.

    Drops ``$durable`` (durable_state's own metadata) and absent-or-null
    fields (xstate leaves ``output``/``error`` out when undefined), and sorts
    each history entry (the set of remembered states is what counts).
    Children are compared while they run (a finished child leaves
    durable_state's ``children`` when its parent takes its done event,
    docs/compatibility.md row 6): their ``src``, ``systemId`` and their own
    snapshots, normalised alike (xstate's ``syncSnapshot`` and durable_state's
    record-level ``input`` are left out).
    """
    out = {k: plain(v) for k, v in data.items() if k != "$durable" and v is not None}
    history = out.get("historyValue")
    if isinstance(history, dict):
        out["historyValue"] = {
            k: sorted(v, key=lambda item: json.dumps(item, sort_keys=True))
            for k, v in sorted(history.items())
        }
    children = out.get("children")
    if out.get("status") != "active":
        # A machine that finished or failed has stopped its children; xstate
        # still lists them (with the status they had).
        out["children"] = {}
    elif isinstance(children, dict):
        kept = {}
        for cid, entry in children.items():
            snap = entry.get("snapshot") or {}
            if snap.get("status", "active") != "active":
                continue
            kept[cid] = {
                k: normalize_persisted(v) if k == "snapshot" else v
                for k, v in entry.items()
                if k not in ("syncSnapshot", "input") and v is not None
            }
        out["children"] = kept
    if "error" in out:
        out["error"] = "<error>"  # xstate writes an Error as {} (row 8)
    return out


def first_mismatch(
    expected: list[dict[str, Json]], actual: list[dict[str, Json]]
) -> tuple[int, str] | None:
    """The first (step index, field) where the traces differ, or None."""
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if "refused" in got:
            return index, "refused"
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
