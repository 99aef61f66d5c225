"""The statechart algorithm (SCXML as xstate v5 runs it), over precompiled nodes.

The functions here are the set operations of the SCXML microstep: transition
domains, exit sets, entry sets, conflict removal. They are pure functions of
the active configuration, the transitions and the history value, which is what
lets :class:`ConfigInfo` cache their results: a microstep that was computed once
for a configuration and a set of transitions is a lookup the next time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._nodes import COMPOUND, FINAL, HISTORY, PARALLEL, StateNode, Transition

__all__ = (
    "ConfigInfo",
    "MicrostepPlan",
    "Selector",
    "compute_microstep",
    "is_in_final_state",
)

History = Mapping[str, tuple[StateNode, ...]]


def is_descendant(child: StateNode, parent: StateNode | None) -> bool:
    """Strict descendant; every node descends from the undefined domain (None)."""
    return parent is None or parent in child.ancestor_set


def proper_ancestors(node: StateNode, upto: StateNode | None) -> list[StateNode]:
    """Ancestors of ``node``, nearest first, stopping before ``upto``."""
    if upto is node:
        return []
    out = []
    for a in node.ancestors:
        if a is upto:
            break
        out.append(a)
    return out


def effective_targets(t: Transition, history: History) -> list[StateNode]:
    if not t.targets:
        return []
    out: dict[StateNode, None] = {}
    for target in t.targets:
        if target.type == HISTORY:
            recorded = history.get(target.id)
            if recorded:
                for n in recorded:
                    out[n] = None
            else:
                for n in _history_default_targets(target, history):
                    out[n] = None
        else:
            out[target] = None
    return list(out)


def _history_default_targets(hnode: StateNode, history: History) -> list[StateNode]:
    out: list[StateNode] = []
    for t in hnode.history_default:
        if t.type == HISTORY:
            recorded = history.get(t.id)
            out.extend(recorded if recorded else _history_default_targets(t, history))
        else:
            out.append(t)
    return out


def find_lca(nodes: Sequence[StateNode]) -> StateNode | None:
    head, tail = nodes[0], nodes[1:]
    for anc in head.ancestors:
        if all(is_descendant(n, anc) for n in tail):
            return anc
    return None


def transition_domain(t: Transition, history: History, root: StateNode) -> StateNode | None:
    targets = effective_targets(t, history)
    src = t.source
    if not t.reenter and all(x is src or src in x.ancestor_set for x in targets):
        return src
    lca = find_lca([*targets, src])
    if lca is not None:
        return lca
    if t.reenter:
        return None
    return root


def exit_set(
    transitions: Iterable[Transition],
    config: Iterable[StateNode],
    history: History,
    root: StateNode,
) -> set[StateNode]:
    out: set[StateNode] = set()
    cfg = list(config)
    for t in transitions:
        if t.targets:
            domain = transition_domain(t, history, root)
            if t.reenter and t.source is domain:
                out.add(domain)
            for n in cfg:
                if is_descendant(n, domain):
                    out.add(n)
    return out


def remove_conflicting(
    enabled: Sequence[Transition], config: frozenset[StateNode], history: History, root: StateNode
) -> list[Transition]:
    if len(enabled) <= 1:
        return list(enabled)
    filtered: list[Transition] = []
    exits: dict[Transition, set[StateNode]] = {}
    for t in enabled:
        exits[t] = exit_set([t], config, history, root)
    for t1 in enabled:
        preempted = False
        to_remove = []
        for t2 in filtered:
            if exits[t1] & exits[t2]:
                if is_descendant(t1.source, t2.source):
                    to_remove.append(t2)
                else:
                    preempted = True
                    break
        if not preempted:
            for t3 in to_remove:
                filtered.remove(t3)
            filtered.append(t1)
    return filtered


def _add_descendants(
    node: StateNode,
    history: History,
    default_entry: set[StateNode],
    to_enter: dict[StateNode, None],
) -> None:
    if node.type == HISTORY:
        recorded = history.get(node.id)
        parent = node.parent
        if recorded:
            for s in recorded:
                to_enter[s] = None
                _add_descendants(s, history, default_entry, to_enter)
            for s in recorded:
                _add_ancestors(proper_ancestors(s, parent), history, default_entry, to_enter, None)
        else:
            assert parent is not None
            targets = node.history_default
            uses_initial = parent.type == COMPOUND and targets == (parent.initial,)
            for s in targets:
                to_enter[s] = None
                if uses_initial:
                    default_entry.add(parent)
                _add_descendants(s, history, default_entry, to_enter)
            for s in targets:
                _add_ancestors(proper_ancestors(s, parent), history, default_entry, to_enter, None)
    elif node.type == COMPOUND:
        initial = node.initial
        assert initial is not None
        if initial.type != HISTORY:
            to_enter[initial] = None
            default_entry.add(initial)
        _add_descendants(initial, history, default_entry, to_enter)
        _add_ancestors(proper_ancestors(initial, node), history, default_entry, to_enter, None)
    elif node.type == PARALLEL:
        for child in node.children:
            if not any(child in s.ancestor_set for s in to_enter):
                to_enter[child] = None
                default_entry.add(child)
                _add_descendants(child, history, default_entry, to_enter)


def _add_ancestors(
    ancestors: Iterable[StateNode],
    history: History,
    default_entry: set[StateNode],
    to_enter: dict[StateNode, None],
    reentrancy_domain: StateNode | None,
) -> None:
    for anc in ancestors:
        if reentrancy_domain is None or reentrancy_domain in anc.ancestor_set:
            to_enter[anc] = None
        if anc.type == PARALLEL:
            for child in anc.children:
                if not any(child in s.ancestor_set for s in to_enter):
                    to_enter[child] = None
                    _add_descendants(child, history, default_entry, to_enter)


def entry_set(
    transitions: Iterable[Transition], history: History, root: StateNode
) -> tuple[dict[StateNode, None], set[StateNode]]:
    to_enter: dict[StateNode, None] = {}
    default_entry: set[StateNode] = set()
    for t in transitions:
        domain = transition_domain(t, history, root)
        for s in t.targets or ():
            if s.type != HISTORY and (s is not t.source or t.source is not domain or t.reenter):
                to_enter[s] = None
                default_entry.add(s)
            _add_descendants(s, history, default_entry, to_enter)
        for s in effective_targets(t, history):
            ancestors = proper_ancestors(s, domain)
            if domain is not None and domain.type == PARALLEL:
                ancestors.append(domain)
            reentrancy = None if (t.source.parent is None and t.reenter) else domain
            _add_ancestors(ancestors, history, default_entry, to_enter, reentrancy)
    return to_enter, default_entry


def is_in_final_state(nodes: Iterable[StateNode] | frozenset[StateNode], node: StateNode) -> bool:
    active = nodes if isinstance(nodes, set | frozenset) else set(nodes)
    if node.type == COMPOUND:
        return any(c.type == FINAL and c in active for c in node.children)
    if node.type == PARALLEL:
        return all(is_in_final_state(active, c) for c in node.children)
    return node.type == FINAL


class EntryStep:
    """One state to enter, and what entering it completes."""

    __slots__ = ("compound_done", "default", "node", "parallel_done", "root_completion")

    def __init__(self, node: StateNode, default: bool) -> None:
        self.node = node
        self.default = default
        # For final states: the compound parent whose done event to raise, the
        # parallel ancestors that complete, and the node that completes the
        # machine (None when the machine does not complete here).
        self.compound_done: StateNode | None = None
        self.parallel_done: tuple[StateNode, ...] = ()
        self.root_completion: StateNode | None = None


class MicrostepPlan:
    """Everything about a microstep that depends only on the configuration.

    The interpreter executes the plan's actions against the context; the sets
    themselves were computed once.
    """

    __slots__ = (
        "entries",
        "exits",
        "history_changed",
        "history_records",
        "next_nodes",
        "nodes_changed",
        "transitions",
    )

    def __init__(
        self,
        transitions: tuple[Transition, ...],
        exits: tuple[StateNode, ...],
        history_records: tuple[tuple[str, tuple[StateNode, ...]], ...],
        entries: tuple[EntryStep, ...],
        next_nodes: frozenset[StateNode],
        nodes_changed: bool,
    ) -> None:
        self.transitions = transitions
        self.exits = exits
        self.history_records = history_records
        self.history_changed = bool(history_records)
        self.entries = entries
        self.next_nodes = next_nodes
        self.nodes_changed = nodes_changed


def compute_microstep(
    transitions: Sequence[Transition],
    nodes: frozenset[StateNode],
    history: History,
    root: StateNode,
    *,
    is_initial: bool = False,
) -> MicrostepPlan:
    """Compute the sets of one microstep (SCXML ``microstep``, xstate order)."""
    filtered = tuple(remove_conflicting(transitions, nodes, history, root))
    mut = set(nodes)
    exits: tuple[StateNode, ...] = ()
    records: list[tuple[str, tuple[StateNode, ...]]] = []
    if not is_initial:
        exits = tuple(sorted(exit_set(filtered, nodes, history, root), key=_neg_order))
        for ex in exits:
            for h in ex.history_nodes:
                if h.history == "deep":
                    recorded = tuple(
                        n for n in _doc_order(nodes) if n.is_atomic and ex in n.ancestor_set
                    )
                else:
                    recorded = tuple(n for n in _doc_order(nodes) if n.parent is ex)
                records.append((h.id, recorded))
        mut.difference_update(exits)
    # History recorded on exit is what history targets of *this* microstep see
    # when computing entry (xstate passes the updated history value on).
    hist_after: History = history
    if records:
        merged = dict(history)
        merged.update(records)
        hist_after = merged
    to_enter, default_entry = entry_set(filtered, hist_after, root)
    if is_initial:
        default_entry.add(root)
    entries: list[EntryStep] = []
    completed: set[StateNode] = set()
    for node in sorted(to_enter, key=_order):
        mut.add(node)
        step = EntryStep(node, node in default_entry)
        if node.type == FINAL:
            parent = node.parent
            marker = (
                parent
                if parent is not None and parent.type == PARALLEL
                else (parent.parent if parent is not None else None)
            )
            root_completion: StateNode = marker or node
            if parent is not None and parent.type == COMPOUND:
                step.compound_done = parent
            pdone = []
            while (
                marker is not None
                and marker.type == PARALLEL
                and marker not in completed
                and is_in_final_state(mut, marker)
            ):
                completed.add(marker)
                pdone.append(marker)
                root_completion = marker
                marker = marker.parent
            step.parallel_done = tuple(pdone)
            if marker is None:
                step.root_completion = root_completion
        entries.append(step)
    next_nodes = frozenset(mut)
    return MicrostepPlan(
        filtered,
        exits,
        tuple(records),
        tuple(entries),
        next_nodes,
        next_nodes != nodes,
    )


def _order(n: StateNode) -> int:
    return n.order


def _neg_order(n: StateNode) -> int:
    return -n.order


def _doc_order(nodes: Iterable[StateNode]) -> list[StateNode]:
    return sorted(nodes, key=_order)


class Selector:
    """Compiled transition selection for one event type in one configuration.

    A tree that mirrors the active states that have candidates for the event:
    ``subs`` are the selectors of active children, ``cands`` the state's own
    candidates. Not to be confused with a :class:`MicrostepPlan`, which says
    what a microstep does once its transitions are selected.
    """

    __slots__ = ("cands", "subs")

    def __init__(self, subs: tuple[Selector, ...], cands: tuple[Transition, ...]) -> None:
        self.subs = subs
        self.cands = cands


class ConfigInfo:
    """A configuration (set of active states) and what is cached about it.

    Configurations are interned per machine, so that the selection plans and
    microstep plans computed for one are found again by identity.
    """

    __slots__ = (
        "active_children",
        "always_chains",
        "atomics",
        "has_always",
        "micro",
        "nodes",
        "selection",
        "tags",
        "value",
    )

    def __init__(self, nodes: frozenset[StateNode], root: StateNode) -> None:
        self.nodes = nodes
        ordered = _doc_order(nodes)
        self.atomics = tuple(n for n in ordered if n.is_atomic)
        children: dict[StateNode, list[StateNode]] = {n: [] for n in ordered}
        for n in ordered:
            if n.parent is not None and n.parent in children:
                children[n.parent].append(n)
        self.active_children = {k: tuple(v) for k, v in children.items()}
        self.value = _state_value(root, self.active_children)
        tags: list[str] = []
        for n in ordered:
            for t in n.tags:
                if t not in tags:
                    tags.append(t)
        self.tags = frozenset(tags)
        chains = []
        for a in self.atomics:
            chain = tuple(s for s in (a, *a.ancestors) if s.always)
            if chain:
                chains.append(chain)
        self.always_chains = tuple(chains)
        self.has_always = bool(chains)
        # event type -> selection result: a tuple of transitions when no guard
        # is involved (static), a Selector otherwise, None when nothing matches.
        self.selection: dict[str, tuple[Transition, ...] | Selector | None] = {}
        # (transitions) -> MicrostepPlan, for microsteps that do not depend on
        # the history value.
        self.micro: dict[tuple[Transition, ...], MicrostepPlan] = {}

    def compile_selection(
        self, root: StateNode, event_type: str
    ) -> tuple[Transition, ...] | Selector | None:
        """How ``event_type`` selects transitions here.

        Returns:
            The transitions themselves when no guard is involved (the answer
            is the same every time), a :class:`Selector` to run against the
            context and event otherwise, None when nothing can match.
        """
        guarded = False

        def build(node: StateNode) -> Selector | None:
            nonlocal guarded
            subs = tuple(p for p in (build(k) for k in self.active_children[node]) if p is not None)
            cands = candidates(node, event_type)
            if cands and any(t.guard is not None for t in cands):
                guarded = True
            if not subs and not cands:
                return None
            if not cands and len(subs) == 1:
                # A node with nothing of its own selects what its one child selects.
                return subs[0]
            return Selector(subs, cands)

        selector = build(root)
        if selector is None:
            return None
        if guarded:
            return selector
        static = run_selector(selector, {}, {}, self.nodes)
        return static if static else None


def run_selector(
    selector: Selector,
    context: Mapping[str, Any],
    event: Mapping[str, Any],
    nodes: frozenset[StateNode],
) -> tuple[Transition, ...]:
    """Select transitions: deepest first, regions in document order, then ancestors."""
    subs = selector.subs
    if subs:
        if len(subs) == 1:
            found = run_selector(subs[0], context, event, nodes)
        else:
            acc: list[Transition] = []
            for sub in subs:
                if sub.subs:
                    acc.extend(run_selector(sub, context, event, nodes))
                else:
                    # A leaf: its first enabled candidate, inline.
                    for t in sub.cands:
                        g = t.guard
                        if g is None or g(context, event, nodes):
                            acc.append(t)
                            break
            found = tuple(acc)
        if found:
            return found
    for t in selector.cands:
        g = t.guard
        if g is None or g(context, event, nodes):
            return (t,)
    return ()


def candidates(node: StateNode, event_type: str) -> tuple[Transition, ...]:
    """Exact match first, then wildcard descriptors, longest first (xstate order)."""
    exact = node.transitions.get(event_type)
    if not node.wildcards:
        return tuple(exact) if exact else ()
    wild = [d for d in node.wildcards if d != event_type and matches_descriptor(event_type, d)]
    wild.sort(key=len, reverse=True)
    out: list[Transition] = list(exact) if exact else []
    for d in wild:
        out.extend(node.transitions[d])
    return tuple(out)


def matches_descriptor(event_type: str, descriptor: str) -> bool:
    if descriptor == event_type or descriptor == "*":
        return True
    if not descriptor.endswith(".*"):
        return False
    prefix = descriptor[:-2].split(".")
    tokens = event_type.split(".")
    return tokens[: len(prefix)] == prefix and len(tokens) >= len(prefix)


def _state_value(
    root: StateNode, active_children: Mapping[StateNode, tuple[StateNode, ...]]
) -> Any:
    def value_of(node: StateNode) -> Any:
        kids = active_children.get(node, ())
        if node.type == COMPOUND:
            if not kids:
                return {}
            only = kids[0]
            if only.is_atomic:
                return only.key
        return {k.key: value_of(k) for k in kids}

    return value_of(root)
