"""History states, final states, done events and outputs."""

from __future__ import annotations

from typing import Any

import pytest

from durable_state import Machine, assign

from ._helpers import log, logs, make, run


def player() -> dict[str, Any]:
    return {
        "id": "m",
        "initial": "on",
        "context": {"log": []},
        "states": {
            "on": {
                "initial": "x",
                "on": {"OFF": "off"},
                "states": {
                    "x": {
                        "initial": "x1",
                        "on": {"Y": "y"},
                        "states": {"x1": {"on": {"N": "x2"}}, "x2": {}},
                    },
                    "y": {"entry": log("en:y")},
                    "hs": {"type": "history"},
                    "hd": {"type": "history", "history": "deep"},
                    "hy": {"type": "history", "target": "y"},
                },
            },
            "off": {"on": {"SHALLOW": "on.hs", "DEEP": "on.hd", "DEFAULT": "on.hy", "PLAIN": "on"}},
        },
    }


@pytest.mark.parametrize(
    ("events", "value"),
    [
        # Shallow history restores the child ("x") and enters its initial state.
        (["N", "OFF", "SHALLOW"], {"on": {"x": "x1"}}),
        # Deep history restores the atomic descendants.
        (["N", "OFF", "DEEP"], {"on": {"x": "x2"}}),
        (["Y", "OFF", "SHALLOW"], {"on": "y"}),
        (["Y", "OFF", "DEEP"], {"on": "y"}),
        # Plain re-entry ignores history.
        (["N", "OFF", "PLAIN"], {"on": {"x": "x1"}}),
    ],
)
def test_history_restores_what_was_active_on_exit(events: list[str], value: Any) -> None:
    # Verified against xstate.
    assert run(make(player()), *events).value == value


def test_history_without_record_uses_its_default_target() -> None:
    m = make({**player(), "initial": "off"})
    assert run(m, "DEFAULT").value == {"on": "y"}
    # Without a target, the parent's initial state.
    assert run(m, "SHALLOW").value == {"on": {"x": "x1"}}
    assert run(m, "DEEP").value == {"on": {"x": "x1"}}


def test_history_records_the_latest_exit() -> None:
    m = make(player())
    snap = run(m, "N", "OFF", "DEEP", "Y", "OFF", "DEEP")
    assert snap.value == {"on": "y"}
    # Verified against xstate's persisted historyValue.
    assert snap.history_value == {
        "m.on.hs": ("m.on.y",),
        "m.on.hd": ("m.on.y",),
        "m.on.hy": ("m.on.y",),
    }


def test_history_is_recorded_only_when_the_parent_exits() -> None:
    snap = run(make(player()), "N")
    assert snap.history_value == {}
    snap = run(make(player()), "N", "OFF")
    assert snap.history_value == {
        "m.on.hs": ("m.on.x",),
        "m.on.hd": ("m.on.x.x2",),
        "m.on.hy": ("m.on.x",),
    }


def test_history_entry_runs_entry_actions_of_the_restored_states() -> None:
    snap = run(make(player()), "Y", "OFF", "SHALLOW")
    assert logs(snap) == ["en:y", "en:y"]


def test_deep_history_of_a_parallel_state() -> None:
    m = make(
        {
            "id": "m",
            "initial": "p",
            "states": {
                "p": {
                    "type": "parallel",
                    "on": {"OFF": "off"},
                    "states": {
                        "A": {"initial": "a1", "states": {"a1": {"on": {"A": "a2"}}, "a2": {}}},
                        "B": {"initial": "b1", "states": {"b1": {"on": {"B": "b2"}}, "b2": {}}},
                        "h": {"type": "history", "history": "deep"},
                    },
                },
                "off": {"on": {"BACK": "p.h", "RESET": "p"}},
            },
        }
    )
    assert run(m, "B", "OFF", "BACK").value == {"p": {"A": "a1", "B": "b2"}}
    assert run(m, "A", "B", "OFF", "BACK").value == {"p": {"A": "a2", "B": "b2"}}
    assert run(m, "A", "B", "OFF", "RESET").value == {"p": {"A": "a1", "B": "b1"}}
    # Without a record, a history state of a parallel state enters all regions.
    assert run(m, "OFF", "BACK").value == {"p": {"A": "a1", "B": "b1"}}


# --------------------------------------------------------------------------- #
# Final states and done events
# --------------------------------------------------------------------------- #


def test_compound_done_event_carries_the_final_state_output() -> None:
    m = make(
        {
            "id": "m",
            "initial": "job",
            "context": {"log": [], "n": 7},
            "states": {
                "job": {
                    "initial": "run",
                    "onDone": {"target": "after", "actions": "keep"},
                    "states": {
                        "run": {"on": {"FINISH": "ok"}},
                        "ok": {
                            "type": "final",
                            "output": lambda context, event: {"n": context["n"]},
                        },
                    },
                },
                "after": {},
            },
        },
        actions={
            "keep": lambda context, event: None,
        },
    )
    snap, effects = m.transition(m.initial_snapshot(), "FINISH")
    assert snap.value == "after"
    assert snap.status == "active"
    (effect,) = effects
    assert dict(effect.event) == {"type": "xstate.done.state.m.job", "output": {"n": 7}}


def test_parallel_done_event_when_every_region_is_final() -> None:
    # Verified against xstate: each region's own done event carries its final
    # state's output (null without one), the parallel state's carries none.
    m = make(
        {
            "id": "m",
            "initial": "p",
            "context": {"log": []},
            "output": {"o": "root"},
            "states": {
                "p": {
                    "type": "parallel",
                    "onDone": {"target": "fin", "actions": "log_output"},
                    "states": {
                        "A": {
                            "initial": "a1",
                            "onDone": {"actions": "log_output"},
                            "states": {
                                "a1": {"on": {"E": "a2"}},
                                "a2": {"type": "final", "output": {"x": 1}},
                            },
                        },
                        "B": {
                            "initial": "b1",
                            "onDone": {"actions": "log_output"},
                            "states": {"b1": {"on": {"F": "b2"}}, "b2": {"type": "final"}},
                        },
                    },
                },
                "fin": {"type": "final", "output": {"y": 2}},
            },
        },
        actions={
            "log_output": assign(
                lambda context, event: {
                    "log": [*context["log"], f"{event['type']}={event.get('output')}"]
                }
            )
        },
    )
    snap = run(m, "E")
    assert snap.status == "active"
    assert logs(snap) == ["xstate.done.state.m.p.A={'x': 1}"]
    snap = run(m, "E", "F")
    assert logs(snap) == [
        "xstate.done.state.m.p.A={'x': 1}",
        "xstate.done.state.m.p.B=None",
        "xstate.done.state.m.p=None",
    ]
    assert snap.value == "fin"
    assert snap.status == "done"
    assert snap.output == {"o": "root"}


def test_top_level_final_state_sets_status_done_and_machine_output() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"total": 3},
            "output": lambda context, event: {"total": context["total"], "from": event["output"]},
            "states": {
                "a": {"on": {"PAY": "paid"}},
                "paid": {"type": "final", "output": {"ok": True}},
            },
        }
    )
    snap = run(m, "PAY")
    assert snap.status == "done"
    # The machine's output mapper sees the done event of the final state.
    assert snap.output == {"total": 3, "from": {"ok": True}}
    # A finished machine takes no more events: the snapshot comes back as is.
    after, effects = m.transition(snap, "PAY")
    assert after is snap
    assert effects == []
    assert not snap.can("PAY")


def test_final_state_without_machine_output_leaves_output_none() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"on": {"E": "b"}}, "b": {"type": "final", "output": 1}},
        }
    )
    snap = run(m, "E")
    assert (snap.status, snap.output) == ("done", None)


def test_completion_runs_exit_actions_of_every_active_state() -> None:
    # Verified against xstate: on completion the exit actions of the states
    # still active (the final state and its ancestors) run, innermost first.
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "exit": log("ex:root"),
            "states": {
                "a": {"exit": log("ex:a"), "on": {"E": {"target": "b", "actions": log("t")}}},
                "b": {"type": "final", "entry": log("en:b"), "exit": log("ex:b")},
            },
        }
    )
    assert logs(run(m, "E")) == ["ex:a", "t", "en:b", "ex:b", "ex:root"]


def test_final_state_at_start_finishes_immediately() -> None:
    m = Machine(
        {"id": "m", "initial": "end", "output": {"ok": 1}, "states": {"end": {"type": "final"}}}
    )
    snap = m.initial_snapshot()
    assert (snap.status, snap.output) == ("done", {"ok": 1})


def test_done_event_of_a_nested_compound_bubbles_through_on_done_chain() -> None:
    m = make(
        {
            "id": "m",
            "initial": "outer",
            "context": {"log": []},
            "states": {
                "outer": {
                    "initial": "inner",
                    "onDone": "finished",
                    "states": {
                        "inner": {
                            "initial": "i1",
                            "onDone": "end",
                            "states": {"i1": {"on": {"E": "i2"}}, "i2": {"type": "final"}},
                        },
                        "end": {"type": "final"},
                    },
                },
                "finished": {"entry": log("finished")},
            },
        }
    )
    snap = run(m, "E")
    assert snap.value == "finished"
    assert logs(snap) == ["finished"]
