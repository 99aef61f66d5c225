"""Statechart throughput and memory: durable_state against Python peers and xstate.

Two machines, driven by one event type ``NEXT``:

* ``flat``: a 3-state cycle ``A -> B -> C -> A``;
* ``parallel``: a parallel state of 2 regions x 3 states, each region cycling
  on the same ``NEXT`` (so every event moves both regions); every transition
  has a guard (``context.rN >= 0``) and an assign action (``rN += 1``).

Each implementation runs the same machines and must do the same work: after
every timed run the final state and the counters are checked against the
number of events sent (a run whose guards or assigns did not happen fails the
benchmark instead of flattering it).

Timing: ``time.perf_counter`` around a loop of ``n`` sends on an actor built
beforehand; ``n`` is calibrated so one run lasts at least ``--min-time``
seconds, then the best of ``--repeats`` runs is kept. The garbage collector
stays enabled, as in a real process. Memory: bytes traced by ``tracemalloc``
(V8 heap for xstate) to hold ``--memory-actors`` started actors of ``flat``.

Usage::

    python bench/bench_statechart.py                  # full run, writes docs/assets/benchmarks/
    python bench/bench_statechart.py --quick          # a smoke run, writes nothing
    python bench/bench_statechart.py --quick --json /tmp/statechart.json
    python bench/bench_statechart.py --profile parallel   # cProfile of Actor.send
    python bench/bench_statechart.py --timers-only        # only the pending-timers case

Pending timers: a snapshot holding ``--timers`` (10,000) pending timers is
stepped with an event that touches no timer and with one that schedules one
more, then persisted and restored; each figure is also given as a ratio to
the raw JSON work on the stored document (``json.loads`` + ``json.dumps``),
which every save and load pays anyway.

The xstate side runs ``bench/xstate_bench.mjs`` with ``node`` (``npm install``
is run in ``bench/`` when ``bench/node_modules/xstate`` is missing); without
``node`` it is skipped with a note. A Python peer that is not installed is
skipped the same way (``pip install "durable-state[bench]"`` installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

BENCH_DIR = Path(__file__).resolve().parent
# The docs site shows the figures and the plot, so they are written next to it.
RESULTS_DIR = BENCH_DIR.parent / "docs" / "assets" / "benchmarks"
DEFAULT_JSON = RESULTS_DIR / "statechart.json"

MachineName = Literal["flat", "parallel"]
MACHINES: tuple[MachineName, ...] = ("flat", "parallel")
CYCLE = ("A", "B", "C")
NEXT = {"type": "NEXT"}
TARGET_RATIO = 2.0

OURS = "durable_state"
ACTOR_SEND = "await Actor.send"
XSTATE = "xstate (node)"

FLAT_CONFIG: dict[str, Any] = {
    "id": "flat",
    "initial": "A",
    "states": {
        "A": {"on": {"NEXT": "B"}},
        "B": {"on": {"NEXT": "C"}},
        "C": {"on": {"NEXT": "A"}},
    },
}


def _region(guard: str, action: str) -> dict[str, Any]:
    def step(target: str) -> dict[str, Any]:
        return {"NEXT": {"target": target, "guard": guard, "actions": action}}

    return {
        "initial": "A",
        "states": {"A": {"on": step("B")}, "B": {"on": step("C")}, "C": {"on": step("A")}},
    }


PARALLEL_CONFIG: dict[str, Any] = {
    "id": "par",
    "initial": "P",
    "context": {"r1": 0, "r2": 0},
    "states": {
        "P": {
            "type": "parallel",
            "states": {"r1": _region("r1Ok", "incR1"), "r2": _region("r2Ok", "incR2")},
        }
    },
}

CONFIGS: dict[MachineName, dict[str, Any]] = {"flat": FLAT_CONFIG, "parallel": PARALLEL_CONFIG}


class Skip(Exception):
    """An implementation cannot run here (its package or runtime is missing)."""


class WorkMismatch(Exception):
    """A run ended in a state or with counters that ``n`` events cannot produce."""

    def __init__(self, machine: str, n: int, regions: Sequence[object], counters: Sequence[object]):
        self.machine = machine
        self.n = n
        self.regions = tuple(regions)
        self.counters = tuple(counters)
        super().__init__(
            f"{machine}: after {n} events expected every region in {CYCLE[n % 3]!r} and "
            f"every counter at {n}, got regions {self.regions} and counters {self.counters}"
        )


class GuardsSkipped(Exception):
    """Guards were called fewer (or more) times than the events require."""

    def __init__(self, expected: int, called: int) -> None:
        self.expected = expected
        self.called = called
        super().__init__(f"the guards ran {called} times where the events need {expected}")


def expect(
    machine: MachineName, n: int, regions: Sequence[object], counters: Sequence[object]
) -> None:
    """Check that ``n`` NEXT events did all their work.

    Args:
        machine: which benchmark machine ran.
        n: how many events were sent.
        regions: the active leaf state of each region (``A``, ``B`` or ``C``).
        counters: the assign counters (none for ``flat``, one per region for
            ``parallel``).

    Raises:
        WorkMismatch: if a region is not where ``n`` steps of the cycle lead,
            or a counter differs from ``n``.
    """
    want_regions = 1 if machine == "flat" else 2
    want_counters = 0 if machine == "flat" else 2
    if (
        len(regions) != want_regions
        or len(counters) != want_counters
        or any(region != CYCLE[n % 3] for region in regions)
        or any(counter != n for counter in counters)
    ):
        raise WorkMismatch(machine, n, regions, counters)


# A run takes n, sends n NEXT events to a freshly built actor, checks the
# outcome with expect() and returns the seconds the n sends took (building
# and checking are not timed).
SyncRun = Callable[[int], float]
AsyncRun = Callable[[int], Coroutine[Any, Any, float]]
SyncMake = Callable[[], object]
AsyncMake = Callable[[], Awaitable[object]]


@dataclass
class Case:
    """One implementation path of one machine."""

    machine: MachineName
    implementation: str
    path: str
    run: SyncRun | None = None
    arun: AsyncRun | None = None


@dataclass
class MemoryCase:
    """How one implementation holds a started actor of ``flat``."""

    implementation: str
    how: str
    make: SyncMake | None = None
    amake: AsyncMake | None = None
    # Called with every actor made, after the measurement: checks they all
    # sit in the initial state, then releases what needs releasing.
    finish: Callable[[list[object]], Awaitable[None]] | None = None


@dataclass
class Suite:
    """Everything one implementation contributes to a run."""

    implementation: str
    version: str
    cases: list[Case] = field(default_factory=list)
    memory: list[MemoryCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    """A throughput measurement."""

    machine: str
    implementation: str
    path: str
    kind: str  # "ours", "python" (a Python peer) or "node"
    events: int
    best_s: float
    runs_s: list[float]
    events_per_s: float
    actor_send_ratio: float | None = None  # durable_state Actor.send / this
    # CPU time / wall time of the best run (Python only): under ~0.9 the run
    # shared its core with other processes and its figure is pessimistic.
    cpu_share: float | None = None


@dataclass
class MemoryResult:
    """A memory measurement."""

    implementation: str
    how: str
    actors: int
    bytes_per_actor: float
    actor_ratio: float | None = None  # this / durable_state Actor


@dataclass
class Settings:
    """How long and how often to measure."""

    min_time: float
    repeats: int
    memory_actors: int


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------
# durable_state
# --------------------------------------------------------------------------


def durable_state_suite() -> Suite:
    """Our pure ``Machine.transition`` path and the ``Actor.send`` path.

    Raises:
        Skip: if the statechart API is not importable yet.
    """
    try:
        from durable_state import Actor, Machine, ManualClock, assign
    except ImportError as exc:
        raise Skip(f"durable_state has no statechart API yet ({exc})") from exc

    actions = {
        "incR1": assign(lambda context, event: {"r1": context["r1"] + 1}),
        "incR2": assign(lambda context, event: {"r2": context["r2"] + 1}),
    }
    machines = {
        "flat": Machine(FLAT_CONFIG),
        "parallel": Machine(
            PARALLEL_CONFIG,
            actions=actions,
            guards={
                "r1Ok": lambda context, event: context["r1"] >= 0,
                "r2Ok": lambda context, event: context["r2"] >= 0,
            },
        ),
    }

    # The counters prove the assigns ran; they cannot prove the guards did,
    # and durable_state caches selection plans. So, once and untimed, the
    # same machine with guards that count their calls: each event must call
    # both guards on both paths.
    calls = [0]

    def counted(key: str) -> Callable[[Any, Any], bool]:
        def guard(context: Any, event: Any) -> bool:
            calls[0] += 1
            return bool(context[key] >= 0)

        return guard

    audited = Machine(
        PARALLEL_CONFIG, actions=actions, guards={"r1Ok": counted("r1"), "r2Ok": counted("r2")}
    )
    audit_events = 7
    snapshot = audited.initial_snapshot()
    for _ in range(audit_events):
        snapshot, _effects = audited.transition(snapshot, NEXT)

    async def drive_actor() -> None:
        async with Actor(audited, clock=ManualClock()) as actor:
            for _ in range(audit_events):
                await actor.send(NEXT)

    asyncio.run(drive_actor())
    if calls[0] != 2 * 2 * audit_events:
        raise GuardsSkipped(2 * 2 * audit_events, calls[0])

    def observe(name: MachineName, n: int, value: Any, context: Any) -> None:
        if name == "flat":
            expect(name, n, [value], [])
        else:
            regions = value["P"]
            expect(name, n, [regions["r1"], regions["r2"]], [context["r1"], context["r2"]])

    def pure(name: MachineName) -> SyncRun:
        machine = machines[name]

        def run(n: int) -> float:
            snapshot = machine.initial_snapshot()
            transition = machine.transition
            start = time.perf_counter()
            for _ in range(n):
                snapshot, _effects = transition(snapshot, NEXT)
            elapsed = time.perf_counter() - start
            observe(name, n, snapshot.value, snapshot.context)
            return elapsed

        return run

    def actor(name: MachineName) -> AsyncRun:
        machine = machines[name]

        async def run(n: int) -> float:
            actor = Actor(machine, clock=ManualClock())
            await actor.start()
            send = actor.send
            start = time.perf_counter()
            for _ in range(n):
                await send(NEXT)
            elapsed = time.perf_counter() - start
            observe(name, n, actor.snapshot.value, actor.snapshot.context)
            await actor.stop()
            return elapsed

        return run

    # One clock for all of them, as in a process: the clock is not per-actor state.
    clock = ManualClock()

    async def make_actor() -> object:
        started = Actor(machines["flat"], clock=clock)
        await started.start()
        return started

    async def finish(actors: list[object]) -> None:
        for started in actors:
            if not isinstance(started, Actor):
                raise TypeError(f"expected an Actor, got {started!r}")
            expect("flat", 0, [started.snapshot.value], [])
            await started.stop()

    suite = Suite(OURS, _version("durable-state"))
    for name in MACHINES:
        suite.cases.append(Case(name, OURS, "Machine.transition (pure)", run=pure(name)))
        suite.cases.append(Case(name, OURS, ACTOR_SEND, arun=actor(name)))
    suite.memory.append(
        MemoryCase(
            OURS, "Actor(machine).start(), one shared Machine", amake=make_actor, finish=finish
        )
    )
    return suite


# --------------------------------------------------------------------------
# python-statemachine
# --------------------------------------------------------------------------


def python_statemachine_suite() -> Suite:
    """``StateChart.send``, and ``await StateChart.send`` on its async engine.

    python-statemachine picks its async engine only when some callback is a
    coroutine function, so the async variants add one ``async def`` no-op
    ``after_transition`` hook; guards and actions stay the same sync methods.

    Raises:
        Skip: if python-statemachine is not installed.
    """
    try:
        from statemachine import State, StateChart
    except ImportError as exc:
        raise Skip(f"python-statemachine is not installed ({exc})") from exc

    class Flat(StateChart):  # type: ignore[type-arg]  # no domain model: TModel unused
        A = State(initial=True)
        B = State()
        C = State()
        NEXT = A.to(B) | B.to(C) | C.to(A)

    class Parallel(StateChart):  # type: ignore[type-arg]  # no domain model: TModel unused
        class P(State.Parallel):
            class r1(State.Compound):
                A1 = State(initial=True)
                B1 = State()
                C1 = State()
                NEXT = (
                    A1.to(B1, cond="r1_ok", on="inc_r1")
                    | B1.to(C1, cond="r1_ok", on="inc_r1")
                    | C1.to(A1, cond="r1_ok", on="inc_r1")
                )

            class r2(State.Compound):
                A2 = State(initial=True)
                B2 = State()
                C2 = State()
                NEXT = (
                    A2.to(B2, cond="r2_ok", on="inc_r2")
                    | B2.to(C2, cond="r2_ok", on="inc_r2")
                    | C2.to(A2, cond="r2_ok", on="inc_r2")
                )

        # The counters cannot be called r1/r2: those are the region states.
        def __init__(self) -> None:
            self.count_r1 = 0
            self.count_r2 = 0
            super().__init__()

        def r1_ok(self) -> bool:
            return self.count_r1 >= 0

        def r2_ok(self) -> bool:
            return self.count_r2 >= 0

        def inc_r1(self) -> None:
            self.count_r1 += 1

        def inc_r2(self) -> None:
            self.count_r2 += 1

    class AsyncFlat(Flat):
        async def after_transition(self) -> None:
            pass

    class AsyncParallel(Parallel):
        async def after_transition(self) -> None:
            pass

    def observe(name: MachineName, n: int, sm: Any) -> None:
        active = {str(value) for value in sm.configuration_values}
        if name == "flat":
            expect(name, n, sorted(active & set(CYCLE)), [])
        else:
            regions = [leaf[0] for leaf in sorted(active) if len(leaf) == 2 and leaf[0] in CYCLE]
            expect(name, n, regions, [sm.count_r1, sm.count_r2])

    def sync(name: MachineName) -> SyncRun:
        cls = Flat if name == "flat" else Parallel

        def run(n: int) -> float:
            sm = cls()
            send = sm.send
            start = time.perf_counter()
            for _ in range(n):
                send("NEXT")
            elapsed = time.perf_counter() - start
            observe(name, n, sm)
            return elapsed

        return run

    def asynchronous(name: MachineName) -> AsyncRun:
        cls = AsyncFlat if name == "flat" else AsyncParallel

        async def run(n: int) -> float:
            sm = cls()
            await sm.activate_initial_state()
            send = sm.send
            start = time.perf_counter()
            for _ in range(n):
                await send("NEXT")
            elapsed = time.perf_counter() - start
            observe(name, n, sm)
            return elapsed

        return run

    suite = Suite("python-statemachine", _version("python-statemachine"))
    for name in MACHINES:
        suite.cases.append(Case(name, suite.implementation, "StateChart.send", run=sync(name)))
        suite.cases.append(
            Case(name, suite.implementation, "await StateChart.send", arun=asynchronous(name))
        )
    suite.memory.append(MemoryCase(suite.implementation, "Flat() instance", make=Flat))
    suite.notes.append(
        "python-statemachine uses its async engine only when a callback is a coroutine "
        "function: its async rows add a no-op `async def after_transition`"
    )
    return suite


# --------------------------------------------------------------------------
# transitions
# --------------------------------------------------------------------------


def transitions_suite() -> Suite:
    """``Machine``/``HierarchicalMachine`` and their asyncio variants.

    The async machines get the same sync guards and actions (transitions awaits
    a callback's result only when it is awaitable), so both paths do the same
    work. ``auto_transitions=False`` keeps the generated ``to_<state>`` triggers
    out, as none of the other implementations has them.

    Raises:
        Skip: if transitions is not installed.
    """
    try:
        from transitions import Machine
        from transitions.extensions import HierarchicalMachine
        from transitions.extensions.asyncio import AsyncMachine, HierarchicalAsyncMachine
    except ImportError as exc:
        raise Skip(f"transitions is not installed ({exc})") from exc

    flat_transitions = [["NEXT", "A", "B"], ["NEXT", "B", "C"], ["NEXT", "C", "A"]]

    def region(name: str, guard: str, action: str) -> dict[str, Any]:
        return {
            "name": name,
            "initial": "A",
            "children": list(CYCLE),
            "transitions": [
                {"trigger": "NEXT", "source": s, "dest": d, "conditions": guard, "after": action}
                for s, d in zip(CYCLE, CYCLE[1:] + CYCLE[:1], strict=True)
            ],
        }

    parallel_states = [
        {
            "name": "P",
            "parallel": [region("r1", "r1_ok", "inc_r1"), region("r2", "r2_ok", "inc_r2")],
        }
    ]

    class Model:
        def __init__(self) -> None:
            self.r1 = 0
            self.r2 = 0
            self.state: Any = None

        def r1_ok(self) -> bool:
            return self.r1 >= 0

        def r2_ok(self) -> bool:
            return self.r2 >= 0

        def inc_r1(self) -> None:
            self.r1 += 1

        def inc_r2(self) -> None:
            self.r2 += 1

    def build(name: MachineName, asynchronous: bool) -> Model:
        model = Model()
        if name == "flat":
            flat_cls = AsyncMachine if asynchronous else Machine
            flat_cls(
                model=model,
                states=list(CYCLE),
                transitions=flat_transitions,
                initial="A",
                auto_transitions=False,
            )
        else:
            nested_cls = HierarchicalAsyncMachine if asynchronous else HierarchicalMachine
            nested_cls(model=model, states=parallel_states, initial="P", auto_transitions=False)
        return model

    def observe(name: MachineName, n: int, model: Model) -> None:
        if name == "flat":
            expect(name, n, [model.state], [])
        else:
            # Parallel leaves are reported as "P_r1_B"-style names, region order.
            regions = [leaf.rsplit("_", 1)[1] for leaf in model.state]
            expect(name, n, regions, [model.r1, model.r2])

    def sync(name: MachineName) -> SyncRun:
        def run(n: int) -> float:
            model = build(name, asynchronous=False)
            trigger: Callable[[str], Any] = model.trigger  # type: ignore[attr-defined]
            start = time.perf_counter()
            for _ in range(n):
                trigger("NEXT")
            elapsed = time.perf_counter() - start
            observe(name, n, model)
            return elapsed

        return run

    def asynchronous(name: MachineName) -> AsyncRun:
        async def run(n: int) -> float:
            model = build(name, asynchronous=True)
            trigger: Callable[[str], Awaitable[Any]] = model.trigger  # type: ignore[attr-defined]
            start = time.perf_counter()
            for _ in range(n):
                await trigger("NEXT")
            elapsed = time.perf_counter() - start
            observe(name, n, model)
            return elapsed

        return run

    # Many objects usually share one Machine (add_model); one Machine per
    # object is the other common way. Both are measured.
    shared = Machine(
        model=None,
        states=list(CYCLE),
        transitions=flat_transitions,
        initial="A",
        auto_transitions=False,
    )

    def shared_model() -> object:
        model = Model()
        shared.add_model(model)
        return model

    async def release_shared(models: list[object]) -> None:
        for model in models:
            expect("flat", 0, [getattr(model, "state", None) or "?"], [])
        shared.remove_model(models)

    async def check_own(models: list[object]) -> None:
        for model in models:
            expect("flat", 0, [getattr(model, "state", None) or "?"], [])

    suite = Suite("transitions", _version("transitions"))
    for name in MACHINES:
        sync_path = "Machine.trigger" if name == "flat" else "HierarchicalMachine.trigger"
        async_path = (
            "await AsyncMachine.trigger"
            if name == "flat"
            else "await HierarchicalAsyncMachine.trigger"
        )
        suite.cases.append(Case(name, suite.implementation, sync_path, run=sync(name)))
        suite.cases.append(Case(name, suite.implementation, async_path, arun=asynchronous(name)))
    suite.memory.append(
        MemoryCase(
            suite.implementation,
            "one shared Machine, add_model per actor",
            make=shared_model,
            finish=release_shared,
        )
    )
    suite.memory.append(
        MemoryCase(
            suite.implementation,
            "Machine(model=...) per actor",
            make=lambda: build("flat", asynchronous=False),
            finish=check_own,
        )
    )
    return suite


# --------------------------------------------------------------------------
# sismic
# --------------------------------------------------------------------------

SISMIC_FLAT = """
statechart:
  name: flat
  root state:
    name: root
    initial: A
    states:
      - name: A
        transitions: [{target: B, event: NEXT}]
      - name: B
        transitions: [{target: C, event: NEXT}]
      - name: C
        transitions: [{target: A, event: NEXT}]
"""


def _sismic_region(k: str) -> str:
    steps = "".join(
        f"""
                  - name: {s}{k}
                    transitions:
                      - {{target: {d}{k}, event: NEXT, guard: r{k} >= 0, action: r{k} += 1}}"""
        for s, d in zip(CYCLE, CYCLE[1:] + CYCLE[:1], strict=True)
    )
    return f"""
              - name: r{k}
                initial: A{k}
                states:{steps}"""


SISMIC_PARALLEL = f"""
statechart:
  name: par
  preamble: |
    r1 = 0
    r2 = 0
  root state:
    name: root
    initial: P
    states:
      - name: P
        parallel states:{_sismic_region("1")}{_sismic_region("2")}
"""


def sismic_suite() -> Suite:
    """sismic's ``Interpreter`` (sync only), guards and actions in its Python evaluator.

    Raises:
        Skip: if sismic is not installed.
    """
    try:
        from sismic.interpreter import Interpreter  # type: ignore[import-untyped]  # no stubs
        from sismic.io import import_from_yaml  # type: ignore[import-untyped]  # no stubs
    except ImportError as exc:
        raise Skip(f"sismic is not installed ({exc})") from exc

    charts = {"flat": import_from_yaml(SISMIC_FLAT), "parallel": import_from_yaml(SISMIC_PARALLEL)}

    def started(name: MachineName) -> Any:
        interpreter = Interpreter(charts[name])
        interpreter.execute()
        return interpreter

    def observe(name: MachineName, n: int, interpreter: Any) -> None:
        active = set(interpreter.configuration)
        if name == "flat":
            expect(name, n, sorted(active & set(CYCLE)), [])
        else:
            regions = [leaf[0] for leaf in sorted(active) if len(leaf) == 2 and leaf[0] in CYCLE]
            context = interpreter.context
            expect(name, n, regions, [context["r1"], context["r2"]])

    def sync(name: MachineName) -> SyncRun:
        def run(n: int) -> float:
            interpreter = started(name)
            queue = interpreter.queue
            execute = interpreter.execute
            start = time.perf_counter()
            for _ in range(n):
                queue("NEXT")
                execute()
            elapsed = time.perf_counter() - start
            observe(name, n, interpreter)
            return elapsed

        return run

    async def check(interpreters: list[object]) -> None:
        for interpreter in interpreters:
            observe("flat", 0, interpreter)

    suite = Suite("sismic", _version("sismic"))
    for name in MACHINES:
        suite.cases.append(
            Case(name, suite.implementation, "Interpreter.queue + execute", run=sync(name))
        )
    suite.memory.append(
        MemoryCase(
            suite.implementation,
            "Interpreter(statechart).execute(), one shared statechart",
            make=lambda: started("flat"),
            finish=check,
        )
    )
    return suite


SUITES: tuple[Callable[[], Suite], ...] = (
    durable_state_suite,
    python_statemachine_suite,
    transitions_suite,
    sismic_suite,
)


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


def _next_size(n: int, elapsed: float, min_time: float) -> int:
    # Short runs are too noisy to extrapolate from: grow tenfold first.
    if elapsed < min_time / 20:
        return n * 10
    return max(n + 1, math.ceil(n * min_time * 1.1 / elapsed))


class _Share:
    """The share of a core this thread got during a run: its CPU time over wall time.

    Well under 1 means other processes took the core for part of the run, so
    its figure is pessimistic (taking the best of several runs limits that).
    """

    def __init__(self) -> None:
        self.cpu = time.thread_time()
        self.wall = time.perf_counter()

    def done(self) -> float:
        wall = time.perf_counter() - self.wall
        return (time.thread_time() - self.cpu) / wall if wall > 0 else 1.0


def measure(run: SyncRun, settings: Settings) -> tuple[int, list[tuple[float, float]]]:
    """Calibrate ``n`` to last ``min_time`` (which also warms up), then repeat.

    Returns:
        ``n`` and, for each repeat, its seconds and the share of a core it got.
    """
    n = 100
    while (elapsed := run(n)) < settings.min_time:
        n = _next_size(n, elapsed, settings.min_time)
    times = []
    for _ in range(settings.repeats):
        gc.collect()
        share = _Share()
        elapsed = run(n)
        times.append((elapsed, share.done()))
    return n, times


async def ameasure(run: AsyncRun, settings: Settings) -> tuple[int, list[tuple[float, float]]]:
    """:func:`measure` for an async run, all within one event loop."""
    n = 100
    while (elapsed := await run(n)) < settings.min_time:
        n = _next_size(n, elapsed, settings.min_time)
    times = []
    for _ in range(settings.repeats):
        gc.collect()
        share = _Share()
        elapsed = await run(n)
        times.append((elapsed, share.done()))
    return n, times


def _kind(implementation: str) -> str:
    if implementation == OURS:
        return "ours"
    return "node" if implementation == XSTATE else "python"


def run_case(case: Case, settings: Settings) -> Result:
    """Measure one case.

    Raises:
        WorkMismatch: if a run did not do the work of its events.
    """
    if case.arun is not None:
        n, times = asyncio.run(ameasure(case.arun, settings))
    elif case.run is not None:
        n, times = measure(case.run, settings)
    else:
        raise ValueError(f"case {case.implementation} {case.path} has nothing to run")
    best, share = min(times)
    return Result(
        case.machine,
        case.implementation,
        case.path,
        _kind(case.implementation),
        n,
        best,
        [elapsed for elapsed, _ in times],
        n / best,
        cpu_share=round(share, 3),
    )


async def _hold(memory: MemoryCase, count: int) -> MemoryResult:
    async def make() -> object:
        if memory.amake is not None:
            return await memory.amake()
        if memory.make is not None:
            return memory.make()
        raise ValueError(f"memory case {memory.implementation} has nothing to make")

    # Two throw-away actors first, so one-off caches (compiled code, class
    # attributes filled on first use) are not charged to the 10,000.
    warm = [await make(), await make()]
    if memory.finish is not None:
        await memory.finish(warm)
    del warm
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        actors = [await make() for _ in range(count)]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    if memory.finish is not None:
        await memory.finish(actors)
    return MemoryResult(memory.implementation, memory.how, count, held / count)


def run_memory(memory: MemoryCase, count: int) -> MemoryResult:
    """Bytes per started actor of ``flat``, from tracemalloc.

    Raises:
        WorkMismatch: if an actor made is not in the initial state.
    """
    return asyncio.run(_hold(memory, count))


# --------------------------------------------------------------------------
# xstate on node
# --------------------------------------------------------------------------


def xstate_results(settings: Settings) -> tuple[list[Result], list[MemoryResult], dict[str, str]]:
    """Run ``bench/xstate_bench.mjs`` and check it ran our machines.

    Returns:
        its throughput results, its memory result and the node/xstate versions.

    Raises:
        Skip: if node (or npm, when xstate is not installed yet) is missing.
        RuntimeError: if the script fails or reports machines other than ours.
    """
    node = shutil.which("node")
    if node is None:
        raise Skip("node is not on PATH")
    if not (BENCH_DIR / "node_modules" / "xstate").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise Skip("bench/node_modules/xstate is missing and npm is not on PATH")
        print("installing xstate: npm install in bench/", file=sys.stderr)
        # No lockfile: package.json pins xstate exactly and xstate has no dependencies.
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=BENCH_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    command = [
        node,
        "--expose-gc",
        "xstate_bench.mjs",
        "--min-time",
        str(settings.min_time),
        "--repeats",
        str(settings.repeats),
        "--memory-actors",
        str(settings.memory_actors),
    ]
    done = subprocess.run(
        command, cwd=BENCH_DIR, capture_output=True, text=True, timeout=1200, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"xstate_bench.mjs failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    if report["configs"] != CONFIGS:
        raise RuntimeError("xstate_bench.mjs runs machine configs that differ from this script's")
    results = [
        Result(
            item["machine"],
            XSTATE,
            item["path"],
            "node",
            item["events"],
            item["best_s"],
            item["runs_s"],
            item["events_per_s"],
        )
        for item in report["results"]
    ]
    memory = []
    if report["memory"] is not None:
        memory.append(
            MemoryResult(
                XSTATE,
                "createActor(machine).start() (V8 heap)",
                report["memory"]["actors"],
                report["memory"]["bytes_per_actor"],
            )
        )
    return results, memory, {"node": report["node"], "xstate": report["xstate"]}


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------


def _actor_send(results: Iterable[Result], machine: str) -> Result | None:
    return next(
        (r for r in results if r.machine == machine and r.kind == "ours" and r.path == ACTOR_SEND),
        None,
    )


def summarize(results: list[Result], memory: list[MemoryResult]) -> dict[str, Any]:
    """Fill in the ratios and work out the verdict per machine.

    Returns:
        per machine: our Actor.send figure, the fastest Python peer, the ratio
        against it and against xstate's actor, and whether the target is met.
    """
    summary: dict[str, Any] = {}
    for machine in MACHINES:
        ours = _actor_send(results, machine)
        rows = [r for r in results if r.machine == machine]
        for row in rows:
            row.actor_send_ratio = ours.events_per_s / row.events_per_s if ours else None
        peers = [r for r in rows if r.kind == "python"]
        fastest = max(peers, key=lambda r: r.events_per_s, default=None)
        xstate = next((r for r in rows if r.kind == "node" and "actor" in r.path), None)
        entry: dict[str, Any] = {
            "actor_send_events_per_s": ours.events_per_s if ours else None,
            "fastest_python_peer": asdict(fastest) if fastest else None,
            "target_ratio": TARGET_RATIO,
        }
        if ours and fastest:
            entry["ratio_vs_fastest_python_peer"] = ours.events_per_s / fastest.events_per_s
            entry["target_met"] = entry["ratio_vs_fastest_python_peer"] >= TARGET_RATIO
        if ours and xstate:
            entry["xstate_actor_events_per_s"] = xstate.events_per_s
            entry["ratio_vs_xstate_actor"] = ours.events_per_s / xstate.events_per_s
        summary[machine] = entry
    ours_memory = next((m for m in memory if m.implementation == OURS), None)
    for item in memory:
        item.actor_ratio = (
            item.bytes_per_actor / ours_memory.bytes_per_actor if ours_memory else None
        )
    return summary


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def render(
    results: list[Result], memory: list[MemoryResult], summary: dict[str, Any], notes: list[str]
) -> str:
    """The human-readable report printed at the end of a run."""
    out: list[str] = []
    for machine in MACHINES:
        rows = sorted((r for r in results if r.machine == machine), key=lambda r: -r.events_per_s)
        if not rows:
            continue
        out.append(f"\nmachine {machine!r}: events/s (best of repeats; higher is better)")
        out.append(
            _table(
                ["implementation", "path", "events/s", "Actor.send / this", "CPU share"],
                [
                    [
                        r.implementation,
                        r.path,
                        _fmt_rate(r.events_per_s),
                        _fmt_ratio(r.actor_send_ratio),
                        "-" if r.cpu_share is None else f"{r.cpu_share:.2f}",
                    ]
                    for r in rows
                ],
                right={2, 3, 4},
            )
        )
        entry = summary[machine]
        fastest = entry["fastest_python_peer"]
        if "ratio_vs_fastest_python_peer" in entry:
            verdict = "met" if entry["target_met"] else "NOT met"
            out.append(
                f"durable_state Actor.send vs fastest Python peer ({fastest['implementation']}, "
                f"{fastest['path']}): {_fmt_ratio(entry['ratio_vs_fastest_python_peer'])} "
                f"(target >= {TARGET_RATIO:g}x: {verdict})"
            )
        if "ratio_vs_xstate_actor" in entry:
            out.append(
                "durable_state Actor.send vs xstate actor.send: "
                f"{_fmt_ratio(entry['ratio_vs_xstate_actor'])}"
            )
    if memory:
        out.append("\nmemory to hold started actors of 'flat' (lower is better)")
        out.append(
            _table(
                ["implementation", "how", "bytes/actor", "this / durable_state"],
                [
                    [
                        m.implementation,
                        m.how,
                        _fmt_rate(m.bytes_per_actor),
                        _fmt_ratio(m.actor_ratio),
                    ]
                    for m in sorted(memory, key=lambda m: m.bytes_per_actor)
                ],
                right={2, 3},
            )
        )
    notes = [
        "CPU share: CPU time / wall time of the best run; under ~0.9 other processes "
        "took the core for part of it and its events/s is pessimistic",
        *notes,
    ]
    if notes:
        out.append("\nnotes:")
        out.extend(f"  - {note}" for note in notes)
    return "\n".join(out)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def plot(results: list[Result], path: Path) -> bool:
    """Draw events/s per implementation and machine; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(MACHINES), figsize=(13, 5.5))
    colours = {"ours": "#1f77b4", "python": "#7f7f7f", "node": "#ff7f0e"}
    for axis, machine in zip(axes, MACHINES, strict=True):
        rows = sorted((r for r in results if r.machine == machine), key=lambda r: r.events_per_s)
        labels = [f"{r.implementation}\n{r.path}" for r in rows]
        axis.barh(labels, [r.events_per_s for r in rows], color=[colours[r.kind] for r in rows])
        axis.set_xscale("log")
        axis.set_title(f"machine {machine!r}")
        axis.set_xlabel("events/s (log scale, higher is better)")
        axis.tick_params(axis="y", labelsize=7)
    fig.suptitle(
        "Statechart throughput: durable_state (blue), Python peers (grey), xstate (orange)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def profile(machine: MachineName, events: int) -> None:
    """Print the top cProfile entries of our ``Actor.send`` path.

    Raises:
        Skip: if the statechart API is not importable yet.
    """
    suite = durable_state_suite()
    case = next(c for c in suite.cases if c.machine == machine and c.path == ACTOR_SEND)
    if case.arun is None:
        raise ValueError("the Actor.send case is async")
    arun = case.arun
    asyncio.run(arun(1000))  # warm-up outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(arun(events))
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


TIMERS_CONFIG: dict[str, Any] = {
    "id": "timers",
    "initial": "a",
    "context": {"n": 0, "k": 0},
    "states": {"a": {"on": {"ADD": {"actions": ["sched", "bump"]}, "NOOP": {"actions": "touch"}}}},
}


def timers_case(count: int, repeats: int) -> dict[str, float]:
    """Costs (ms) around a snapshot with ``count`` pending timers, best of ``repeats``."""
    from durable_state import Machine, assign, raise_event

    machine = Machine(
        TIMERS_CONFIG,
        actions={
            # Each ADD schedules a timer with an id of its own, far in the future.
            "sched": raise_event(lambda c, e: {"type": f"T{c['n']}"}, delay=10**9),
            "bump": assign(lambda c, e: {"n": c["n"] + 1}),
            "touch": assign(lambda c, e: {"k": c["k"] + 1}),
        },
    )
    add, noop = {"type": "ADD"}, {"type": "NOOP"}

    def best(fn: Callable[[], object], inner: int = 1) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - start) / inner)
        return min(times) * 1000

    snap = machine.initial_snapshot()
    start = time.perf_counter()
    for i in range(count):
        snap, _ = machine.transition(snap, add, now_ms=float(i))
    schedule_all = (time.perf_counter() - start) * 1000
    stored = json.dumps(machine.persisted_snapshot(snap))
    raw_json = best(lambda: json.dumps(json.loads(stored)))
    return {
        "timers": float(count),
        "schedule_all_ms": schedule_all,
        "step_no_timer_ms": best(lambda: machine.transition(snap, noop, now_ms=1.0), 100),
        "step_schedules_one_ms": best(lambda: machine.transition(snap, add, now_ms=1.0), 100),
        "persisted_snapshot_ms": best(lambda: machine.persisted_snapshot(snap)),
        "restore_snapshot_ms": best(lambda: machine.restore_snapshot(json.loads(stored))),
        "raw_json_ms": raw_json,
    }


def render_timers(figures: dict[str, float]) -> str:
    """The pending-timers case as a table, with ratios to the raw JSON work."""
    raw = figures["raw_json_ms"]
    rows = [
        ("schedule all, one step each", figures["schedule_all_ms"]),
        ("step that touches no timer", figures["step_no_timer_ms"]),
        ("step that schedules one", figures["step_schedules_one_ms"]),
        ("persisted_snapshot()", figures["persisted_snapshot_ms"]),
        ("restore_snapshot(json.loads(...))", figures["restore_snapshot_ms"]),
        ("json.loads + json.dumps of the stored document", raw),
    ]
    return f"\n{int(figures['timers']):,} pending timers (ms, best of repeats)\n" + _table(
        ["operation", "ms", "/ raw JSON"],
        [[label, f"{ms:.3f}", f"{ms / raw:.3f}"] for label, ms in rows],
        right={1, 2},
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (0.1 s per measurement, best of 2, 2,000 actors); "
        "writes no file unless --json is given",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"where to write the results (default: {DEFAULT_JSON.relative_to(BENCH_DIR.parent)} "
        "for a full run)",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="do not draw the PNG beside the JSON"
    )
    parser.add_argument("--no-node", action="store_true", help="skip xstate on node")
    parser.add_argument(
        "--only",
        action="append",
        metavar="IMPLEMENTATION",
        help="run only this Python implementation (repeatable), e.g. durable_state",
    )
    parser.add_argument("--min-time", type=float, help="seconds per measured run")
    parser.add_argument("--repeats", type=int, help="measured runs per case (the best is kept)")
    parser.add_argument("--memory-actors", type=int, help="actors held for the memory figure")
    parser.add_argument(
        "--timers", type=int, default=10_000, help="pending timers in the timers case"
    )
    parser.add_argument(
        "--timers-only", action="store_true", help="run only the pending-timers case"
    )
    parser.add_argument(
        "--profile",
        choices=MACHINES,
        help="instead of benchmarking, print a cProfile of durable_state's Actor.send",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if any implementation failed.

    Raises:
        SystemExit: on bad command-line arguments.
    """
    args = _parse_args(argv)
    if args.profile:
        profile(args.profile, 20_000)
        return 0
    if args.timers_only:
        print(render_timers(timers_case(args.timers, args.repeats or 5)))
        return 0
    settings = Settings(
        min_time=args.min_time or (0.1 if args.quick else 0.5),
        repeats=args.repeats or (2 if args.quick else 5),
        memory_actors=args.memory_actors or (2_000 if args.quick else 10_000),
    )
    load_before = _load_average()
    results: list[Result] = []
    memory: list[MemoryResult] = []
    notes: list[str] = []
    versions: dict[str, str] = {}
    errors: list[str] = []

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    for build in SUITES:
        try:
            suite = build()
        except Skip as skip:
            notes.append(f"skipped: {skip}")
            continue
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{build.__name__}: {exc!r}")
            continue
        if args.only and suite.implementation not in args.only:
            continue
        versions[suite.implementation] = suite.version
        notes.extend(suite.notes)
        for case in suite.cases:
            progress(f"{case.machine:8} {case.implementation} {case.path} ...")
            try:
                results.append(run_case(case, settings))
            except Exception as exc:
                traceback.print_exc()
                errors.append(f"{case.implementation} {case.path} on {case.machine}: {exc!r}")
        for memory_case in suite.memory:
            progress(f"memory   {memory_case.implementation} {memory_case.how} ...")
            try:
                memory.append(run_memory(memory_case, settings.memory_actors))
            except Exception as exc:
                traceback.print_exc()
                errors.append(f"{memory_case.implementation} memory: {exc!r}")
    if args.no_node:
        notes.append("skipped: xstate on node (--no-node)")
    else:
        progress("xstate on node ...")
        try:
            node_results, node_memory, node_versions = xstate_results(settings)
        except Skip as skip:
            notes.append(f"skipped: xstate on node: {skip}")
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            errors.append(f"xstate on node: {exc!r}")
        else:
            results.extend(node_results)
            memory.extend(node_memory)
            versions.update(node_versions)
    summary = summarize(results, memory)
    progress(f"{args.timers:,} pending timers ...")
    timers = timers_case(args.timers, settings.repeats)
    print(render(results, memory, summary, notes + [f"ERROR: {e}" for e in errors]))
    print(render_timers(timers))

    json_path: Path | None = args.json or (None if args.quick else DEFAULT_JSON)
    if json_path is not None:
        document = {
            "benchmark": "statechart",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "quick": args.quick,
            "settings": asdict(settings),
            "environment": {
                "python": platform.python_version(),
                "python_implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "cpu": _cpu_model(),
                "cpus": os.cpu_count(),
                # Other processes on the machine skew the figures: record how busy it was.
                "load_average_before": load_before,
                "load_average_after": _load_average(),
                "versions": versions,
            },
            "configs": CONFIGS,
            "results": [asdict(r) for r in results],
            "memory": [asdict(m) for m in memory],
            "timers": timers,
            "summary": summary,
            "notes": notes,
            "errors": errors,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        progress(f"wrote {json_path}")
        if not args.no_plot:
            png = json_path.with_suffix(".png")
            if plot(results, png):
                progress(f"wrote {png}")
            else:
                progress("matplotlib is not installed: no plot")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
