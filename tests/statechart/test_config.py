"""Machine config features: ids, initial states, context, state types, targets, metadata."""

from __future__ import annotations

from typing import Any

import pytest

from durable_state import Machine, assign

from ._helpers import log, logs, make, run


def test_machine_id_and_state_ids_follow_xstate() -> None:
    m = Machine(
        {
            "id": "order",
            "initial": "cart",
            "states": {
                "cart": {"initial": "empty", "states": {"empty": {}}},
                "paid": {"id": "done"},
            },
        }
    )
    assert m.id == "order"
    # Ids are the machine id and the path joined with dots, unless a state sets its own.
    assert m.state_ids == ("order", "order.cart", "order.cart.empty", "done")
    assert run(m).active_state_ids == ("order", "order.cart", "order.cart.empty")


def test_machine_without_id_gets_a_placeholder_id() -> None:
    m = Machine({"initial": "a", "states": {"a": {}}})
    assert m.id == "(machine)"
    assert m.initial_snapshot().value == "a"


@pytest.mark.parametrize(
    ("config", "value"),
    [
        ({"initial": "a", "states": {"a": {}, "b": {}}}, "a"),
        (
            {"initial": "a", "states": {"a": {"initial": "a2", "states": {"a1": {}, "a2": {}}}}},
            {"a": "a2"},
        ),
        (
            {"type": "parallel", "states": {"x": {}, "y": {"initial": "y1", "states": {"y1": {}}}}},
            {"x": {}, "y": "y1"},
        ),
        ({"states": {}}, {}),
    ],
    ids=["atomic-initial", "nested-initial", "parallel-root", "atomic-root"],
)
def test_initial_state_value(config: dict[str, Any], value: Any) -> None:
    # Shapes verified against xstate (an atomic region of a parallel state is {}).
    assert Machine({"id": "m", **config}).initial_snapshot().value == value


def test_initial_transition_object_runs_its_actions_on_default_entry_only() -> None:
    # Verified against xstate: the initial actions run after the parent's entry,
    # before the child's, and again only when the parent is entered by default.
    m = make(
        {
            "id": "m",
            "context": {"log": []},
            "initial": {"target": "a", "actions": log("root-initial")},
            "entry": log("en:root"),
            "states": {
                "a": {
                    "entry": log("en:a"),
                    "initial": {"target": "a1", "actions": log("a-initial")},
                    "states": {"a1": {"entry": log("en:a1")}, "a2": {}},
                    "on": {"J": ".a2", "K": {"target": "a", "reenter": True}, "L": ".a1"},
                }
            },
        }
    )
    start = ["en:root", "root-initial", "en:a", "a-initial", "en:a1"]
    assert logs(run(m)) == start
    assert logs(run(m, "J")) == start
    assert logs(run(m, "J", "K")) == [*start, "en:a", "a-initial", "en:a1"]
    # Targeting the child directly is not a default entry of its parent.
    assert logs(run(m, "J", "L")) == [*start, "en:a1"]


def test_context_mapping_is_copied_for_every_actor() -> None:
    config = {"id": "m", "initial": "a", "context": {"items": []}, "states": {"a": {}}}
    m = Machine(config)
    first = m.initial_snapshot()
    first.context["items"].append(1)  # a caller mutating what it was given
    assert m.initial_snapshot().context == {"items": []}
    assert config["context"] == {"items": []}


def test_context_function_receives_the_input() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": lambda input: {"owner": input["owner"], "n": 0},
            "states": {"a": {}},
        }
    )
    assert m.initial_snapshot(input={"owner": "ann"}).context == {"owner": "ann", "n": 0}
    assert m.initial_snapshot(input={"owner": "bob"}).context["owner"] == "bob"


def test_context_function_must_return_a_mapping() -> None:
    m = Machine({"id": "m", "initial": "a", "context": lambda input: [input], "states": {"a": {}}})
    with pytest.raises(TypeError, match="not a mapping"):
        m.initial_snapshot(input=1)


def test_no_context_is_an_empty_mapping() -> None:
    assert Machine({"initial": "a", "states": {"a": {}}}).initial_snapshot().context == {}


def test_init_event_carries_the_input_to_entry_actions() -> None:
    seen: list[Any] = []

    def record(context: Any, event: Any) -> Any:
        seen.append(dict(event))
        return {}

    m = Machine(
        {"id": "m", "initial": "a", "entry": "rec", "states": {"a": {"entry": "rec"}}},
        actions={"rec": assign(record)},
    )
    m.initial_snapshot(input={"x": 1})
    assert seen == [{"type": "xstate.init", "input": {"x": 1}}] * 2


# --------------------------------------------------------------------------- #
# Transitions: target forms
# --------------------------------------------------------------------------- #

TARGETS = {
    "id": "m",
    "initial": "a",
    "states": {
        "a": {
            "initial": "a1",
            "states": {
                "a1": {
                    "on": {
                        "SIBLING": "a2",
                        "BY_ID": "#deep",
                        "BY_ID_PATH": "#m.b.b2",
                        "OBJECT": {"target": "a2"},
                        "TARGET_LIST": {"target": ["#m.p.x.x2", "#m.p.y.y2"]},
                        # A list directly under the event is a list of candidates
                        # (the first enabled one wins), not a list of targets.
                        "CANDIDATES": ["#m.p.x.x2", "#m.p.y.y2"],
                    }
                },
                "a2": {},
            },
            "on": {"CHILD": ".a2", "UP": "b"},
        },
        "b": {
            "initial": "b1",
            "states": {"b1": {}, "b2": {"initial": "z", "states": {"z": {"id": "deep"}}}},
        },
        "p": {
            "type": "parallel",
            "states": {
                "x": {"initial": "x1", "states": {"x1": {}, "x2": {}}},
                "y": {"initial": "y1", "states": {"y1": {}, "y2": {}}},
            },
        },
    },
}


@pytest.mark.parametrize(
    ("event", "value"),
    [
        ("SIBLING", {"a": "a2"}),
        ("OBJECT", {"a": "a2"}),
        ("CHILD", {"a": "a2"}),
        ("UP", {"b": "b1"}),
        ("BY_ID", {"b": {"b2": "z"}}),
        ("BY_ID_PATH", {"b": {"b2": "z"}}),
        ("TARGET_LIST", {"p": {"x": "x2", "y": "y2"}}),
        ("CANDIDATES", {"p": {"x": "x2", "y": "y1"}}),  # verified against xstate
    ],
)
def test_target_forms(event: str, value: Any) -> None:
    assert run(Machine(TARGETS), event).value == value


def test_candidate_list_first_enabled_wins() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"vip": False},
            "states": {
                "a": {
                    "on": {
                        "GO": [
                            {"target": "vip", "guard": {"type": "flag", "params": {"key": "vip"}}},
                            {"target": "normal"},
                            {"target": "never"},
                        ],
                        "MAKE_VIP": {
                            "actions": {"type": "set", "params": {"key": "vip", "value": True}}
                        },
                    }
                },
                "vip": {},
                "normal": {},
                "never": {},
            },
        }
    )
    assert run(m, "GO").value == "normal"
    assert run(m, "MAKE_VIP", "GO").value == "vip"


def test_targetless_transition_runs_actions_without_leaving() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {"entry": log("en"), "exit": log("ex"), "on": {"E": {"actions": log("t")}}}
            },
        }
    )
    assert logs(run(m, "E", "E")) == ["en", "t", "t"]


# --------------------------------------------------------------------------- #
# Metadata
# --------------------------------------------------------------------------- #


def test_tags_of_all_active_states() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {
                    "tags": ["busy", "visible"],
                    "initial": "a1",
                    "states": {"a1": {"tags": "loading"}},
                    "on": {"E": "b"},
                },
                "b": {"tags": ["visible"]},
            },
        }
    )
    s = m.initial_snapshot()
    assert s.tags == {"busy", "visible", "loading"}
    assert s.has_tag("loading")
    s, _ = m.transition(s, "E")
    assert s.tags == {"visible"}
    assert not s.has_tag("busy")


def test_meta_and_description_are_kept() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "description": "the machine",
            "states": {
                "a": {
                    "meta": {"view": "A"},
                    "description": "first",
                    "on": {"E": {"target": "b", "description": "go on", "meta": {"x": 1}}},
                },
                "b": {"meta": {"view": "B"}},
            },
        }
    )
    assert m.get_state("#m.a").config["description"] == "first"
    assert m.get_state("m").config["description"] == "the machine"
    s = m.initial_snapshot()
    assert s.meta() == {"m.a": {"view": "A"}}
    s, _ = m.transition(s, "E")
    assert s.meta() == {"m.b": {"view": "B"}}


def test_entry_and_exit_accept_one_action_or_a_list() -> None:
    m = make(
        {
            "id": "m",
            "initial": "a",
            "context": {"log": []},
            "states": {
                "a": {"entry": log("one"), "exit": [log("x1"), log("x2")], "on": {"E": "b"}},
                "b": {"entry": [log("b1"), log("b2")]},
            },
        }
    )
    assert logs(run(m, "E")) == ["one", "x1", "x2", "b1", "b2"]


def test_inline_callable_actions_and_guards() -> None:
    m = Machine(
        {
            "id": "m",
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {
                    "on": {
                        "E": [
                            {"guard": lambda c, e: c["n"] >= 2, "target": "b"},
                            {"actions": assign(lambda c, e: {"n": c["n"] + 1})},
                        ]
                    }
                },
                "b": {},
            },
        }
    )
    s = run(m, "E", "E")
    assert (s.value, s.context) == ("a", {"n": 2})
    assert run(m, "E", "E", "E").value == "b"
