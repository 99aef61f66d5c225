"""Statechart diagrams of a :class:`~durable_state.Machine`: Mermaid and Graphviz DOT.

Both renderers walk the machine's precompiled state tree (so targets are
resolved exactly as the interpreter resolves them) and take labels from the
config (so guards keep the names the config gives them):

* an event transition is labelled ``EVENT [guard]``; ``after`` transitions
  ``after 1500 ms`` or ``after retry_backoff (1500 ms)``; eventless ones
  ``always``; ``onDone`` ones ``done`` and invoked actors' ``done: src`` /
  ``error: src``;
* a transition without a target (actions only) is drawn as a loop on its state;
* Mermaid: ``stateDiagram-v2`` with composite states, ``--`` between the
  regions of a parallel state, ``[*]`` for initial and final states;
* DOT: nested ``cluster_`` subgraphs (dashed for the regions of a parallel
  state), a point for each initial state, double borders for final states.

Child actors (see :func:`child_actors`) are drawn as well:

* a state's ``invoke`` is named on that state: ``invokes pay: payment (child
  machine)`` for a :class:`Machine` in ``actors=``, ``invokes fetch: loader``
  for an async callable (``invokes loader`` when the config gives no id);
* :func:`~durable_state.statechart.spawn_child` actions, found among the
  ``actions=`` implementations and inline in the config, are listed on the
  machine's root as ``spawns worker: job (child machine)``: an action may run
  in several states (or none), so the spawning state is not drawn. What an
  ``enqueue_actions`` function enqueues is only known when it runs: it is not
  shown;
* each child machine, invoked or spawned, is drawn once, after the machine
  that starts it (recursively for its own children; a machine that starts
  itself or an ancestor is not drawn again), as its own outermost composite
  state / cluster titled ``payment (child machine)``. Its ids are prefixed
  with its machine id so that they never collide with another machine's
  (Mermaid: ``payment__pending``, or ``payment_machine__pending`` when the
  parent has a state ``payment``; DOT: ``payment::payment.pending``); no
  ``[*]`` arrow leads into it, since it starts only when invoked or spawned;
* Mermaid has no dashed arrows, so the invokes and spawns of a state are a
  ``note right of`` it, listing one per line; arrows stay transitions;
* DOT: a dashed edge labelled ``invokes pay`` runs from the invoking state to
  the child machine's cluster (``spawns worker`` from the machine's cluster);
  what is not drawn as a cluster (async callables, or every child when
  children are left out) is a note-shaped node tied to its state by a dotted
  line.

``children=False`` leaves the child machines out: the invokes and spawns are
still listed on their states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ._format import delay
from .statechart import Machine, SpawnChild, StateIn

__all__ = (
    "Child",
    "Edge",
    "StateNode",
    "Transition",
    "child_actors",
    "child_machines",
    "edges",
    "to_dot",
    "to_mermaid",
)

# A state's "type" as a config spells it (xstate's vocabulary).
COMPOUND: Final = "compound"
PARALLEL: Final = "parallel"
FINAL: Final = "final"
HISTORY: Final = "history"


# What is read from the state tree that ``Machine.root`` precompiles. The
# statechart package does not export its node classes, so the diagrams
# depend on these attributes only, not on the private module defining them.


class Invoke(Protocol):
    """An invoked actor of a state."""

    @property
    def id(self) -> str: ...

    @property
    def src(self) -> str: ...


class Transition(Protocol):
    """A compiled transition: where it goes."""

    @property
    def targets(self) -> Sequence[StateNode] | None: ...


class StateNode(Protocol):
    """A state of the precompiled tree, with its config and compiled transitions."""

    @property
    def id(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def path(self) -> tuple[str, ...]: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def states(self) -> Mapping[str, StateNode]: ...

    @property
    def initial(self) -> StateNode | None: ...

    @property
    def history(self) -> str | None: ...

    @property
    def history_default(self) -> Sequence[StateNode]: ...

    @property
    def ancestor_set(self) -> AbstractSet[StateNode]: ...

    @property
    def transitions(self) -> Mapping[str, Sequence[Transition]]: ...

    @property
    def after(self) -> Sequence[Transition]: ...

    @property
    def always(self) -> Sequence[Transition]: ...

    @property
    def invoke(self) -> Sequence[Invoke]: ...


@dataclass(frozen=True)
class Edge:
    """One drawn transition.

    Attributes:
        source: the state the transition belongs to.
        targets: the target states (empty for a targetless transition).
        label: the text on the arrow.
    """

    source: StateNode
    targets: tuple[StateNode, ...]
    label: str


# --------------------------------------------------------------------------- #
# Labels from the config
# --------------------------------------------------------------------------- #


def guard_label(guard: Any) -> str:
    """The text of a guard reference: ``name``, ``name(k=v)``, ``a and not b``."""
    if guard is None:
        return ""
    if isinstance(guard, str):
        return guard
    if isinstance(guard, StateIn):
        return f"in {guard.state_id}"
    if isinstance(guard, Mapping):
        kind = guard.get("type")
        subs = guard.get("guards")
        if kind in ("and", "or") and isinstance(subs, Sequence):
            return f" {kind} ".join(_operand(g) for g in subs)
        if kind == "not" and isinstance(subs, Sequence) and subs:
            return f"not {_operand(subs[0])}"
        params = guard.get("params")
        if kind == "stateIn":
            state = guard.get("stateId") or (params or {}).get("stateId")
            return f"in {state}"
        if isinstance(params, Mapping) and params:
            args = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
            return f"{kind}({args})"
        return str(kind)
    return str(getattr(guard, "__name__", "guard")).replace("<lambda>", "guard")


def _operand(guard: Any) -> str:
    text = guard_label(guard)
    return f"({text})" if " " in text and not text.startswith("in ") else text


def _items(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list | tuple) else [raw]


def _with_guard(label: str, raw: Any) -> str:
    guard = raw.get("guard") if isinstance(raw, Mapping) else None
    text = guard_label(guard)
    return f"{label} [{text}]" if text else label


def _delay_text(machine: Machine, key: Any) -> str:
    try:
        ms = float(key)
    except (TypeError, ValueError):
        named = machine.delays.get(str(key))
        if isinstance(named, int | float) and not isinstance(named, bool):
            return f"after {key} ({delay(float(named))})"
        return f"after {key}"
    return f"after {delay(ms)}"


def _paired(
    raws: list[Any], compiled: Sequence[Transition], label: str
) -> Iterator[tuple[str, Transition]]:
    for raw, transition in zip(raws, compiled, strict=False):
        yield _with_guard(label, raw), transition


def _node_transitions(machine: Machine, node: StateNode) -> Iterator[tuple[str, Transition]]:
    """Each compiled transition of ``node`` with its label, in config order."""
    cfg = node.config
    on = cfg.get("on")
    if isinstance(on, Mapping):
        for event, raw in on.items():
            yield from _paired(_items(raw), node.transitions.get(event, ()), event)
    if "onDone" in cfg:
        key = f"xstate.done.state.{node.id}"
        yield from _paired(_items(cfg["onDone"]), node.transitions.get(key, ()), "done")
    raw_invoke = cfg.get("invoke")
    if raw_invoke is not None:
        for inv, icfg in zip(node.invoke, _items(raw_invoke), strict=False):
            if not isinstance(icfg, Mapping):
                continue
            for field, prefix, word in (
                ("onDone", "xstate.done.actor.", "done"),
                ("onError", "xstate.error.actor.", "error"),
            ):
                if field in icfg:
                    compiled = node.transitions.get(prefix + inv.id, ())
                    yield from _paired(_items(icfg[field]), compiled, f"{word}: {inv.src}")
    after = cfg.get("after")
    if isinstance(after, Mapping):
        delayed = iter(node.after)
        for key, raw in after.items():
            label = _delay_text(machine, key)
            for item in _items(raw):
                transition = next(delayed, None)
                if transition is not None:
                    yield _with_guard(label, item), transition
    always = cfg.get("always")
    if always is not None:
        yield from _paired(_items(always), node.always, "always")


def _root(machine: Machine) -> StateNode:
    root: StateNode = machine.root
    return root


def _walk(node: StateNode) -> Iterator[StateNode]:
    yield node
    for child in node.states.values():
        yield from _walk(child)


def edges(machine: Machine) -> list[Edge]:
    """Every transition of the machine as a drawable edge, in document order.

    Returns:
        The edges; a history state's default target is an edge labelled ``default``.
    """
    out: list[Edge] = []
    for node in _walk(_root(machine)):
        if node.type == HISTORY and node.history_default:
            out.append(Edge(node, tuple(node.history_default), "default"))
        for label, transition in _node_transitions(machine, node):
            out.append(Edge(node, tuple(transition.targets or ()), label))
    return out


def _label(node: StateNode) -> str:
    if node.type == HISTORY:
        return "H*" if node.history == "deep" else "H"
    return node.key or node.id


# --------------------------------------------------------------------------- #
# Child actors
# --------------------------------------------------------------------------- #

INVOKES: Final = "invokes"
SPAWNS: Final = "spawns"


@dataclass(frozen=True)
class Child:
    """A child actor that a machine starts.

    Attributes:
        kind: ``"invokes"`` (a state's ``invoke``) or ``"spawns"`` (a
            :func:`~durable_state.statechart.spawn_child` action).
        id: the child's id; ``None`` for an invoke whose config gives no id;
            ``(fn)`` for a spawn whose id a function computes.
        src: its name in the machine's ``actors=``.
        machine: the child machine, or ``None`` for an invoked async callable.
        state: the invoking state; the machine's root for a spawn.
    """

    kind: str
    id: str | None
    src: str
    machine: Machine | None
    state: StateNode

    @property
    def text(self) -> str:
        """The note: ``invokes pay: payment (child machine)``, ``invokes fetch: loader``."""
        who = self.src if self.id is None else f"{self.id}: {self.src}"
        if self.machine is None:
            return f"{self.kind} {who}"
        # The child is drawn under its machine id: name it when src differs.
        named = "" if self.machine.id == self.src else f" {self.machine.id}"
        return f"{self.kind} {who} (child machine{named})"

    @property
    def short(self) -> str:
        """The label of an edge to the drawn child machine: ``invokes pay``."""
        return f"{self.kind} {self.src if self.id is None else self.id}"


def child_actors(machine: Machine) -> list[Child]:
    """The machine's invoked actors (in document order), then its spawned children.

    Spawns come from :class:`~durable_state.statechart.SpawnChild` values in
    ``actions=`` and inline in the config, each ``(id, src)`` once; an
    ``enqueue_actions`` function is opaque until it runs and is skipped.

    Returns:
        The child actors; only the machine's own, not its children's.
    """
    out: list[Child] = []
    for node in _walk(_root(machine)):
        raw = node.config.get("invoke")
        configs = _items(raw) if raw is not None else []
        for inv, icfg in zip(node.invoke, configs, strict=False):
            named = isinstance(icfg, Mapping) and icfg.get("id") is not None
            out.append(
                Child(
                    INVOKES, inv.id if named else None, inv.src, _machine_of(machine, inv.src), node
                )
            )
    root = _root(machine)
    seen: set[tuple[str, str]] = set()
    for spec in _spawns(machine):
        ident = _spawn_id(spec.id)
        if (ident, spec.src) not in seen:
            seen.add((ident, spec.src))
            out.append(Child(SPAWNS, ident, spec.src, _machine_of(machine, spec.src), root))
    return out


def child_machines(machine: Machine) -> list[Machine]:
    """Every machine the machine starts, directly or through its children, once each.

    Returns:
        The child machines, nearest first (breadth first), without ``machine``
        itself: a machine that starts itself or an ancestor ends the descent.
    """
    order = [machine]
    seen = {id(machine)}
    i = 0
    while i < len(order):
        for child in child_actors(order[i]):
            found = child.machine
            if found is not None and id(found) not in seen:
                seen.add(id(found))
                order.append(found)
        i += 1
    return order[1:]


def _machine_of(machine: Machine, src: str) -> Machine | None:
    actor = machine.actors.get(src)
    return actor if isinstance(actor, Machine) else None


def _spawn_id(ident: Any) -> str:
    if isinstance(ident, str):
        return ident
    name = str(getattr(ident, "__name__", "") or "")
    return f"({name})" if name and name != "<lambda>" else "(computed)"


def _spawns(machine: Machine) -> list[SpawnChild]:
    """``spawn_child`` actions: the ``actions=`` implementations, then those inline in the config."""
    found = [impl for impl in machine.actions.values() if isinstance(impl, SpawnChild)]
    stack: list[Any] = [machine.config]
    inline: list[SpawnChild] = []
    while stack:
        value = stack.pop()
        if isinstance(value, SpawnChild):
            inline.append(value)
        elif isinstance(value, Mapping):
            # The context is data: it holds no actions.
            stack.extend(v for k, v in reversed(list(value.items())) if k != "context")
        elif isinstance(value, list | tuple):
            stack.extend(reversed(value))
    return found + inline


def _unique(candidate: str, taken: AbstractSet[str]) -> str:
    if candidate not in taken:
        return candidate
    n = 2
    while f"{candidate}_{n}" in taken:
        n += 1
    return f"{candidate}_{n}"


def _title(machine: Machine) -> str:
    return f"{machine.id} (child machine)"


# --------------------------------------------------------------------------- #
# Mermaid
# --------------------------------------------------------------------------- #

_MERMAID_WORDS = frozenset({"state", "note", "direction", "end", "class", "classdef", "style"})


def _mermaid_ids(root: StateNode) -> dict[StateNode, str]:
    """Short, unique Mermaid ids: the state's key when no other state has it, else its path."""
    nodes = list(_walk(root))[1:]
    clean = _mermaid_clean
    ids: dict[StateNode, str] = {}
    short = [clean(_label(n) if n.type == HISTORY else n.key) for n in nodes]
    taken: set[str] = set()
    for node, candidate in zip(nodes, short, strict=True):
        if short.count(candidate) == 1 and node.type != HISTORY:
            ids[node] = candidate
            taken.add(candidate)
    for node in nodes:
        if node not in ids:
            candidate = clean("_".join(node.path))
            while candidate in taken:
                candidate += "_"
            ids[node] = candidate
            taken.add(candidate)
    return ids


def _mermaid_clean(text: str) -> str:
    word = re.sub(r"\W", "_", text, flags=re.ASCII) or "_"
    if word[0].isdigit() or word.lower() in _MERMAID_WORDS:
        word = "s_" + word
    return word


def _mermaid_text(text: str) -> str:
    # '#' starts an entity code in Mermaid; ':' and ';' end a label early.
    return re.sub(r"[#:;]", lambda m: f"#{ord(m.group())};", text)


def _mermaid_note(text: str) -> str:
    # A multi-line note runs to "end note": ':' and ';' are text there.
    return " ".join(text.replace("#", "#35;").split())


@dataclass
class _Mermaid:
    """What drawing one diagram needs: ids, composite titles and notes of every state drawn."""

    ids: dict[StateNode, str]
    titles: dict[StateNode, str]
    notes: dict[StateNode, list[str]]
    lines: list[str]


def to_mermaid(machine: Machine, *, children: bool = True) -> str:
    """Render the machine as a Mermaid ``stateDiagram-v2``.

    Args:
        machine: the machine to draw.
        children: also draw the child machines it invokes or spawns (each
            once, recursively) as composite states of their own; the
            ``invokes`` / ``spawns`` notes are there either way.

    Returns:
        The diagram source, ending with a newline.
    """
    root = _root(machine)
    ids = _mermaid_ids(root)
    # The machine itself is the outermost composite state, as xstate draws it:
    # transitions on the root and parallel regions at the top need a state.
    root_id = _mermaid_clean(root.id)
    while root_id in ids.values():
        root_id += "_"
    ids[root] = root_id
    machines = [machine, *(child_machines(machine) if children else ())]
    titles: dict[StateNode, str] = {}
    taken = set(ids.values())
    for child in machines[1:]:
        # A child's states are prefixed with its machine id, unique in the diagram.
        child_root = _root(child)
        prefix = _mermaid_clean(child.id)
        if prefix in taken:  # often a state named after the machine it invokes
            prefix = _unique(f"{prefix}_machine", taken)
        taken.add(prefix)
        ids[child_root] = prefix
        titles[child_root] = _title(child)
        for node, local in _mermaid_ids(child_root).items():
            ids[node] = _unique(f"{prefix}__{local}", taken)
            taken.add(ids[node])
    notes: dict[StateNode, list[str]] = {}
    for drawn in machines:
        for actor in child_actors(drawn):
            notes.setdefault(actor.state, []).append(actor.text)
    out = _Mermaid(ids, titles, notes, ["stateDiagram-v2", f"    [*] --> {root_id}"])
    for drawn in machines:
        _mermaid_state(_root(drawn), out, 1)
    for drawn in machines:
        for edge in edges(drawn):
            label = f" : {_mermaid_text(edge.label)}" if edge.label else ""
            source = ids[edge.source]
            for target in edge.targets or (edge.source,):
                out.lines.append(f"    {source} --> {ids[target]}{label}")
    return "\n".join(out.lines) + "\n"


def _mermaid_body(node: StateNode, out: _Mermaid, depth: int) -> None:
    pad = "    " * depth
    ids, lines = out.ids, out.lines
    if node.type == PARALLEL:
        for i, region in enumerate(node.states.values()):
            if i:
                lines.append(f"{pad}--")
            _mermaid_state(region, out, depth)
        return
    if node.initial is not None:
        lines.append(f"{pad}[*] --> {ids[node.initial]}")
    for child in node.states.values():
        _mermaid_state(child, out, depth)
        if child.type == FINAL:
            lines.append(f"{pad}{ids[child]} --> [*]")


def _mermaid_state(node: StateNode, out: _Mermaid, depth: int) -> None:
    pad = "    " * depth
    ident = out.ids[node]
    lines = out.lines
    title = out.titles.get(node)
    shown = f'"{_mermaid_text(title)}" as {ident}' if title is not None else ident
    if node.type in (COMPOUND, PARALLEL):
        lines.append(f"{pad}state {shown} {{")
        _mermaid_body(node, out, depth + 1)
        lines.append(f"{pad}}}")
    elif title is not None:
        lines.append(f"{pad}state {shown}")
    elif _label(node) != ident:
        lines.append(f'{pad}state "{_mermaid_text(_label(node))}" as {ident}')
    else:
        lines.append(f"{pad}{ident}")
    notes = out.notes.get(node)
    if notes:
        lines.append(f"{pad}note right of {ident}")
        lines.extend(f"{pad}    {_mermaid_note(text)}" for text in notes)
        lines.append(f"{pad}end note")


# --------------------------------------------------------------------------- #
# Graphviz DOT
# --------------------------------------------------------------------------- #


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _anchor(node: StateNode, prefix: str = "") -> str:
    """The node inside a cluster that edges to and from the cluster attach to."""
    return f"{prefix}{node.id}:initial"


def _is_cluster(node: StateNode) -> bool:
    return node.type in (COMPOUND, PARALLEL)


@dataclass
class _Dot:
    """What drawing one graph needs: each drawn node's id prefix, and the notes."""

    prefixes: dict[StateNode, str]
    titles: dict[StateNode, str]
    notes: dict[StateNode, list[str]]
    lines: list[str]

    def id(self, node: StateNode) -> str:
        """The DOT node id of a state (its anchor for a cluster)."""
        prefix = self.prefixes[node]
        return _anchor(node, prefix) if _is_cluster(node) else prefix + node.id

    def cluster(self, node: StateNode) -> str:
        """The name of a compound or parallel state's cluster."""
        return f"cluster_{self.prefixes[node]}{node.id}"

    def note(self, node: StateNode) -> str:
        """The id of the note node listing what a state starts."""
        return f"{self.prefixes[node]}{node.id}:note"


def to_dot(machine: Machine, *, children: bool = True) -> str:
    """Render the machine as a Graphviz ``digraph`` with nested clusters.

    Args:
        machine: the machine to draw.
        children: also draw the child machines it invokes or spawns (each
            once, recursively) as clusters of their own, joined by dashed
            ``invokes`` / ``spawns`` edges; without them, a note lists them.

    Returns:
        The graph source, ending with a newline.
    """
    root = _root(machine)
    machines = [machine, *(child_machines(machine) if children else ())]
    drawn = {id(m) for m in machines}
    prefixes: dict[StateNode, str] = {}
    titles: dict[StateNode, str] = {}
    taken: set[str] = set()
    for i, each in enumerate(machines):
        # The machine keeps its plain state ids; each child gets a prefix.
        prefix = ""
        if i:
            name = _unique(each.id, taken)
            taken.add(name)
            prefix = f"{name}::"
            titles[_root(each)] = _title(each)
        for node in _walk(_root(each)):
            prefixes[node] = prefix
    links: list[tuple[Child, Machine]] = []
    notes: dict[StateNode, list[str]] = {}
    for each in machines:
        for actor in child_actors(each):
            if actor.machine is not None and id(actor.machine) in drawn:
                links.append((actor, actor.machine))
            else:
                notes.setdefault(actor.state, []).append(actor.text)
    out = _Dot(prefixes, titles, notes, [])
    lines = out.lines
    lines += [
        f"digraph {_q(machine.id)} {{",
        "    compound=true;",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    # The machine itself is the outermost cluster, as xstate draws it.
    lines.append(f'    {_q(_anchor(root) + ":start")} [shape=point, width=0.12, label=""];')
    lines.append(
        f"    {_q(_anchor(root) + ':start')} -> {_q(out.id(root))} "
        f"[lhead={_q('cluster_' + root.id)}];"
        if root.states
        else f"    {_q(_anchor(root) + ':start')} -> {_q(root.id)};"
    )
    for each in machines:
        # A child machine has no start arrow: it starts when invoked or spawned.
        each_root = _root(each)
        title = titles.get(each_root, each_root.id)
        if each_root.states:
            _dot_cluster(each_root, "rounded", out, 1)
        else:
            lines.append(f"    {_q(out.id(each_root))} [label={_q(title)}];")
        _dot_note(each_root, out, 1)
    for each in machines:
        for edge in edges(each):
            for target in edge.targets or (edge.source,):
                lines.append(_dot_edge(edge.source, target, edge.label, out))
    for actor, child in links:
        lines.append(_dot_edge(actor.state, _root(child), actor.short, out, "style=dashed"))
    for node in notes:
        attrs = "style=dotted, arrowhead=none"
        lines.append(_dot_edge(node, node, "", out, attrs, head=_q(out.note(node))))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_note(node: StateNode, out: _Dot, depth: int) -> None:
    texts = out.notes.get(node)
    if texts:
        label = _q("\n".join(texts))
        out.lines.append(f"{'    ' * depth}{_q(out.note(node))} [shape=note, label={label}];")


def _dot_children(node: StateNode, out: _Dot, depth: int) -> None:
    pad = "    " * depth
    lines = out.lines
    anchor = _q(out.id(node))
    if node.type == PARALLEL:
        # An invisible anchor: a parallel state has no single initial child.
        lines.append(f'{pad}{anchor} [shape=point, style=invis, width=0, label=""];')
    elif node.initial is not None:
        lines.append(f'{pad}{anchor} [shape=point, width=0.12, label=""];')
        lines.append(f"{pad}{anchor} -> {_q(out.id(node.initial))};")
    for child in node.states.values():
        ident = _q(out.id(child))
        if child.type in (COMPOUND, PARALLEL):
            _dot_cluster(child, "dashed" if node.type == PARALLEL else "rounded", out, depth)
        elif child.type == FINAL:
            lines.append(f"{pad}{ident} [label={_q(child.key)}, peripheries=2];")
        elif child.type == HISTORY:
            lines.append(f"{pad}{ident} [label={_q(_label(child))}, shape=circle];")
        else:
            lines.append(f"{pad}{ident} [label={_q(child.key)}];")
        _dot_note(child, out, depth)


def _dot_cluster(node: StateNode, style: str, out: _Dot, depth: int) -> None:
    pad = "    " * depth
    out.lines.append(f"{pad}subgraph {_q(out.cluster(node))} {{")
    out.lines.append(f"{pad}    label={_q(out.titles.get(node, node.key or node.id))};")
    out.lines.append(f"{pad}    style={style};")
    _dot_children(node, out, depth + 1)
    out.lines.append(f"{pad}}}")


def _dot_edge(
    source: StateNode,
    target: StateNode,
    label: str,
    out: _Dot,
    style: str = "",
    *,
    head: str | None = None,
) -> str:
    """An edge between two drawn states (of one machine or two), or to ``head``."""
    attrs = [f"label={_q(label)}"] if label else []
    if style:
        attrs.append(style)
    # lhead/ltail clip the arrow at a cluster's border; Graphviz rejects them
    # when one end lies inside the other end's cluster. States of different
    # machines never nest; a machine that starts itself is drawn once.
    if _is_cluster(source) and (
        head is not None or (target is not source and source not in target.ancestor_set)
    ):
        attrs.append(f"ltail={_q(out.cluster(source))}")
    if (
        head is None
        and _is_cluster(target)
        and target is not source
        and target not in source.ancestor_set
    ):
        attrs.append(f"lhead={_q(out.cluster(target))}")
    tail = f" [{', '.join(attrs)}]" if attrs else ""
    return f"    {_q(out.id(source))} -> {head or _q(out.id(target))}{tail};"
