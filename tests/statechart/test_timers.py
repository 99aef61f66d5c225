"""The timer queue of a snapshot: a persistent structure checked against a list."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from typing import Any

import pytest

from durable_state import Machine, NotSerializable, assign, raise_event
from durable_state.statechart import Timer, TimerQueue
from durable_state.statechart import _machine as machine_module


def model_schedule(model: list[Timer], timer_id: str, due: float, seq: int) -> list[Timer]:
    kept = [t for t in model if t.id != timer_id]
    kept.append(Timer(timer_id, {"type": timer_id}, due, seq))
    return sorted(kept, key=lambda t: (t.due_ms, t.seq))


def depth(node: Any) -> int:
    return 0 if node is None else 1 + max(depth(node.left), depth(node.right))


@pytest.mark.parametrize("seed", range(8))
def test_queue_matches_a_sorted_list_and_old_versions_stay_valid(seed: int) -> None:
    rng = random.Random(seed)
    start = [Timer(f"t{i}", {"type": f"t{i}"}, rng.choice((5.0, 10.0, 20.0)), i) for i in range(6)]
    queue = TimerQueue.of(rng.sample(start, len(start))) if seed % 2 else TimerQueue()
    model = sorted(start, key=lambda t: (t.due_ms, t.seq)) if seed % 2 else []
    seq = len(model)
    history: list[tuple[TimerQueue, list[Timer]]] = []
    for _ in range(300):
        history.append((queue, model))
        timer_id = f"t{rng.randrange(12)}"
        roll = rng.random()
        if roll < 0.55:
            due = float(rng.randrange(0, 40, 5))
            queue, replaced = queue.schedule(timer_id, {"type": timer_id}, due)
            assert replaced == any(t.id == timer_id for t in model)
            model = model_schedule(model, timer_id, due, seq)
            seq += 1
        elif roll < 0.85:
            before = queue
            queue = queue.cancel(timer_id)
            assert (queue is before) == all(t.id != timer_id for t in model)
            model = [t for t in model if t.id != timer_id]
        elif model:
            first = queue[0]
            assert first == model[0]
            queue = queue.cancel(first.id)
            model = model[1:]
        assert list(queue) == model
        assert len(queue) == len(model)
        assert bool(queue) == bool(model)
        assert queue.first == (model[0] if model else None)
        assert queue.get(timer_id) == next((t for t in model if t.id == timer_id), None)
        if model:
            assert queue[-1] == model[-1]
    for old, old_model in history:
        assert list(old) == old_model  # every earlier version is intact


def test_queue_compares_with_sequences_and_is_not_hashable() -> None:
    a = Timer("a", {"type": "a"}, 1.0, 0)
    queue = TimerQueue.of([a])
    assert queue == (a,)
    assert queue == [a]
    assert TimerQueue() == ()
    assert queue != ()
    assert queue[:1] == (a,)
    with pytest.raises(TypeError):
        hash(queue)
    with pytest.raises(ValueError, match="two pending timers with the id 'a'"):
        TimerQueue.of([a, Timer("a", {"type": "a"}, 2.0, 1)])


def test_many_timers_stay_shallow() -> None:
    # The trees stay logarithmically deep, whatever order timers come in:
    # scheduling and cancelling cost O(log n), not a copy of the queue.
    queue = TimerQueue.of([Timer(f"r{i}", {"type": "x"}, 1e6 + i, i) for i in range(2000)])
    for i in range(2000):  # all into one gap, in key order: a plain BST would degenerate
        queue, _ = queue.schedule(
            f"n{i}",
            {"type": "x"},
            10.0 + i,
        )
    for i in range(0, 2000, 3):
        queue = queue.cancel(f"r{i}")
    assert len(queue) == 4000 - len(range(0, 2000, 3))
    limit = 4 * math.log2(len(queue))
    assert depth(queue._by_due) < limit
    assert depth(queue._by_id) < limit


def timer_machine() -> Machine:
    return Machine(
        {
            "id": "t",
            "initial": "a",
            "context": {"n": 0, "k": 0},
            "states": {
                "a": {"on": {"ADD": {"actions": ["sched", "bump"]}, "NOOP": {"actions": "touch"}}}
            },
        },
        actions={
            "sched": raise_event(lambda c, e: {"type": f"T{c['n']}"}, delay=1000),
            "bump": assign(lambda c, e: {"n": c["n"] + 1}),
            "touch": assign(lambda c, e: {"k": c["k"] + 1}),
        },
    )


def test_a_step_that_touches_no_timer_shares_the_queue() -> None:
    m = timer_machine()
    s = m.initial_snapshot()
    for i in range(50):
        s, _ = m.transition(s, "ADD", now_ms=float(i))
    after, _ = m.transition(s, "NOOP")
    assert after.timers is s.timers
    restored = m.restore_snapshot(json.loads(json.dumps(m.persisted_snapshot(s))))
    assert restored.timers == s.timers
    fired, _ = m.fire_timer(restored, "T0", now_ms=2000.0)
    assert [t.id for t in fired.timers] == [f"T{i}" for i in range(1, 50)]


@pytest.fixture
def checked_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the core's JSON check is called with, in order."""
    calls: list[str] = []
    real = machine_module.check_json

    def counting(value: Any, path: str) -> None:
        calls.append(path)
        real(value, path)

    monkeypatch.setattr(machine_module, "check_json", counting)
    return calls


def test_persisted_snapshot_validates_once_and_shares_the_context(
    checked_paths: list[str],
) -> None:
    m = timer_machine()
    s, _ = m.transition(m.initial_snapshot(), "ADD")
    calls = checked_paths
    data = m.persisted_snapshot(s)
    # One pass over the document, and one over the timer no save checked yet.
    assert calls == ["", "$durable.timers[0]"]
    # Not copied: snapshots (and what they hold) are never changed in place.
    assert data["context"] is s.context
    assert data["$durable"]["timers"] == [{"id": "T0", "event": {"type": "T0"}, "due": 1000.0}]
    calls.clear()
    m.persisted_snapshot(s)
    assert calls == [""]  # the timer was checked once, by the first save


def test_timers_read_from_json_are_not_checked_again(checked_paths: list[str]) -> None:
    m = timer_machine()
    s = m.initial_snapshot()
    for i in range(3):
        s, _ = m.transition(s, "ADD", now_ms=float(i))
    raw = json.loads(json.dumps(m.persisted_snapshot(s)))
    calls = checked_paths
    calls.clear()
    decoded = m.restore_snapshot(raw, from_json=True)
    data = m.persisted_snapshot(decoded)
    assert calls == [""]  # JSON holds JSON values: its timers are saved as read
    assert data["$durable"]["timers"] == raw["$durable"]["timers"]
    assert data["$durable"]["timers"][0] is raw["$durable"]["timers"][0]
    # From any other mapping, a timer is checked (it may hold anything).
    calls.clear()
    raw["$durable"]["timers"][0]["event"]["when"] = {1, 2}
    given = m.restore_snapshot(raw)
    with pytest.raises(NotSerializable) as caught:
        m.persisted_snapshot(given)
    assert caught.value.path == "$durable.timers[0].event.when"


@pytest.mark.parametrize("from_json", [True, False])
def test_restored_timers_are_the_timers_that_were_saved(from_json: bool) -> None:
    m = timer_machine()
    s = m.initial_snapshot()
    for i in range(3):
        s, _ = m.transition(s, "ADD", now_ms=float(i))
    raw = json.loads(json.dumps(m.persisted_snapshot(s)))
    restored = m.restore_snapshot(raw, from_json=from_json)
    assert list(restored.timers) == list(s.timers)
    fields = [(t.id, t.event, t.due_ms, t.send) for t in restored.timers]
    assert fields == [(t.id, t.event, t.due_ms, t.send) for t in s.timers]
    assert [t.seq for t in restored.timers] == [0, 1, 2]  # their order in the document
    assert restored.timers.first is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        restored.timers.first.id = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("context", "path"),
    [
        ({"when": {1, 2}}, "context.when"),
        ({"items": [1, {"price": float("nan")}]}, "context.items[1].price"),
        ({"nested": {"bad key": {2: "x"}}}, "context.nested['bad key'][2]"),
        ({"deep": [[[[b"x"]]]]}, "context.deep[0][0][0][0]"),
    ],
)
def test_a_value_json_cannot_hold_is_named_by_its_path(context: Any, path: str) -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"SET": {"actions": "set"}}}}},
        actions={"set": assign(context)},
    )
    s, _ = m.transition(m.initial_snapshot(), "SET")
    with pytest.raises(NotSerializable) as info:
        m.persisted_snapshot(s)
    assert info.value.path == path
