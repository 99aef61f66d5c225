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

from ..errors import StatechartError
from ._nodes import COMPOUND, FINAL, HISTORY, PARALLEL, StateNode, Transition

__all__ = (
    "ConfigInfo",
    "MicrostepPlan",
    "Selector",
    "compute_microstep",
    "is_in_final_state",
    "value_order",
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
    domains: Mapping[Transition, StateNode | None] | None = None,
) -> set[StateNode]:
    out: set[StateNode] = set()
    cfg = list(config)
    for t in transitions:
        if t.targets:
            domain = domains[t] if domains is not None else transition_domain(t, history, root)
            if t.reenter and t.source is domain:
                out.add(domain)
            for n in cfg:
                if is_descendant(n, domain):
                    out.add(n)
    return out


def remove_conflicting(
    enabled: Sequence[Transition],
    config: frozenset[StateNode],
    history: History,
    root: StateNode,
    *,
    in_place_reentry: bool = False,
) -> list[Transition]:
    """SCXML's conflict removal: of two transitions whose exit sets meet, the
    one from the deeper source wins, otherwise the earlier one.

    With ``in_place_reentry``, a transition to a history state that resolves
    to its own atomic source (xstate makes the source its domain: it exits
    nothing and enters the source again where it is) also counts its source
    as exited, so that no other transition may leave that state meanwhile.
    """
    if len(enabled) <= 1:
        return list(enabled)
    filtered: list[Transition] = []
    exits: dict[Transition, set[StateNode]] = {}
    for t in enabled:
        exits[t] = exit_set([t], config, history, root)
        if (
            in_place_reentry
            and t.has_history_target
            and t.source.is_atomic
            and transition_domain(t, history, root) is t.source
        ):
            exits[t].add(t.source)
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
    transitions: Iterable[Transition],
    history: History,
    root: StateNode,
    domains: Mapping[Transition, StateNode | None],
) -> tuple[dict[StateNode, None], set[StateNode]]:
    """The states to enter, and those entered by default (initial actions run).

    ``history`` is the history value after the exits of this microstep (a
    history state entered now restores what was just recorded); ``domains``
    are the transition domains the exit set was computed with.
    """
    to_enter: dict[StateNode, None] = {}
    default_entry: set[StateNode] = set()
    for t in transitions:
        domain = domains[t]
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
        self.node: StateNode = node
        self.default: bool = default
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
        "entered_atomics",
        "entries",
        "exit_set",
        "exits",
        "history_changed",
        "history_records",
        "next_atomics",
        "next_nodes",
        "nodes_changed",
        "order_from_document",
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
        previous_atomics: tuple[StateNode, ...],
    ) -> None:
        self.transitions: tuple[Transition, ...] = transitions
        self.exits: tuple[StateNode, ...] = exits
        self.exit_set: frozenset[StateNode] = frozenset(exits)
        self.history_records: tuple[tuple[str, tuple[StateNode, ...]], ...] = history_records
        self.history_changed: bool = bool(history_records)
        self.entries: tuple[EntryStep, ...] = entries
        self.next_nodes: frozenset[StateNode] = next_nodes
        self.nodes_changed: bool = nodes_changed
        self.entered_atomics: tuple[StateNode, ...] = tuple(
            e.node for e in entries if e.node.is_atomic
        )
        self.next_atomics: tuple[StateNode, ...] = tuple(
            n for n in _doc_order(next_nodes) if n.is_atomic
        )
        # The entry order after this microstep when the one before was the
        # document order: the common case, so it is computed once per plan.
        self.order_from_document: tuple[StateNode, ...] | None = self.reorder(previous_atomics)

    @property
    def changes_order(self) -> bool:
        """Whether the microstep gives the configuration a new entry order.

        As in xstate, which keeps its node list when a microstep leaves both
        the set of active states and the history value as they were.
        """
        return self.nodes_changed or self.history_changed

    def reorder(self, order: Sequence[StateNode]) -> tuple[StateNode, ...] | None:
        """The active atomic states in entry order after this microstep.

        ``order`` is the entry order before it. Exited states leave the order,
        states entered join at its end in document order, and a state entered
        again without being exited keeps its place (xstate's node list is an
        insertion-ordered set). ``None`` stands for the document order.
        """
        gone = self.exit_set
        kept = [n for n in order if n not in gone] if gone else list(order)
        present = set(kept)
        kept.extend(n for n in self.entered_atomics if n not in present)
        result = tuple(kept)
        return None if result == self.next_atomics else result


def compute_microstep(
    transitions: Sequence[Transition],
    nodes: frozenset[StateNode],
    history: History,
    root: StateNode,
    *,
    is_initial: bool = False,
) -> MicrostepPlan:
    """Compute the sets of one microstep (SCXML ``microstep``, xstate order).

    Where xstate's rules would leave an illegal configuration -- possible only
    with history targets -- the result is the legal SCXML one instead:

    * Each transition's domain is computed once, before anything exits, and
      serves for both its exit and its entry set. (xstate computes the domain
      again for the entry set with the history just recorded; when that moves
      the domain deeper, states exited on the way are never entered again.)
    * If the configuration is still illegal, the microstep is computed again
      with in-place re-entries counted as exits when conflicts are removed
      (see :func:`remove_conflicting`): a history transition that enters its
      own source again cannot be combined with one that leaves that source.

    Raises:
        StatechartError: if even that gives an illegal configuration (a bug).
    """
    plan = _microstep(transitions, nodes, history, root, is_initial, in_place_reentry=False)
    if not _illegal(plan.next_nodes):
        return plan
    plan = _microstep(transitions, nodes, history, root, is_initial, in_place_reentry=True)
    problem = _illegal(plan.next_nodes)
    if problem:
        raise StatechartError(
            f"internal error: transitions {list(transitions)} would leave an illegal "
            f"configuration ({problem}); please report it with the machine config"
        )
    return plan


def _illegal(nodes: frozenset[StateNode]) -> str:
    """Why ``nodes`` is not a legal configuration ("" when it is)."""
    for n in nodes:
        parent = n.parent
        if parent is not None and parent not in nodes:
            return f"#{n.id} is active without its parent"
        if n.type == COMPOUND:
            if sum(1 for c in n.children if c in nodes) != 1:
                return f"compound #{n.id} must have one active child"
        elif n.type == PARALLEL and not all(c in nodes for c in n.children):
            return f"parallel #{n.id} must have all its regions active"
    return ""


def _microstep(
    transitions: Sequence[Transition],
    nodes: frozenset[StateNode],
    history: History,
    root: StateNode,
    is_initial: bool,
    *,
    in_place_reentry: bool,
) -> MicrostepPlan:
    filtered = tuple(
        remove_conflicting(transitions, nodes, history, root, in_place_reentry=in_place_reentry)
    )
    domains = {t: transition_domain(t, history, root) for t in filtered}
    mut = set(nodes)
    exits: tuple[StateNode, ...] = ()
    records: list[tuple[str, tuple[StateNode, ...]]] = []
    if not is_initial:
        exits = tuple(sorted(exit_set(filtered, nodes, history, root, domains), key=_neg_order))
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
    to_enter, default_entry = entry_set(filtered, hist_after, root, domains)
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
        tuple(n for n in _doc_order(nodes) if n.is_atomic),
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
        self.subs: tuple[Selector, ...] = subs
        self.cands: tuple[Transition, ...] = cands


class ConfigInfo:
    """A configuration (set of active states) and what is cached about it.

    Configurations are interned per machine, so that the selection plans and
    microstep plans computed for one are found again by identity.
    """

    __slots__ = (
        "_restored_order",
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
        self.nodes: frozenset[StateNode] = nodes
        ordered = _doc_order(nodes)
        self.atomics: tuple[StateNode, ...] = tuple(n for n in ordered if n.is_atomic)
        children: dict[StateNode, list[StateNode]] = {n: [] for n in ordered}
        for n in ordered:
            if n.parent is not None and n.parent in children:
                children[n.parent].append(n)
        self.active_children: dict[StateNode, tuple[StateNode, ...]] = {
            k: tuple(v) for k, v in children.items()
        }
        self.value: str | dict[str, Any] = _state_value(root, self.active_children)
        tags: list[str] = []
        for n in ordered:
            for t in n.tags:
                if t not in tags:
                    tags.append(t)
        self.tags: frozenset[str] = frozenset(tags)
        # Eventless selection in document order; an entry order that differs
        # uses the atomic states' own chains instead (see _Run._eventless).
        self.always_chains: tuple[tuple[StateNode, ...], ...] = tuple(
            a.always_chain for a in self.atomics if a.always_chain
        )
        self.has_always: bool = bool(self.always_chains)
        # event type -> selection result: a tuple of transitions when no guard
        # is involved (static), a Selector otherwise, None when nothing matches.
        self.selection: dict[str, tuple[Transition, ...] | Selector | None] = {}
        # (transitions) -> MicrostepPlan, for microsteps that do not depend on
        # the history value.
        self.micro: dict[tuple[Transition, ...], MicrostepPlan] = {}
        self._restored_order: tuple[StateNode, ...] | None = None

    @property
    def restored_order(self) -> tuple[StateNode, ...]:
        """The entry order a restore derives from this configuration's state value."""
        if self._restored_order is None:
            root = next(n for n in self.nodes if n.parent is None)
            named = dict.fromkeys(value_order(root, self.value))
            order = [n for n in named if n.is_atomic]
            order.extend(n for n in self.atomics if n not in named)
            self._restored_order = tuple(order)
        return self._restored_order

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


def value_order(root: StateNode, value: Any) -> list[StateNode]:
    """The states a persisted state value names, in the order xstate lists them.

    xstate restores a snapshot's node list from its value: at each level the
    children named there, then what each names below (``getStateNodes``).
    Unknown keys are skipped; the value was validated separately.
    """
    out: list[StateNode] = []

    def visit(node: StateNode, v: Any) -> None:
        if isinstance(v, str):
            child = node.states.get(v)
            if child is not None:
                out.append(child)
            return
        if not isinstance(v, Mapping):
            return
        children = [(c, v[k]) for k in v if (c := node.states.get(k)) is not None]
        out.extend(c for c, _ in children)
        for c, sub in children:
            visit(c, sub)

    visit(root, value)
    return out
