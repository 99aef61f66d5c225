"""Bad input is refused early, with a precise location: configs, events."""

from __future__ import annotations

from typing import Any

import pytest

from durable_state import (
    InvalidEvent,
    InvalidMachine,
    Machine,
    SnapshotIncompatible,
    StatechartError,
)

from ._helpers import make


async def _job(input: Any) -> None:
    return None


def cart(**cart_state: Any) -> dict[str, Any]:
    return {
        "id": "order",
        "initial": "cart",
        "states": {"cart": cart_state, "paid": {}},
    }


def test_unknown_target_names_the_path_and_the_state() -> None:
    with pytest.raises(InvalidMachine) as info:
        Machine(cart(on={"CHECKOUT": {"target": "pais"}}))
    assert info.value.path == "states.cart.on.CHECKOUT.target"
    assert str(info.value).startswith("states.cart.on.CHECKOUT.target: no state 'pais'")
    assert isinstance(info.value, StatechartError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("config", "path", "reason"),
    [
        # Targets
        (cart(on={"GO": "nowhere"}), "states.cart.on.GO.target", "no state 'nowhere'"),
        (cart(on={"GO": ["paid", "nowhere"]}), "states.cart.on.GO[1].target", "no state 'nowhere'"),
        (cart(on={"GO": "#missing"}), "states.cart.on.GO.target", "no state with id '#missing'"),
        (cart(on={"GO": ".child"}), "states.cart.on.GO.target", "no state 'child'"),
        (cart(on={"GO": {"target": 3}}), "states.cart.on.GO.target", "a target is a string"),
        (cart(always={"target": "nope"}), "states.cart.always.target", "no state 'nope'"),
        (cart(after={"10": "nope"}), "states.cart.after.10.target", "no state 'nope'"),
        # Implementations that are not there
        (cart(entry="nope"), "states.cart.entry", "no action named 'nope'"),
        (cart(exit=["nope"]), "states.cart.exit[0]", "no action named 'nope'"),
        (
            cart(on={"GO": {"target": "paid", "actions": {"type": "nope"}}}),
            "states.cart.on.GO.actions.type",
            "no action named 'nope'",
        ),
        (
            cart(on={"GO": {"target": "paid", "guard": "nope"}}),
            "states.cart.on.GO.guard",
            "no guard named 'nope'",
        ),
        (
            cart(
                on={"GO": {"target": "paid", "guard": {"type": "and", "guards": ["flag", "nope"]}}}
            ),
            "states.cart.on.GO.guard.guards[1]",
            "no guard named 'nope'",
        ),
        (cart(invoke={"src": "nope"}), "states.cart.invoke.src", "no actor named 'nope'"),
        (
            cart(invoke={"src": "job", "bogusKey": 1}),
            "states.cart.invoke.bogusKey",
            "unknown invoke property",
        ),
        (
            cart(invoke=[{"src": "job"}, {"src": "job", "onSnapshot": "paid"}]),
            "states.cart.invoke[1].onSnapshot",
            "unknown invoke property",
        ),
        (
            cart(invoke={"src": "job", "systemId": 7}),
            "states.cart.invoke.systemId",
            "must be a non-empty string",
        ),
        (cart(after={"soon": "paid"}), "states.cart.after.soon", "no delay named 'soon'"),
        (cart(after={"-5": "paid"}), "states.cart.after.-5", "finite number >= 0"),
        # Structure
        (
            {"id": "m", "initial": "a", "states": {"a": {"states": {"a1": {}}}}},
            "states.a.initial",
            "a compound state needs an initial state",
        ),
        ({"id": "m", "states": {"a": {}}}, "initial", "a compound state needs an initial state"),
        (cart(initial="zzz", states={"x": {}}), "states.cart.initial", "no child state 'zzz'"),
        (cart(type="weird"), "states.cart.type", "unknown state type 'weird'"),
        (
            cart(type="final", states={"x": {}}),
            "states.cart.states",
            "a final state has no child states",
        ),
        (cart(type="compound"), "states.cart.states", "a compound state needs child states"),
        (cart(type="parallel"), "states.cart.states", "a parallel state needs child states"),
        (cart(states=["x"]), "states.cart.states", "must be a mapping"),
        (
            {"id": "m", "initial": "a", "states": {"a": "not a state"}},
            "states.a",
            "a state must be a mapping",
        ),
        (
            cart(initial="x", states={"x": {}, "h": {"type": "history", "history": "sideways"}}),
            "states.cart.states.h.history",
            "must be 'shallow' or 'deep'",
        ),
        (
            {"id": "m", "initial": "a", "states": {"a": {"id": "dup"}, "b": {"id": "dup"}}},
            "states.b.id",
            "duplicate state id 'dup'",
        ),
        (
            {"id": "m", "initial": "a", "states": {"a": {"id": "m"}}},
            "states.a.id",
            "duplicate state id 'm'",
        ),
        (cart(id=""), "states.cart.id", "non-empty string"),
        ({"id": "m", "initial": "a.b", "states": {"a.b": {}}}, "states.a.b", "cannot contain '.'"),
        # Unknown properties
        (cart(onEntry="x"), "states.cart.onEntry", "unknown state property"),
        (
            cart(on={"GO": {"target": "paid", "cond": "x"}}),
            "states.cart.on.GO.cond",
            "unknown transition property",
        ),
        (
            cart(on={"GO": {"target": "paid", "internal": True}}),
            "states.cart.on.GO.internal",
            "replaced by 'reenter'",
        ),
        (
            cart(on={"GO": {"target": "paid", "reenter": "yes"}}),
            "states.cart.on.GO.reenter",
            "true or false",
        ),
        # Bad types
        (cart(on={"GO": 42}), "states.cart.on.GO", "a transition is a target string or a mapping"),
        (cart(entry=42), "states.cart.entry", "an action is a name, a mapping or a callable"),
        (
            cart(on={"GO": {"target": "paid", "guard": 42}}),
            "states.cart.on.GO.guard",
            "a guard is a name",
        ),
        (cart(after=["10"]), "states.cart.after", "must be a mapping"),
        (cart(invoke=[42]), "states.cart.invoke[0]", "must be a mapping"),
        (
            cart(
                on={"GO": {"target": "paid", "guard": {"type": "not", "guards": ["flag", "flag"]}}}
            ),
            "states.cart.on.GO.guard",
            "'not' takes exactly one guard",
        ),
        (
            cart(on={"GO": {"target": "paid", "guard": {"type": "or", "guards": []}}}),
            "states.cart.on.GO.guard.guards",
            "needs a list of guards",
        ),
        ({**cart(), "context": {"when": object()}}, "context.when", "cannot be stored as JSON"),
        ({**cart(), "context": 42}, "context", "context is a mapping"),
        # The root
        ({"id": "m", "type": "final"}, "type", "the root must be a compound, parallel or atomic"),
        ({"id": "m", "type": "history"}, "(root)", "the root cannot be a history state"),
    ],
)
def test_invalid_config(config: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(InvalidMachine) as info:
        make(config, actors={"job": _job})
    assert info.value.path == path
    assert reason in info.value.reason
    assert str(info.value) == f"{path}: {info.value.reason}"


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"actions": ["x"]}, "actions"),
        ({"guards": 1}, "guards"),
        ({"delays": "x"}, "delays"),
        ({"actors": {"job": 42}}, "actors.job"),
        ({"version": 0}, "version"),
        ({"version": 2, "migrations": {2: lambda d: d}}, "migrations.2"),
        ({"version": 2, "migrations": {1: "not callable"}}, "migrations.1"),
        ({"delays": {"soon": "later"}}, "states.a.after.soon"),
        ({"max_microsteps": 0}, "max_microsteps"),
        ({"migrations": [1]}, "migrations"),
    ],
)
def test_invalid_machine_arguments(kwargs: dict[str, Any], path: str) -> None:
    config = {"id": "m", "initial": "a", "states": {"a": {"after": {"soon": "a"}}}}
    kwargs.setdefault("delays", {"soon": 10})
    with pytest.raises(InvalidMachine) as info:
        Machine(config, **kwargs)
    assert info.value.path == path


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(InvalidMachine):
        Machine(["not", "a", "config"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "GO"},
        {"type": 3},
        {"type": ""},
        {"type": None},
        42,
        None,
        "",
        "*",
        {"type": "*"},
        ["GO"],
    ],
)
def test_event_without_a_string_type_raises_invalid_event(event: Any) -> None:
    m = Machine({"id": "m", "initial": "a", "states": {"a": {"on": {"*": "b"}}, "b": {}}})
    snap = m.initial_snapshot()
    with pytest.raises(InvalidEvent) as info:
        m.transition(snap, event)
    assert info.value.event == event
    with pytest.raises(InvalidEvent):
        snap.can(event)
    assert snap.value == "a"


FOREIGN_CALLS: dict[str, Any] = {
    "transition": lambda m, s: m.transition(s, "GO"),
    "can": lambda m, s: m.can(s, "GO"),
    "fire_timer": lambda m, s: m.fire_timer(s, "t"),
    "persisted_snapshot": lambda m, s: m.persisted_snapshot(s),
    "fail": lambda m, s: m.fail(s, RuntimeError("x")),
}


@pytest.mark.parametrize("method", sorted(FOREIGN_CALLS))
def test_a_snapshot_of_another_machine_is_refused(method: str) -> None:
    config = {"id": "m", "initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}}
    ours, theirs = Machine(config), Machine(config)
    with pytest.raises(SnapshotIncompatible, match="persist it and restore it"):
        FOREIGN_CALLS[method](ours, theirs.initial_snapshot())
