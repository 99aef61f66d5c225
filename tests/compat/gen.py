"""Seeded random statechart machines for the xstate differential suite.

:func:`generate` turns a seed into a :class:`Case`: an xstate v5 machine
config (plain JSON), the ``stateIn`` guards it names and a list of steps
(events to send, and for timed cases clock advances). The same seed always
gives the same case, so a failure is reproduced by its seed alone.

Every machine only uses the fixed vocabulary of ``compat_vocab.py``
(mirrored in ``runner.mjs``) and is built to settle: no macrostep can run
forever. The argument, which the generator keeps by construction:

* Context key ``g`` is the loop budget. Entry, exit, eventless and
  internal-event actions only ever increase it (``inc``); it goes back to 0
  only in actions of transitions taken on external event types
  (``A``, ``B``, ``C``, ``x.one``, ``x.two``, ``x.*``), and every event
  handled is one macrostep.
* A transition that can start another microstep -- eventless (``always``),
  or on an event that can be raised inside a macrostep (``R1``, ``R2``,
  ``*``, ``xstate.done.state.*`` via ``onDone``) and either has a target or raises
  -- is guarded by ``g < N`` and increments ``g``. Such transitions can
  therefore fire only finitely often per macrostep, and every other
  microstep adds no new internal event without consuming budget.
* Delayed transitions wait at least 30 ms, so a finite clock advance fires
  finitely many of them.

``generate(seed, actors=True)`` makes a machine with one or two child
machines (``childA``, ``childB``): invoked by some of its states (with a
``systemId`` or not) and spawned by actions (``a1``, ``a2``, ``b1``). The
parent sends them ``P1``/``P2``, directly or by ``systemId``; the children
answer with ``U1``/``U2`` (``sendParent``), send to each other by
``systemId``, finish (the parent takes their done events) or fail. The same
argument keeps every cascade finite, with messages counted as raised events:

* In the parent, events from children (``U1``, ``U2``, done and error
  events) are internal: a transition on one that targets, raises, sends or
  spawns is budgeted.
* A child never resets its budget, and its transitions on ``P1``/``P2`` that
  target, raise or send to a sibling are budgeted; answering its parent is
  free (the parent budgets what it does with the answer).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ("EXTERNAL_EVENTS", "INTERNAL_EVENTS", "Case", "generate")

JsonDict = dict[str, Any]

MACHINE_ID = "m"
#: Event types only ever sent from outside (never raised inside a macrostep).
EXTERNAL_EVENTS = ("A", "B", "C", "x.one", "x.two")
#: Event types raised by the ``raiseE`` action (and also sent from outside).
INTERNAL_EVENTS = ("R1", "R2")
#: Types no machine handles by name (``x`` and ``x.three`` probe ``x.*``).
UNKNOWN_EVENTS = ("Z", "x", "x.three")
#: Descriptors that match external events only.
_EXTERNAL_DESCRIPTORS = (*EXTERNAL_EVENTS, "x.*")
#: Descriptors that can match an event raised inside a macrostep.
_INTERNAL_DESCRIPTORS = (*INTERNAL_EVENTS, "*")
_COUNTERS = ("a", "b", "c")
_BUDGET = "g"
_DELAYS = ("30", "50", "100", "short", "byA")
_ADVANCES = (10, 30, 45, 60, 100, 250)
_MAX_DEPTH = 3
#: Events a parent sends its children, and children send each other.
_DOWN_EVENTS = ("P1", "P2")
#: Events children send their parent.
_UP_EVENTS = ("U1", "U2")
#: Children spawned by actions, by id: their source.
_SPAWNED = {"a1": "childA", "a2": "childA", "b1": "childB"}
_SPAWN_ACTIONS = {"a1": "spawnA1", "a2": "spawnA2", "b1": "spawnB1"}
#: Actions that can make another actor (or this one) take a step.
_CASCADING = frozenset(
    {"raiseE", "sendTo", "sendSys", "spawnA1", "spawnA2", "spawnB1", "enq", "sendLater"}
)

Mode = Literal["plain", "parent", "child"]


@dataclass(frozen=True)
class Case:
    """One differential case: a machine config plus the steps to drive it.

    Attributes:
        id: a stable name (``seed-<n>`` for generated cases).
        config: the xstate v5 machine config, plain JSON.
        steps: ``{"send": event}`` or ``{"advance": ms}`` items, in order.
        state_in: guard name -> what ``stateIn`` is given (``"#state-id"``, a
            state value path or a state value).
        timed: whether the machine has delayed transitions (``after``), so
            it must be driven by actors on simulated clocks.
        known_difference: for a hand-picked case that shows a documented,
            deliberate difference from xstate: why (it is then expected to
            fail, strictly).
        actors: child machine configs by source name (``childA``,
            ``childB``), for ``invoke`` and the spawn actions; a case with
            actors is driven by actors, child machines running in process.
    """

    id: str
    config: JsonDict
    steps: list[JsonDict]
    state_in: dict[str, Any] = field(default_factory=dict)
    timed: bool = False
    known_difference: str | None = None
    actors: dict[str, JsonDict] = field(default_factory=dict)

    def runner_input(self, *, persist_each: bool, emit_persisted: bool = False) -> JsonDict:
        """The case as ``runner.mjs`` reads it."""
        return {
            "id": self.id,
            "config": self.config,
            "steps": self.steps,
            "actors": self.actors,
            "impl": {"stateIn": self.state_in},
            "timed": self.timed,
            "persist_each": persist_each,
            "emit_persisted": emit_persisted,
        }


@dataclass(eq=False)
class _Node:
    key: str
    kind: str  # "atomic" | "compound" | "parallel" | "final" | "history"
    parent: _Node | None
    depth: int
    children: list[_Node] = field(default_factory=list)
    custom_id: str | None = None
    history: str = "shallow"
    config: JsonDict = field(default_factory=dict)

    @property
    def path(self) -> tuple[str, ...]:
        if self.parent is None:
            return ()
        return (*self.parent.path, self.key)

    @property
    def id(self) -> str:
        if self.custom_id is not None:
            return self.custom_id
        root = self
        while root.parent is not None:
            root = root.parent
        return ".".join((root.key, *self.path))

    @property
    def label(self) -> str:
        return ".".join(self.path) or "root"

    def walk(self) -> Iterator[_Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def is_descendant_of(self, other: _Node) -> bool:
        node = self.parent
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False

    @property
    def real_children(self) -> list[_Node]:
        return [c for c in self.children if c.kind != "history"]


def _js_key_order(item: tuple[str, Any]) -> tuple[bool, int]:
    key = item[0]
    return (not key.isdigit(), int(key) if key.isdigit() else 0)


def _prepend_actions(transition: JsonDict, actions: list[Any]) -> None:
    current = transition.get("actions", [])
    transition["actions"] = [*actions, *(current if isinstance(current, list) else [current])]


def _ref(name: str, **params: Any) -> JsonDict:
    return {"type": name, "params": params} if params else {"type": name}


class _Generator:
    def __init__(
        self,
        seed: int,
        *,
        timed: bool,
        mode: Mode = "plain",
        machine_id: str = MACHINE_ID,
        children: tuple[str, ...] = (),
    ) -> None:
        self.rng = random.Random(seed)
        self.timed = timed
        self.state_in: dict[str, str] = {}
        self.tags = 0
        self.mentioned: set[str] = set()
        # Actors that talk (``generate(actors=True)``); all empty in plain mode.
        self.mode: Mode = mode
        self.machine_id = machine_id
        self.children = children
        # Invokes of the parent: host node -> (invoke id, src, systemId or None).
        self.invokes: dict[_Node, tuple[str, str, str | None]] = {}
        # The systemIds of the parent's invokes (children send to each other by them).
        self.system_ids: list[str] = []
        self.current: _Node | None = None
        self.nodes: list[_Node] = []

    # -- structure -------------------------------------------------------

    def build_tree(self) -> _Node:
        root = _Node(key=self.machine_id, kind="compound", parent=None, depth=0)
        if self.mode == "child":
            # Children are small: two or three states, one level of nesting.
            self._fill_compound(root)
            return root
        if self.rng.random() < 0.15:
            root.kind = "parallel"
            self._fill_parallel(root)
        else:
            self._fill_compound(root)
        for node in root.walk():
            if node.parent is not None and self.rng.random() < 0.25:
                node.custom_id = "id_" + "_".join(node.path)
        return root

    def _fill_compound(self, node: _Node) -> None:
        rng = self.rng
        count = rng.randint(2, 3)
        keys = iter("abcdefgh")
        max_depth = 2 if self.mode == "child" else _MAX_DEPTH
        for _ in range(count):
            child = _Node(key=next(keys), kind="atomic", parent=node, depth=node.depth + 1)
            node.children.append(child)
            if child.depth < max_depth:
                roll = rng.random()
                if roll < 0.3:
                    child.kind = "compound"
                    self._fill_compound(child)
                elif roll < 0.42:
                    child.kind = "parallel"
                    self._fill_parallel(child)
        # A top-level final state ends the machine, so it is rarer there
        # (but a child machine that finishes is what its parent waits for).
        top = 0.6 if self.mode == "child" else 0.3
        if rng.random() < (top if node.parent is None else 0.45):
            node.children.append(_Node(key="fin", kind="final", parent=node, depth=node.depth + 1))
        if node.parent is not None and rng.random() < 0.3:
            deep = rng.random() < 0.5
            hist = _Node(
                key="hist",
                kind="history",
                parent=node,
                depth=node.depth + 1,
                history="deep" if deep else "shallow",
            )
            node.children.append(hist)

    def _fill_parallel(self, node: _Node) -> None:
        rng = self.rng
        for key in ("p", "q", "r")[: rng.randint(2, 3)]:
            region = _Node(key=key, kind="compound", parent=node, depth=node.depth + 1)
            node.children.append(region)
            if region.depth >= _MAX_DEPTH or rng.random() < 0.08:
                region.kind = "atomic"
            else:
                self._fill_compound(region)
        if node.parent is not None and rng.random() < 0.25:
            deep = rng.random() < 0.5
            node.children.append(
                _Node(
                    key="hist",
                    kind="history",
                    parent=node,
                    depth=node.depth + 1,
                    history="deep" if deep else "shallow",
                )
            )

    # -- vocabulary ------------------------------------------------------

    def tag(self, prefix: str) -> str:
        self.tags += 1
        return f"{prefix}{self.tags}"

    def simple_guard(self, nodes: list[_Node]) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            return "evFlag"
        if roll < 0.45:
            return _ref("ctxGt", key=rng.choice(_COUNTERS), n=rng.randint(0, 3))
        if roll < 0.6:
            return _ref("ctxLt", key=rng.choice(_COUNTERS), n=rng.randint(1, 4))
        if roll < 0.75:
            return _ref("ctxEven", key=rng.choice(_COUNTERS))
        candidates = [n for n in nodes if n.kind != "history" and n.parent is not None]
        target = rng.choice(candidates)
        prefix = f"{self.machine_id}_" if self.mode == "child" else ""
        name = f"in_{prefix}{'_'.join(target.path)}"
        self.state_in[name] = "#" + target.id
        return name

    def guard(self, nodes: list[_Node], depth: int = 0) -> Any:
        rng = self.rng
        if depth < 2 and rng.random() < 0.25:
            kind = rng.choice(("and", "or", "not"))
            if kind == "not":
                return {"type": "not", "guards": [self.guard(nodes, depth + 1)]}
            count = rng.randint(2, 3)
            return {"type": kind, "guards": [self.guard(nodes, depth + 1) for _ in range(count)]}
        return self.simple_guard(nodes)

    def budget_guard(self) -> JsonDict:
        return _ref("ctxLt", key=_BUDGET, n=self.rng.randint(1, 4))

    def action(self, *, may_raise: bool, may_reset: bool) -> Any:
        rng = self.rng
        if self.mode != "plain" and rng.random() < 0.3:
            return self.actor_action(may_raise=may_raise)
        roll = rng.random()
        if roll < 0.22:
            return _ref("inc", key=rng.choice((*_COUNTERS, _BUDGET)), by=rng.randint(1, 2))
        if roll < 0.34:
            return _ref("set", key=rng.choice(_COUNTERS), value=rng.randint(0, 3))
        if roll < 0.55:
            return _ref("push", tag=self.tag("t"))
        if roll < 0.68:
            return "push"  # logs the event type
        if roll < 0.74:
            return "pushOut"
        if roll < 0.8:
            return _ref("fromEvent", key=rng.choice(_COUNTERS))
        if may_reset and roll < 0.86:
            return _ref("set", key=_BUDGET, value=0)
        if may_raise:
            return _ref("raiseE", type=rng.choice(INTERNAL_EVENTS))
        return _ref("push", tag=self.tag("t"))

    def actions(self, count: int, *, may_raise: bool, may_reset: bool) -> list[Any]:
        return [self.action(may_raise=may_raise, may_reset=may_reset) for _ in range(count)]

    # -- actors that talk ---------------------------------------------------

    def visible_invokes(self) -> list[str]:
        """The invoke ids of the current node and its ancestors (children running there)."""
        node = self.current
        out = []
        while node is not None:
            if node in self.invokes:
                out.append(self.invokes[node][0])
            node = node.parent
        return out

    def send_target(self) -> str:
        """Mostly a child that runs: one invoked here or above, or ``a1`` (spawned at start)."""
        rng = self.rng
        visible = self.visible_invokes()
        if visible and rng.random() < 0.6:
            return rng.choice(visible)
        return "a1"

    def actor_action(self, *, may_raise: bool) -> Any:
        """An action of the actor vocabulary: messages, children, enqueueActions, log."""
        rng = self.rng
        roll = rng.random()
        if self.mode == "child":
            if roll < 0.35:
                return _ref("sendUp", type=rng.choice(_UP_EVENTS))
            if roll < 0.5:
                return _ref("enqAssignUp", type=rng.choice(_UP_EVENTS))
            if roll < 0.6 and may_raise and self.system_ids:
                sid = rng.choice(self.system_ids)
                return _ref("sendSys", sys=sid, type=rng.choice(_DOWN_EVENTS))
            if roll < 0.72:
                return self.enqueue_action(may_raise=may_raise)
            if roll < 0.8:
                return "logA"
            if roll < 0.84:
                return "boom"
            if self.timed and roll < 0.92:
                if rng.random() < 0.7:
                    return _ref("sendUpLater", type=rng.choice(_UP_EVENTS))
                return _ref("cancelId", id="upLater")
            return _ref("push", tag=self.tag("t"))
        if roll < 0.3 and may_raise:
            return _ref("sendTo", to=self.send_target(), type=rng.choice(_DOWN_EVENTS))
        if roll < 0.38 and may_raise and self.system_ids:
            sid = rng.choice(self.system_ids)
            return _ref("sendSys", sys=sid, type=rng.choice(_DOWN_EVENTS))
        # a1 is spawned by the root's entry (and rarely again); a2 and b1 by actions.
        spawnable = [cid for cid, src in _SPAWNED.items() if src in self.children]
        if roll < 0.52 and may_raise:
            pick = rng.choice(spawnable[1:] or spawnable) if rng.random() < 0.85 else "a1"
            return _SPAWN_ACTIONS[pick]
        if roll < 0.6:
            ids = spawnable + [inv[0] for inv in self.invokes.values()]
            return _ref("stopId", id=rng.choice(ids))
        if roll < 0.78:
            return self.enqueue_action(may_raise=may_raise)
        if roll < 0.84:
            return "logA"
        if self.timed and roll < 0.94:
            pick = rng.random()
            if pick < 0.4 and may_raise:
                return _ref("sendLater", to=self.send_target(), type=rng.choice(_DOWN_EVENTS))
            if pick < 0.6:
                return _ref("cancelId", id="later")
            if pick < 0.85:
                return _ref("raiseLater", type=rng.choice(INTERNAL_EVENTS))
            return _ref("cancelId", id="raiseLater")
        return _ref("push", tag=self.tag("t"))

    def enqueue_action(self, *, may_raise: bool) -> JsonDict:
        """``enq``: a guard checked at run time, and the actions of each branch."""
        rng = self.rng
        params: JsonDict = {}
        if rng.random() < 0.8:
            params["guard"] = self.guard(self.nodes)
        for branch in ("then", "else"):
            acts: list[Any] = []
            for _ in range(rng.randint(0, 2)):
                roll = rng.random()
                if roll < 0.4:
                    acts.append(_ref("push", tag=self.tag("q")))
                elif roll < 0.6:
                    acts.append(_ref("inc", key=rng.choice(_COUNTERS), by=1))
                elif self.mode == "child":
                    acts.append(_ref("sendUp", type=rng.choice(_UP_EVENTS)))
                elif may_raise:
                    acts.append(
                        _ref("sendTo", to=self.send_target(), type=rng.choice(_DOWN_EVENTS))
                    )
                else:
                    acts.append("push")
            params[branch] = acts
        return _ref("enq", **params)

    def cascades(self, action: Any) -> bool:
        """Whether an action can make an actor of the tree take another step."""
        if not isinstance(action, dict):
            return isinstance(action, str) and action in _CASCADING
        kind = action["type"]
        if kind == "enq":
            params = action.get("params", {})
            return any(self.cascades(a) for a in (*params["then"], *params["else"]))
        if self.mode == "child":
            return kind in ("raiseE", "sendSys")
        return kind in _CASCADING

    # -- targets ---------------------------------------------------------

    def target(self, source: _Node, nodes: list[_Node]) -> Any:
        """A valid target (or list of targets) for a transition of ``source``.

        Local targets (siblings, children) are favoured over ``#id`` ones so
        that machines move around within their compound states often.
        """
        rng = self.rng
        local: list[str] = []
        if source.parent is not None:
            # Siblings and self, and history states beside them: a history
            # state entered from inside its own parent is a corner of its own.
            for sib in source.parent.children:
                local.append(sib.key)
                local.extend(f"{sib.key}.{grand.key}" for grand in sib.children)
        for child in source.children:
            local.append(f".{child.key}")
            local.extend(f".{child.key}.{grand.key}" for grand in child.real_children)
        by_id = ["#" + n.id for n in nodes if n is not source and n.parent is not None]
        roll = rng.random()
        if roll < 0.1:
            multi = self.multi_target(nodes)
            if multi is not None:
                return multi
        if roll < 0.13:
            return "#" + self.machine_id
        if local and roll < 0.7:
            return rng.choice(local)
        return rng.choice(by_id)

    def multi_target(self, nodes: list[_Node]) -> list[str] | None:
        """Targets in two orthogonal regions of one parallel state, if any."""
        rng = self.rng
        parallels = [n for n in nodes if n.kind == "parallel"]
        if not parallels:
            return None
        par = rng.choice(parallels)
        regions = rng.sample(par.real_children, 2)
        picks: list[str] = []
        for region in regions:
            inside = [n for n in region.walk() if n.kind not in ("history",)]
            picks.append("#" + rng.choice(inside).id)
        return picks

    # -- transitions -----------------------------------------------------

    def transition(
        self,
        source: _Node,
        nodes: list[_Node],
        *,
        internal: bool,
        eventless: bool = False,
        force_target: bool = False,
    ) -> JsonDict:
        """One transition object.

        ``internal`` says the triggering event can arise inside a macrostep;
        then a transition that targets or raises is budgeted (see module doc).
        An ``eventless`` transition is always budgeted.
        """
        rng = self.rng
        t: JsonDict = {}
        has_target = force_target or rng.random() < 0.75
        if has_target:
            t["target"] = self.target(source, nodes)
            if rng.random() < 0.3:
                t["reenter"] = True
        acts = self.actions(rng.randint(0, 2), may_raise=True, may_reset=not internal)
        raises = any(self.cascades(a) for a in acts)
        guard = self.guard(nodes) if rng.random() < 0.5 else None
        if eventless or (internal and (has_target or raises)):
            budget = self.budget_guard()
            guard = budget if guard is None else {"type": "and", "guards": [budget, guard]}
            acts.insert(rng.randint(0, len(acts)), _ref("inc", key=_BUDGET, by=1))
        if guard is not None:
            t["guard"] = guard
        if acts:
            t["actions"] = acts if len(acts) > 1 or rng.random() < 0.5 else acts[0]
        if not t:
            t["actions"] = _ref("push", tag=self.tag("t"))
        return t

    def candidates(self, source: _Node, nodes: list[_Node], *, internal: bool) -> Any:
        rng = self.rng
        count = 1 if rng.random() < 0.65 else rng.randint(2, 3)
        items = [self.transition(source, nodes, internal=internal) for _ in range(count)]
        if count == 1:
            only = items[0]
            # The shorthand forms of a single transition.
            if set(only) == {"target"} and isinstance(only["target"], str):
                return only["target"]
            return only if rng.random() < 0.7 else [only]
        return items

    def decorate(self, node: _Node, nodes: list[_Node]) -> None:
        """Adds entry/exit actions and transitions to ``node``'s config."""
        rng = self.rng
        cfg = node.config
        self.current = node
        self.nodes = nodes
        if node.kind == "history":
            cfg["type"] = "history"
            cfg["history"] = node.history
            if rng.random() < 0.6:
                assert node.parent is not None
                cfg["target"] = rng.choice(
                    [c.key for c in node.parent.real_children if c.kind != "final"]
                    or [node.parent.real_children[0].key]
                )
            return
        if node.parent is not None:
            for hook, prefix in (("entry", "en:"), ("exit", "ex:")):
                if rng.random() < 0.6:
                    acts: list[Any] = [_ref("push", tag=prefix + node.label)]
                    if rng.random() < 0.3:
                        acts.append(self.action(may_raise=rng.random() < 0.4, may_reset=False))
                    cfg[hook] = acts if len(acts) > 1 or rng.random() < 0.5 else acts[0]
        if node.kind == "final":
            if rng.random() < 0.4:
                cfg["output"] = {"from": node.label}
            return
        on: JsonDict = {}
        budget = 4 if node.parent is not None else 2
        for _ in range(rng.randint(0, budget)):
            internal = rng.random() < 0.25
            descriptor = rng.choice(_INTERNAL_DESCRIPTORS if internal else _EXTERNAL_DESCRIPTORS)
            if self.mode == "child":
                # A child hears only its parent and its siblings.
                internal = True
                descriptor = rng.choice((*_DOWN_EVENTS, *_DOWN_EVENTS, *INTERNAL_EVENTS, "*"))
            elif self.mode == "parent" and rng.random() < 0.3:
                internal = True
                descriptor = rng.choice(self.child_descriptors())
            if descriptor in on:
                continue
            on[descriptor] = self.candidates(node, nodes, internal=internal)
            self.mentioned.add(descriptor)
        if on:
            cfg["on"] = on
        if rng.random() < (0.2 if node.parent is not None else 0.1):
            count = rng.randint(1, 2)
            always = []
            for _ in range(count):
                always.append(self.transition(node, nodes, internal=True, eventless=True))
            cfg["always"] = always if count > 1 or rng.random() < 0.5 else always[0]
        if (
            node.kind in ("compound", "parallel")
            and node.parent is not None
            and self.can_complete(node)
            and rng.random() < 0.6
        ):
            done = self.transition(node, nodes, internal=True)
            if rng.random() < 0.6:
                # Log the done event's type and output: both are compared.
                _prepend_actions(done, ["push", "pushOut"])
            cfg["onDone"] = done
        if self.timed and node.parent is not None and rng.random() < 0.3:
            after: JsonDict = {}
            for delay in rng.sample(_DELAYS, rng.randint(1, 2)):
                after[delay] = self.transition(node, nodes, internal=False, force_target=True)
            # JavaScript objects list integer-like keys first, ascending; emit
            # them in that order so both sides schedule ties alike.
            cfg["after"] = dict(sorted(after.items(), key=_js_key_order))
        if node in self.invokes:
            cfg["invoke"] = self.invoke(node, nodes)

    def child_descriptors(self) -> tuple[str, ...]:
        """What children send a parent: answers, and the done/error events of spawned ones."""
        spawned = [cid for cid, src in _SPAWNED.items() if src in self.children]
        return (
            *_UP_EVENTS,
            *_UP_EVENTS,
            *(f"xstate.done.actor.{cid}" for cid in spawned),
            *(f"xstate.error.actor.{cid}" for cid in spawned[:1]),
        )

    def plan_invokes(self, nodes: list[_Node]) -> None:
        """Choose the states of the parent that invoke a child machine."""
        rng = self.rng
        hosts = [n for n in nodes if n.kind in ("atomic", "compound", "parallel")]
        count = min(len(hosts), rng.choice((1, 1, 2, 2, 3)))
        for k, host in enumerate(rng.sample(hosts, count), 1):
            sid = f"sys_inv{k}" if rng.random() < 0.5 else None
            self.invokes[host] = (f"inv{k}", rng.choice(self.children), sid)
            if sid is not None:
                self.system_ids.append(sid)

    def invoke(self, node: _Node, nodes: list[_Node]) -> JsonDict:
        rng = self.rng
        inv_id, src, sid = self.invokes[node]
        inv: JsonDict = {"src": src, "id": inv_id}
        if rng.random() < 0.7:
            inv["input"] = {"n": rng.randint(0, 3)}
        if sid is not None:
            inv["systemId"] = sid
        if rng.random() < 0.7:
            done = self.transition(node, nodes, internal=True)
            _prepend_actions(done, ["pushOut"])
            inv["onDone"] = done
        if rng.random() < 0.5:
            inv["onError"] = self.transition(node, nodes, internal=True)
        return inv

    def parent_root(self, root: _Node) -> None:
        """The parent's own entry: mostly, it spawns ``a1`` (which lives until stopped)."""
        if self.rng.random() < 0.7:
            root.config["entry"] = [_SPAWN_ACTIONS["a1"], _ref("push", tag="en:root")]

    def child_root(self, root: _Node) -> None:
        """A child machine's own entry: its input into ``a``, and a hello to its parent."""
        rng = self.rng
        entry: list[Any] = []
        if rng.random() < 0.6:
            entry.append("fromInput")
        if rng.random() < 0.5:
            entry.append(_ref("sendUp", type="U1"))
        if entry:
            root.config["entry"] = entry

    def can_complete(self, node: _Node) -> bool:
        if node.kind == "compound":
            return any(c.kind == "final" for c in node.children)
        if node.kind == "parallel":
            return all(self.can_complete(r) for r in node.real_children)
        return False

    # -- emission --------------------------------------------------------

    def emit(self, node: _Node) -> JsonDict:
        cfg: JsonDict = {}
        if node.custom_id is not None:
            cfg["id"] = node.custom_id
        if node.kind in ("parallel", "final"):
            cfg["type"] = node.kind
        if node.kind == "compound":
            initial_choices = [c for c in node.children if c.kind not in ("history",)]
            non_final = [c for c in initial_choices if c.kind != "final"]
            pool = non_final if non_final and self.rng.random() < 0.95 else initial_choices
            cfg["initial"] = self.rng.choice(pool).key
        cfg.update(node.config)
        if node.children:
            cfg["states"] = {c.key: self.emit(c) for c in node.children}
        return cfg

    def steps(self) -> list[JsonDict]:
        rng = self.rng
        # Mostly events the machine names, so that most steps do something.
        named: set[str] = set()
        for descriptor in self.mentioned:
            if descriptor.startswith(("U", "xstate.")):
                continue  # only children send these
            if descriptor == "x.*":
                named.update(("x.one", "x.two"))
            elif descriptor != "*":
                named.add(descriptor)
        pool = sorted(named) or list(EXTERNAL_EVENTS)
        out: list[JsonDict] = []
        for _ in range(10):
            if self.timed and rng.random() < 0.35:
                out.append({"advance": rng.choice(_ADVANCES)})
                continue
            roll = rng.random()
            if roll < 0.7:
                etype = rng.choice(pool)
            elif roll < 0.82:
                etype = rng.choice(EXTERNAL_EVENTS)
            elif roll < 0.92:
                etype = rng.choice(INTERNAL_EVENTS)
            else:
                etype = rng.choice(UNKNOWN_EVENTS)
            event: JsonDict = {"type": etype}
            if rng.random() < 0.5:
                event["flag"] = rng.random() < 0.5
            if rng.random() < 0.3:
                event["n"] = rng.randint(0, 3)
            out.append({"send": event})
        return out


def _child_config(
    seed: int, src: str, *, timed: bool, system_ids: list[str]
) -> tuple[JsonDict, dict[str, str]]:
    """A child machine ``src`` and the stateIn guards it names."""
    gen = _Generator(seed, timed=timed, mode="child", machine_id=src)
    gen.system_ids = system_ids
    root = gen.build_tree()
    nodes = list(root.walk())
    for node in nodes:
        gen.decorate(node, nodes)
    gen.child_root(root)
    config = gen.emit(root)
    config["id"] = src
    config["context"] = {"a": 0, "b": 0, "c": 0, _BUDGET: 0, "log": []}
    if gen.rng.random() < 0.5:
        config["output"] = {"from": src}
    return config, gen.state_in


def _generate_actors(seed: int, timed: bool | None) -> Case:
    if timed is None:
        timed = random.Random(seed ^ 0xC41D).random() < 0.25
    rng = random.Random(seed ^ 0xAC7)
    children = ("childA", "childB") if rng.random() < 0.5 else ("childA",)
    gen = _Generator(seed, timed=timed, mode="parent", children=children)
    root = gen.build_tree()
    nodes = list(root.walk())
    gen.plan_invokes(nodes)
    for node in nodes:
        gen.decorate(node, nodes)
    gen.parent_root(root)
    config = gen.emit(root)
    config["id"] = MACHINE_ID
    config["context"] = {"a": 0, "b": 0, "c": 0, _BUDGET: 0, "log": []}
    state_in = dict(gen.state_in)
    actors = {}
    for k, src in enumerate(children):
        child, guards = _child_config(
            seed * 31 + k + 1, src, timed=timed, system_ids=list(gen.system_ids)
        )
        actors[src] = child
        state_in.update(guards)
    return Case(
        id=f"actors-{seed}",
        config=config,
        steps=gen.steps(),
        state_in=state_in,
        timed=timed,
        actors=actors,
    )


def generate(seed: int, *, timed: bool | None = None, actors: bool = False) -> Case:
    """The case for ``seed`` (deterministic across runs and platforms).

    Args:
        seed: any integer.
        timed: force delayed transitions on or off; by default one seed in
            four is timed.
        actors: a machine with child machines that talk (``actors-<seed>``,
            see the module doc) instead of a machine alone (``seed-<seed>``).

    Returns:
        The generated :class:`Case`.
    """
    if actors:
        return _generate_actors(seed, timed)
    if timed is None:
        timed = random.Random(seed ^ 0x5EED).random() < 0.25
    gen = _Generator(seed, timed=timed)
    root = gen.build_tree()
    nodes = list(root.walk())
    for node in nodes:
        gen.decorate(node, nodes)
    config = gen.emit(root)
    config["id"] = MACHINE_ID
    config["context"] = {"a": 0, "b": 0, "c": 0, _BUDGET: 0, "log": []}
    if gen.rng.random() < 0.5:
        config["output"] = {"machine": MACHINE_ID, "seed": seed}
    return Case(
        id=f"seed-{seed}",
        config=config,
        steps=gen.steps(),
        state_in=dict(gen.state_in),
        timed=timed,
    )
