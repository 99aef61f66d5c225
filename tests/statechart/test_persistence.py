"""The persisted form: its shape, JSON round trips, restore, migrations, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from durable_state import Machine, NotSerializable, SnapshotIncompatible, assign, raise_event

from ._helpers import log, make


async def job(input: Any) -> Any:
    return input


def rich_config() -> dict[str, Any]:
    """History, a parallel state, timers and an invoked child in one machine."""
    return {
        "id": "rich",
        "initial": "idle",
        "context": {"log": [], "n": 0},
        "states": {
            "idle": {"on": {"START": "work"}},
            "work": {
                "type": "parallel",
                "on": {"PAUSE": "paused"},
                "states": {
                    "left": {
                        "initial": "l1",
                        "states": {
                            "l1": {"on": {"L": {"target": "l2", "actions": log("l1>l2")}}},
                            "l2": {
                                "initial": "deep1",
                                "states": {"deep1": {"on": {"D": "deep2"}}, "deep2": {}},
                            },
                        },
                    },
                    "right": {
                        "initial": "r1",
                        "states": {
                            "r1": {
                                "entry": log("en:r1"),
                                "after": {"100": {"target": "r2", "actions": log("r1 timeout")}},
                                "invoke": {"id": "job", "src": "job", "input": {"k": 1}},
                            },
                            "r2": {
                                "entry": "inc",
                                "after": {"50": {"target": "r1", "actions": log("r2 timeout")}},
                            },
                        },
                    },
                    "hist": {"type": "history", "history": "deep"},
                },
            },
            "paused": {"on": {"RESUME": "work.hist", "RESTART": "work"}},
        },
    }


def rich() -> Machine:
    return make(rich_config(), actors={"job": job})


def test_persisted_snapshot_shape() -> None:
    m = rich()
    s, _ = m.transition(m.initial_snapshot(now_ms=1_000), "START", now_ms=2_000)
    s, _ = m.transition(s, "L", now_ms=2_500)
    s, _ = m.transition(s, "PAUSE", now_ms=3_000)
    s, _ = m.transition(s, "RESUME", now_ms=4_000)
    data = m.persisted_snapshot(s)
    assert data == {
        "status": "active",
        "value": {"work": {"left": {"l2": "deep1"}, "right": "r1"}},
        "historyValue": {
            "rich.work.hist": [{"id": "rich.work.left.l2.deep1"}, {"id": "rich.work.right.r1"}]
        },
        "context": {"log": ["en:r1", "l1>l2", "en:r1"], "n": 0},
        "children": {"job": {"src": "job", "snapshot": {"status": "active", "input": {"k": 1}}}},
        "output": None,
        "error": None,
        "$durable": {
            "machine": "rich",
            "version": 1,
            "timers": [
                {
                    "id": "xstate.after.100.rich.work.right.r1",
                    "event": {"type": "xstate.after.100.rich.work.right.r1"},
                    "due": 4_100.0,
                }
            ],
        },
    }
    # It is plain JSON.
    assert json.loads(json.dumps(data)) == data


def test_persisted_snapshot_of_a_finished_machine() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "output": {"ok": True},
            "states": {"a": {"on": {"E": "b"}}, "b": {"type": "final"}},
        }
    )
    s, _ = m.transition(m.initial_snapshot(), "E")
    data = m.persisted_snapshot(s)
    assert (data["status"], data["output"], data["value"]) == ("done", {"ok": True}, "b")
    restored = m.restore_snapshot(json.loads(json.dumps(data)))
    assert (restored.status, restored.output) == ("done", {"ok": True})


def test_persisted_error_is_json() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"invoke": {"id": "j", "src": "job"}}}},
        actors={"job": job},
    )
    s, _ = m.transition(
        m.initial_snapshot(),
        {"type": "xstate.error.actor.j", "error": KeyError("x"), "actorId": "j"},
    )
    data = m.persisted_snapshot(s)
    assert data["status"] == "error"
    assert data["error"] == {"name": "KeyError", "message": "'x'"}
    assert data["children"] == {}


STEPS: list[tuple[str, Any]] = [
    ("send", "START"),
    ("send", "L"),
    ("timer", 100),
    ("send", "D"),
    ("send", "PAUSE"),
    ("send", "RESUME"),
    ("timer", 50),
    ("send", {"type": "xstate.done.actor.job", "output": 1, "actorId": "job"}),
    ("send", "PAUSE"),
    ("send", "RESTART"),
    ("timer", 100),
]


def drive(m: Machine, persist_between: bool) -> list[Any]:
    """Run STEPS, optionally through a JSON round trip before every step."""
    now = 0.0
    s = m.initial_snapshot(now_ms=now)
    trace = []
    for kind, arg in STEPS:
        if persist_between:
            s = m.restore_snapshot(json.loads(json.dumps(m.persisted_snapshot(s))))
        now += 10
        if kind == "send":
            s, _ = m.transition(s, arg, now_ms=now)
        else:
            assert s.timers, "a timer should be pending"
            now = s.timers[0].due_ms
            s, _ = m.fire_timer(s, s.timers[0].id, now_ms=now)
        trace.append(
            (
                s.value,
                dict(s.context),
                s.history_value,
                [(t.id, t.due_ms) for t in s.timers],
                sorted(s.children),
            )
        )
    return trace


def test_restore_continues_exactly_as_if_never_stopped() -> None:
    m = rich()
    uninterrupted = drive(m, persist_between=False)
    assert drive(m, persist_between=True) == uninterrupted
    # The scenario really went through history, timers and children.
    assert uninterrupted[5][0] == {"work": {"left": {"l2": "deep2"}, "right": "r2"}}
    assert uninterrupted[-1][0] == {"work": {"left": "l1", "right": "r2"}}


def test_restore_into_a_fresh_machine_object() -> None:
    m1 = rich()
    s, _ = m1.transition(m1.initial_snapshot(), "START")
    data = json.loads(json.dumps(m1.persisted_snapshot(s)))
    m2 = rich()
    restored = m2.restore_snapshot(data)
    assert restored.value == s.value
    assert m2.persisted_snapshot(restored) == data
    # Snapshots belong to their machine object.
    with pytest.raises(SnapshotIncompatible, match="persist it and restore it"):
        m2.transition(s, "PAUSE")


def test_not_serializable_context_names_the_path() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"items": []},
            "states": {"a": {"on": {"ADD": {"actions": "add"}}}},
        },
        actions={
            "add": assign(lambda context, event: {"items": [*context["items"], event["item"]]})
        },
    )
    s = m.initial_snapshot()
    for item in ({"price": 1}, {"price": 2.5}, {"price": object()}):
        s, _ = m.transition(s, {"type": "ADD", "item": item})
    with pytest.raises(NotSerializable) as info:
        m.persisted_snapshot(s)
    assert info.value.path == "context.items[2].price"
    assert info.value.value_type == "object"
    assert str(info.value).startswith("context.items[2].price: ")


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({1, 2}, "context.v"),
        (float("nan"), "context.v"),
        (b"bytes", "context.v"),
        ({"ok": [1, {2: "int key"}]}, "context.v.ok[1][2]"),
        ({"odd key": (1, float("inf"))}, "context.v['odd key'][1]"),
    ],
)
def test_not_serializable_values(bad: Any, path: str) -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"SET": {"actions": "set"}}}}},
        actions={"set": assign(lambda c, e: {"v": e["v"]})},
    )
    s, _ = m.transition(m.initial_snapshot(), {"type": "SET", "v": bad})
    with pytest.raises(NotSerializable) as info:
        m.persisted_snapshot(s)
    assert info.value.path == path


# --------------------------------------------------------------------------- #
# Refusals and migrations
# --------------------------------------------------------------------------- #


def persisted(m: Machine, **changes: Any) -> dict[str, Any]:
    data = m.persisted_snapshot(m.initial_snapshot())
    data.update(changes)
    return data


def simple(version: int = 1, **kwargs: Any) -> Machine:
    return Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {"a": {"on": {"GO": "b"}}, "b": {"initial": "b1", "states": {"b1": {}}}},
        },
        version=version,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(value="zzz"), "state 'zzz' does not exist"),
        (lambda d: d.update(value={"b": "nope"}), "state 'b.nope' does not exist"),
        (lambda d: d.update(value={"a": {}, "b": {}}), "has 2 active children"),
        (lambda d: d.update(value=7), "malformed state value"),
        (lambda d: d.update(value=None), "missing state value"),
        (lambda d: d["$durable"].update(machine="other"), "belongs to machine 'other'"),
        (lambda d: d["$durable"].update(version=2), "written by version 2"),
        (lambda d: d["$durable"].update(version="1"), "invalid version"),
        (lambda d: d.pop("$durable"), "missing '$durable'"),
        (lambda d: d.update(status="paused"), "unknown status"),
        (lambda d: d.update(context=[1]), "context is not a mapping"),
        (lambda d: d.update(historyValue={"m.x": []}), "no history state 'm.x'"),
        (lambda d: d.update(children={"c": {"src": "gone"}}), "unknown source 'gone'"),
        (lambda d: d["$durable"].update(timers=[{"id": 1}]), "timer 0 is malformed"),
        (
            lambda d: d["$durable"].update(timers=[{"id": "t", "event": {"type": 5}, "due": 1}]),
            "timer 0",
        ),
    ],
)
def test_snapshot_that_does_not_fit_is_refused(mutate: Any, reason: str) -> None:
    m = simple()
    data = persisted(m)
    mutate(data)
    with pytest.raises(SnapshotIncompatible) as info:
        m.restore_snapshot(data, key="orders/1")
    assert reason in info.value.reason
    assert info.value.key == "orders/1"
    assert "orders/1" in str(info.value)


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(SnapshotIncompatible):
        simple().restore_snapshot(["nope"])  # type: ignore[arg-type]


def test_partial_value_enters_initial_states_below_it() -> None:
    m = simple()
    s = m.restore_snapshot(persisted(m, value={"b": {}}))
    assert s.value == {"b": "b1"}


def test_migrations_run_in_order_from_the_stored_version() -> None:
    v1 = simple(version=1)
    old = json.loads(json.dumps(v1.persisted_snapshot(v1.initial_snapshot())))
    seen: list[int] = []

    def one_to_two(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data["$durable"]["version"])
        data["context"]["renamed"] = data["context"].pop("n")
        return data

    def two_to_three(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data["$durable"]["version"])
        data["context"]["added"] = True
        data["value"] = "b"
        return data

    v3 = simple(version=3, migrations={2: two_to_three, 1: one_to_two})
    s = v3.restore_snapshot(old)
    assert seen == [1, 2]
    assert s.context == {"renamed": 0, "added": True}
    assert s.value == {"b": "b1"}
    assert v3.persisted_snapshot(s)["$durable"]["version"] == 3
    # The stored data was not modified.
    assert old["context"] == {"n": 0}
    assert old["$durable"]["version"] == 1
    # A snapshot of version 2 only runs the second migration.
    seen.clear()
    v3.restore_snapshot({**old, "$durable": {**old["$durable"], "version": 2}})
    assert seen == [2]


def test_missing_migration_is_refused() -> None:
    v1 = simple(version=1)
    old = v1.persisted_snapshot(v1.initial_snapshot())
    v3 = simple(version=3, migrations={1: lambda d: d})
    with pytest.raises(SnapshotIncompatible, match="no migration from version 2 to 3"):
        v3.restore_snapshot(old)


def test_failing_migration_is_refused_with_its_cause() -> None:
    v1 = simple(version=1)
    old = v1.persisted_snapshot(v1.initial_snapshot())

    def broken(data: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("gone")

    v2 = simple(version=2, migrations={1: broken})
    with pytest.raises(SnapshotIncompatible, match="migration from version 1 failed") as info:
        v2.restore_snapshot(old)
    assert isinstance(info.value.__cause__, KeyError)
    v2 = simple(version=2, migrations={1: lambda d: None})
    with pytest.raises(SnapshotIncompatible, match="returned no mapping"):
        v2.restore_snapshot(old)


def test_newer_version_is_never_downgraded() -> None:
    v2 = simple(version=2, migrations={1: lambda d: d})
    data = v2.persisted_snapshot(v2.initial_snapshot())
    with pytest.raises(SnapshotIncompatible, match="written by version 2"):
        simple(version=1).restore_snapshot(data)


def test_not_serializable_timer_events_and_outputs_name_their_path() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "output": lambda context, event: {"when": object()},
            "states": {
                "a": {"on": {"LATER": {"actions": "later"}, "END": "end"}},
                "end": {"type": "final"},
            },
        },
        actions={
            "later": raise_event(lambda context, event: {"type": "PING", "data": {1, 2}}, delay=10)
        },
    )
    s, _ = m.transition(m.initial_snapshot(), "LATER")
    with pytest.raises(NotSerializable) as info:
        m.persisted_snapshot(s)
    assert info.value.path == "$durable.timers[0].event.data"
    s, _ = m.transition(m.initial_snapshot(), "END")
    with pytest.raises(NotSerializable) as info:
        m.persisted_snapshot(s)
    assert info.value.path == "output.when"
