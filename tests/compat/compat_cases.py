"""Hand-picked differential cases: the corners random machines rarely hit.

Each case is checked exactly like a generated one (same vocabulary, same
trace comparison, with and without a persist/restore after every step).
Entry and exit actions log tags (``en:x`` / ``ex:x``) so that the order of
exits, transition actions and entries is compared, not just the end state.
"""

from __future__ import annotations

from typing import Any

from gen import Case

__all__ = ("FIXED",)

CONTEXT = {"a": 0, "b": 0, "c": 0, "g": 0, "log": []}


def push(tag: str) -> dict[str, Any]:
    return {"type": "push", "params": {"tag": tag}}


def logged(name: str, **extra: Any) -> dict[str, Any]:
    """A state config whose entry and exit are logged as en:<name> / ex:<name>."""
    return {"entry": push(f"en:{name}"), "exit": push(f"ex:{name}"), **extra}


def machine(**config: Any) -> dict[str, Any]:
    return {"id": "m", "context": CONTEXT, **config}


def send(etype: str, **data: Any) -> dict[str, Any]:
    return {"send": {"type": etype, **data}}


def advance(ms: int) -> dict[str, Any]:
    return {"advance": ms}


_BUDGET_1 = {"type": "ctxLt", "params": {"key": "g", "n": 1}}
_INC_G = {"type": "inc", "params": {"key": "g", "by": 1}}


def _case(name: str, config: dict[str, Any], steps: list[dict[str, Any]], **kw: Any) -> Case:
    return Case(id=f"fixed-{name}", config=config, steps=steps, **kw)


FIXED: list[Case] = [
    # Two regions take E; p's transition leaves the whole parallel state, so
    # q's conflicting one is preempted: the earlier region in document order wins.
    _case(
        "parallel-conflict-document-order",
        machine(
            type="parallel",
            states={
                "p": logged(
                    "p",
                    initial="a",
                    states={
                        "a": logged("p.a", on={"E": {"target": "#m.q.y", "actions": push("t:p")}}),
                        "b": logged("p.b"),
                    },
                ),
                "q": logged(
                    "q",
                    initial="x",
                    states={
                        "x": logged("q.x", on={"E": {"target": "z", "actions": push("t:q")}}),
                        "y": logged("q.y"),
                        "z": logged("q.z"),
                    },
                ),
            },
        ),
        [send("E"), send("E")],
    ),
    # The same, with the crossing transition in the later region: now the
    # earlier region's local transition wins and the crossing one is dropped.
    _case(
        "parallel-conflict-later-region-loses",
        machine(
            type="parallel",
            states={
                "p": logged(
                    "p",
                    initial="a",
                    states={
                        "a": logged("p.a", on={"E": {"target": "b", "actions": push("t:p")}}),
                        "b": logged("p.b"),
                    },
                ),
                "q": logged(
                    "q",
                    initial="x",
                    states={
                        "x": logged("q.x", on={"E": {"target": "#m.p.a", "actions": push("t:q")}}),
                        "y": logged("q.y"),
                    },
                ),
            },
        ),
        [send("E"), send("E")],
    ),
    # Non-conflicting transitions in every region run in document order, and
    # a parent's handler is not taken when a region's own one is.
    _case(
        "parallel-actions-document-order",
        machine(
            initial="w",
            states={
                "w": logged(
                    "w",
                    type="parallel",
                    on={"F": {"actions": push("t:w")}, "G": {"actions": push("t:w")}},
                    states={
                        "r1": {
                            "initial": "a",
                            "states": {
                                "a": logged(
                                    "r1.a", on={"F": {"target": "b", "actions": push("t:r1")}}
                                ),
                                "b": logged(
                                    "r1.b", on={"F": {"target": "a", "actions": push("t:r1")}}
                                ),
                            },
                        },
                        "r2": {
                            "initial": "a",
                            "states": {"a": logged("r2.a", on={"F": {"actions": push("t:r2")}})},
                        },
                        "r3": {
                            "initial": "a",
                            "states": {
                                "a": logged("r3.a", on={"F": {"target": "a", "reenter": True}}),
                            },
                        },
                    },
                )
            },
        ),
        [send("F"), send("G"), send("F")],
    ),
    # Deep and shallow history, default targets, and history read back from
    # a persisted snapshot (persist mode restores before every event).
    _case(
        "deep-and-shallow-history",
        machine(
            initial="work",
            states={
                "work": logged(
                    "work",
                    initial="s1",
                    on={"PAUSE": "#m.paused"},
                    states={
                        "s1": logged("s1", on={"NEXT": "s2"}),
                        "s2": logged(
                            "s2",
                            initial="x",
                            states={
                                "x": logged("s2.x", on={"DEEP": "y"}),
                                "y": logged("s2.y"),
                            },
                        ),
                        "hist": {"type": "history", "history": "deep"},
                        "shal": {"type": "history", "target": "s2"},
                    },
                ),
                "paused": logged(
                    "paused", on={"RESUME": "work.hist", "RESUME_SHALLOW": "work.shal"}
                ),
            },
        ),
        [
            send("RESUME_SHALLOW"),
            send("PAUSE"),
            send("RESUME_SHALLOW"),
            send("NEXT"),
            send("DEEP"),
            send("PAUSE"),
            send("RESUME"),
            send("PAUSE"),
            send("RESUME_SHALLOW"),
            send("DEEP"),
            send("PAUSE"),
            send("RESUME"),
        ],
    ),
    # done.state events: a compound's final child (with output), a parallel
    # state whose regions all finish, a wildcard that sees the done events,
    # and the machine's own output once a top-level final state is reached.
    _case(
        "done-state-events",
        machine(
            initial="job",
            output={"result": "ok"},
            states={
                "job": logged(
                    "job",
                    initial="step1",
                    onDone={"target": "wrap", "actions": ["push", "pushOut"]},
                    states={
                        "step1": {"on": {"GO": "step2"}},
                        "step2": {"type": "final", "output": {"n": 2}},
                    },
                ),
                "wrap": logged(
                    "wrap",
                    type="parallel",
                    on={"*": {"actions": push("star")}},
                    onDone={"target": "end", "actions": ["push", "pushOut"]},
                    states={
                        "left": {
                            "initial": "l1",
                            "states": {
                                "l1": {"on": {"L": "l2"}},
                                "l2": {"type": "final", "output": {"side": "left"}},
                            },
                        },
                        "right": {
                            "initial": "r1",
                            "states": {
                                "r1": {"on": {"R": "r2"}},
                                "r2": logged("right.r2", type="final"),
                            },
                        },
                    },
                ),
                "end": logged("end", type="final", output={"ignored": True}),
            },
        ),
        [send("GO"), send("L"), send("X"), send("R"), send("GO")],
    ),
    # A top-level final state's own output is not the machine's output when
    # the machine has none (xstate 5: only the root's `output` counts).
    _case(
        "top-level-final-output",
        machine(
            initial="a",
            states={
                "a": {"on": {"GO": "done"}},
                "done": {"type": "final", "output": {"from": "final-state"}},
            },
        ),
        [send("GO"), send("GO")],
    ),
    # A machine that is done before its first event.
    _case(
        "done-at-start",
        machine(
            initial="a",
            output={"early": True},
            states={
                "a": logged("a", always={"target": "b", "actions": "push"}),
                "b": logged("b", type="final"),
            },
        ),
        [send("GO")],
    ),
    # reenter: false (default) vs true, on parents, children and self-targets.
    _case(
        "reenter-semantics",
        machine(
            initial="parent",
            states={
                "parent": logged(
                    "parent",
                    initial="a",
                    on={
                        "TO_CHILD": ".b",
                        "TO_CHILD_RE": {"target": ".b", "reenter": True},
                        "SELF": "parent",
                        "SELF_RE": {"target": "parent", "reenter": True},
                    },
                    states={
                        "a": logged(
                            "a",
                            on={
                                "ME": {"target": "a", "actions": push("t:me")},
                                "ME_RE": {"target": "a", "reenter": True},
                                "UP": "#m.parent",
                                "UP_RE": {"target": "#m.parent", "reenter": True},
                            },
                        ),
                        "b": logged("b", on={"BACK": "a"}),
                    },
                )
            },
        ),
        [
            send("TO_CHILD"),
            send("BACK"),
            send("TO_CHILD_RE"),
            send("BACK"),
            send("SELF"),
            send("SELF_RE"),
            send("ME"),
            send("ME_RE"),
            send("UP"),
            send("TO_CHILD"),
            send("UP_RE"),
            send("TO_CHILD"),
            send("UP"),
        ],
    ),
    # Raised events wait for the whole microstep (transition actions, then
    # entry actions) and are handled in the order raised, by the new state.
    _case(
        "raise-after-entry-actions",
        machine(
            initial="a",
            states={
                "a": logged(
                    "a",
                    on={
                        "GO": {
                            "target": "b",
                            "actions": [
                                push("go"),
                                {"type": "raiseE", "params": {"type": "R1"}},
                                push("after-raise"),
                            ],
                        }
                    },
                ),
                "b": {
                    "entry": [push("en:b"), {"type": "raiseE", "params": {"type": "R2"}}],
                    "on": {
                        "R1": {"target": "c", "actions": "push"},
                        "R2": {"actions": push("r2-b")},
                    },
                },
                "c": logged("c", on={"R2": {"actions": push("r2-c")}}),
            },
        ),
        [send("GO"), send("R2")],
    ),
    # Eventless transitions are checked after every microstep, before the
    # next raised event, and their actions see the event of that microstep.
    _case(
        "always-after-raise",
        machine(
            initial="a",
            states={
                "a": logged(
                    "a",
                    on={
                        "GO": {"actions": {"type": "raiseE", "params": {"type": "R1"}}},
                        "GO2": {
                            "actions": [
                                {"type": "raiseE", "params": {"type": "R1"}},
                                {"type": "inc", "params": {"key": "a", "by": 1}},
                            ]
                        },
                        "R1": {
                            "actions": [{"type": "inc", "params": {"key": "b", "by": 1}}, "push"]
                        },
                    },
                    always=[
                        {
                            "target": "c",
                            "guard": {"type": "ctxGt", "params": {"key": "a", "n": 0}},
                            "actions": "push",
                        },
                        {
                            "target": "b",
                            "guard": {"type": "ctxGt", "params": {"key": "b", "n": 0}},
                            "actions": "push",
                        },
                    ],
                ),
                "b": logged(
                    "b",
                    on={
                        "BACK": {
                            "target": "a",
                            "actions": {"type": "set", "params": {"key": "b", "value": 0}},
                        }
                    },
                ),
                "c": logged(
                    "c",
                    on={"R1": {"actions": push("r1-in-c")}, "E": {"actions": "push"}},
                    always={"target": "d", "guard": "evFlag", "actions": "push"},
                ),
                "d": logged("d"),
            },
        ),
        [send("GO"), send("BACK"), send("GO2"), send("E"), send("E", flag=True)],
    ),
    # Exact, partial (`x.*`) and full (`*`) descriptors; a child's handlers
    # come before its parent's; a disabled exact match falls back.
    _case(
        "wildcard-descriptors",
        machine(
            initial="s",
            states={
                "s": {
                    "initial": "inner",
                    "on": {
                        "*": {"actions": push("star-s")},
                        "x.*": {"actions": push("xstar-s")},
                        "x.one": {"actions": push("x1-s")},
                    },
                    "states": {
                        "inner": {
                            "on": {
                                "x.*": {"guard": "evFlag", "actions": push("xstar-inner")},
                                "x.two": {
                                    "guard": {"type": "ctxGt", "params": {"key": "a", "n": 5}},
                                    "actions": push("x2-inner"),
                                },
                            }
                        }
                    },
                }
            },
        ),
        [
            send("x.one"),
            send("x.one", flag=True),
            send("x.two"),
            send("x.two", flag=True),
            send("Z"),
            send("x"),
            send("x.three.deep"),
            send("y.one"),
        ],
    ),
    # and / or / not combinators around stateIn and parametrised guards.
    _case(
        "guard-combinators",
        machine(
            type="parallel",
            states={
                "mode": {
                    "initial": "off",
                    "states": {"off": {"on": {"ON": "on"}}, "on": {"on": {"OFF": "off"}}},
                },
                "work": {
                    "initial": "idle",
                    "states": {
                        "idle": {
                            "on": {
                                "RUN": [
                                    {
                                        "target": "fast",
                                        "guard": {
                                            "type": "and",
                                            "guards": [
                                                "in_mode_on",
                                                {
                                                    "type": "or",
                                                    "guards": [
                                                        "evFlag",
                                                        {
                                                            "type": "ctxGt",
                                                            "params": {"key": "a", "n": 1},
                                                        },
                                                    ],
                                                },
                                            ],
                                        },
                                    },
                                    {
                                        "target": "slow",
                                        "guard": {"type": "not", "guards": ["in_mode_on"]},
                                    },
                                    {"actions": {"type": "inc", "params": {"key": "a", "by": 1}}},
                                ]
                            }
                        },
                        "fast": {"on": {"STOP": "idle"}},
                        "slow": {"on": {"STOP": "idle"}},
                    },
                },
            },
        ),
        [
            send("RUN"),
            send("STOP"),
            send("ON"),
            send("RUN"),
            send("RUN", flag=True),
            send("STOP"),
            send("RUN"),
            send("RUN"),
            send("RUN"),
        ],
        state_in={"in_mode_on": "#m.mode.on"},
    ),
    # Multiple targets in orthogonal regions, and a targetless transition on a
    # parallel state (no region is exited).
    _case(
        "multiple-targets-and-targetless-parallel",
        machine(
            initial="p",
            states={
                "p": logged(
                    "p",
                    type="parallel",
                    on={
                        "BOTH": {"target": [".r1.b", ".r2.b"], "actions": push("t:both")},
                        "NOTE": {"actions": push("t:note")},
                        "OUT": "#m.q",
                    },
                    states={
                        "r1": {
                            "initial": "a",
                            "states": {"a": logged("r1.a"), "b": logged("r1.b")},
                        },
                        "r2": {
                            "initial": "a",
                            "states": {"a": logged("r2.a"), "b": logged("r2.b")},
                        },
                    },
                ),
                "q": logged("q", on={"IN": ["#m.p.r1.b", "#m.p.r2.a"]}),
            },
        ),
        [send("NOTE"), send("BOTH"), send("OUT"), send("IN"), send("NOTE")],
    ),
    # Delayed transitions: cancelled on exit, restarted on reentry, chained
    # (a timer started by a firing timer counts from the end of the advance),
    # named and context-dependent delays, and ties between regions fired in
    # the order they were scheduled.
    _case(
        "after-cancel-and-restart",
        machine(
            initial="a",
            states={
                "a": logged(
                    "a",
                    after={"100": {"target": "b", "actions": "push"}},
                    on={"LEAVE": "c", "PING": {"target": "a", "reenter": True}, "POKE": "a"},
                ),
                "b": logged("b", on={"BACK": "a"}),
                "c": logged("c", on={"BACK": "a"}),
            },
        ),
        [
            advance(50),
            send("LEAVE"),
            advance(100),
            send("BACK"),
            advance(60),
            send("PING"),
            advance(60),
            send("POKE"),
            advance(30),
            advance(20),
            send("BACK"),
        ],
        timed=True,
    ),
    _case(
        "after-chain-and-named-delays",
        machine(
            initial="a",
            states={
                "a": logged("a", after={"30": {"target": "b", "actions": "push"}}),
                "b": logged(
                    "b",
                    entry=[push("en:b"), {"type": "inc", "params": {"key": "a", "by": 1}}],
                    after={"short": {"target": "c", "actions": "push"}},
                ),
                "c": logged("c", after={"byA": {"target": "a", "actions": "push"}}),
            },
        ),
        [advance(100), advance(1), advance(40), advance(200), advance(35)],
        timed=True,
    ),
    _case(
        "after-ties-across-regions",
        machine(
            type="parallel",
            states={
                "p": {
                    "initial": "a",
                    "states": {
                        "a": {"after": {"50": {"target": "b", "actions": push("p:fire")}}},
                        "b": {"on": {"RESET": "a"}},
                    },
                },
                "q": {
                    "initial": "a",
                    "states": {
                        "a": {"after": {"50": {"target": "b", "actions": push("q:fire")}}},
                        "b": {"on": {"RESET": "a"}},
                    },
                },
                "r": {
                    "initial": "a",
                    "states": {
                        "a": {
                            "after": {
                                "50": {"target": "b", "actions": push("r:fire")},
                                "short": {"actions": push("r:short")},
                            }
                        },
                        "b": {},
                    },
                },
            },
        ),
        [advance(49), advance(1), send("RESET"), advance(50), advance(10)],
        timed=True,
    ),
    # A timer restarted at the same due time goes behind the timers that
    # were already waiting for that time (scheduling order breaks ties).
    _case(
        "after-restarted-timer-loses-tie",
        machine(
            type="parallel",
            states={
                "p": {
                    "initial": "a",
                    "states": {
                        "a": {
                            "on": {"E": {"target": "a", "reenter": True}},
                            "after": {"100": {"target": "b", "actions": push("p:fire")}},
                        },
                        "b": {},
                    },
                },
                "q": {
                    "initial": "a",
                    "states": {
                        "a": {"after": {"100": {"target": "b", "actions": push("q:fire")}}},
                        "b": {},
                    },
                },
            },
        ),
        [send("E"), advance(100)],
        timed=True,
    ),
    # Eventless transitions enabled in two regions at once run in the order
    # the atomic states were entered (q.a before the newer p.b), as in xstate.
    _case(
        "always-in-two-regions-entry-order",
        machine(
            type="parallel",
            states={
                "p": {
                    "initial": "a",
                    "states": {
                        "a": {
                            "on": {
                                "GO": {
                                    "target": "b",
                                    "actions": {"type": "set", "params": {"key": "g", "value": 0}},
                                }
                            }
                        },
                        "b": {"always": {"guard": _BUDGET_1, "actions": [_INC_G, push("p")]}},
                    },
                },
                "q": {
                    "initial": "a",
                    "states": {
                        "a": {"always": {"guard": _BUDGET_1, "actions": [_INC_G, push("q")]}},
                    },
                },
            },
        ),
        [send("GO")],
    ),
    # stateIn with a state value path and with a state value (snapshot.matches).
    _case(
        "state-in-values",
        machine(
            initial="p",
            states={
                "p": {
                    "type": "parallel",
                    "states": {
                        "left": {
                            "initial": "on",
                            "states": {
                                "on": {"on": {"FLIP": "off"}},
                                "off": {"on": {"FLIP": "on"}},
                            },
                        },
                        "right": {
                            "initial": "w",
                            "states": {
                                "w": {
                                    "on": {
                                        "CHECK": [
                                            {"guard": "byPath", "actions": push("path")},
                                            {"guard": "byValue", "actions": push("value")},
                                            {"guard": "byId", "actions": push("id")},
                                            {"actions": push("none")},
                                        ],
                                        "BOTH": {"guard": "both", "actions": push("both")},
                                    }
                                }
                            },
                        },
                    },
                }
            },
        ),
        [send("CHECK"), send("FLIP"), send("BOTH"), send("CHECK"), send("FLIP"), send("BOTH")],
        state_in={
            "byPath": "p.left.off",
            "byValue": {"p": {"left": "on"}},
            "byId": "#m.p.left.off",
            "both": {"p": {"left": "on", "right": "w"}},
        },
    ),
    # assign({key: fn | value}): each function sees the context from before.
    _case(
        "assign-per-key",
        machine(
            initial="a",
            states={"a": {"on": {"GO": {"actions": {"type": "perKey", "params": {"by": 2}}}}}},
        ),
        [send("GO"), send("GO")],
    ),
    # History entered from inside its own parent. (a) A parallel state's
    # history before anything was recorded: xstate exits p and never enters
    # it again (an illegal configuration, where the comparison stops);
    # durable_state re-enters it (docs/compatibility.md, row 12).
    _case(
        "history-of-parallel-from-inside",
        machine(
            initial="p",
            states={
                "p": logged(
                    "p",
                    type="parallel",
                    on={"OUT": "o"},
                    states={
                        "a": {
                            "initial": "a1",
                            "states": {"a1": {"on": {"H": "#hp", "N": "a2"}}, "a2": {}},
                        },
                        "hp": {"id": "hp", "type": "history"},
                    },
                ),
                "o": {},
            },
        ),
        [send("H"), send("N"), send("OUT")],
    ),
    # (b) A history transition that resolves to its own source re-enters it
    # in place (entry again, no exit), as in xstate; when another region's
    # transition leaves that source in the same microstep, xstate takes both
    # and b ends with two active children, durable_state lets the earlier win.
    _case(
        "history-back-to-own-source",
        machine(
            type="parallel",
            states={
                "a": {
                    "initial": "a1",
                    "states": {"a1": {"on": {"E": {"target": "#m.b.b2", "actions": push("a:E")}}}},
                },
                "b": {
                    "initial": "b1",
                    "states": {
                        "b1": logged(
                            "b1",
                            on={
                                "SOLO": {"target": "hb", "actions": push("b:SOLO")},
                                "E": {"target": "hb", "actions": push("b:E")},
                            },
                        ),
                        "b2": logged("b2", on={"F": "b1"}),
                        "hb": {"type": "history"},
                    },
                },
            },
        ),
        [send("SOLO"), send("SOLO"), send("E"), send("F"), send("SOLO")],
    ),
    # The init event reaches entry actions of the initial states.
    _case(
        "init-event",
        machine(
            initial="a",
            entry="push",
            states={
                "a": {
                    "entry": ["push", push("en:a")],
                    "initial": "x",
                    "states": {"x": {"entry": "push"}},
                }
            },
        ),
        [send("NOPE")],
    ),
]


# --------------------------------------------------------------------------- #
# Actors that talk: a parent and its child machines
# --------------------------------------------------------------------------- #


def ref(name: str, **params: Any) -> dict[str, Any]:
    return {"type": name, "params": params} if params else {"type": name}


def child(**config: Any) -> dict[str, Any]:
    """A child machine ``childA``/``childB`` (pass ``id``), with the shared context."""
    return {"context": CONTEXT, **config}


def _actors(
    name: str, config: dict[str, Any], actors: dict[str, Any], steps: list[Any], **kw: Any
) -> Case:
    return _case(name, config, steps, actors=actors, **kw)


# A child that says hello, answers P1 with U2 (carrying its `a`), and finishes
# on P2 with an output.
_ANSWERING = child(
    id="childA",
    initial="idle",
    entry=["fromInput", ref("sendUp", type="U1")],
    output={"from": "childA"},
    states={
        "idle": {
            "on": {
                "P1": {"actions": ["push", ref("inc", key="a", by=1), ref("sendUp", type="U2")]},
                "P2": "fin",
            }
        },
        "fin": {"type": "final", "entry": push("en:fin")},
    },
)

# A child that fails when it is told to.
_FAILING = child(
    id="childB",
    initial="idle",
    states={"idle": {"on": {"P1": {"actions": ["push", "boom"]}, "P2": {"actions": "push"}}}},
)

_LOG_U = {"U1": {"actions": "push"}, "U2": {"actions": ["push", ref("fromEvent", key="b")]}}

FIXED += [
    # An invoked child machine: its hello, a message and its answer, its
    # done event (with its output) taking the parent on, which stops it.
    _actors(
        "actors-invoke-send-reply-done",
        machine(
            initial="working",
            states={
                "working": logged(
                    "working",
                    invoke={
                        "src": "childA",
                        "id": "kid",
                        "input": {"n": 2},
                        "onDone": {"target": "after", "actions": ["push", "pushOut"]},
                    },
                    on={
                        "A": {"actions": ref("sendTo", to="kid", type="P1")},
                        "B": {"actions": ref("sendTo", to="kid", type="P2")},
                        **_LOG_U,
                    },
                ),
                "after": logged("after"),
            },
        ),
        {"childA": _ANSWERING},
        [send("A"), send("A"), send("B"), send("A")],
    ),
    # spawnChild and stopChild: a spawned child lives across states until it
    # is stopped; spawning again after a stop starts a fresh one.
    _actors(
        "actors-spawn-and-stop",
        machine(
            initial="a",
            on={
                "A": {"actions": "spawnA1"},
                "B": {"actions": ref("stopId", id="a1")},
                "C": {"actions": ref("sendTo", to="a1", type="P1")},
                "x.one": ".b",
                "x.two": ".a",
                **_LOG_U,
            },
            states={"a": logged("a"), "b": logged("b")},
        ),
        {"childA": _ANSWERING},
        [send("A"), send("C"), send("x.one"), send("C"), send("B"), send("A"), send("C")],
    ),
    # sendParent from a child's transition, answered by a send from the
    # parent's handler (budgeted), and a child stopped when its invoking state
    # exits after a message sent by that state's exit actions.
    _actors(
        "actors-exit-send-before-stop",
        machine(
            initial="idle",
            on=_LOG_U,
            states={
                "idle": logged("idle", on={"A": "busy"}),
                "busy": {
                    "entry": push("en:busy"),
                    "invoke": {"src": "childA", "id": "kid"},
                    "exit": [push("ex:busy"), ref("sendTo", to="kid", type="P1")],
                    "on": {"B": "idle"},
                },
            },
        ),
        {"childA": _ANSWERING},
        [send("A"), send("B"), send("A")],
    ),
    # A state's entry action sends to the child that state invokes: the
    # child gets it after its own start (xstate's deferred actor ids).
    _actors(
        "actors-entry-send-to-own-invoke",
        machine(
            initial="idle",
            states={
                "idle": logged("idle", on={"A": "busy"}),
                "busy": logged(
                    "busy",
                    entry=ref("sendTo", to="kid", type="P1"),
                    invoke={"src": "childA", "id": "kid", "input": {"n": 5}},
                    on={"B": {"target": "busy", "reenter": True}, **_LOG_U},
                ),
            },
        ),
        {"childA": _ANSWERING},
        [send("A"), send("B")],
    ),
    # enqueueActions: a guard checked at run time picks the branch, and an
    # enqueued assign is seen by the sendParent enqueued after it.
    _actors(
        "actors-enqueue-actions",
        machine(
            initial="a",
            invoke={"src": "childA", "id": "kid"},
            on={
                "A": {
                    "actions": ref(
                        "enq",
                        guard={"type": "ctxEven", "params": {"key": "c"}},
                        then=[ref("sendTo", to="kid", type="P1"), push("even")],
                        **{"else": [push("odd"), ref("inc", key="c", by=1)]},
                    )
                },
                "B": {"actions": ref("inc", key="c", by=1)},
                **_LOG_U,
            },
            states={"a": {}},
        ),
        {
            "childA": child(
                id="childA",
                initial="idle",
                states={"idle": {"on": {"P1": {"actions": ref("enqAssignUp", type="U2")}}}},
            )
        },
        [send("A"), send("B"), send("A"), send("A"), send("B"), send("A")],
    ),
    # systemId: siblings invoked by the regions of a parallel state send to
    # each other by name; the parent reaches one by name too.
    _actors(
        "actors-system-id-siblings",
        machine(
            type="parallel",
            on={"A": {"actions": ref("sendSys", sys="sysL", type="P1")}, **_LOG_U},
            states={
                "left": {"invoke": {"src": "childA", "id": "l", "systemId": "sysL"}},
                "right": {"invoke": {"src": "childB", "id": "r", "systemId": "sysR"}},
            },
        ),
        {
            "childA": child(
                id="childA",
                initial="idle",
                states={
                    "idle": {
                        "on": {"P1": {"actions": ["push", ref("sendSys", sys="sysR", type="P2")]}}
                    }
                },
            ),
            "childB": child(
                id="childB",
                initial="idle",
                states={"idle": {"on": {"P2": {"actions": ["push", ref("sendUp", type="U1")]}}}},
            ),
        },
        [send("A"), send("A")],
    ),
    # A child that fails: onError takes the parent on (and stops the child).
    _actors(
        "actors-child-error-handled",
        machine(
            initial="working",
            states={
                "working": logged(
                    "working",
                    invoke={
                        "src": "childB",
                        "id": "kid",
                        "onError": {"target": "failed", "actions": push("onError")},
                    },
                    on={
                        "A": {"actions": ref("sendTo", to="kid", type="P2")},
                        "B": {"actions": ref("sendTo", to="kid", type="P1")},
                    },
                ),
                "failed": logged("failed"),
            },
        ),
        {"childB": _FAILING},
        [send("A"), send("B"), send("A")],
    ),
    # ... and without onError the parent fails too.
    _actors(
        "actors-child-error-unhandled",
        machine(
            initial="working",
            states={
                "working": {
                    "invoke": {"src": "childB", "id": "kid"},
                    "on": {"B": {"actions": ref("sendTo", to="kid", type="P1")}},
                }
            },
        ),
        {"childB": _FAILING},
        [send("B"), send("B")],
    ),
    # A child that sends to a name nobody holds fails as in xstate (there
    # is no caller to raise to); the parent takes its error event.
    _actors(
        "actors-child-sends-to-nobody",
        machine(
            initial="working",
            states={
                "working": {
                    "invoke": {
                        "src": "childA",
                        "id": "kid",
                        "onError": {"target": "failed", "actions": push("onError")},
                    },
                    "on": {"A": {"actions": ref("sendTo", to="kid", type="P1")}},
                },
                "failed": {},
            },
        ),
        {
            "childA": child(
                id="childA",
                initial="idle",
                states={
                    "idle": {"on": {"P1": {"actions": ref("sendSys", sys="nobody", type="P2")}}}
                },
            )
        },
        [send("A"), send("A")],
    ),
    # A delayed send to a child, one cancelled before it is due, and a
    # delayed sendParent from the child; log actions along the way.
    _actors(
        "actors-delayed-send-and-cancel",
        machine(
            initial="a",
            invoke={"src": "childA", "id": "kid"},
            on={
                "A": {"actions": [ref("sendLater", to="kid", type="P1"), "logA"]},
                "B": {"actions": ref("cancelId", id="later")},
                **_LOG_U,
            },
            states={"a": {}},
        ),
        {
            "childA": child(
                id="childA",
                initial="idle",
                states={
                    "idle": {
                        "on": {"P1": {"actions": ["push", "logA", ref("sendUpLater", type="U1")]}}
                    }
                },
            )
        },
        [send("A"), advance(50), advance(100), send("A"), advance(20), send("B"), advance(100)],
        timed=True,
    ),
    # A child spawned by the root's entry finishes at once (in its initial
    # step): the parent takes its done event after its own start.
    _actors(
        "actors-child-done-at-start",
        machine(
            initial="a",
            entry="spawnA1",
            on={"xstate.done.actor.a1": {"actions": ["push", "pushOut"]}, **_LOG_U},
            states={"a": {}},
        ),
        {
            "childA": child(
                id="childA",
                initial="fin",
                entry=ref("sendUp", type="U1"),
                output={"done": True},
                states={"fin": {"type": "final"}},
            )
        },
        [send("A")],
    ),
    # --- deliberate differences (docs/compatibility.md) ----------------- #
    # Row 2: the top-level actor's own send to a child it does not have.
    _actors(
        "actors-row2-unknown-target-refused",
        machine(
            initial="a", on={"A": {"actions": ref("sendTo", to="a2", type="P1")}}, states={"a": {}}
        ),
        {"childA": _ANSWERING},
        [send("A")],
        known_difference="row 2: durable_state's send() raises UnknownActor and keeps the "
        "snapshot; xstate's actor goes to status 'error'",
    ),
    # Row 14: spawning under the id of a running child.
    _actors(
        "actors-row14-spawn-replaces",
        machine(initial="a", on={"A": {"actions": "spawnA1"}, **_LOG_U}, states={"a": {}}),
        {
            "childA": child(
                id="childA",
                initial="idle",
                entry=ref("sendUpLater", type="U1"),
                states={"idle": {}},
            )
        },
        [send("A"), advance(30), send("A"), advance(100)],
        timed=True,
        known_difference="row 14: durable_state stops the running child first; xstate "
        "leaves it running, out of reach, and its delayed sendParent still arrives",
    ),
    # Row 15: in its initial step, an actor sends by systemId to a child
    # that step started and stopped again.
    _actors(
        "actors-row15-stopped-system-id",
        machine(
            initial="a",
            states={
                "a": {
                    "invoke": {"src": "childA", "id": "kid", "systemId": "sysK"},
                    "always": "b",
                },
                "b": {"entry": ref("sendSys", sys="sysK", type="P1")},
            },
        ),
        {"childA": _ANSWERING},
        [send("A")],
        known_difference="row 15: a stopped actor's systemId is free at once: durable_state "
        "refuses the send (UnknownActor); xstate's initial step still resolves it and drops "
        "the event",
    ),
]
