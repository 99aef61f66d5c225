"""The pure API (snapshots, transition, effects) and the built-in actions and guards."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from durable_state import InvalidMachine, Machine, Snapshot, assign, emit, raise_event, state_in
from durable_state.statechart import (
    ActionEffect,
    CancelTimerEffect,
    EmitEffect,
    InvokeEffect,
    ScheduleTimerEffect,
    StopInvokeEffect,
)

from ._helpers import log, logs, make, run


def shop() -> Machine:
    return Machine(
        {
            "id": "shop",
            "initial": "cart",
            "context": {"items": []},
            "states": {
                "cart": {
                    "tags": ["editable"],
                    "on": {
                        "ADD": {"actions": "add"},
                        "CHECKOUT": {"target": "checkout", "guard": "has_items"},
                    },
                },
                "checkout": {
                    "initial": "paying",
                    "states": {
                        "paying": {"tags": "busy", "on": {"PAID": "done"}},
                        "done": {"type": "final"},
                    },
                    "onDone": "closed",
                },
                "closed": {"type": "final"},
            },
        },
        actions={
            "add": assign(lambda context, event: {"items": [*context["items"], event["item"]]})
        },
        guards={"has_items": lambda context, event: bool(context["items"])},
    )


def test_transition_returns_a_new_snapshot_and_leaves_the_old_one_unchanged() -> None:
    m = shop()
    s0 = m.initial_snapshot()
    frozen = (s0.value, copy.deepcopy(dict(s0.context)), s0.status)
    s1, effects = m.transition(s0, {"type": "ADD", "item": "apple"})
    assert effects == []
    assert s1 is not s0
    assert (s0.value, dict(s0.context), s0.status) == frozen
    assert s1.context == {"items": ["apple"]}
    s2, _ = m.transition(s1, "CHECKOUT")
    assert s2.value == {"checkout": "paying"}
    assert s1.value == "cart"
    with pytest.raises(AttributeError):
        s2.status = "done"  # type: ignore[misc]


def test_snapshot_views() -> None:
    m = shop()
    s = run(m, {"type": "ADD", "item": "a"}, "CHECKOUT")
    assert isinstance(s, Snapshot)
    assert s.value == {"checkout": "paying"}
    assert s.status == "active"
    assert s.output is None
    assert s.error is None
    assert s.tags == {"busy"}
    assert s.has_tag("busy")
    assert not s.has_tag("editable")
    assert s.matches("checkout")
    assert s.matches("checkout.paying")
    assert s.matches({"checkout": "paying"})
    assert not s.matches("checkout.done")
    assert not s.matches("cart")
    # The value is a copy: changing it does not change the snapshot.
    value = s.value
    assert isinstance(value, dict)
    value["checkout"] = "done"
    assert s.value == {"checkout": "paying"}


def test_can_evaluates_guards_and_ignores_unhandled_events() -> None:
    m = shop()
    s = m.initial_snapshot()
    assert s.can({"type": "ADD", "item": "x"})
    assert not s.can("CHECKOUT")  # guard fails on an empty cart
    assert not s.can("PAID")
    s = run(m, {"type": "ADD", "item": "a"})
    assert s.can("CHECKOUT")
    assert m.can(s, "CHECKOUT")


def test_matches_on_parallel_values() -> None:
    m = Machine(
        {
            "id": "m",
            "type": "parallel",
            "states": {
                "a": {"initial": "a1", "states": {"a1": {}}},
                "b": {
                    "initial": "b1",
                    "states": {"b1": {"initial": "deep", "states": {"deep": {}}}},
                },
            },
        }
    )
    s = m.initial_snapshot()
    assert s.matches("a.a1")
    assert s.matches("b.b1.deep")
    assert s.matches({"a": "a1", "b": "b1"})
    assert s.matches({"a": "a1", "b": {"b1": "deep"}})
    assert not s.matches({"a": "a2"})
    assert not s.matches("c")


def test_initial_snapshot_with_input_and_equality() -> None:
    m = Machine({"id": "m", "initial": "a", "context": lambda i: {"i": i}, "states": {"a": {}}})
    assert m.initial_snapshot(input=3) == m.initial_snapshot(input=3)
    assert m.initial_snapshot(input=3) != m.initial_snapshot(input=4)


# --------------------------------------------------------------------------- #
# Built-ins
# --------------------------------------------------------------------------- #


def test_assign_merges_the_returned_mapping_and_receives_params() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 1, "keep": "me"},
            "states": {
                "a": {
                    "on": {
                        "ADD": {"actions": {"type": "add", "params": {"by": 5}}},
                        "RESET": {"actions": "reset"},
                    }
                }
            },
        },
        actions={
            "add": assign(
                lambda context, event, by: {"n": context["n"] + by + event.get("extra", 0)}
            ),
            "reset": assign({"n": 0}),
        },
    )
    s = run(m, "ADD", {"type": "ADD", "extra": 10})
    assert s.context == {"n": 21, "keep": "me"}
    assert run(m, "ADD", "RESET").context == {"n": 0, "keep": "me"}


def test_assigns_in_one_transition_see_each_others_results() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {"a": {"on": {"E": {"actions": ["inc", "inc", "double"]}}}},
        },
        actions={"double": assign(lambda context, event: {"n": context["n"] * 2})},
    )
    assert run(m, "E").context == {"n": 4}


def test_assign_must_return_a_mapping() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"E": {"actions": "bad"}}}}},
        actions={"bad": assign(lambda context, event: [1])},
    )
    with pytest.raises(TypeError, match="must return a mapping"):
        m.transition(m.initial_snapshot(), "E")


def test_raise_event_with_a_constant_a_string_or_a_function() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "on": {
                        "GO": {
                            "actions": [
                                "r_const",
                                "r_str",
                                {"type": "r_fn", "params": {"suffix": "!"}},
                            ]
                        },
                        "ONE": {"actions": "log_event"},
                        "TWO": {"actions": "log_event"},
                        "THREE!": {"actions": "log_event"},
                    }
                }
            },
        },
        actions={
            "r_const": raise_event({"type": "ONE"}),
            "r_str": raise_event("TWO"),
            "r_fn": raise_event(lambda context, event, suffix: {"type": "THREE" + suffix}),
        },
    )
    assert logs(run(m, "GO")) == ["ONE", "TWO", "THREE!"]


def test_raised_event_fields_reach_the_handler() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"got": None},
            "states": {"a": {"on": {"GO": {"actions": "fwd"}, "FWD": {"actions": "store"}}}},
        },
        actions={
            "fwd": raise_event(lambda context, event: {"type": "FWD", "value": event["value"] * 2}),
            "store": assign(lambda context, event: {"got": event["value"]}),
        },
    )
    assert run(m, {"type": "GO", "value": 21}).context == {"got": 42}


def test_emit_is_an_effect_and_never_reaches_the_machine() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": [], "n": 2},
            "states": {
                "a": {
                    "on": {
                        "GO": {"actions": ["ping", {"type": "report", "params": {"label": "n"}}]},
                        "PING": {"actions": log("machine got PING")},
                    }
                }
            },
        },
        actions={
            "ping": emit("PING"),
            "report": emit(lambda context, event, label: {"type": "REPORT", label: context["n"]}),
        },
    )
    s, effects = m.transition(m.initial_snapshot(), "GO")
    assert effects == [EmitEffect({"type": "PING"}), EmitEffect({"type": "REPORT", "n": 2})]
    assert logs(s) == []


def test_custom_actions_are_effects_with_the_context_at_their_point() -> None:
    def note(context: Any, event: Any, **params: Any) -> None:
        raise AssertionError("the pure core never runs custom actions")

    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {
                    "exit": "note",
                    "on": {
                        "GO": {
                            "target": "b",
                            "actions": ["inc", {"type": "note", "params": {"k": 1}}, "inc"],
                        }
                    },
                },
                "b": {"entry": "note"},
            },
        },
        actions={"note": note},
    )
    s, effects = m.transition(m.initial_snapshot(), "GO")
    assert s.context == {"n": 2}
    assert all(isinstance(e, ActionEffect) for e in effects)
    assert [(e.type, dict(e.context), e.params) for e in effects] == [
        ("note", {"n": 0}, None),
        ("note", {"n": 1}, {"k": 1}),
        ("note", {"n": 2}, None),
    ]
    assert all(e.event == {"type": "GO"} for e in effects)
    calls: list[Any] = []
    ActionEffect(
        "x",
        lambda c, e, **p: calls.append((dict(c), dict(e), p)),
        {"n": 1},
        {"type": "E"},
        {"k": 2},
    ).run()
    assert calls == [({"n": 1}, {"type": "E"}, {"k": 2})]


@pytest.mark.parametrize(
    ("guard", "expected"),
    [
        (state_in("#m.p.left.on"), "yes"),
        (state_in("m.p.left.on"), "yes"),  # an id without '#' (no such path from the root)
        (state_in("#m.p.left.off"), "no"),
        # State values, as xstate's stateIn reads them (snapshot.matches)
        (state_in("p.left.on"), "yes"),
        (state_in("p.left.off"), "no"),
        (state_in("p"), "yes"),
        (state_in({"p": {"left": "on"}}), "yes"),
        (state_in({"p": {"left": "off"}}), "no"),
        (state_in({"p": {"left": "on", "right": "wait"}}), "yes"),
        (state_in({"p": {"left": "on", "right": "no"}}), "no"),
        (state_in({"p": "left"}), "yes"),
        ({"type": "stateIn", "params": {"stateId": "#m.p.left.on"}}, "yes"),
        ({"type": "stateIn", "params": {"stateValue": {"p": {"left": "on"}}}}, "yes"),
        ("left_on", "yes"),
        ({"type": "and", "guards": ["left_on", {"type": "at_least", "params": {"n": 1}}]}, "yes"),
        ({"type": "and", "guards": ["left_on", {"type": "at_least", "params": {"n": 2}}]}, "no"),
        ({"type": "or", "guards": [{"type": "at_least", "params": {"n": 9}}, "left_on"]}, "yes"),
        (
            {
                "type": "or",
                "guards": [{"type": "at_least", "params": {"n": 9}}, state_in("#m.p.left.off")],
            },
            "no",
        ),
        ({"type": "not", "guards": ["left_on"]}, "no"),
        ({"type": "not", "guards": [{"type": "not", "guards": ["left_on"]}]}, "yes"),
        ("composite", "yes"),
    ],
)
def test_guards_state_in_combinators_and_params(guard: Any, expected: str) -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "p",
            "context": {"n": 1},
            "states": {
                "p": {
                    "type": "parallel",
                    "states": {
                        "left": {"initial": "on", "states": {"on": {}, "off": {}}},
                        "right": {
                            "initial": "wait",
                            "states": {
                                "wait": {
                                    "on": {
                                        "CHECK": [
                                            {"target": "yes", "guard": guard},
                                            {"target": "no"},
                                        ]
                                    }
                                },
                                "yes": {},
                                "no": {},
                            },
                        },
                    },
                }
            },
        },
        guards={
            "left_on": state_in("#m.p.left.on"),
            "at_least": lambda context, event, n: context["n"] >= n,
            "composite": {
                "type": "and",
                "guards": ["left_on", {"type": "not", "guards": [state_in("#m.p.left.off")]}],
            },
        },
    )
    assert run(m, "CHECK").value == {"p": {"left": "on", "right": expected}}


def test_an_exception_in_an_assign_propagates_and_the_snapshot_stays() -> None:
    def boom(context: Any, event: Any) -> dict[str, Any]:
        raise ValueError("boom")

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {"a": {"on": {"E": {"target": "b", "actions": ["ok", "boom"]}}}, "b": {}},
        },
        actions={"ok": assign({"n": 1}), "boom": assign(boom)},
    )
    s = m.initial_snapshot()
    with pytest.raises(ValueError, match="boom"):
        m.transition(s, "E")
    assert (s.value, s.context) == ("a", {"n": 0})
    # The same snapshot remains usable.
    s2, _ = m.transition(s, "OTHER")
    assert s2.value == "a"


def test_an_exception_in_a_guard_propagates() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"on": {"E": {"target": "b", "guard": "bad"}}}, "b": {}},
        },
        guards={"bad": lambda context, event: 1 / 0},
    )
    s = m.initial_snapshot()
    with pytest.raises(ZeroDivisionError):
        m.transition(s, "E")
    assert s.value == "a"


# --------------------------------------------------------------------------- #
# Effects of timers and invoked work
# --------------------------------------------------------------------------- #


def test_after_schedules_timers_at_absolute_due_times() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"wait": 250},
            "states": {
                "a": {"after": {"1000": "b", "soon": "c", "computed": "c"}, "on": {"LEAVE": "c"}},
                "b": {},
                "c": {},
            },
        },
        delays={"soon": 50, "computed": lambda context, event: context["wait"]},
    )
    s, effects = m.initial_transition(now_ms=10_000)
    assert effects == [
        ScheduleTimerEffect("xstate.after.1000.m.a", {"type": "xstate.after.1000.m.a"}, 11_000.0),
        ScheduleTimerEffect("xstate.after.soon.m.a", {"type": "xstate.after.soon.m.a"}, 10_050.0),
        ScheduleTimerEffect(
            "xstate.after.computed.m.a", {"type": "xstate.after.computed.m.a"}, 10_250.0
        ),
    ]
    # Snapshot timers are sorted by due time.
    assert [t.due_ms for t in s.timers] == [10_050.0, 10_250.0, 11_000.0]
    assert s.next_timer_at == 10_050.0
    # Leaving the state cancels them.
    s2, effects = m.transition(s, "LEAVE", now_ms=10_010)
    assert s2.timers == ()
    assert sorted(e.id for e in effects if isinstance(e, CancelTimerEffect)) == sorted(
        t.id for t in s.timers
    )
    # Firing the earliest timer takes its transition.
    s3, _ = m.fire_timer(s, "xstate.after.soon.m.a", now_ms=10_050)
    assert s3.value == "c"
    # A timer that is not pending is ignored.
    assert m.fire_timer(s3, "xstate.after.soon.m.a")[0] is s3


def test_after_event_types_follow_xstate() -> None:
    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"after": {"1.5": "b", 20: "b"}}, "b": {}}},
    )
    s = m.initial_snapshot()
    assert [t.id for t in s.timers] == ["xstate.after.1.5.m.a", "xstate.after.20.m.a"]


def test_raise_event_with_delay_is_a_timer() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"on": {"GO": {"actions": "later"}, "PING": "b"}}, "b": {}},
        },
        actions={"later": raise_event("PING", delay=100, id="ping")},
    )
    s, effects = m.transition(m.initial_snapshot(now_ms=0), "GO", now_ms=5)
    assert effects == [ScheduleTimerEffect("ping", {"type": "PING"}, 105.0)]
    assert s.value == "a"
    assert m.fire_timer(s, "ping", now_ms=105)[0].value == "b"


def test_invoke_effects_and_children() -> None:
    async def fetch(input: Any) -> Any:
        return input

    m = Machine(
        {
            "id": "m",
            "initial": "idle",
            "context": {"user": "ann"},
            "states": {
                "idle": {"on": {"LOAD": "loading"}},
                "loading": {
                    "invoke": {
                        "id": "fetcher",
                        "src": "fetch",
                        "input": lambda context, event: {"user": context["user"]},
                        "onDone": {"target": "ready", "actions": "store"},
                        "onError": "failed",
                    },
                    "on": {"CANCEL": "idle"},
                },
                "ready": {},
                "failed": {},
            },
        },
        actors={"fetch": fetch},
        actions={"store": assign(lambda context, event: {"data": event["output"]})},
    )
    s, effects = m.transition(m.initial_snapshot(), "LOAD")
    assert effects == [InvokeEffect("fetcher", "fetch", {"user": "ann"})]
    assert set(s.children) == {"fetcher"}
    cancelled, effects = m.transition(s, "CANCEL")
    assert effects == [StopInvokeEffect("fetcher")]
    assert cancelled.children == {}
    done, _ = m.transition(
        s, {"type": "xstate.done.actor.fetcher", "output": [1], "actorId": "fetcher"}
    )
    assert done.value == "ready"
    assert done.context["data"] == [1]
    assert done.children == {}
    failed, _ = m.transition(
        s, {"type": "xstate.error.actor.fetcher", "error": "x", "actorId": "fetcher"}
    )
    assert failed.value == "failed"


def test_unhandled_error_event_sets_status_error() -> None:
    async def job(input: Any) -> None:
        return None

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {"a": {"invoke": {"id": "j", "src": "job"}, "after": {"10": "a"}}},
        },
        actors={"job": job},
    )
    s = m.initial_snapshot()
    err = RuntimeError("down")
    s2, effects = m.transition(s, {"type": "xstate.error.actor.j", "error": err, "actorId": "j"})
    assert s2.status == "error"
    assert s2.error is err
    assert s2.children == {}
    assert s2.timers == ()
    assert CancelTimerEffect("xstate.after.10.m.a") in effects


def test_default_invoke_id_follows_xstate() -> None:
    async def job(input: Any) -> None:
        return None

    m = Machine(
        {"id": "m", "initial": "a", "states": {"a": {"invoke": [{"src": "job"}, {"src": "job"}]}}},
        actors={"job": job},
    )
    assert set(m.initial_snapshot().children) == {"0.m.a", "1.m.a"}


def test_entry_actions_timers_and_invokes_run_in_xstate_order() -> None:
    async def job(input: Any) -> None:
        return None

    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {
                    "entry": ["note", log("entry")],
                    "after": {"5": "a"},
                    "invoke": {"src": "job"},
                }
            },
        },
        actors={"job": job},
        actions={"note": lambda context, event: None},
    )
    _, effects = m.initial_transition()
    assert [type(e).__name__ for e in effects] == [
        "ActionEffect",
        "ScheduleTimerEffect",
        "InvokeEffect",
    ]


def test_fail_keeps_the_state_and_drops_timers_and_children() -> None:
    async def job(input: Any) -> None:
        return None

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 1},
            "states": {"a": {"after": {"100": "b"}, "invoke": {"src": "job", "id": "j"}}, "b": {}},
        },
        actors={"job": job},
    )
    s = m.initial_snapshot(now_ms=0)
    assert s.timers
    assert s.children
    boom = RuntimeError("boom")
    failed = m.fail(s, boom)
    assert (failed.status, failed.error, failed.value, failed.context) == (
        "error",
        boom,
        "a",
        {"n": 1},
    )
    assert (tuple(failed.timers), dict(failed.children)) == ((), {})
    assert m.transition(failed, "ANY") == (failed, [])
    assert s.status == "active"  # the input snapshot is untouched


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("p.left.nope", "no state 'nope' in #m.p.left"),
        ({"p": {"middle": "on"}}, "no state 'middle' in #m.p"),
        ({"p": 3}, "a state value is a path or a non-empty mapping"),
        ({}, "a state value is a path or a non-empty mapping"),
        ("#m.p.nope", "no state 'p.nope' in #m"),
    ],
)
def test_state_in_a_state_that_does_not_exist_fails_when_built(state: Any, reason: str) -> None:
    config = {
        "id": "m",
        "initial": "p",
        "states": {
            "p": {
                "type": "parallel",
                "states": {"left": {"initial": "on", "states": {"on": {}}}, "right": {}},
                "on": {"GO": {"guard": "there", "actions": "noop"}},
            }
        },
    }
    with pytest.raises(InvalidMachine) as info:
        Machine(config, guards={"there": state_in(state)}, actions={"noop": lambda c, e: None})
    assert info.value.path == "states.p.on.GO.guard"
    assert reason in info.value.reason


def test_assign_per_key_form_calls_functions_and_stores_values() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 1, "m": 10, "keep": "x"},
            "states": {
                "a": {
                    "on": {
                        "GO": {"actions": {"type": "bump", "params": {"by": 2}}},
                        "SET": {"actions": assign({"n": 0, "tag": "set"})},
                    }
                }
            },
        },
        actions={
            "bump": assign(
                {
                    # every function sees the context from before this assign
                    "n": lambda context, event, by: context["n"] + by,
                    "m": lambda context, event, by: context["n"] * by + event.get("extra", 0),
                    "fixed": [1, 2],
                }
            )
        },
    )
    s, _ = m.transition(m.initial_snapshot(), {"type": "GO", "extra": 5})
    assert s.context == {"n": 3, "m": 7, "keep": "x", "fixed": [1, 2]}
    s, _ = m.transition(s, "SET")
    assert s.context == {"n": 0, "m": 7, "keep": "x", "fixed": [1, 2], "tag": "set"}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [(42, "assign takes a function or a mapping"), ({1: "x"}, "assign keys are context keys")],
)
def test_assign_of_something_else_fails_when_built(spec: Any, reason: str) -> None:
    with pytest.raises(InvalidMachine) as info:
        Machine(
            {"id": "m", "initial": "a", "states": {"a": {"entry": "bad"}}},
            actions={"bad": assign(spec)},
        )
    assert info.value.path == "states.a.entry"
    assert reason in info.value.reason


def test_invoke_system_id_is_kept_on_the_parsed_node() -> None:
    async def job(input: Any) -> None:
        return None

    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {"invoke": [{"src": "job", "id": "j", "systemId": "payments"}, {"src": "job"}]}
            },
        },
        actors={"job": job},
    )
    assert [i.system_id for i in m.get_state("#m.a").invoke] == ["payments", None]
