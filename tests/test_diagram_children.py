"""``durable-state diagram`` draws the child machines a machine invokes or spawns."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from collections import Counter
from typing import Any, cast

import pytest

from durable_state import Machine
from durable_state._diagram import child_actors, child_machines, to_dot, to_mermaid
from durable_state.cli import EXIT_OK, main
from durable_state.statechart import enqueue_actions, spawn_child


async def load(data: Any) -> Any:
    return data


def worker_id(context: Any, event: Any) -> str:
    return "w-1"


def family() -> Machine:
    """order invokes payment (which invokes audit), loader (async), and spawns job."""
    audit = Machine(
        {
            "id": "audit",
            "initial": "checking",
            "states": {"checking": {"on": {"OK": "done"}}, "done": {"type": "final"}},
        }
    )
    payment = Machine(
        {
            "id": "payment",
            "initial": "pending",
            "states": {
                "pending": {"invoke": {"id": "check", "src": "audit", "onDone": "paid"}},
                "paid": {"type": "final"},
            },
        },
        actors={"audit": audit},
    )
    job = Machine(
        {"id": "job", "initial": "running", "states": {"running": {"invoke": {"src": "audit"}}}},
        actors={"audit": audit},
    )
    return Machine(
        {
            "id": "order",
            "initial": "cart",
            "states": {
                "cart": {"on": {"CHECKOUT": "payment"}, "entry": ["start_job", "pick"]},
                "payment": {
                    "initial": "waiting",
                    "states": {"waiting": {}},
                    "invoke": {"id": "pay", "src": "payment", "onDone": "shipped"},
                },
                "fetching": {"invoke": {"id": "fetch", "src": "loader", "onDone": "shipped"}},
                "shipped": {
                    "type": "final",
                    "entry": [spawn_child("job", id=worker_id), spawn_child("job", id="w1")],
                },
            },
        },
        actions={
            "start_job": spawn_child("job", id="w1"),
            # Opaque until it runs: not drawn.
            "pick": enqueue_actions(lambda q, c, e: q.spawn_child("job", id="hidden")),
        },
        actors={"payment": payment, "loader": load, "job": job},
    )


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def notes(mermaid: str) -> dict[str, list[str]]:
    """``note right of X ... end note`` blocks by state id."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines_of(mermaid):
        if line.startswith("note right of "):
            current = out.setdefault(line.removeprefix("note right of "), [])
        elif line == "end note":
            current = None
        elif current is not None:
            current.append(line)
    return out


def assert_balanced(mermaid: str) -> None:
    depth = 0
    in_note = False
    for line in lines_of(mermaid):
        if line.startswith("note right of "):
            assert not in_note
            in_note = True
        elif line == "end note":
            assert in_note
            in_note = False
        elif not in_note:
            depth += line.count("{") - line.count("}")
            assert depth >= 0, mermaid
    assert depth == 0, mermaid
    assert not in_note, mermaid


def declared(mermaid: str) -> list[str]:
    """The ids of the declared states (composite or simple), not notes or arrows."""
    ids: list[str] = []
    in_note = False
    for line in lines_of(mermaid)[1:]:
        if line.startswith("note right of "):
            in_note = True
        elif line == "end note":
            in_note = False
        elif in_note or "-->" in line or line in ("}", "--"):
            continue
        elif m := re.fullmatch(r'state (?:"[^"]*" as )?(\w+)(?: \{)?', line):
            ids.append(m.group(1))
        else:
            assert re.fullmatch(r"\w+", line), line
            ids.append(line)
    return ids


def check_dot(source: str) -> None:
    dot = shutil.which("dot")
    if dot is None:
        return  # Graphviz is optional; the text is asserted by the callers
    proc = subprocess.run(
        [dot, "-Tsvg"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no warnings (lhead/ltail that Graphviz rejects)


# --------------------------------------------------------------------------- #
# What a machine starts
# --------------------------------------------------------------------------- #


def test_child_actors_and_machines() -> None:
    machine = family()
    found = [(c.kind, c.id, c.src, c.state.id) for c in child_actors(machine)]
    assert found == [
        ("invokes", "pay", "payment", "order.payment"),
        ("invokes", "fetch", "loader", "order.fetching"),
        ("spawns", "w1", "job", "order"),
        ("spawns", "(worker_id)", "job", "order"),
    ]
    assert [m.id for m in child_machines(machine)] == ["payment", "job", "audit"]


# --------------------------------------------------------------------------- #
# Mermaid
# --------------------------------------------------------------------------- #


def test_mermaid_draws_children_once_with_prefixed_ids() -> None:
    out = to_mermaid(family())
    lines = lines_of(out)
    assert lines[:2] == ["stateDiagram-v2", "[*] --> order"]
    assert_balanced(out)
    # The parent's own states keep their ids; the children's are prefixed.
    assert "state payment {" in lines
    assert 'state "payment (child machine)" as payment_machine {' in lines
    assert 'state "pending" as payment_machine__pending' in lines
    assert 'state "job (child machine)" as job {' in lines
    assert 'state "running" as job__running' in lines
    assert 'state "audit (child machine)" as audit {' in lines
    assert "[*] --> audit__checking" in lines
    assert "audit__done --> [*]" in lines
    # audit is started by two machines and drawn once; every id is declared once.
    ids = declared(out)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert ids.count("audit") == 1
    # Child machines start when invoked: no [*] arrow from the top into them.
    assert "[*] --> payment_machine" not in lines
    assert notes(out) == {
        "payment": ["invokes pay: payment (child machine)"],
        "fetching": ["invokes fetch: loader"],
        "order": ["spawns w1: job (child machine)", "spawns (worker_id): job (child machine)"],
        "payment_machine__pending": ["invokes check: audit (child machine)"],
        "job__running": ["invokes audit (child machine)"],
    }
    assert "hidden" not in out  # an enqueue_actions function is not inspected
    # The children's transitions use their prefixed ids.
    assert "payment_machine__pending --> payment_machine__paid : done#58; audit" in lines
    assert "audit__checking --> audit__done : OK" in lines
    assert "payment --> shipped : done#58; payment" in lines
    assert "fetching --> shipped : done#58; loader" in lines
    # Each note follows its state's declaration, in the same block.
    at = lines.index("note right of payment")
    assert lines[at - 2 : at] == ["waiting", "}"]


def test_mermaid_without_children() -> None:
    out = to_mermaid(family(), children=False)
    assert_balanced(out)
    assert "(child machine)" in out  # still named in the notes
    assert 'state "' not in out  # but not drawn
    assert "audit__" not in out
    assert "payment_machine" not in out
    assert notes(out) == {
        "payment": ["invokes pay: payment (child machine)"],
        "fetching": ["invokes fetch: loader"],
        "order": ["spawns w1: job (child machine)", "spawns (worker_id): job (child machine)"],
    }


def test_a_machine_without_children_is_drawn_as_before() -> None:
    from durable_state._demo import order_machine

    assert to_mermaid(order_machine) == to_mermaid(order_machine, children=False)
    assert "note" not in to_mermaid(order_machine)
    assert to_dot(order_machine) == to_dot(order_machine, children=False)


def looping() -> tuple[Machine, Machine]:
    """``loop`` invokes itself as ``again``; ``ping`` and ``pong`` invoke each other."""
    placeholder = Machine({"id": "placeholder"})
    loop = Machine(
        {
            "id": "loop",
            "initial": "idle",
            "states": {
                "idle": {"on": {"GO": "busy"}},
                "busy": {"invoke": {"id": "again", "src": "self", "onDone": "idle"}},
            },
        },
        actors={"self": placeholder},
    )
    cast("dict[str, Any]", loop.actors)["self"] = loop
    ping = Machine(
        {"id": "ping", "initial": "a", "states": {"a": {"invoke": {"id": "p", "src": "pong"}}}},
        actors={"pong": placeholder},
    )
    pong = Machine(
        {"id": "pong", "initial": "b", "states": {"b": {"invoke": {"id": "q", "src": "ping"}}}},
        actors={"ping": ping},
    )
    cast("dict[str, Any]", ping.actors)["pong"] = pong
    return loop, ping


def test_a_machine_that_invokes_itself_is_drawn_once() -> None:
    loop, ping = looping()
    assert child_machines(loop) == []
    out = to_mermaid(loop)
    assert_balanced(out)
    assert 'state "' not in out  # nothing drawn twice
    assert notes(out) == {"busy": ["invokes again: self (child machine loop)"]}
    ids = declared(out)
    assert sorted(ids) == ["busy", "idle", "loop"]

    assert child_machines(ping) == [ping.actors["pong"]]
    out = to_mermaid(ping)
    assert_balanced(out)
    assert 'state "pong (child machine)" as pong {' in lines_of(out)
    assert notes(out) == {
        "a": ["invokes p: pong (child machine)"],
        "pong__b": ["invokes q: ping (child machine)"],
    }
    assert Counter(declared(out)) == Counter(["ping", "a", "pong", "pong__b"])


# --------------------------------------------------------------------------- #
# DOT
# --------------------------------------------------------------------------- #


def test_dot_draws_children_as_clusters_with_dashed_edges() -> None:
    out = to_dot(family())
    assert out.count("{") == out.count("}")
    assert 'subgraph "cluster_payment::payment" {' in out
    assert 'label="payment (child machine)";' in out
    assert '"payment::payment.pending" [label="pending"];' in out
    assert out.count('subgraph "cluster_audit::audit" {') == 1
    assert (
        '"order.payment:initial" -> "payment::payment:initial" [label="invokes pay", '
        'style=dashed, ltail="cluster_order.payment", lhead="cluster_payment::payment"];'
    ) in out
    assert (
        '"order:initial" -> "job::job:initial" [label="spawns w1", style=dashed, '
        'ltail="cluster_order", lhead="cluster_job::job"];'
    ) in out
    assert (
        '"payment::payment.pending" -> "audit::audit:initial" [label="invokes check", '
        'style=dashed, lhead="cluster_audit::audit"];'
    ) in out
    assert '"job::job.running" -> "audit::audit:initial" [label="invokes audit"' in out
    # An async callable is a note, not a cluster.
    assert '"order.fetching:note" [shape=note, label="invokes fetch: loader"];' in out
    assert '"order.fetching" -> "order.fetching:note" [style=dotted, arrowhead=none];' in out
    assert '"audit::audit.checking" -> "audit::audit.done" [label="OK"];' in out
    # No node is declared twice.
    nodes = re.findall(r'^\s*("[^"]+") \[', out, flags=re.MULTILINE)
    assert [n for n, k in Counter(nodes).items() if k > 1] == []
    check_dot(out)


def test_dot_without_children_lists_them_in_notes() -> None:
    out = to_dot(family(), children=False)
    assert "::" not in out  # no child cluster or node
    assert "style=dashed, ltail" not in out
    assert (
        '"order:note" [shape=note, label="spawns w1: job (child machine)\\n'
        'spawns (worker_id): job (child machine)"];'
    ) in out
    assert (
        '"order:initial" -> "order:note" [style=dotted, arrowhead=none, ltail="cluster_order"];'
        in out
    )
    assert '"order.payment:note" [shape=note, label="invokes pay: payment (child machine)"];' in out
    check_dot(out)


def test_dot_of_cycles() -> None:
    loop, ping = looping()
    out = to_dot(loop)
    assert "child machine" not in out
    # The machine it invokes is the one drawn around it: no lhead into its own cluster.
    assert '"loop.busy" -> "loop:initial" [label="invokes again", style=dashed];' in out
    check_dot(out)
    out = to_dot(ping)
    assert out.count("subgraph") == 2
    assert (
        '"pong::pong.b" -> "ping:initial" [label="invokes q", style=dashed, lhead="cluster_ping"];'
        in out
    )
    check_dot(out)


def test_a_child_machine_without_states() -> None:
    leaf = Machine({"id": "leaf"})
    parent = Machine(
        {"id": "p", "initial": "s", "states": {"s": {"invoke": {"id": "l", "src": "leaf"}}}},
        actors={"leaf": leaf},
    )
    out = to_mermaid(parent)
    assert 'state "leaf (child machine)" as leaf' in lines_of(out)
    assert_balanced(out)
    dot = to_dot(parent)
    assert '"leaf::leaf" [label="leaf (child machine)"];' in dot
    assert '"p.s" -> "leaf::leaf" [label="invokes l", style=dashed];' in dot
    check_dot(dot)


# --------------------------------------------------------------------------- #
# The command
# --------------------------------------------------------------------------- #


def test_cli_no_children(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = types.ModuleType("diagram_family")
    module.machine = family()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "diagram_family", module)
    assert main(["diagram", "diagram_family:machine"]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert 'state "audit (child machine)" as audit {' in lines_of(out)
    assert main(["diagram", "diagram_family:machine", "--no-children"]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out == to_mermaid(module.machine, children=False)
    assert main(["diagram", "diagram_family:machine", "--format", "dot", "--no-children"]) == 0
    dot_out, _ = capsys.readouterr()
    assert dot_out == to_dot(module.machine, children=False)
