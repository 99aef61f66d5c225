"""Differential conformance: durable_state's interpreter against xstate v5.

Every case (seeded random machines from ``gen.py`` plus the hand-picked ones
in ``compat_cases.py``) runs through xstate on node (``runner.mjs``, all
cases in one node process) and through durable_state, and the two must agree
on ``value``, ``context``, ``status`` and ``output`` after every step. The
context carries a log of entry/exit tags, transition tags and event types,
so the order of actions is compared too. Cases with child machines
(``actors-<seed>`` and the fixed ones with ``actors``) run through actors on
both sides, and the running children (recursively) are compared alike.

Modes:
    plain: one snapshot (or actor) driven through all steps.
    persist: after every step the snapshot is persisted, sent through JSON
        and restored. The reference is xstate's uninterrupted run:
        persistence must be invisible. (xstate's own restore forgets two
        things durable_state keeps: pending delayed events and the entry
        order of eventless transitions, docs/compatibility.md rows 1 and 4.)

Where xstate reaches a configuration that is not a legal one (a compound
state with two active children, an active state whose parent is not), the
comparison stops before that step: durable_state takes the SCXML result
there instead (docs/compatibility.md, row 12), and ``test_invariants.py``
checks that every configuration it reaches is legal and restores. It also
stops where xstate schedules a delayed event under an id that is already
pending (it fires both; durable_state keeps one timer per id, row 10), or
where a spawn reuses the id of a running child (xstate leaves the old one
running, unreachable; durable_state stops it, row 14), or where an event
went by systemId to an actor that had stopped (xstate drops it;
durable_state fails the send as for an unknown name, row 15), or where
two actors have delayed events pending for the same time (the order they
fire in may differ, row 16). Where xstate's own
step fails because a message has no receiver (or a systemId is taken), the
top-level actor goes to status "error" in xstate and durable_state refuses
the step instead (row 2): the comparison stops there, and durable_state must
have raised ``UnknownActor`` (``SystemIdTaken``) at that very step.

Environment:
    DURABLE_STATE_COMPAT_CASES: how many seeds to generate (default 300).
    DURABLE_STATE_COMPAT_ACTOR_CASES: how many seeds of machines with
        children to generate (default 200).
    DURABLE_STATE_COMPAT_SEEDS: an explicit comma-separated list of seeds
        (overrides both counts), e.g. to reproduce a failure.
"""

from __future__ import annotations

import json
import os
from typing import Any, NoReturn

import pytest
from compat_cases import FIXED
from compat_node import XstateRunner
from compat_vocab import (
    REFUSALS,
    build_machine,
    describe_mismatch,
    first_mismatch,
    normalize_persisted,
    plain,
    restore_actor_trace,
    run_actor,
    run_actor_persisted,
    run_pure,
)
from gen import Case, generate

pytestmark = pytest.mark.compat

DEFAULT_CASES = 300
DEFAULT_ACTOR_CASES = 200


def _seeds(variable: str, default: int) -> list[int]:
    explicit = os.environ.get("DURABLE_STATE_COMPAT_SEEDS", "").strip()
    if explicit:
        return [int(s) for s in explicit.replace(" ", "").split(",") if s]
    count = int(os.environ.get(variable, str(default)))
    return list(range(count))


GENERATED = [generate(seed) for seed in _seeds("DURABLE_STATE_COMPAT_CASES", DEFAULT_CASES)]
ACTOR_GENERATED = [
    generate(seed, actors=True)
    for seed in _seeds("DURABLE_STATE_COMPAT_ACTOR_CASES", DEFAULT_ACTOR_CASES)
]
ALL_CASES: list[Case] = [*GENERATED, *ACTOR_GENERATED, *FIXED]
UNTIMED = [c for c in ALL_CASES if not c.timed and not c.actors]
# The deliberate differences are shown by test_matches_xstate alone.
UNTIMED_ACTORS = [c for c in ALL_CASES if not c.timed and c.actors and c.known_difference is None]
MODES = ("plain", "persist")

Trace = list[dict[str, Any]]


@pytest.fixture(scope="session")
def oracle(xstate: XstateRunner) -> dict[str, dict[str, Any]]:
    """xstate's traces for every case, from a single node process."""
    inputs = [
        case.runner_input(persist_each=False, emit_persisted=not case.timed) for case in ALL_CASES
    ]
    return xstate.run(inputs)


def _expected(oracle: dict[str, dict[str, Any]], case: Case) -> Trace:
    """xstate's trace up to (not including) the first record that cannot be compared.

    That is an illegal configuration, a delayed event scheduled while one
    with the same id was pending (xstate fires both, durable_state one), a
    child left running without a parent (xstate's spawn of a running child's
    id), an event sent by systemId to an actor that had stopped, or the
    top-level actor's own step failing on a message with no receiver (see
    :func:`_refusal`).
    """
    result = oracle[case.id]
    if result["error"] is not None:
        # Every case is built to be valid and to settle; xstate refusing one
        # is a bug in the generator or in a hand-written case.
        pytest.fail(
            f"xstate rejected {case.id}: {result['error']}\nconfig = {json.dumps(case.config)}"
        )
    trace: Trace = result["trace"]
    if case.known_difference is not None:
        # A hand-picked difference is compared where it shows.
        comparable = next((i for i, r in enumerate(trace) if not r["legal"]), len(trace))
    else:
        comparable = next(
            (i for i, rec in enumerate(trace) if _incomparable(rec) or _refusal(case, trace, i)),
            len(trace),
        )
    return trace[:comparable]


def _incomparable(record: dict[str, Any]) -> bool:
    """Whether xstate took a step there where durable_state differs on purpose."""
    return (
        not record["legal"]
        or record["doubledTimer"]
        or record["orphan"]
        or record["deadLetter"]
        # Delayed events of two actors due at the same time (row 16).
        or record["tiedTimers"]
    )


def _refusal(case: Case, trace: Trace, index: int) -> type[Exception] | None:
    """What durable_state raises where xstate's top-level step failed on a message.

    Only a step someone waits for is refused (``start()``, ``send()``); a
    step of a timer goes to status "error" on both sides and is compared as
    such. xstate names the machine whose step failed: a child's failure that
    reaches the top as an unhandled error event names the child's machine,
    and is compared as any other status "error".
    """
    record = trace[index]
    error = record.get("error")
    if record["status"] != "error" or not isinstance(error, str):
        return None
    if index > 0 and ("send" not in case.steps[index - 1] or trace[index - 1]["status"] == "error"):
        return None
    for text, exc in REFUSALS.items():
        if text in error and (error.endswith("from machine 'm'.") or "system ID" in error):
            return exc
    return None


def _check_refusal(
    oracle: dict[str, dict[str, Any]], case: Case, mode: str, actual: Trace, index: int
) -> None:
    """Where xstate's step failed on a message, durable_state refused the same step."""
    trace = oracle[case.id]["trace"]
    if index >= len(trace):
        return
    want = _refusal(case, trace, index)
    if want is None or any(_incomparable(rec) for rec in trace[: index + 1]):
        return
    got = actual[index] if index < len(actual) else None
    if got is None or got.get("refused") != want.__name__:
        pytest.fail(
            f"{case.id} [{mode}]: xstate's step {index} failed with {trace[index]['error']!r}; "
            f"durable_state should have raised {want.__name__}, it gave {json.dumps(got)}\n"
            f"config = {json.dumps(case.config)}\nactors = {json.dumps(case.actors)}\n"
            f"steps = {json.dumps(case.steps)}",
            pytrace=False,
        )


def _fail_on_exception(case: Case, mode: str, exc: BaseException) -> NoReturn:
    pytest.fail(
        f"{case.id} [{mode}]: durable_state raised {type(exc).__name__}: {exc}\n"
        f"config = {json.dumps(case.config)}\nstate_in = {json.dumps(case.state_in)}\n"
        f"steps = {json.dumps(case.steps)}"
    )


def _param(case: Case, *values: Any, id: str) -> Any:
    marks = []
    if case.known_difference is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=case.known_difference))
    return pytest.param(case, *values, id=id, marks=marks)


@pytest.mark.parametrize(
    ("case", "mode"),
    [_param(c, m, id=f"{c.id}-{m}") for c in ALL_CASES for m in MODES],
)
async def test_matches_xstate(oracle: dict[str, dict[str, Any]], case: Case, mode: str) -> None:
    """value/context/status/output agree with xstate after every step."""
    persist = mode == "persist"
    expected = _expected(oracle, case)
    try:
        if case.timed or case.actors:
            actual = await run_actor(case, persist_each=persist)
        else:
            actual = run_pure(case, persist_each=persist)
    except Exception as exc:
        _fail_on_exception(case, mode, exc)
    where = first_mismatch(expected, actual[: len(expected)])
    if where is not None:
        pytest.fail(describe_mismatch(case, mode, expected, actual, where), pytrace=False)
    _check_refusal(oracle, case, mode, actual, len(expected))


@pytest.mark.parametrize("case", [_param(c, id=c.id) for c in UNTIMED])
def test_persisted_shape_matches_xstate(oracle: dict[str, dict[str, Any]], case: Case) -> None:
    """persisted_snapshot() equals getPersistedSnapshot() (less "$durable") at every step."""
    expected = _expected(oracle, case)
    machine = build_machine(case)
    try:
        snap = machine.initial_snapshot()
        ours = [normalize_persisted(machine.persisted_snapshot(snap))]
        for step in case.steps:
            snap, _ = machine.transition(snap, step["send"])
            ours.append(normalize_persisted(machine.persisted_snapshot(snap)))
    except Exception as exc:
        _fail_on_exception(case, "persisted-shape", exc)
    for index, (want, got) in enumerate(zip(expected, ours, strict=False)):
        theirs = normalize_persisted(want["persisted"])
        if theirs != got:
            label = "start" if index == 0 else json.dumps(case.steps[index - 1])
            pytest.fail(
                f"{case.id}: persisted snapshots differ after step {index} ({label})\n"
                f"  xstate:        {json.dumps(theirs, sort_keys=True)}\n"
                f"  durable_state: {json.dumps(got, sort_keys=True)}\n"
                f"config = {json.dumps(case.config)}\nsteps = {json.dumps(case.steps)}",
                pytrace=False,
            )


@pytest.mark.parametrize("case", [_param(c, id=c.id) for c in UNTIMED])
def test_restores_xstate_snapshots(oracle: dict[str, dict[str, Any]], case: Case) -> None:
    """A snapshot xstate persisted (plus "$durable") restores to the same machine state.

    After every step, xstate's persisted snapshot is restored by durable_state
    and given the next event; the result must be what xstate itself reports
    when it restores that snapshot and is sent the same event.
    """
    expected = _expected(oracle, case)
    machine = build_machine(case)
    for index in range(len(expected) - 1):
        step = case.steps[index]
        reference = expected[index + 1]["restored"]
        if not reference["legal"]:
            continue
        data = dict(expected[index]["persisted"])
        data["$durable"] = {"machine": case.config["id"], "version": 1, "timers": []}
        try:
            snap = machine.restore_snapshot(data)
            snap, _ = machine.transition(snap, step["send"])
        except Exception as exc:
            _fail_on_exception(case, f"restore-xstate@{index}", exc)
        got = {
            "value": plain(snap.value),
            "context": plain(snap.context),
            "status": snap.status,
            "output": plain(snap.output),
        }
        want = {k: reference[k] for k in got}
        if got != want:
            pytest.fail(
                f"{case.id}: restoring xstate's snapshot after step {index} and sending "
                f"{json.dumps(step)} differs\n"
                f"  restored from: {json.dumps(expected[index]['persisted'], sort_keys=True)}\n"
                f"  xstate:        {json.dumps(want, sort_keys=True)}\n"
                f"  durable_state: {json.dumps(got, sort_keys=True)}\n"
                f"config = {json.dumps(case.config)}",
                pytrace=False,
            )


@pytest.mark.parametrize("case", [_param(c, id=c.id) for c in UNTIMED_ACTORS])
async def test_nested_persisted_snapshots_match_xstate(
    oracle: dict[str, dict[str, Any]], case: Case
) -> None:
    """Actor.persisted_snapshot() nests the children as getPersistedSnapshot() does, at every step."""
    expected = _expected(oracle, case)
    if not expected:
        return  # xstate's start failed: test_matches_xstate checks the refusal
    try:
        ours = await run_actor_persisted(case, len(expected) - 1)
    except Exception as exc:
        _fail_on_exception(case, "persisted-shape", exc)
    for index, (want, got) in enumerate(zip(expected, ours, strict=False)):
        theirs = normalize_persisted(want["persisted"])
        mine = normalize_persisted(got)
        if theirs != mine:
            label = "start" if index == 0 else json.dumps(case.steps[index - 1])
            pytest.fail(
                f"{case.id}: persisted snapshots differ after step {index} ({label})\n"
                f"  xstate:        {json.dumps(theirs, sort_keys=True)}\n"
                f"  durable_state: {json.dumps(mine, sort_keys=True)}\n"
                f"config = {json.dumps(case.config)}\nactors = {json.dumps(case.actors)}\n"
                f"steps = {json.dumps(case.steps)}",
                pytrace=False,
            )


@pytest.mark.parametrize("case", [_param(c, id=c.id) for c in UNTIMED_ACTORS])
async def test_restores_xstate_snapshots_with_children(
    oracle: dict[str, dict[str, Any]], case: Case
) -> None:
    """xstate's nested persisted snapshot restores into an Actor that goes on as xstate's does."""
    expected = _expected(oracle, case)
    for index in range(len(expected) - 1):
        step = case.steps[index]
        reference = expected[index + 1]["restored"]
        if _incomparable(reference) or reference["status"] == "error":
            continue
        try:
            got = await restore_actor_trace(case, expected[index]["persisted"], step["send"])
        except Exception as exc:
            _fail_on_exception(case, f"restore-xstate@{index}", exc)
        want = {k: reference[k] for k in got}
        if got != want:
            pytest.fail(
                f"{case.id}: restoring xstate's snapshot after step {index} and sending "
                f"{json.dumps(step)} differs\n"
                f"  restored from: {json.dumps(expected[index]['persisted'], sort_keys=True)}\n"
                f"  xstate:        {json.dumps(want, sort_keys=True)}\n"
                f"  durable_state: {json.dumps(got, sort_keys=True)}\n"
                f"config = {json.dumps(case.config)}\nactors = {json.dumps(case.actors)}",
                pytrace=False,
            )


def test_comparison_sees_a_difference(oracle: dict[str, dict[str, Any]]) -> None:
    """The harness is not vacuous: a one-entry change in a trace is reported."""
    case = next(c for c in FIXED if c.id == "fixed-raise-after-entry-actions")
    expected = _expected(oracle, case)
    assert first_mismatch(expected, expected) is None
    tampered = json.loads(json.dumps(expected))
    tampered[1]["context"]["log"].reverse()
    assert first_mismatch(expected, tampered) == (1, "context")
    tampered = json.loads(json.dumps(expected))
    tampered[-1]["status"] = "done"
    assert first_mismatch(expected, tampered) == (len(expected) - 1, "status")


def test_comparison_sees_a_child_difference(oracle: dict[str, dict[str, Any]]) -> None:
    """A child's context is compared too, not only the parent's."""
    case = next(c for c in FIXED if c.id == "fixed-actors-invoke-send-reply-done")
    expected = _expected(oracle, case)
    assert expected[1]["children"]["kid"]["context"]["a"] == 3
    tampered = json.loads(json.dumps(expected))
    tampered[1]["children"]["kid"]["context"]["a"] = 4
    assert first_mismatch(expected, tampered) == (1, "children")


def test_generator_is_deterministic() -> None:
    """A seed names one case forever: failures are reproduced by seed."""
    for seed in (0, 7, 12345):
        assert generate(seed) == generate(seed)
        assert generate(seed, actors=True) == generate(seed, actors=True)
    assert generate(1).config != generate(2).config
    assert generate(1, actors=True).actors != generate(2, actors=True).actors
