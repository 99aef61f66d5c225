"""Invariants of durable_state's own runs, over the differential suite's machines.

No xstate here (no node needed): every case of ``gen.py`` and
``compat_cases.py`` is driven through the pure core, and after every step

* the configuration is legal: every active state's parent is active, a
  compound state has exactly one active child, a parallel state all of its
  children (so the snapshot can be persisted and restored, and it reacts to
  events);
* the snapshot survives ``persisted_snapshot`` -> JSON -> ``restore_snapshot``
  equal to itself, and the restored snapshot, sent every remaining step,
  goes through exactly the states the live one went through.

Timed cases are driven on a simulated clock the way ``ManualClock.advance``
does it: time jumps to the end, then the timers due by then fire in due order.

Environment:
    DURABLE_STATE_INVARIANT_CASES: how many seeds to generate (default 400).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import pytest
from compat_cases import FIXED
from compat_vocab import build_machine, plain
from gen import Case, generate

from durable_state import Machine, Snapshot

CASES = [
    *(
        generate(seed)
        for seed in range(int(os.environ.get("DURABLE_STATE_INVARIANT_CASES", "400")))
    ),
    *FIXED,
]


def illegal_states(machine: Machine, snapshot: Snapshot) -> list[str]:
    """Why the snapshot's configuration is not a legal one (empty when it is)."""
    active = {machine.get_state(i) for i in snapshot.active_state_ids}
    problems = []
    if machine.root not in active:
        problems.append("the root is not active")
    for node in active:
        if node.parent is not None and node.parent not in active:
            problems.append(f"#{node.id} is active without its parent")
        on = [c for c in node.children if c in active]
        if node.type == "compound" and len(on) != 1:
            problems.append(f"compound #{node.id} has {len(on)} active children")
        if node.type == "parallel" and len(on) != len(node.children):
            problems.append(f"parallel #{node.id} has {len(on)} of its regions active")
    return sorted(problems)


def record(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "value": plain(snapshot.value),
        "context": plain(snapshot.context),
        "status": snapshot.status,
        "output": plain(snapshot.output),
        "history": plain(snapshot.history_value),
        "entry_order": list(snapshot.entry_order),
        "timers": [(t.id, plain(t.event), t.due_ms) for t in snapshot.timers],
    }


def step(
    machine: Machine, snap: Snapshot, item: Mapping[str, Any], now: float
) -> tuple[Snapshot, float]:
    """One step of a case on the simulated clock: an event, or a clock advance."""
    if "send" in item:
        return machine.transition(snap, item["send"], now_ms=now)[0], now
    now += item["advance"]
    while snap.status == "active" and snap.timers and snap.timers[0].due_ms <= now:
        snap = machine.fire_timer(snap, snap.timers[0].id, now_ms=now)[0]
    return snap, now


def round_trip(machine: Machine, snap: Snapshot) -> Snapshot:
    return machine.restore_snapshot(json.loads(json.dumps(machine.persisted_snapshot(snap))))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_snapshot_is_legal_restores_and_continues_identically(case: Case) -> None:
    machine = build_machine(case)
    now = 0.0
    snap = machine.initial_snapshot(now_ms=now)
    live: list[tuple[Snapshot, float]] = [(snap, now)]
    for item in case.steps:
        snap, now = step(machine, snap, item, now)
        live.append((snap, now))
    trace = [record(s) for s, _ in live]
    for index, (snap, now) in enumerate(live):
        where = f"{case.id} after step {index}\nconfig = {json.dumps(case.config)}"
        assert illegal_states(machine, snap) == [], where
        restored = round_trip(machine, snap)
        assert restored == snap, where
        assert record(restored) == trace[index], where
        for later, item in enumerate(case.steps[index:], start=index + 1):
            restored, now = step(machine, restored, item, now)
            assert record(restored) == trace[later], f"{where}\ncontinued to step {later}"


def test_the_generator_reaches_the_corners_these_invariants_guard() -> None:
    """Not vacuous: generated machines enter history states from inside their
    parent and have eventless transitions in more than one parallel region."""
    history_from_inside = always_in_regions = 0
    for case in CASES:
        machine = build_machine(case)
        for sid in machine.state_ids:
            node = machine.get_state(sid)
            for transitions in (*node.transitions.values(), node.always):
                for t in transitions:
                    if any(
                        x.type == "history" and x.parent in (node, *node.ancestors)
                        for x in t.targets or ()
                    ):
                        history_from_inside += 1
        regions = {
            a
            for sid in machine.state_ids
            if (node := machine.get_state(sid)).always
            for a in (node, *node.ancestors)
            if a.parent is not None and a.parent.type == "parallel"
        }
        parents = [r.parent for r in regions]
        always_in_regions += any(parents.count(p) > 1 for p in parents)
    assert history_from_inside > 50
    assert always_in_regions > 20
