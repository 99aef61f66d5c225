"""Actors that talk, in the pure core: the helpers, their effects and their order.

send_to, send_parent, spawn_child, stop_child, cancel, log and
enqueue_actions, invoked child machines, delayed sends as durable timers.
The core only resolves and records; carrying the effects out is the shell's
business (tests/test_actor.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from durable_state import (
    InvalidMachine,
    Machine,
    SnapshotIncompatible,
    assign,
    cancel,
    emit,
    enqueue_actions,
    log,
    raise_event,
    send_parent,
    send_to,
    spawn_child,
    state_in,
    stop_child,
)
from durable_state.statechart import (
    ActionEffect,
    ActionQueue,
    CancelTimerEffect,
    ChildRecord,
    EmitEffect,
    InvokeEffect,
    LogEffect,
    ScheduleTimerEffect,
    SendEffect,
    Snapshot,
    SpawnEffect,
    StopChildEffect,
    StopInvokeEffect,
)

from ._helpers import ACTIONS
from ._helpers import log as log_tag

KID = Machine(
    {
        "id": "kid",
        "initial": "idle",
        "context": lambda input: {"n": (input or {}).get("n", 0)},
        "states": {"idle": {"on": {"FIN": "done"}}, "done": {"type": "final"}},
    }
)


async def _work(input: Any) -> Any:
    return input


def parent(config: dict[str, Any], **actions: Any) -> Machine:
    """A machine ``p`` with the child machine ``kid`` and the async actor ``work``."""
    return Machine(
        {"id": "p", "context": {"n": 1, "log": []}, **config},
        actions={**ACTIONS, **actions},
        actors={"kid": KID, "work": _work},
        delays={"soon": 100},
    )


def on(actions: Any, **more: Any) -> dict[str, Any]:
    """A one-state config whose ``GO`` runs ``actions``."""
    return {"initial": "a", "states": {"a": {"on": {"GO": {"actions": actions}}, **more}}}


def go(m: Machine, snap: Snapshot | None = None, event: Any = "GO") -> tuple[Snapshot, list[Any]]:
    return m.transition(snap if snap is not None else m.initial_snapshot(), event)


def round_trip(m: Machine, snap: Snapshot) -> Snapshot:
    return m.restore_snapshot(json.loads(json.dumps(m.persisted_snapshot(snap))))


# --------------------------------------------------------------------------- #
# send_to and send_parent
# --------------------------------------------------------------------------- #


def test_send_to_resolves_a_static_target_and_event() -> None:
    m = parent(on("tell"), tell=send_to("inventory", {"type": "RESERVE", "sku": 7}))
    _, effects = go(m)
    assert effects == [SendEffect("inventory", {"type": "RESERVE", "sku": 7}, False, False, None)]


def test_send_to_functions_get_the_context_the_event_and_params() -> None:
    m = parent(
        on({"type": "tell", "params": {"to": "shop"}}),
        tell=send_to(
            lambda context, event, to: f"{to}-{context['n']}",
            lambda context, event, to: {"type": "HI", "from": event["who"], "to": to},
            machine="shop",
        ),
    )
    _, effects = go(m, event={"type": "GO", "who": "ann"})
    assert effects == [
        SendEffect("shop-1", {"type": "HI", "from": "ann", "to": "shop"}, False, False, "shop")
    ]


def test_send_to_takes_a_bare_type_and_sees_the_context_assigned_before_it() -> None:
    bump = assign(lambda context, event: {"n": context["n"] + 1})
    m = parent(
        on(["bump", "tell"]),
        bump=bump,
        tell=send_to("x", lambda context, event: {"type": "N", "n": context["n"]}),
    )
    _, effects = go(m)
    assert [e.event for e in effects] == [{"type": "N", "n": 2}]
    m2 = parent(on(send_to("x", "PING")))
    assert go(m2)[1] == [SendEffect("x", {"type": "PING"}, False, False, None)]


def test_send_parent_has_no_target() -> None:
    m = parent(on(send_parent({"type": "UP"})))
    assert go(m)[1] == [SendEffect("", {"type": "UP"}, True, False, None)]


def test_a_target_function_that_returns_no_string_fails_the_step() -> None:
    m = parent(on(send_to(lambda context, event: None, {"type": "X"})))  # type: ignore[arg-type,return-value]
    snap = m.initial_snapshot()
    with pytest.raises(TypeError, match="target"):
        m.transition(snap, "GO")


# --------------------------------------------------------------------------- #
# Child machines: invoke, spawn_child, stop_child, and sends to children
# --------------------------------------------------------------------------- #


def test_an_invoked_machine_is_spawned_on_entry_and_stopped_on_exit() -> None:
    m = parent(
        {
            "initial": "idle",
            "states": {
                "idle": {"on": {"GO": "busy"}},
                "busy": {
                    "invoke": {"src": "kid", "id": "k", "input": {"n": 5}, "systemId": "kids"},
                    "on": {"BACK": "idle"},
                },
            },
        }
    )
    busy, effects = go(m)
    assert effects == [SpawnEffect("k", "kid", KID, {"n": 5}, "kids")]
    assert busy.children == {"k": ChildRecord("kid", {"n": 5}, "kids")}
    idle, effects = m.transition(busy, "BACK")
    assert effects == [StopChildEffect("k")]
    assert idle.children == {}


def test_async_invokes_keep_their_own_effects() -> None:
    m = parent({"initial": "a", "states": {"a": {"invoke": {"src": "work", "id": "w"}}}})
    _, effects = m.initial_transition()
    assert effects == [InvokeEffect("w", "work", None)]


def test_spawn_child_resolves_its_id_and_input() -> None:
    m = parent(
        on({"type": "spawn", "params": {"suffix": "x"}}),
        spawn=spawn_child(
            "kid",
            id=lambda context, event, suffix: f"k-{suffix}",
            input=lambda context, event, suffix: {"n": context["n"] * 10},
            system_id="kx",
        ),
    )
    snap, effects = go(m)
    assert effects == [SpawnEffect("k-x", "kid", KID, {"n": 10}, "kx")]
    assert snap.children["k-x"] == ChildRecord("kid", {"n": 10}, "kx")


def test_spawning_a_running_childs_id_stops_it_first() -> None:
    m = parent(on(spawn_child("kid", id="k")))
    snap, _ = go(m)
    again, effects = go(m, snap)
    assert effects == [StopChildEffect("k"), SpawnEffect("k", "kid", KID, None, None)]
    assert again.children["k"] is not snap.children["k"]


def test_stop_child_stops_a_child_and_ignores_an_unknown_id() -> None:
    m = parent(
        {
            "initial": "a",
            "entry": spawn_child("kid", id="k"),
            "states": {
                "a": {
                    "on": {
                        "STOP": {"actions": stop_child(lambda context, event: event["id"])},
                        "STOP_K": {"actions": stop_child("k")},
                    }
                }
            },
        }
    )
    snap = m.initial_snapshot()
    same, effects = m.transition(snap, {"type": "STOP", "id": "nobody"})
    assert effects == []
    assert same is snap
    stopped, effects = m.transition(snap, "STOP_K")
    assert effects == [StopChildEffect("k")]
    assert stopped.children == {}


def test_stop_child_of_invoked_work_stops_the_work() -> None:
    m = parent(
        {
            "initial": "a",
            "states": {
                "a": {
                    "invoke": {"src": "work", "id": "w"},
                    "on": {"GO": {"actions": stop_child("w")}},
                }
            },
        }
    )
    _, effects = go(m)
    assert effects == [StopInvokeEffect("w")]


def test_a_send_to_a_child_is_marked_as_one() -> None:
    m = parent(
        {
            "initial": "a",
            "entry": spawn_child("kid", id="k"),
            "states": {
                "a": {"on": {"GO": {"actions": [send_to("k", "PING"), send_to("x", "PING")]}}}
            },
        }
    )
    _, effects = go(m)
    assert [(e.target, e.to_child) for e in effects] == [("k", True), ("x", False)]


def test_an_entry_action_may_send_to_the_child_its_state_invokes() -> None:
    # xstate's deferred actor ids: the send comes before the spawn, and goes
    # to the child.
    m = parent(
        {
            "initial": "idle",
            "states": {
                "idle": {"on": {"GO": "busy"}},
                "busy": {"entry": send_to("k", "HELLO"), "invoke": {"src": "kid", "id": "k"}},
            },
        }
    )
    _, effects = go(m)
    assert effects == [
        SendEffect("k", {"type": "HELLO"}, False, True, None),
        SpawnEffect("k", "kid", KID, None, None),
    ]


def test_an_exit_action_sends_to_the_child_before_it_is_stopped() -> None:
    m = parent(
        {
            "initial": "busy",
            "states": {
                "busy": {
                    "invoke": {"src": "kid", "id": "k"},
                    "exit": send_to("k", "BYE"),
                    "on": {"GO": "idle"},
                },
                "idle": {"entry": send_to("k", "LATE")},
            },
        }
    )
    _, effects = go(m)
    assert effects == [
        SendEffect("k", {"type": "BYE"}, False, True, None),
        StopChildEffect("k"),
        SendEffect("k", {"type": "LATE"}, False, False, None),
    ]


def test_a_finished_child_machine_stays_listed_until_its_state_exits() -> None:
    m = parent(
        {
            "initial": "busy",
            "states": {
                "busy": {
                    "invoke": {"src": "kid", "id": "k", "onDone": {"actions": log_tag("done")}},
                    "on": {"GO": "idle", "POKE": {"actions": send_to("k", "POKE")}},
                },
                "idle": {},
            },
        }
    )
    snap = m.initial_snapshot()
    done, _ = m.transition(snap, {"type": "xstate.done.actor.k", "output": 1, "actorId": "k"})
    assert done.context["log"] == ["done"]
    assert done.children["k"].status == "done"
    # As in xstate a send still names the child (the shell drops it).
    assert go(m, done, "POKE")[1] == [SendEffect("k", {"type": "POKE"}, False, True, None)]
    # It is not restarted by a restore, and still listed.
    assert round_trip(m, done).children["k"].status == "done"
    left, effects = go(m, done)
    assert effects == [StopChildEffect("k")]
    assert left.children == {}
    failed, _ = m.transition(snap, {"type": "xstate.error.actor.k", "error": "x", "actorId": "k"})
    assert failed.status == "error"  # no onError: the parent fails, and stops its children


def test_a_finished_parent_stops_every_child() -> None:
    m = parent(
        {
            "initial": "a",
            "entry": [spawn_child("kid", id="k1")],
            "states": {
                "a": {
                    "invoke": [{"src": "kid", "id": "k2"}, {"src": "work", "id": "w"}],
                    "on": {"GO": "end"},
                },
                "end": {"type": "final"},
            },
        }
    )
    snap, effects = go(m)
    assert snap.status == "done"
    assert effects == [StopChildEffect("k2"), StopInvokeEffect("w"), StopChildEffect("k1")]
    assert snap.children == {}


# --------------------------------------------------------------------------- #
# Delayed sends, cancel
# --------------------------------------------------------------------------- #


def test_a_delayed_send_is_a_durable_timer_that_sends_when_it_fires() -> None:
    m = parent(
        on(
            [
                send_to("shop", "PING", delay=50, id="ping", machine="shop"),
                send_parent("UP", delay="soon"),
            ]
        )
    )
    snap, effects = m.transition(m.initial_snapshot(), "GO", now_ms=1_000)
    assert [type(e) for e in effects] == [ScheduleTimerEffect, ScheduleTimerEffect]
    assert [(t.id, t.due_ms) for t in snap.timers] == [("ping", 1_050), ("xstate.send.1", 1_100)]
    data = m.persisted_snapshot(snap)
    assert data["$durable"]["timers"][0] == {
        "id": "ping",
        "event": {"type": "PING"},
        "due": 1_050,
        "send": {"to": "shop", "machine": "shop"},
    }
    assert data["$durable"]["timers"][1]["send"] == {"to": "", "parent": True}
    restored = round_trip(m, snap)
    assert restored == snap
    after, effects = m.fire_timer(restored, "ping", now_ms=1_050)
    assert effects == [SendEffect("shop", {"type": "PING"}, False, False, "shop")]
    assert after.value == "a"
    assert [t.id for t in after.timers] == ["xstate.send.1"]
    _, effects = m.fire_timer(after, "xstate.send.1", now_ms=1_100)
    assert effects == [SendEffect("", {"type": "UP"}, True, False, None)]


def test_a_delayed_send_to_a_child_that_is_gone_is_dropped() -> None:
    m = parent(
        {
            "initial": "a",
            "entry": spawn_child("kid", id="k"),
            "states": {
                "a": {
                    "on": {
                        "GO": {"actions": send_to("k", "PING", delay=10, id="p")},
                        "STOP": {"actions": stop_child("k")},
                    }
                }
            },
        }
    )
    snap, _ = go(m)
    assert snap.timers[0].send == SendEffect("k", {"type": "PING"}, False, True, None)
    assert m.fire_timer(snap, "p", now_ms=10)[1] == [snap.timers[0].send]
    stopped, _ = m.transition(snap, "STOP")
    later, effects = m.fire_timer(stopped, "p", now_ms=10)
    assert effects == []
    assert later.timers == []


def test_cancel_removes_a_delayed_raise_or_send_by_id() -> None:
    m = parent(
        {
            "initial": "a",
            "states": {
                "a": {
                    "on": {
                        "ARM": {
                            "actions": [
                                raise_event("LATER", delay=100, id="r"),
                                send_to("x", "PING", delay=100, id="s"),
                            ]
                        },
                        "CANCEL_R": {"actions": cancel("r")},
                        "CANCEL": {"actions": cancel(lambda context, event: event["id"])},
                    }
                }
            },
        }
    )
    armed, _ = m.transition(m.initial_snapshot(), "ARM")
    assert [t.id for t in armed.timers] == ["r", "s"]
    no_r, effects = m.transition(armed, "CANCEL_R")
    assert effects == [CancelTimerEffect("r")]
    none, effects = m.transition(no_r, {"type": "CANCEL", "id": "s"})
    assert effects == [CancelTimerEffect("s")]
    assert none.timers == []
    same, effects = m.transition(none, {"type": "CANCEL", "id": "nothing"})
    assert (same, effects) == (none, [])
    # Survives a persist and restore.
    restored = round_trip(m, no_r)
    assert m.transition(restored, {"type": "CANCEL", "id": "s"})[0].timers == []


def test_a_delayed_send_scheduled_again_under_its_id_replaces_the_pending_one() -> None:
    m = parent(on(send_to("x", "PING", delay=100, id="s")))
    snap, _ = m.transition(m.initial_snapshot(), "GO", now_ms=0)
    again, effects = m.transition(snap, "GO", now_ms=40)
    assert effects == [CancelTimerEffect("s"), ScheduleTimerEffect("s", {"type": "PING"}, 140)]
    assert [t.due_ms for t in again.timers] == [140]


# --------------------------------------------------------------------------- #
# log
# --------------------------------------------------------------------------- #


def test_log_a_value_a_function_or_the_context_and_event() -> None:
    m = parent(on([log("hello"), log(lambda context, event: context["n"] + 1), log()]))
    _, effects = go(m)
    assert effects == [
        LogEffect("hello"),
        LogEffect(2),
        LogEffect({"context": {"n": 1, "log": []}, "event": {"type": "GO"}}),
    ]


# --------------------------------------------------------------------------- #
# enqueue_actions
# --------------------------------------------------------------------------- #


def test_enqueue_actions_runs_what_it_enqueues_in_order() -> None:
    def choose(q: ActionQueue, context: Any, event: Any, bonus: int) -> None:
        q.assign(lambda context, event: {"n": context["n"] + bonus})
        if q.check("big"):
            q({"type": "log", "params": {"tag": "big"}})
        else:
            q("small")
        if q.check(lambda context, event: event.get("loud", False)):
            q.emit({"type": "LOUD"})
        q.send_parent(lambda context, event: {"type": "N", "n": context["n"]})
        q.send_to("x", {"type": "X"}, machine="xs")
        q.raise_event("RAISED")
        q.spawn_child("kid", id="k", input={"n": 3})
        q.stop_child("k")
        q.raise_event({"type": "LATER"}, delay=10, id="l")
        q.cancel("l")
        q.log("logged")
        q(lambda context, event: None)

    m = Machine(
        {
            "id": "p",
            "initial": "a",
            "context": {"n": 1, "log": []},
            "states": {
                "a": {
                    "on": {
                        "GO": {"actions": {"type": "choose", "params": {"bonus": 10}}},
                        "RAISED": {"actions": {"type": "log", "params": {"tag": "raised"}}},
                    }
                }
            },
        },
        actions={**ACTIONS, "choose": enqueue_actions(choose), "small": ACTIONS["log_event"]},
        guards={"big": lambda context, event: context["n"] > 5},
        actors={"kid": KID},
    )
    snap, effects = go(m, event={"type": "GO", "loud": True})
    # q.check saw the context from before the enqueued assign (n == 1).
    assert snap.context == {"n": 11, "log": ["GO", "raised"]}
    assert [type(e).__name__ for e in effects] == [
        "EmitEffect",
        "SendEffect",
        "SendEffect",
        "SpawnEffect",
        "StopChildEffect",
        "ScheduleTimerEffect",
        "CancelTimerEffect",
        "LogEffect",
        "ActionEffect",
    ]
    assert effects[1] == SendEffect("", {"type": "N", "n": 11}, True, False, None)
    assert effects[2] == SendEffect("x", {"type": "X"}, False, False, "xs")
    assert snap.children == {}
    assert snap.timers == []


def test_q_check_takes_state_in_and_guard_references() -> None:
    seen: list[bool] = []

    def probe(q: ActionQueue, context: Any, event: Any) -> None:
        seen.append(q.check(state_in("#p.a")))
        seen.append(q.check({"type": "and", "guards": ["yes", {"type": "not", "guards": ["yes"]}]}))

    m = Machine(
        {
            "id": "p",
            "initial": "a",
            "states": {"a": {"on": {"GO": {"actions": enqueue_actions(probe)}}}},
        },
        guards={"yes": lambda context, event: True},
    )
    go(m)
    assert seen == [True, False]


def test_enqueue_actions_may_enqueue_nothing() -> None:
    m = parent(on(enqueue_actions(lambda q, context, event: None)))
    _snap, effects = go(m)
    assert effects == []


def test_an_unknown_name_enqueued_fails_the_step_with_the_actions_path() -> None:
    m = parent(on(enqueue_actions(lambda q, context, event: q("nope"))))
    with pytest.raises(InvalidMachine, match=r"states\.a\.on\.GO\.actions.*no action named 'nope'"):
        go(m)
    m = parent(on(enqueue_actions(lambda q, context, event: q.check("nope"))))
    with pytest.raises(InvalidMachine, match="no guard named 'nope'"):
        go(m)
    m = parent(on(enqueue_actions(lambda q, context, event: q.spawn_child("work", id="w"))))
    with pytest.raises(InvalidMachine, match="no Machine"):
        go(m)


# --------------------------------------------------------------------------- #
# The order of effects
# --------------------------------------------------------------------------- #


def test_effects_come_in_the_order_the_actions_run() -> None:
    # exit actions, then transition actions, then entry actions (with the
    # state's timers, then its invoked children), as xstate executes them.
    m = parent(
        {
            "initial": "a",
            "states": {
                "a": {
                    "exit": [send_to("x", "EXIT"), "custom"],
                    "on": {"GO": {"target": "b", "actions": [log("T"), emit({"type": "E"})]}},
                },
                "b": {
                    "entry": [send_parent("ENTRY"), spawn_child("kid", id="s")],
                    "after": {"100": "a"},
                    "invoke": {"src": "kid", "id": "i"},
                },
            },
        },
        custom=lambda context, event: None,
    )
    _, effects = go(m)
    assert [type(e) for e in effects] == [
        SendEffect,
        ActionEffect,
        LogEffect,
        EmitEffect,
        SendEffect,
        SpawnEffect,
        ScheduleTimerEffect,
        SpawnEffect,
    ]
    assert [e.child_id for e in effects if isinstance(e, SpawnEffect)] == ["s", "i"]


# --------------------------------------------------------------------------- #
# Persisted form
# --------------------------------------------------------------------------- #


def test_child_machines_in_the_persisted_snapshot() -> None:
    m = parent(
        {
            "initial": "a",
            "entry": spawn_child("kid", id="s", input={"n": 2}),
            "states": {
                "a": {
                    "invoke": [
                        {"src": "kid", "id": "i", "systemId": "sys"},
                        {"src": "work", "id": "w", "input": 3},
                    ]
                }
            },
        }
    )
    snap = m.initial_snapshot()
    children = m.persisted_snapshot(snap)["children"]
    assert children == {
        "s": {"src": "kid", "input": {"n": 2}, "snapshot": {"status": "active"}},
        "i": {"src": "kid", "systemId": "sys", "input": None, "snapshot": {"status": "active"}},
        "w": {"src": "work", "snapshot": {"status": "active", "input": 3}},
    }
    assert round_trip(m, snap) == snap


def test_a_nested_child_snapshot_is_kept_for_the_shell() -> None:
    m = parent({"initial": "a", "states": {"a": {"invoke": {"src": "kid", "id": "i"}}}})
    data = m.persisted_snapshot(m.initial_snapshot())
    nested = KID.persisted_snapshot(KID.initial_snapshot({"n": 4}))
    data["children"]["i"]["snapshot"] = nested
    restored = m.restore_snapshot(json.loads(json.dumps(data)))
    assert restored.children["i"].snapshot == json.loads(json.dumps(nested))
    assert (
        m.persisted_snapshot(restored)["children"]["i"]["snapshot"]
        == restored.children["i"].snapshot
    )


def test_old_snapshots_with_children_still_load() -> None:
    m = parent({"initial": "a", "states": {"a": {}}})
    data = m.persisted_snapshot(m.initial_snapshot())
    data["children"] = {
        "w": {"src": "work", "snapshot": {"status": "active", "input": {"k": 1}}},
        "gone": {"src": "work", "snapshot": {"status": "done"}},
    }
    assert m.restore_snapshot(data).children == {"w": ChildRecord("work", {"k": 1})}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["children"].update(k={"src": "kid", "systemId": 3}), "malformed systemId"),
        (
            lambda d: d["$durable"]["timers"].append(
                {"id": "t", "event": {"type": "X"}, "due": 1, "send": "x"}
            ),
            "'send' is not a mapping",
        ),
        (
            lambda d: d["$durable"]["timers"].append(
                {"id": "t", "event": {"type": "X"}, "due": 1, "send": {"to": ""}}
            ),
            "malformed 'send'",
        ),
    ],
)
def test_malformed_child_and_send_entries_are_refused(change: Any, message: str) -> None:
    m = parent({"initial": "a", "states": {"a": {}}})
    data = m.persisted_snapshot(m.initial_snapshot())
    change(data)
    with pytest.raises(SnapshotIncompatible, match=message):
        m.restore_snapshot(data)


# --------------------------------------------------------------------------- #
# Build-time errors
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (send_to(3, "X"), "send_to's target is a non-empty string or a function"),  # type: ignore[arg-type]
        (send_to("", "X"), "send_to's target is a non-empty string or a function"),
        (send_to("x", {"kind": "X"}), "a sent event is an event mapping"),
        (send_to("x", "X", delay="never"), "no delay named 'never'"),
        (send_to("x", "X", delay=-1), "a delay must be a finite number"),
        (send_to("x", "X", machine=""), "machine= is the id"),
        (send_parent("X", id=""), "the id of a delayed send"),
        (spawn_child("nope", id="k"), "no actor named 'nope'"),
        (spawn_child("work", id="k"), "actor 'work' is no Machine"),
        (spawn_child("kid", id=""), "spawn_child's id"),
        (spawn_child("kid", id="k", system_id=""), "a systemId is a non-empty string"),
        (stop_child(""), "stop_child's id"),
        (cancel(None), "cancel's id"),  # type: ignore[arg-type]
        (enqueue_actions(3), "enqueue_actions takes a function"),  # type: ignore[arg-type]
    ],
)
def test_bad_helpers_fail_when_the_machine_is_built(action: Any, message: str) -> None:
    with pytest.raises(InvalidMachine, match=message) as info:
        parent(on("bad"), bad=action)
    assert info.value.path == "states.a.on.GO.actions"
    with pytest.raises(InvalidMachine, match=message) as info:
        parent(on(action))  # inline in the config
    assert info.value.path == "states.a.on.GO.actions"


def test_unknown_names_fail_when_the_machine_is_built() -> None:
    with pytest.raises(InvalidMachine, match="no action named 'notify'") as info:
        parent(on("notify"))
    assert info.value.path == "states.a.on.GO.actions"
    with pytest.raises(InvalidMachine, match="no actor named 'nope'") as info:
        parent({"initial": "a", "states": {"a": {"invoke": {"src": "nope"}}}})
    assert info.value.path == "states.a.invoke.src"


def test_an_actor_is_a_machine_or_a_callable() -> None:
    with pytest.raises(InvalidMachine, match="an actor is a Machine or an async callable"):
        Machine({"id": "m"}, actors={"x": 3})  # type: ignore[dict-item]
