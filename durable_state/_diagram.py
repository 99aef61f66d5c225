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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ._format import delay
from .statechart import Machine, StateIn

__all__ = ("Edge", "StateNode", "Transition", "edges", "to_dot", "to_mermaid")

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


def to_mermaid(machine: Machine) -> str:
    """Render the machine as a Mermaid ``stateDiagram-v2``.

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
    lines = ["stateDiagram-v2", f"    [*] --> {root_id}"]
    _mermaid_state(root, ids, lines, 1)
    for edge in edges(machine):
        label = f" : {_mermaid_text(edge.label)}" if edge.label else ""
        source = ids[edge.source]
        for target in edge.targets or (edge.source,):
            lines.append(f"    {source} --> {ids[target]}{label}")
    return "\n".join(lines) + "\n"


def _mermaid_body(node: StateNode, ids: dict[StateNode, str], lines: list[str], depth: int) -> None:
    pad = "    " * depth
    if node.type == PARALLEL:
        for i, region in enumerate(node.states.values()):
            if i:
                lines.append(f"{pad}--")
            _mermaid_state(region, ids, lines, depth)
        return
    if node.initial is not None:
        lines.append(f"{pad}[*] --> {ids[node.initial]}")
    for child in node.states.values():
        _mermaid_state(child, ids, lines, depth)
        if child.type == FINAL:
            lines.append(f"{pad}{ids[child]} --> [*]")


def _mermaid_state(
    node: StateNode, ids: dict[StateNode, str], lines: list[str], depth: int
) -> None:
    pad = "    " * depth
    ident = ids[node]
    if node.type in (COMPOUND, PARALLEL):
        lines.append(f"{pad}state {ident} {{")
        _mermaid_body(node, ids, lines, depth + 1)
        lines.append(f"{pad}}}")
    elif _label(node) != ident:
        lines.append(f'{pad}state "{_mermaid_text(_label(node))}" as {ident}')
    else:
        lines.append(f"{pad}{ident}")


# --------------------------------------------------------------------------- #
# Graphviz DOT
# --------------------------------------------------------------------------- #


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _anchor(node: StateNode) -> str:
    """The node inside a cluster that edges to and from the cluster attach to."""
    return f"{node.id}:initial"


def _is_cluster(node: StateNode) -> bool:
    return node.type in (COMPOUND, PARALLEL)


def to_dot(machine: Machine) -> str:
    """Render the machine as a Graphviz ``digraph`` with nested clusters.

    Returns:
        The graph source, ending with a newline.
    """
    root = _root(machine)
    lines = [
        f"digraph {_q(machine.id)} {{",
        "    compound=true;",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    # The machine itself is the outermost cluster, as xstate draws it.
    lines.append(f'    {_q(_anchor(root) + ":start")} [shape=point, width=0.12, label=""];')
    lines.append(
        f"    {_q(_anchor(root) + ':start')} -> {_q(_dot_id(root))} "
        f"[lhead={_q('cluster_' + root.id)}];"
        if root.states
        else f"    {_q(_anchor(root) + ':start')} -> {_q(root.id)};"
    )
    if root.states:
        _dot_cluster(root, "rounded", lines, 1)
    else:
        lines.append(f"    {_q(root.id)} [label={_q(root.id)}];")
    for edge in edges(machine):
        for target in edge.targets or (edge.source,):
            lines.append(_dot_edge(edge.source, target, edge.label))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_children(node: StateNode, lines: list[str], depth: int) -> None:
    pad = "    " * depth
    if node.type == PARALLEL:
        # An invisible anchor: a parallel state has no single initial child.
        lines.append(f'{pad}{_q(_anchor(node))} [shape=point, style=invis, width=0, label=""];')
    elif node.initial is not None:
        lines.append(f'{pad}{_q(_anchor(node))} [shape=point, width=0.12, label=""];')
        lines.append(f"{pad}{_q(_anchor(node))} -> {_q(_dot_id(node.initial))};")
    for child in node.states.values():
        if child.type in (COMPOUND, PARALLEL):
            _dot_cluster(child, "dashed" if node.type == PARALLEL else "rounded", lines, depth)
        elif child.type == FINAL:
            lines.append(f"{pad}{_q(child.id)} [label={_q(child.key)}, peripheries=2];")
        elif child.type == HISTORY:
            lines.append(f"{pad}{_q(child.id)} [label={_q(_label(child))}, shape=circle];")
        else:
            lines.append(f"{pad}{_q(child.id)} [label={_q(child.key)}];")


def _dot_cluster(node: StateNode, style: str, lines: list[str], depth: int) -> None:
    pad = "    " * depth
    lines.append(f"{pad}subgraph {_q('cluster_' + node.id)} {{")
    lines.append(f"{pad}    label={_q(node.key or node.id)};")
    lines.append(f"{pad}    style={style};")
    _dot_children(node, lines, depth + 1)
    lines.append(f"{pad}}}")


def _dot_id(node: StateNode) -> str:
    return _anchor(node) if _is_cluster(node) else node.id


def _dot_edge(source: StateNode, target: StateNode, label: str) -> str:
    attrs = [f"label={_q(label)}"] if label else []
    # lhead/ltail clip the arrow at a cluster's border; Graphviz rejects them
    # when one end lies inside the other end's cluster.
    if _is_cluster(source) and target is not source and source not in target.ancestor_set:
        attrs.append(f"ltail={_q('cluster_' + source.id)}")
    if _is_cluster(target) and target is not source and target not in source.ancestor_set:
        attrs.append(f"lhead={_q('cluster_' + target.id)}")
    tail = f" [{', '.join(attrs)}]" if attrs else ""
    return f"    {_q(_dot_id(source))} -> {_q(_dot_id(target))}{tail};"
