"""Run-to-completion semantics: selection, microstep order, queues, eventless transitions.

Expected logs marked "verified against xstate" were produced by running the
same config in xstate v5.33 with an equivalent ``log`` assign action.
"""

from __future__ import annotations

from typing import Any

import pytest

from durable_state import MicrostepLimitExceeded

from ._helpers import log, logs, make, raise_, run, set_, when


def nested() -> dict[str, Any]:
    return {
        "id": "m",
        "initial": "a",
        "context": {"log": []},
        "states": {
            "a": {
                "entry": log("en:a"),
                "exit": log("ex:a"),
                "initial": "a1",
                "states": {
                    "a1": {
                        "entry": log("en:a1"),
                        "exit": log("ex:a1"),
                        "on": {
                            "GO": {"target": "#m.b.b2", "actions": log("t")},
                            "IN": {"target": "a2", "actions": log("t")},
                        },
                    },
                    "a2": {"entry": log("en:a2"), "exit": log("ex:a2")},
                },
            },
            "b": {
                "entry": log("en:b"),
                "exit": log("ex:b"),
                "initial": "b1",
                "states": {"b1": {"entry": log("en:b1")}, "b2": {"entry": log("en:b2")}},
            },
        },
    }


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # Exit innermost first, then the transition's actions, then entry
        # outermost first; only the states inside the transition domain.
        ("GO", ["ex:a1", "ex:a", "t", "en:b", "en:b2"]),
        ("IN", ["ex:a1", "t", "en:a2"]),
    ],
)
def test_exit_actions_entry_order(event: str, expected: list[str]) -> None:
    # Verified against xstate.
    snap = run(make(nested()), event)
    assert logs(snap) == ["en:a", "en:a1", *expected]


REENTER = {
    "id": "m",
    "initial": "p",
    "context": {"log": []},
    "states": {
        "p": {
            "entry": log("en:p"),
            "exit": log("ex:p"),
            "initial": "c1",
            "on": {
                "CHILD": ".c2",
                "CHILD_REENTER": {"target": ".c2", "reenter": True},
                "SELF": {"target": "p", "actions": log("t")},
                "SELF_REENTER": {"target": "p", "reenter": True, "actions": log("t")},
            },
            "states": {
                "c1": {"entry": log("en:c1"), "exit": log("ex:c1")},
                "c2": {"entry": log("en:c2"), "exit": log("ex:c2")},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("event", "expected", "value"),
    [
        # reenter is false by default: the source is neither exited nor entered.
        ("CHILD", ["ex:c1", "en:c2"], {"p": "c2"}),
        ("CHILD_REENTER", ["ex:c1", "ex:p", "en:p", "en:c2"], {"p": "c2"}),
        # A self-targeting transition without reenter resets the children only.
        ("SELF", ["ex:c1", "t", "en:c1"], {"p": "c1"}),
        ("SELF_REENTER", ["ex:c1", "ex:p", "t", "en:p", "en:c1"], {"p": "c1"}),
    ],
)
def test_reenter(event: str, expected: list[str], value: Any) -> None:
    # Verified against xstate.
    snap = run(make(REENTER), event)
    assert logs(snap) == ["en:p", "en:c1", *expected]
    assert snap.value == value


def test_atomic_self_transition_reenters_only_with_reenter_true() -> None:
    # Verified against xstate.
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "entry": log("en"),
                    "exit": log("ex"),
                    "on": {
                        "E": {"target": "a", "actions": log("t")},
                        "R": {"target": "a", "reenter": True, "actions": log("t")},
                    },
                }
            },
        }
    )
    assert logs(run(m, "E")) == ["en", "t"]
    assert logs(run(m, "R")) == ["en", "ex", "t", "en"]


def test_selection_is_deepest_first_with_fallback_to_ancestors() -> None:
    # Verified against xstate: the child's guard fails, so the parent's
    # candidates are tried in order; the root's handler is never reached.
    m = make(
        {
            "id": "m",
            "initial": "p",
            "context": {"log": [], "k": True},
            "on": {"E": {"actions": log("root")}, "ONLY_ROOT": {"actions": log("root")}},
            "states": {
                "p": {
                    "initial": "c",
                    "on": {
                        "E": [{"guard": when("nope"), "actions": log("p1")}, {"actions": log("p2")}]
                    },
                    "states": {
                        "c": {
                            "on": {
                                "E": {"guard": when("nope"), "actions": log("c")},
                                "F": [
                                    {"guard": when("k"), "actions": log("f1")},
                                    {"actions": log("f2")},
                                ],
                            }
                        }
                    },
                }
            },
        }
    )
    assert logs(run(m, "E", "F", "ONLY_ROOT")) == ["p2", "f1", "root"]


def test_an_unhandled_event_changes_nothing() -> None:
    m = make(nested())
    snap = m.initial_snapshot()
    after, effects = m.transition(snap, "UNKNOWN")
    assert after is snap
    assert effects == []


def test_wildcards_exact_first_then_longest_prefix_then_star() -> None:
    # Verified against xstate, including that "x" itself matches "x.*" and
    # "x.yy" does not match "x.y.*".
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "on": {
                        "*": {"actions": log("*")},
                        "x.*": {"actions": log("x.*")},
                        "x.y.*": {"actions": log("x.y.*")},
                        "x.y.z": {"actions": log("exact")},
                    }
                }
            },
        }
    )
    events = ["x.y.z", "x.y.w", "x.q", "x", "other", "x.yy"]
    assert logs(run(m, *events)) == ["exact", "x.y.*", "x.*", "x.*", "*", "x.*"]


def test_a_failing_exact_guard_falls_back_to_the_wildcard() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "on": {
                        "order.paid": {"guard": when("nope"), "actions": log("exact")},
                        "order.*": {"actions": log("prefix")},
                    }
                }
            },
        }
    )
    assert logs(run(m, "order.paid")) == ["prefix"]


# --------------------------------------------------------------------------- #
# Parallel states
# --------------------------------------------------------------------------- #


def parallel() -> dict[str, Any]:
    return {
        "id": "m",
        "initial": "p",
        "context": {"log": []},
        "states": {
            "p": {
                "type": "parallel",
                "entry": log("en:p"),
                "exit": log("ex:p"),
                "on": {"E": {"actions": log("p")}, "ONLY_P": {"actions": log("p")}},
                "states": {
                    "A": {
                        "initial": "a1",
                        "entry": log("en:A"),
                        "exit": log("ex:A"),
                        "states": {
                            "a1": {
                                "entry": log("en:a1"),
                                "exit": log("ex:a1"),
                                "on": {
                                    "E": {"target": "a2", "actions": log("A")},
                                    "OUT": {"target": "#m.x", "actions": log("A-out")},
                                },
                            },
                            "a2": {"entry": log("en:a2"), "exit": log("ex:a2")},
                        },
                    },
                    "B": {
                        "initial": "b1",
                        "entry": log("en:B"),
                        "exit": log("ex:B"),
                        "states": {
                            "b1": {
                                "entry": log("en:b1"),
                                "exit": log("ex:b1"),
                                "on": {
                                    "E": {"target": "b2", "actions": log("B")},
                                    "OUT": {"target": "#m.y", "actions": log("B-out")},
                                },
                            },
                            "b2": {"entry": log("en:b2"), "exit": log("ex:b2")},
                        },
                    },
                },
            },
            "x": {"entry": log("en:x")},
            "y": {"entry": log("en:y")},
        },
    }


START_P = ["en:p", "en:A", "en:a1", "en:B", "en:b1"]


def test_parallel_entry_is_in_document_order() -> None:
    snap = run(make(parallel()))
    assert snap.value == {"p": {"A": "a1", "B": "b1"}}
    assert logs(snap) == START_P


def test_one_transition_per_region_in_document_order() -> None:
    # Verified against xstate: both regions take their transition in one
    # microstep (exits innermost-first in reverse document order, actions in
    # document order, entries outermost-first); the parallel state's own
    # handler is not used because a region handled the event.
    snap = run(make(parallel()), "E")
    assert snap.value == {"p": {"A": "a2", "B": "b2"}}
    assert logs(snap) == [*START_P, "ex:b1", "ex:a1", "A", "B", "en:a2", "en:b2"]


def test_parallel_state_handles_what_no_region_handles() -> None:
    assert logs(run(make(parallel()), "ONLY_P")) == [*START_P, "p"]


def test_conflicting_region_transitions_first_in_document_order_preempts() -> None:
    # Both regions leave the parallel state: their exit sets intersect, so the
    # second (in document order) is preempted.
    snap = run(make(parallel()), "OUT")
    assert snap.value == "x"
    assert logs(snap) == [*START_P, "ex:b1", "ex:B", "ex:a1", "ex:A", "ex:p", "A-out", "en:x"]


def test_descendant_transition_preempts_an_ancestor_transition_it_conflicts_with() -> None:
    # Verified against xstate. Region A has no eventless transition of its
    # own, so its chain reaches the parallel state's (to x) first; region B's
    # atomic state has one (to y). Both exit the parallel state: the later one
    # wins because its source descends from the earlier one's
    # (removeConflictingTransitions), although it comes second.
    m = make(
        {
            "id": "m",
            "initial": "p",
            "context": {"log": [], "go": False},
            "states": {
                "p": {
                    "type": "parallel",
                    "on": {"GO": {"actions": set_("go", True)}},
                    "always": {"guard": when("go"), "target": "#m.x", "actions": log("p")},
                    "states": {
                        "A": {"initial": "a1", "states": {"a1": {}}},
                        "B": {
                            "initial": "b1",
                            "states": {
                                "b1": {
                                    "always": {
                                        "guard": when("go"),
                                        "target": "#m.y",
                                        "actions": log("b1"),
                                    }
                                }
                            },
                        },
                    },
                },
                "x": {},
                "y": {},
            },
        }
    )
    snap = run(m, "GO")
    assert snap.value == "y"
    assert logs(snap) == ["b1"]


def test_targets_in_several_regions_at_once() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {"on": {"GO": {"target": ["p.A.a2", "p.B.b2"]}}},
                "p": parallel()["states"]["p"],
                "x": {},
                "y": {},
            },
        }
    )
    snap = run(m, "GO")
    assert snap.value == {"p": {"A": "a2", "B": "b2"}}
    assert logs(snap) == ["en:p", "en:A", "en:a2", "en:B", "en:b2"]


# --------------------------------------------------------------------------- #
# Macrosteps: internal queue and eventless transitions
# --------------------------------------------------------------------------- #


def test_raised_events_are_processed_before_the_next_external_event() -> None:
    # Verified against xstate: the raised events are queued while the
    # transition's microstep completes (its entry actions run first), then
    # handled in order; the eventless transition is re-checked after every
    # microstep and fires as soon as its guard holds.
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "on": {"GO": {"target": "b", "actions": [raise_("R1"), raise_("R2"), log("t")]}}
                },
                "b": {
                    "entry": log("en:b"),
                    "on": {
                        "R1": {"target": "c", "actions": log("r1")},
                        "R2": {"actions": log("r2@b")},
                    },
                },
                "c": {
                    "entry": log("en:c"),
                    "always": {"target": "d", "guard": when("go")},
                    "on": {"R2": {"actions": [log("r2@c"), set_("go", True)]}},
                },
                "d": {"entry": log("en:d"), "on": {"R1": {"actions": log("late")}}},
            },
        }
    )
    snap = run(m, "GO")
    assert snap.value == "d"
    assert logs(snap) == ["t", "en:b", "r1", "en:c", "r2@c", "en:d"]


def test_eventless_transitions_run_before_the_internal_queue() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {"on": {"GO": {"target": "b", "actions": raise_("R")}}},
                "b": {
                    "always": {"target": "c", "actions": log("always")},
                    "on": {"R": {"actions": log("R@b")}},
                },
                "c": {"on": {"R": {"actions": log("R@c")}}},
            },
        }
    )
    assert logs(run(m, "GO")) == ["always", "R@c"]


def test_eventless_chain_settles_in_one_macrostep() -> None:
    m = make(
        {
            "id": "m",
            "initial": "idle",
            "context": {"log": [], "n": 0},
            "states": {
                "idle": {"on": {"GO": "count"}},
                "count": {
                    "always": [
                        {
                            "guard": {"type": "below", "params": {"limit": 3}},
                            "target": "count",
                            "reenter": True,
                            "actions": "inc",
                        },
                        {"target": "done"},
                    ],
                    "entry": log("en:count"),
                },
                "done": {},
            },
        }
    )
    snap = run(m, "GO")
    assert snap.value == "done"
    assert snap.context["n"] == 3
    assert logs(snap) == ["en:count"] * 4


def test_eventless_guard_sees_the_event_that_started_the_macrostep() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {"on": {"GO": "b"}},
                "b": {"always": {"guard": "urgent", "target": "c"}},
                "c": {},
            },
        },
        guards={"urgent": lambda context, event: bool(event.get("urgent"))},
    )
    assert run(m, "GO").value == "b"
    assert run(m, {"type": "GO", "urgent": True}).value == "c"


@pytest.mark.parametrize(
    "config",
    [
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"on": {"GO": "b"}}, "b": {"always": "c"}, "c": {"always": "b"}},
        },
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {
                    "on": {"GO": {"actions": raise_("PING")}, "PING": {"actions": raise_("PING")}}
                }
            },
        },
    ],
    ids=["always-loop", "raise-loop"],
)
def test_a_macrostep_that_never_settles_raises_microstep_limit_exceeded(
    config: dict[str, Any],
) -> None:
    m = make(config, max_microsteps=50)
    snap = m.initial_snapshot()
    with pytest.raises(MicrostepLimitExceeded) as info:
        m.transition(snap, "GO")
    assert info.value.limit == 50
    assert info.value.event_type == "GO"
    assert snap.value == "a"


def test_default_microstep_limit_is_bounded() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"always": {"target": "a", "reenter": True, "actions": "inc"}}},
        }
    )
    with pytest.raises(MicrostepLimitExceeded) as info:
        m.initial_snapshot()
    assert info.value.limit == 1000


def test_eventless_transition_that_changes_nothing_is_not_repeated() -> None:
    # A targetless eventless transition whose actions leave the snapshot as it
    # was is taken once (xstate stops re-selecting when nothing changed).
    m = make(
        {"id": "m", "initial": "a", "states": {"a": {"always": {"actions": "note"}}}},
        actions={"note": lambda context, event: None},
    )
    _, effects = m.initial_transition()
    assert [e.type for e in effects] == ["note"]
