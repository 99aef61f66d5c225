"""Parsing an xstate v5 machine config into a tree of precompiled state nodes.

Everything that does not depend on run-time data is resolved here, once, when
a :class:`~durable_state.Machine` is built: state ids and document order,
ancestors, transition targets, action and guard references, delays. A config
error raises :class:`~durable_state.errors.InvalidMachine` carrying the path of
the offending key (``states.cart.on.CHECKOUT.target``), never at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ..errors import InvalidMachine
from ._builtins import (
    Assign,
    Cancel,
    Emit,
    EnqueueActions,
    Log,
    RaiseEvent,
    SendTo,
    SpawnChild,
    StateIn,
    StopChild,
)

__all__ = ("ActionDef", "EnqueueDef", "InvokeDef", "StateNode", "Transition", "build_tree")

ATOMIC: Final = "atomic"
COMPOUND: Final = "compound"
PARALLEL: Final = "parallel"
FINAL: Final = "final"
HISTORY: Final = "history"

_STATE_TYPES = frozenset({ATOMIC, COMPOUND, PARALLEL, FINAL, HISTORY})
_STATE_KEYS = frozenset(
    {
        "id",
        "initial",
        "context",
        "states",
        "type",
        "history",
        "target",
        "on",
        "always",
        "after",
        "onDone",
        "entry",
        "exit",
        "invoke",
        "tags",
        "output",
        "meta",
        "description",
        "version",
    }
)
_TRANSITION_KEYS = frozenset(
    {"target", "guard", "actions", "reenter", "description", "meta", "internal"}
)
_INVOKE_KEYS = frozenset({"src", "id", "systemId", "input", "onDone", "onError"})

# Action kinds, dispatched on by the interpreter's inner loop.
K_ASSIGN: Final = 0
K_RAISE: Final = 1
K_EMIT: Final = 2
K_CUSTOM: Final = 3
K_SCHEDULE: Final = 4
K_CANCEL: Final = 5
K_INVOKE: Final = 6
K_STOP: Final = 7
K_SEND: Final = 8
K_SPAWN: Final = 9
K_STOP_CHILD: Final = 10
K_LOG: Final = 11
K_ENQUEUE: Final = 12

#: The built-in action objects a config may hold inline (besides callables).
_BUILTINS = (Assign, RaiseEvent, Emit, SendTo, SpawnChild, StopChild, Cancel, Log, EnqueueActions)

GuardFn = Callable[[Mapping[str, Any], Mapping[str, Any], Any], bool]
"""A compiled guard: ``check(context, event, active_nodes) -> bool``."""


class ActionDef:
    """A compiled action reference: its kind, implementation and params."""

    __slots__ = ("delay", "fn", "id", "kind", "name", "params")

    def __init__(
        self,
        kind: int,
        name: str,
        fn: Any,
        params: Mapping[str, Any] | None = None,
        *,
        delay: Any = None,
        id: str | None = None,
    ) -> None:
        self.kind: int = kind
        self.name: str = name
        self.fn: Any = fn
        self.params: Mapping[str, Any] | None = params or None
        self.delay: Any = delay
        self.id: str | None = id

    def __repr__(self) -> str:
        return f"<action {self.name}>"


class InvokeDef:
    """A compiled ``invoke`` entry of a state.

    ``system_id`` is the config's ``systemId``: the child is registered under
    it in its actor system. ``machine`` says that ``src`` names a child
    machine (not an async callable).
    """

    __slots__ = ("id", "input", "machine", "src", "system_id")

    def __init__(
        self,
        id: str,
        src: str,
        input: Any,
        system_id: str | None = None,
        *,
        machine: bool = False,
    ) -> None:
        self.id: str = id
        self.src: str = src
        self.input: Any = input
        self.system_id: str | None = system_id
        self.machine: bool = machine


class EnqueueDef:
    """A compiled :func:`enqueue_actions`: its function and where it is in the config."""

    __slots__ = ("fn", "where")

    def __init__(self, fn: Any, where: str) -> None:
        self.fn: Any = fn
        self.where: str = where


class Transition:
    """A compiled transition. Identity matters: transitions are cache keys."""

    __slots__ = (
        "actions",
        "description",
        "event_type",
        "guard",
        "has_history_target",
        "meta",
        "reenter",
        "source",
        "targets",
    )

    def __init__(
        self,
        source: StateNode,
        event_type: str,
        targets: tuple[StateNode, ...] | None,
        guard: GuardFn | None,
        actions: tuple[ActionDef, ...],
        reenter: bool,
        description: str | None = None,
        meta: Any = None,
    ) -> None:
        self.source: StateNode = source
        self.event_type: str = event_type
        self.targets: tuple[StateNode, ...] | None = targets
        self.guard: GuardFn | None = guard
        self.actions: tuple[ActionDef, ...] = actions
        self.reenter: bool = reenter
        self.description: str | None = description
        self.meta: Any = meta
        self.has_history_target: bool = bool(targets) and any(
            t.type == HISTORY for t in targets or ()
        )

    def __repr__(self) -> str:
        tgt = ",".join("#" + t.id for t in self.targets) if self.targets else "-"
        return f"<transition #{self.source.id} --{self.event_type or '(always)'}--> {tgt}>"


class StateNode:
    """One state of a machine, with everything precomputed for the interpreter."""

    __slots__ = (
        "after",
        "always",
        "always_chain",
        "ancestor_set",
        "ancestors",
        "children",
        "config",
        "description",
        "entry",
        "exit",
        "history",
        "history_default",
        "history_nodes",
        "id",
        "initial",
        "initial_actions",
        "invoke",
        "is_atomic",
        "key",
        "meta",
        "order",
        "output",
        "parent",
        "path",
        "states",
        "tags",
        "transitions",
        "type",
        "wildcards",
    )

    def __init__(self, key: str, parent: StateNode | None) -> None:
        self.key: str = key
        self.parent: StateNode | None = parent
        self.path: tuple[str, ...] = (*parent.path, key) if parent else ()
        self.id: str = ""
        self.type: str = ATOMIC
        self.order: int = -1
        self.config: Mapping[str, Any] = {}
        self.states: dict[str, StateNode] = {}
        self.children: tuple[StateNode, ...] = ()
        self.history_nodes: tuple[StateNode, ...] = ()
        self.history: str | None = None
        self.history_default: tuple[StateNode, ...] = ()
        self.initial: StateNode | None = None
        self.initial_actions: tuple[ActionDef, ...] = ()
        self.entry: tuple[ActionDef, ...] = ()
        self.exit: tuple[ActionDef, ...] = ()
        self.transitions: dict[str, list[Transition]] = {}
        self.wildcards: tuple[str, ...] = ()
        self.always: tuple[Transition, ...] = ()
        # For an atomic state: itself and its ancestors that have eventless
        # transitions, nearest first (the walk xstate makes from each atomic state).
        self.always_chain: tuple[StateNode, ...] = ()
        self.after: tuple[Transition, ...] = ()
        self.invoke: tuple[InvokeDef, ...] = ()
        self.tags: tuple[str, ...] = ()
        self.meta: Any = None
        self.output: Any = None
        self.description: str | None = None
        self.ancestors: tuple[StateNode, ...] = ()
        self.ancestor_set: frozenset[StateNode] = frozenset()
        self.is_atomic: bool = True

    def __repr__(self) -> str:
        return f"<state #{self.id}>"


# --------------------------------------------------------------------------- #
# Building
# --------------------------------------------------------------------------- #


class _Builder:
    """Two passes: create nodes (ids, order, types), then resolve references."""

    def __init__(
        self,
        config: Mapping[str, Any],
        actions: Mapping[str, Any],
        guards: Mapping[str, Any],
        delays: Mapping[str, Any],
        actors: Mapping[str, Any],
        machine_srcs: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.actions = actions
        self.guards = guards
        self.delays = delays
        self.actors = actors
        # The names in actors= whose value is a child Machine.
        self.machine_srcs = machine_srcs
        self.id_map: dict[str, StateNode] = {}
        self.nodes: list[StateNode] = []
        self.machine_id = ""
        self.root: StateNode = StateNode("", None)  # replaced by create()

    # -- pass 1 ------------------------------------------------------------ #

    def create(self, cfg: Any, key: str, parent: StateNode | None, where: str) -> StateNode:
        if not isinstance(cfg, Mapping):
            raise InvalidMachine(where or "(root)", f"a state must be a mapping, not {_tn(cfg)}")
        for k in cfg:
            if k not in _STATE_KEYS:
                raise InvalidMachine(_join(where, str(k)), "unknown state property")
        node = StateNode(key, parent)
        node.config = cfg
        cfg_id = cfg.get("id")
        if cfg_id is not None and (not isinstance(cfg_id, str) or not cfg_id):
            raise InvalidMachine(_join(where, "id"), "an id must be a non-empty string")
        if parent is None:
            self.machine_id = cfg_id or "(machine)"
            node.id = self.machine_id
            self.root = node
        else:
            node.id = cfg_id or ".".join((self.machine_id, *node.path))
        if node.id in self.id_map:
            raise InvalidMachine(_join(where, "id"), f"duplicate state id {node.id!r}")
        node.order = len(self.nodes)
        self.nodes.append(node)
        self.id_map[node.id] = node

        states = cfg.get("states")
        if states is not None and not isinstance(states, Mapping):
            raise InvalidMachine(_join(where, "states"), f"must be a mapping, not {_tn(states)}")
        declared = cfg.get("type")
        if declared is not None and declared not in _STATE_TYPES:
            raise InvalidMachine(
                _join(where, "type"),
                f"unknown state type {declared!r} (expected one of {sorted(_STATE_TYPES)})",
            )
        if declared is not None:
            node.type = declared
        elif states:
            node.type = COMPOUND
        elif cfg.get("history"):
            node.type = HISTORY
        else:
            node.type = ATOMIC
        if node.type in (ATOMIC, FINAL, HISTORY) and states:
            raise InvalidMachine(_join(where, "states"), f"a {node.type} state has no child states")
        if node.type == COMPOUND and not states:
            raise InvalidMachine(_join(where, "states"), "a compound state needs child states")
        if node.type == HISTORY:
            if parent is None:
                raise InvalidMachine(where or "(root)", "the root cannot be a history state")
            hist = cfg.get("history", "shallow")
            if hist is True:
                hist = "shallow"
            if hist not in ("shallow", "deep"):
                raise InvalidMachine(_join(where, "history"), "must be 'shallow' or 'deep'")
            node.history = hist
        node.is_atomic = node.type in (ATOMIC, FINAL)

        if states:
            for child_key, child_cfg in states.items():
                if not isinstance(child_key, str) or not child_key:
                    raise InvalidMachine(
                        _join(where, "states"),
                        f"state keys must be non-empty strings: {child_key!r}",
                    )
                if "." in child_key:
                    raise InvalidMachine(
                        _join(where, f"states.{child_key}"),
                        "a state key cannot contain '.' (it separates path segments)",
                    )
                node.states[child_key] = self.create(
                    child_cfg, child_key, node, _join(where, f"states.{child_key}")
                )
        node.children = tuple(c for c in node.states.values() if c.type != HISTORY)
        node.history_nodes = tuple(c for c in node.states.values() if c.type == HISTORY)
        if node.type == PARALLEL and not node.children:
            raise InvalidMachine(_join(where, "states"), "a parallel state needs child states")
        ancestors: list[StateNode] = []
        p = parent
        while p is not None:
            ancestors.append(p)
            p = p.parent
        node.ancestors = tuple(ancestors)
        node.ancestor_set = frozenset(ancestors)
        return node

    # -- pass 2 ------------------------------------------------------------ #

    def resolve(self, node: StateNode, where: str) -> None:
        """Resolve the references of ``node`` and its descendants, one config key at a time."""
        cfg = node.config
        if node.type == COMPOUND:
            self.resolve_initial(node, cfg, where)
        if node.type == HISTORY:
            self.resolve_history_target(node, cfg, where)
        self.resolve_descriptive(node, cfg, where)
        transitions: dict[str, list[Transition]] = {}
        self.resolve_on(node, cfg.get("on"), where, transitions)
        self.resolve_on_done(node, cfg, where, transitions)
        entry = list(self.action_list(cfg.get("entry"), _join(where, "entry")))
        exit_ = list(self.action_list(cfg.get("exit"), _join(where, "exit")))
        # Timers are scheduled by entry after the state's own entry actions,
        # and invoked children start after that (xstate's order).
        self.resolve_after(node, cfg.get("after"), where, transitions, entry, exit_)
        self.resolve_invoke(node, cfg.get("invoke"), where, transitions, entry, exit_)
        node.entry = tuple(entry)
        node.exit = tuple(exit_)
        always = cfg.get("always")
        if always is not None:
            node.always = tuple(self.transition_list(node, "", always, _join(where, "always")))
        node.transitions = transitions
        node.wildcards = tuple(k for k in transitions if k.endswith("*"))
        for key, child in node.states.items():
            self.resolve(child, _join(where, f"states.{key}"))

    def resolve_initial(self, node: StateNode, cfg: Mapping[str, Any], where: str) -> None:
        """``initial``: a child key, or ``{"target": key, "actions": ...}``."""
        initial = cfg.get("initial")
        initial_actions: Any = None
        if isinstance(initial, Mapping):
            initial_actions = initial.get("actions")
            initial = initial.get("target")
        if initial is None:
            first = next(iter(node.states), "?")
            raise InvalidMachine(
                _join(where, "initial"),
                f"a compound state needs an initial state (e.g. {first!r})",
            )
        if not isinstance(initial, str) or initial not in node.states:
            raise InvalidMachine(_join(where, "initial"), f"no child state {initial!r}")
        node.initial = node.states[initial]
        node.initial_actions = self.action_list(initial_actions, _join(where, "initial.actions"))

    def resolve_history_target(self, node: StateNode, cfg: Mapping[str, Any], where: str) -> None:
        """``target`` of a history state: where it goes when nothing was recorded."""
        parent = node.parent
        assert parent is not None
        raw = cfg.get("target")
        if raw is None:
            if parent.type == PARALLEL:
                node.history_default = (parent,)
            elif parent.initial is not None:
                node.history_default = (parent.initial,)
            else:
                # The parent's initial is resolved before its children.
                raise InvalidMachine(_join(where, "target"), "a history state needs a target")
            return
        resolved = []
        for t in [raw] if isinstance(raw, str) else list(raw):
            if not isinstance(t, str):
                raise InvalidMachine(_join(where, "target"), "targets are strings")
            resolved.append(
                self.lookup_id(t, _join(where, "target"))
                if t.startswith("#")
                else self.lookup_path(parent, t, _join(where, "target"))
            )
        node.history_default = tuple(resolved)

    def resolve_descriptive(self, node: StateNode, cfg: Mapping[str, Any], where: str) -> None:
        """``tags``, ``meta``, ``description`` and ``output``."""
        tags = cfg.get("tags")
        if tags is None:
            node.tags = ()
        elif isinstance(tags, str):
            node.tags = (tags,)
        elif isinstance(tags, Sequence) and all(isinstance(t, str) for t in tags):
            node.tags = tuple(tags)
        else:
            raise InvalidMachine(_join(where, "tags"), "tags are a string or a list of strings")
        node.meta = cfg.get("meta")
        desc = cfg.get("description")
        if desc is not None and not isinstance(desc, str):
            raise InvalidMachine(_join(where, "description"), "must be a string")
        node.description = desc
        if node.type == FINAL or node.parent is None:
            node.output = cfg.get("output")
        elif "output" in cfg:
            raise InvalidMachine(
                _join(where, "output"), "only final states and the root have output"
            )

    def resolve_on(
        self,
        node: StateNode,
        on: Any,
        where: str,
        transitions: dict[str, list[Transition]],
    ) -> None:
        """``on``: event descriptors (exact, ``"*"`` or ``"prefix.*"``) to transitions."""
        if on is None:
            return
        if not isinstance(on, Mapping):
            raise InvalidMachine(_join(where, "on"), f"must be a mapping, not {_tn(on)}")
        for desc_key, tcfg in on.items():
            if not isinstance(desc_key, str):
                raise InvalidMachine(_join(where, "on"), f"event types are strings: {desc_key!r}")
            if desc_key == "":
                raise InvalidMachine(
                    _join(where, "on"), "an empty event type is not allowed; use 'always'"
                )
            if "*" in desc_key and not (desc_key == "*" or desc_key.endswith(".*")):
                raise InvalidMachine(
                    _join(where, f"on.{desc_key}"),
                    "a wildcard is the whole descriptor ('*') or its last token ('a.*')",
                )
            if "*" in desc_key[:-1]:
                raise InvalidMachine(
                    _join(where, f"on.{desc_key}"), "only a trailing wildcard is allowed"
                )
            transitions[desc_key] = self.transition_list(
                node, desc_key, tcfg, _join(where, f"on.{desc_key}")
            )

    def resolve_on_done(
        self,
        node: StateNode,
        cfg: Mapping[str, Any],
        where: str,
        transitions: dict[str, list[Transition]],
    ) -> None:
        """``onDone``: transitions on ``xstate.done.state.<id>``."""
        if "onDone" not in cfg:
            return
        if node.type not in (COMPOUND, PARALLEL):
            raise InvalidMachine(
                _join(where, "onDone"), "only compound and parallel states have onDone"
            )
        dkey = f"xstate.done.state.{node.id}"
        transitions[dkey] = self.transition_list(node, dkey, cfg["onDone"], _join(where, "onDone"))

    def resolve_after(
        self,
        node: StateNode,
        after: Any,
        where: str,
        transitions: dict[str, list[Transition]],
        entry: list[ActionDef],
        exit_: list[ActionDef],
    ) -> None:
        """``after``: a timer scheduled on entry and cancelled on exit, per delay."""
        if after is None:
            return
        if not isinstance(after, Mapping):
            raise InvalidMachine(_join(where, "after"), "must be a mapping of delay -> transition")
        delayed: list[Transition] = []
        for delay_key, tcfg in after.items():
            aw = _join(where, f"after.{delay_key}")
            delay = self.delay_ref(delay_key, aw)
            ev = f"xstate.after.{_delay_label(delay)}.{node.id}"
            entry.append(ActionDef(K_SCHEDULE, "xstate.raise", {"type": ev}, delay=delay, id=ev))
            exit_.append(ActionDef(K_CANCEL, "xstate.cancel", None, id=ev))
            ts = self.transition_list(node, ev, tcfg, aw)
            transitions.setdefault(ev, []).extend(ts)
            delayed.extend(ts)
        node.after = tuple(delayed)

    def resolve_invoke(
        self,
        node: StateNode,
        raw_inv: Any,
        where: str,
        transitions: dict[str, list[Transition]],
        entry: list[ActionDef],
        exit_: list[ActionDef],
    ) -> None:
        """``invoke``: children started on entry and stopped on exit, with their done/error."""
        if raw_inv is None:
            return
        inv_list = [raw_inv] if isinstance(raw_inv, Mapping) else raw_inv
        if not isinstance(inv_list, Sequence):
            raise InvalidMachine(_join(where, "invoke"), "must be a mapping or a list")
        invokes = []
        for i, icfg in enumerate(inv_list):
            iw = _join(where, f"invoke[{i}]" if isinstance(raw_inv, Sequence) else "invoke")
            if not isinstance(icfg, Mapping):
                raise InvalidMachine(iw, "an invoke entry must be a mapping")
            for k in icfg:
                if k not in _INVOKE_KEYS:
                    raise InvalidMachine(_join(iw, str(k)), "unknown invoke property")
            src = icfg.get("src")
            if not isinstance(src, str):
                raise InvalidMachine(_join(iw, "src"), "src must be the name of an actor")
            if src not in self.actors:
                raise InvalidMachine(_join(iw, "src"), f"no actor named {src!r} in actors=")
            inv_id = icfg.get("id") or f"{i}.{node.id}"
            if not isinstance(inv_id, str):
                raise InvalidMachine(_join(iw, "id"), "must be a string")
            system_id = icfg.get("systemId")
            if system_id is not None and (not isinstance(system_id, str) or not system_id):
                raise InvalidMachine(_join(iw, "systemId"), "must be a non-empty string")
            invokes.append(
                InvokeDef(
                    inv_id, src, icfg.get("input"), system_id, machine=src in self.machine_srcs
                )
            )
            for key, prefix in (
                ("onDone", "xstate.done.actor."),
                ("onError", "xstate.error.actor."),
            ):
                if key in icfg:
                    k = prefix + inv_id
                    transitions[k] = self.transition_list(node, k, icfg[key], _join(iw, key))
        node.invoke = tuple(invokes)
        for inv in node.invoke:
            entry.append(ActionDef(K_INVOKE, "xstate.spawnChild", inv))
            exit_.append(ActionDef(K_STOP, "xstate.stopChild", None, id=inv.id))

    # -- references -------------------------------------------------------- #

    def transition_list(
        self, node: StateNode, event_type: str, raw: Any, where: str
    ) -> list[Transition]:
        items = raw if isinstance(raw, list | tuple) else [raw]
        out = []
        for i, item in enumerate(items):
            iw = f"{where}[{i}]" if isinstance(raw, list | tuple) else where
            out.append(self.transition(node, event_type, item, iw))
        return out

    def transition(self, node: StateNode, event_type: str, raw: Any, where: str) -> Transition:
        if raw is None or isinstance(raw, str):
            raw = {"target": raw}
        if not isinstance(raw, Mapping):
            raise InvalidMachine(
                where, f"a transition is a target string or a mapping, not {_tn(raw)}"
            )
        for k in raw:
            if k not in _TRANSITION_KEYS:
                raise InvalidMachine(_join(where, str(k)), "unknown transition property")
        if "internal" in raw:
            raise InvalidMachine(
                _join(where, "internal"), "'internal' was replaced by 'reenter' in xstate v5"
            )
        target = raw.get("target")
        targets: tuple[StateNode, ...] | None
        if target is None or target == "":
            targets = None
        else:
            tlist = [target] if isinstance(target, str) else target
            if not isinstance(tlist, list | tuple) or not all(isinstance(t, str) for t in tlist):
                raise InvalidMachine(
                    _join(where, "target"), "a target is a string or a list of strings"
                )
            targets = tuple(self.resolve_target(node, t, _join(where, "target")) for t in tlist)
        reenter = raw.get("reenter", False)
        if not isinstance(reenter, bool):
            raise InvalidMachine(_join(where, "reenter"), "must be true or false")
        guard = self.guard(raw.get("guard"), _join(where, "guard")) if "guard" in raw else None
        actions = self.action_list(raw.get("actions"), _join(where, "actions"))
        desc = raw.get("description")
        return Transition(node, event_type, targets, guard, actions, reenter, desc, raw.get("meta"))

    def resolve_target(self, node: StateNode, target: str, where: str) -> StateNode:
        if target.startswith("#"):
            return self.lookup_id(target, where)
        if target.startswith("."):
            return self.lookup_path(node, target[1:], where)
        if node.parent is None:
            raise InvalidMachine(
                where, f"no state {target!r} from the root (did you mean '.{target}'?)"
            )
        return self.lookup_path(node.parent, target, where)

    def lookup_id(self, ref: str, where: str) -> StateNode:
        raw = ref[1:] if ref.startswith("#") else ref
        found = self.id_map.get(raw)
        if found is not None:
            return found
        # "#machine.a.b": an id followed by a relative path, as xstate resolves it.
        head, _, rest = raw.partition(".")
        base = self.id_map.get(head)
        if base is None or not rest:
            raise InvalidMachine(where, f"no state with id {ref!r}")
        return self.lookup_path(base, rest, where)

    def lookup_path(self, base: StateNode, path: str, where: str) -> StateNode:
        node = base
        for part in path.split("."):
            if part == "":
                break
            child = node.states.get(part)
            if child is None:
                raise InvalidMachine(where, f"no state {path!r}" + _in(base))
            node = child
        return node

    def action_list(self, raw: Any, where: str) -> tuple[ActionDef, ...]:
        if raw is None:
            return ()
        items = raw if isinstance(raw, list | tuple) else [raw]
        multi = isinstance(raw, list | tuple)
        return tuple(
            self.action(item, f"{where}[{i}]" if multi else where) for i, item in enumerate(items)
        )

    def action(self, ref: Any, where: str) -> ActionDef:
        params: Mapping[str, Any] | None = None
        name: str
        impl: Any
        if isinstance(ref, str):
            name = ref
            if ref not in self.actions:
                raise InvalidMachine(where, f"no action named {ref!r} in actions=")
            impl = self.actions[ref]
        elif isinstance(ref, Mapping):
            name = ref.get("type")  # type: ignore[assignment]
            if not isinstance(name, str):
                raise InvalidMachine(
                    _join(where, "type"), "an action reference needs a string type"
                )
            params = ref.get("params")
            if params is not None and not isinstance(params, Mapping):
                raise InvalidMachine(_join(where, "params"), "params must be a mapping")
            if name not in self.actions:
                raise InvalidMachine(_join(where, "type"), f"no action named {name!r} in actions=")
            impl = self.actions[name]
        elif isinstance(ref, _BUILTINS) or callable(ref):
            impl = ref
            name = getattr(ref, "__name__", type(ref).__name__)
        else:
            raise InvalidMachine(
                where, f"an action is a name, a mapping or a callable, not {_tn(ref)}"
            )
        return self.compile_action(impl, name, params, where)

    def compile_action(
        self, impl: Any, name: str, params: Mapping[str, Any] | None, where: str
    ) -> ActionDef:
        if isinstance(impl, Assign):
            return ActionDef(K_ASSIGN, "xstate.assign", _assigner(impl.fn, where), params)
        if isinstance(impl, RaiseEvent):
            delay = None
            if impl.delay is not None:
                delay = self.delay_ref(impl.delay, where)
            ev = impl.event
            ident = impl.id
            return ActionDef(K_RAISE, "xstate.raise", ev, params, delay=delay, id=ident)
        if isinstance(impl, Emit):
            return ActionDef(K_EMIT, "xstate.emit", impl.event, params)
        if isinstance(impl, SendTo):
            return self.compile_send(impl, params, where)
        if isinstance(impl, SpawnChild):
            return self.compile_spawn(impl, params, where)
        if isinstance(impl, StopChild):
            fn = _str_or_fn(impl.id, "stop_child's id", where)
            return ActionDef(K_STOP_CHILD, "xstate.stopChild", fn, params)
        if isinstance(impl, Cancel):
            fn = _str_or_fn(impl.id, "cancel's id", where)
            if isinstance(fn, str):
                return ActionDef(K_CANCEL, "xstate.cancel", None, params, id=fn)
            return ActionDef(K_CANCEL, "xstate.cancel", fn, params)
        if isinstance(impl, Log):
            return ActionDef(K_LOG, "xstate.log", impl.message, params)
        if isinstance(impl, EnqueueActions):
            if not callable(impl.fn):
                raise InvalidMachine(where, "enqueue_actions takes a function")
            return ActionDef(K_ENQUEUE, "xstate.enqueueActions", EnqueueDef(impl.fn, where), params)
        if callable(impl):
            return ActionDef(K_CUSTOM, name, impl, params)
        raise InvalidMachine(where, f"action {name!r} is not callable")

    def compile_send(self, impl: SendTo, params: Mapping[str, Any] | None, where: str) -> ActionDef:
        """``send_to`` / ``send_parent``: the target and event are checked, the delay resolved."""
        if not impl.to_parent:
            _str_or_fn(impl.target, "send_to's target", where)
        ev = impl.event
        if not callable(ev) and not (isinstance(ev, Mapping) and isinstance(ev.get("type"), str)):
            raise InvalidMachine(
                where, "a sent event is an event mapping with a 'type', a type or a function"
            )
        if impl.machine is not None and (not isinstance(impl.machine, str) or not impl.machine):
            raise InvalidMachine(where, "machine= is the id of the receiver's machine")
        if impl.id is not None and (not isinstance(impl.id, str) or not impl.id):
            raise InvalidMachine(where, "the id of a delayed send is a non-empty string")
        delay = None if impl.delay is None else self.delay_ref(impl.delay, where)
        name = "xstate.sendParent" if impl.to_parent else "xstate.sendTo"
        return ActionDef(K_SEND, name, impl, params, delay=delay, id=impl.id)

    def compile_spawn(
        self, impl: SpawnChild, params: Mapping[str, Any] | None, where: str
    ) -> ActionDef:
        """``spawn_child``: the source must name a child machine in ``actors=``."""
        src = impl.src
        if not isinstance(src, str) or src not in self.actors:
            raise InvalidMachine(where, f"no actor named {src!r} in actors=")
        if src not in self.machine_srcs:
            raise InvalidMachine(
                where, f"actor {src!r} is no Machine: spawn_child starts child machines"
            )
        _str_or_fn(impl.id, "spawn_child's id", where)
        sid = impl.system_id
        if sid is not None and (not isinstance(sid, str) or not sid):
            raise InvalidMachine(where, "a systemId is a non-empty string")
        return ActionDef(K_SPAWN, "xstate.spawnChild", impl, params)

    def delay_ref(self, ref: Any, where: str) -> Any:
        """A delay is a number of ms (or its string form) or a name in delays=."""
        if isinstance(ref, bool):
            raise InvalidMachine(where, "a delay is a number of ms or a delay name")
        if isinstance(ref, int | float):
            value = float(ref)
        elif isinstance(ref, str):
            try:
                value = float(ref)
            except ValueError:
                if ref not in self.delays:
                    raise InvalidMachine(where, f"no delay named {ref!r} in delays=") from None
                d = self.delays[ref]
                if not callable(d) and not (isinstance(d, int | float) and not isinstance(d, bool)):
                    raise InvalidMachine(
                        where, f"delay {ref!r} must be a number or a callable"
                    ) from None
                return ref
        else:
            raise InvalidMachine(where, "a delay is a number of ms or a delay name")
        if not math.isfinite(value) or value < 0:
            raise InvalidMachine(where, f"a delay must be a finite number >= 0, not {ref!r}")
        return value

    def guard(self, ref: Any, where: str) -> GuardFn:
        if isinstance(ref, StateIn):
            return self.state_in_guard(ref.state, where)
        if isinstance(ref, str):
            return self.named_guard(ref, None, where)
        if isinstance(ref, Mapping):
            gtype = ref.get("type")
            if gtype in ("and", "or", "not"):
                subs = ref.get("guards")
                if not isinstance(subs, list | tuple) or not subs:
                    raise InvalidMachine(
                        _join(where, "guards"), f"{gtype!r} needs a list of guards"
                    )
                compiled = tuple(
                    self.guard(g, _join(where, f"guards[{i}]")) for i, g in enumerate(subs)
                )
                return _combinator(str(gtype), compiled, where)
            if gtype == "stateIn":
                params = ref.get("params") or {}
                if not isinstance(params, Mapping):
                    raise InvalidMachine(_join(where, "params"), "params must be a mapping")
                state = next(
                    (
                        v
                        for v in (
                            ref.get("stateId"),
                            params.get("stateId"),
                            ref.get("stateValue"),
                            params.get("stateValue"),
                        )
                        if v is not None
                    ),
                    None,
                )
                if not isinstance(state, str | Mapping):
                    raise InvalidMachine(where, "stateIn needs a stateId or a stateValue")
                return self.state_in_guard(state, where)
            if not isinstance(gtype, str):
                raise InvalidMachine(_join(where, "type"), "a guard reference needs a string type")
            params = ref.get("params")
            if params is not None and not isinstance(params, Mapping):
                raise InvalidMachine(_join(where, "params"), "params must be a mapping")
            return self.named_guard(gtype, params, _join(where, "type"))
        if callable(ref):
            fn = ref
            return lambda c, e, n: bool(fn(c, e))
        raise InvalidMachine(where, f"a guard is a name, a mapping or a callable, not {_tn(ref)}")

    def named_guard(self, name: str, params: Mapping[str, Any] | None, where: str) -> GuardFn:
        if name not in self.guards:
            raise InvalidMachine(where, f"no guard named {name!r} in guards=")
        impl = self.guards[name]
        if isinstance(impl, StateIn):
            return self.state_in_guard(impl.state, where)
        if isinstance(impl, Mapping):
            return self.guard(impl, where)
        if not callable(impl):
            raise InvalidMachine(where, f"guard {name!r} is not callable")
        fn = impl
        if params:
            kw = dict(params)
            return lambda c, e, n: bool(fn(c, e, **kw))
        return lambda c, e, n: bool(fn(c, e))

    def state_in_guard(self, state: str | Mapping[str, Any], where: str) -> GuardFn:
        """``stateIn``: ``"#id"``, a state value path ``"p.x"`` or a value ``{"p": "x"}``.

        As in xstate, a value holds when every state it names is active
        (``snapshot.matches``). A string without ``#`` that names no state
        path from the root is taken as an id, as earlier versions did.
        """
        if isinstance(state, str) and state.startswith("#"):
            target = self.lookup_id(state, where)
            return lambda c, e, nodes: target in nodes
        try:
            required = self.value_nodes(self.root, state, where)
        except InvalidMachine as not_a_value:
            if not isinstance(state, str):
                raise
            try:
                target = self.lookup_id(state, where)
            except InvalidMachine:
                raise not_a_value from None
            return lambda c, e, nodes: target in nodes
        if len(required) == 1:
            only = required[0]
            return lambda c, e, nodes: only in nodes
        return lambda c, e, nodes: all(n in nodes for n in required)

    def value_nodes(self, base: StateNode, value: Any, where: str) -> tuple[StateNode, ...]:
        """The states a (partial) state value names below ``base``."""
        if isinstance(value, str):
            parts = value.split(".")
            value = parts[-1]
            for p in reversed(parts[:-1]):
                value = {p: value}
            if isinstance(value, str):
                return (self.value_child(base, value, where),)
        if not isinstance(value, Mapping) or not value:
            raise InvalidMachine(
                where, f"a state value is a path or a non-empty mapping: {value!r}"
            )
        out: list[StateNode] = []
        for key, sub in value.items():
            child = self.value_child(base, key, where)
            out.append(child)
            if isinstance(sub, Mapping) and not sub:
                continue  # {"p": {}} names p only, as xstate's matches() reads it
            out.extend(self.value_nodes(child, sub, where))
        return tuple(out)

    def value_child(self, base: StateNode, key: Any, where: str) -> StateNode:
        child = base.states.get(key) if isinstance(key, str) else None
        if child is None or child.type == HISTORY:
            raise InvalidMachine(where, f"no state {key!r}" + _in(base))
        return child


def _str_or_fn(value: Any, what: str, where: str) -> Any:
    """A non-empty string or a callable, as a helper's id or target must be."""
    if callable(value) or (isinstance(value, str) and value):
        return value
    raise InvalidMachine(where, f"{what} is a non-empty string or a function, not {value!r}")


def _assigner(spec: Any, where: str) -> Any:
    """What an assign runs: its function, a constant mapping, or one function for the per-key form."""
    if callable(spec):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidMachine(where, f"assign takes a function or a mapping, not {_tn(spec)}")
    for key in spec:
        if not isinstance(key, str):
            raise InvalidMachine(where, f"assign keys are context keys (strings): {key!r}")
    if not any(callable(v) for v in spec.values()):
        return spec  # constant: merged as is
    items = tuple(spec.items())

    def per_key(context: Mapping[str, Any], event: Mapping[str, Any], **params: Any) -> Any:
        return {k: v(context, event, **params) if callable(v) else v for k, v in items}

    return per_key


def _combinator(kind: str, guards: tuple[GuardFn, ...], where: str) -> GuardFn:
    if kind == "and":
        return lambda c, e, n: all(g(c, e, n) for g in guards)
    if kind == "or":
        return lambda c, e, n: any(g(c, e, n) for g in guards)
    if len(guards) != 1:
        raise InvalidMachine(where, "'not' takes exactly one guard")
    only = guards[0]
    return lambda c, e, n: not only(c, e, n)


def _delay_label(delay: Any) -> str:
    """The delay as it appears in xstate's after-event type (``1000``, ``1.5``, ``name``)."""
    if isinstance(delay, float):
        return str(int(delay)) if delay.is_integer() else repr(delay)
    return str(delay)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _in(node: StateNode) -> str:
    return f" in #{node.id}"


def _tn(value: object) -> str:
    return type(value).__name__


def build_tree(
    config: Mapping[str, Any],
    *,
    actions: Mapping[str, Any],
    guards: Mapping[str, Any],
    delays: Mapping[str, Any],
    actors: Mapping[str, Any],
    machine_srcs: frozenset[str] = frozenset(),
) -> tuple[StateNode, dict[str, StateNode], list[StateNode], _Builder]:
    """Build and validate the state tree of a machine config.

    Returns:
        The root node, the map of ids to nodes, all nodes in document order,
        and the builder, which compiles the actions and guards that
        :func:`enqueue_actions` names at run time.

    Raises:
        InvalidMachine: with the path of the first offending key.

    The implementation mappings were checked by :class:`Machine` (they are
    mappings); what they hold is checked here, where the config names them.
    """
    b = _Builder(config, actions, guards, delays, actors, machine_srcs)
    root = b.create(config, config.get("id") or "(machine)", None, "")
    if root.type in (HISTORY, FINAL):
        raise InvalidMachine("type", "the root must be a compound, parallel or atomic state")
    b.resolve(root, "")
    for node in b.nodes:
        if node.is_atomic:
            node.always_chain = tuple(s for s in (node, *node.ancestors) if s.always)
    return root, b.id_map, b.nodes, b
