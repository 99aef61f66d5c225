"""The ``durable-state`` command.

Every sub-command runs in-process through ``main([...])`` on real files in
``tmp_path``; the demo and Ctrl-C run in real processes; leases are held by
real processes; ``s3://`` and ``dynamodb://`` talk to the moto server over HTTP.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_state import BackendURLError
from durable_state._urls import (
    ATTEMPTS,
    ENV_ENDPOINT,
    ENV_LOCK,
    ENV_STORAGE,
    LockSpec,
    StorageSpec,
    parse_lock_url,
    parse_storage_url,
    resolve_backends,
)
from durable_state.cli import (
    DEFAULT_TIMEOUT,
    ENV_MACHINE,
    ENV_TIMEOUT,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_USAGE,
    UsageError,
    main,
)
from durable_state.errors import ActorNotFound, DurableStateError

ITEM = '{"sku": "book", "price": 12.5}'


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory, with no backend or machine chosen by the environment.

    ``--machine`` makes the working directory importable; the path and the
    machine modules imported from ``tmp_path`` are undone afterwards.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for var in (ENV_STORAGE, ENV_LOCK, ENV_ENDPOINT, ENV_MACHINE, ENV_TIMEOUT):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_item(capsys: pytest.CaptureFixture[str], actor_id: str, *extra: str) -> str:
    code, out, err = run(
        capsys, "send", actor_id, "ADD_ITEM", "--data", ITEM, "--machine", "demo", *extra
    )
    assert code == EXIT_OK, err
    return out


def stored(capsys: pytest.CaptureFixture[str], actor_id: str, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "show", actor_id, "--json", *extra)
    assert code == EXIT_OK, err
    data: dict[str, Any] = json.loads(out)
    return data


def python(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


# --------------------------------------------------------------------------- #
# demo
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_demo_runs_in_a_real_process_and_again_with_reset(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    proc = python("-m", "durable_state", "demo", "--dir", "demo-state")
    elapsed = time.monotonic() - started
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stderr == ""
    assert elapsed < 10
    out = proc.stdout
    for expected in (
        "new order order-",
        "ADD_ITEM",
        "already applied, skipped",
        "nothing changed, nothing written",
        "payment.declined",
        "after retry_backoff in #order.payment.declined: due in 1.5 s",
        "a duplicate webhook for this order is refused",
        "a waker finds the order in the storage's due index",
        "the retry timer fired, nobody sent",
        "attempts=2",
        '"outcome": "shipped"',
        "delivered after the save succeeded",
        "durable-state show order-",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # Fencing tokens grow with every lease: six invocations and the waker's
    # two sessions (its visit and the look afterwards), tokens 1..8.
    assert [f"lease token {n})" in out for n in (1, 2, 3, 4, 7, 8)] == [True] * 6

    code, listing, _ = run(capsys, "ls", "--dir", "demo-state")
    first = listing.split()
    assert code == EXIT_OK
    assert len(first) == 1
    assert first[0].startswith("order-")
    assert stored(capsys, first[0], "--dir", "demo-state")["status"] == "done"

    code, out, err = run(capsys, "demo", "--dir", "demo-state", "--reset")
    assert code == EXIT_OK, err
    assert "removed 1 order(s)" in out
    code, listing, _ = run(capsys, "ls", "--dir", "demo-state")
    second = listing.split()
    assert len(second) == 1
    assert second != first


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback(cwd: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable_state", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "pass ..." in line:  # the demo now sleeps until its timer is due
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED
    assert "interrupted" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- #
# send, show, ls
# --------------------------------------------------------------------------- #


def test_send_creates_then_applies_and_show_tells_it(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = add_item(capsys, "o-1", "--create", "--event-id", "m-1")
    assert "ADD_ITEM applied" in out
    assert "(new) -> 1." in out
    assert (cwd / ".durable-state").is_dir()  # the default directory

    code, out, err = run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")
    assert code == EXIT_OK, err
    assert "cart -> payment.pending" in out

    # CHECKOUT again: no transition takes it in payment.pending; nothing is written.
    code, out, err = run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")
    assert code == EXIT_OK, err
    assert "o-1: CHECKOUT changed nothing (no enabled transition)" in out
    assert "(nothing changed, nothing written)" in out

    code, out, _ = run(capsys, "show", "o-1")
    assert code == EXIT_OK
    assert "status     active" in out
    assert "state      payment.pending" in out
    assert 'items=["book"]' in out or '"items": ["book"]' in out
    assert "after payment_timeout in #order.payment: due" in out
    assert "1 event id(s); latest: m-1" in out
    assert "lease      free\n" in out  # every send released its lease

    data = stored(capsys, "o-1")
    assert data["value"] == {"payment": "pending"}
    assert data["context"]["attempts"] == 1
    assert [t["event"]["type"] for t in data["$durable"]["timers"]] == [
        "xstate.after.payment_timeout.order.payment"
    ]
    assert data["version"].startswith("2.")


def test_a_redelivered_event_id_is_skipped_and_nothing_is_written(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_item(capsys, "o-1", "--create", "--event-id", "m-1")
    before = stored(capsys, "o-1")
    out = add_item(capsys, "o-1", "--event-id", "m-1")
    assert "event id 'm-1' was already applied; skipped" in out
    assert "nothing changed, nothing written" in out
    after = stored(capsys, "o-1")
    assert after["version"] == before["version"]
    assert after["context"]["items"] == ["book"]


def test_send_json_output(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "send",
        "o-1",
        "ADD_ITEM",
        "--data",
        ITEM,
        "--machine",
        "demo",
        "--create",
        "--json",
    )
    assert code == EXIT_OK, err
    result = json.loads(out)
    assert result["applied"] is True
    assert result["created"] is True
    assert result["changed"] is True
    assert result["value"] == "cart"
    assert result["context"]["total"] == 12.5
    assert result["version"] == stored(capsys, "o-1")["version"]


def test_unknown_actor_exits_3(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / ".durable-state").mkdir()
    code, out, err = run(capsys, "send", "ghost", "ADD_ITEM", "--data", ITEM, "--machine", "demo")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert err.strip() == "durable-state: no actor stored at 'ghost'"
    code, _, err = run(capsys, "show", "ghost")
    assert code == EXIT_NOT_FOUND
    assert "ghost" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["ls", "-l"],
        ["show", "o-1"],
        ["rm", "o-1", "--yes"],
        ["unlock", "o-1", "--yes"],
        ["send", "o-1", "ADD_ITEM", "--data", ITEM, "--machine", "demo"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_missing_directory_is_not_found_and_is_not_created(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv, "--dir", "typo")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert err == (
        "durable-state: no storage directory 'typo' (nothing has been stored there; "
        "check --dir, --storage or the working directory)\n"
        if argv[0] != "unlock"
        else "durable-state: no lock directory 'typo' (nothing has been stored there; "
        "check --dir, --lock or the working directory)\n"
    )
    assert not (cwd / "typo").exists()
    # With --create, send makes the directory, as before.
    if argv[0] == "send":
        assert run(capsys, *argv, "--dir", "typo", "--create")[0] == EXIT_OK
        assert (cwd / "typo").is_dir()


def test_ls_plain_prefix_and_long(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / ".durable-state").mkdir()
    code, out, _ = run(capsys, "ls", "-l")
    assert code == EXIT_OK
    assert "(no actors in file://.durable-state)" in out
    for actor_id in ("b-1", "a-2", "a-1"):
        add_item(capsys, actor_id, "--create")
    assert run(capsys, "ls") == (EXIT_OK, "a-1\na-2\nb-1\n", "")
    assert run(capsys, "ls", "--prefix", "a-")[1] == "a-1\na-2\n"
    code, out, _ = run(capsys, "ls", "--long", "--prefix", "b")
    assert code == EXIT_OK
    assert out.startswith("b-1  active  cart  version 1.")


def test_send_without_a_machine_is_a_usage_error(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "send", "o-1", "ADD_ITEM")
    assert code == EXIT_USAGE
    assert "--machine" in err
    assert ENV_MACHINE in err


def test_machine_from_the_environment(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_MACHINE, "demo")
    code, out, err = run(capsys, "send", "o-1", "ADD_ITEM", "--data", ITEM, "--create")
    assert code == EXIT_OK, err
    assert "ADD_ITEM applied" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{not json"], "--data is not valid JSON"),
        (["--data", "[1, 2]"], "--data must be a JSON object, not list"),
        (["--data", '{"type": "X"}'], "--data must not contain 'type'"),
        (["--machine", "no_colon"], "expected MODULE:ATTR"),
        (["--machine", "no_such_module_xyz:machine"], "no module named 'no_such_module_xyz'"),
        (["--machine", "json:no_such_attr"], "module 'json' has no attribute 'no_such_attr'"),
        (["--machine", "os:sep"], "is a str, not a durable_state.Machine"),
        (["--wait", "-1"], "not a number of seconds"),
    ],
)
def test_send_usage_errors(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if "--machine" not in argv:
        argv = [*argv, "--machine", "demo"]
    code, out, err = run(capsys, "send", "o-1", "ADD_ITEM", "--create", *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert not (cwd / ".durable-state").exists() or run(capsys, "ls")[1] == ""


def test_machine_module_from_the_working_directory(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "toggles.py").write_text(
        textwrap.dedent(
            """
            from durable_state import Machine

            def build():
                return Machine({"id": "toggle", "initial": "off",
                                "states": {"off": {"on": {"FLIP": "on"}},
                                           "on": {"on": {"FLIP": "off"}}}})
            """
        )
    )
    (cwd / "broken_machines.py").write_text("raise RuntimeError('boom at import')\n")
    code, out, err = run(capsys, "send", "t-1", "FLIP", "--machine", "toggles:build", "--create")
    assert code == EXIT_OK, err
    assert "off -> on" in out
    code, _, err = run(capsys, "send", "t-1", "FLIP", "--machine", "broken_machines:m")
    assert code == EXIT_ERROR
    assert "importing 'broken_machines' failed: RuntimeError: boom at import" in err
    # The stored actor belongs to machine "toggle": the demo machine refuses it.
    code, _, err = run(capsys, "send", "t-1", "ADD_ITEM", "--machine", "demo")
    assert code == EXIT_ERROR
    assert "belongs to machine 'toggle'" in err


def test_an_implementation_error_exits_1_and_saves_nothing(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_item(capsys, "o-1", "--create")
    before = stored(capsys, "o-1")["version"]
    # ADD_ITEM without "sku": the add_item action raises KeyError.
    code, out, err = run(capsys, "send", "o-1", "ADD_ITEM", "--machine", "demo")
    assert (code, out) == (EXIT_ERROR, "")
    assert "ADD_ITEM failed in the machine's code, nothing was saved: KeyError: 'sku'" in err
    assert "Traceback" not in err
    assert stored(capsys, "o-1")["version"] == before
    code, _, err = run(capsys, "send", "o-1", "ADD_ITEM", "--machine", "demo", "--traceback")
    assert code == EXIT_ERROR
    assert "Traceback" in err
    assert "KeyError" in err


# --------------------------------------------------------------------------- #
# Leases: busy, unlock
# --------------------------------------------------------------------------- #

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from durable_state.locks.file import FileLockManager

    async def main():
        async with FileLockManager(sys.argv[1]) as manager:
            lease = await manager.acquire(sys.argv[2], ttl=120)
            print("held", lease.token, flush=True)
            await asyncio.sleep(120)

    asyncio.run(main())
    """
)


@pytest.fixture
def hold_lease(cwd: Path) -> Iterator[Any]:
    """Start a real process that takes the lease on a key and keeps it."""
    procs: list[subprocess.Popen[str]] = []

    def start(key: str, root: str = ".durable-state") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, root, key], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("held")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_busy_lease_exits_4_and_unlock_frees_it(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    hold_lease: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_item(capsys, "o-1", "--create")
    holder = hold_lease("o-1")

    code, out, err = run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")
    assert (code, out) == (EXIT_CONFLICT, "")
    assert "'o-1' is locked by" in err
    assert f":{holder.pid}:" in err
    assert "durable-state unlock o-1" in err

    code, out, _ = run(capsys, "show", "o-1")
    assert "lease      held by " in out
    assert f":{holder.pid}:" in out
    assert "(token 2)" in out

    # Without --yes and without a terminal to ask on: refused.
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, _, err = run(capsys, "unlock", "o-1")
    assert code == EXIT_USAGE
    assert "pass --yes" in err

    # On a terminal, "n" keeps the lease.
    monkeypatch.setattr(sys, "stdin", _Tty("n\n"))
    code, out, _ = run(capsys, "unlock", "o-1")
    assert code == EXIT_ERROR
    assert "Force-release it?" in out
    assert "not released" in out
    assert run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")[0] == EXIT_CONFLICT

    # "y" releases it; the holder process is still alive, but the key is free.
    monkeypatch.setattr(sys, "stdin", _Tty("y\n"))
    code, out, err = run(capsys, "unlock", "o-1")
    assert code == EXIT_OK, err
    assert "released: o-1 can be taken now" in out
    assert holder.poll() is None
    code, out, err = run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")
    assert code == EXIT_OK, err
    assert "lease token" not in out
    code, out, _ = run(capsys, "show", "o-1")
    assert "lease      free\n" in out  # the send released the lease it took


def test_unlock_yes_and_a_dead_holder(
    cwd: Path, capsys: pytest.CaptureFixture[str], hold_lease: Any
) -> None:
    (cwd / ".durable-state").mkdir()
    code, out, _ = run(capsys, "unlock", "never-locked", "--yes")
    assert code == EXIT_OK
    assert "lease free; nothing to release" in out

    hold_lease("k-1")
    code, out, err = run(capsys, "unlock", "k-1", "--yes")
    assert code == EXIT_OK, err
    assert "released" in out

    dead = hold_lease("k-2")
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    code, out, _ = run(capsys, "unlock", "k-2", "--yes")
    assert code == EXIT_OK
    # The holder's process is gone: its lease is free at once.
    assert "k-2: lease free; nothing to release" in out


def test_unlock_without_a_lock_is_a_usage_error(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "unlock", "o-1", "--lock", "none", "--yes")
    assert code == EXIT_USAGE
    assert "no lock is configured" in err


def test_lock_none_runs_optimistic(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_item(capsys, "o-1", "--create", "--lock", "none")
    assert not (cwd / ".durable-state" / ".locks").exists()
    code, out, _ = run(capsys, "show", "o-1", "--lock", "none")
    assert code == EXIT_OK
    assert "lease      none (no lock configured)" in out


# --------------------------------------------------------------------------- #
# diagram
# --------------------------------------------------------------------------- #


def test_diagram_mermaid_of_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", "demo")
    assert code == EXIT_OK
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    for expected in (
        "[*] --> order",
        "state order {",
        "[*] --> cart",
        "state payment {",
        "[*] --> pending",
        "shipped --> [*]",
        "cancelled --> [*]",
        "cart --> cart : ADD_ITEM",
        "cart --> payment : CHECKOUT [has_items]",
        "payment --> cancelled : after payment_timeout (15 min)",
        "pending --> paid : PAYMENT_SUCCEEDED",
        "declined --> pending : after retry_backoff (1.5 s) [can_retry(max_attempts=3)]",
        "declined --> cancelled : after retry_backoff (1.5 s)",
        "paid --> shipped : SHIP",
    ):
        assert expected in lines, f"{expected!r} missing from:\n{out}"
    assert out.count("{") == out.count("}")


COMPLEX = textwrap.dedent(
    """
    from durable_state import Machine

    machine = Machine(
        {
            "id": "player",
            "type": "parallel",
            "on": {"RESET": ".playback"},
            "states": {
                "playback": {
                    "initial": "stopped",
                    "states": {
                        "stopped": {"on": {"PLAY": "playing"}},
                        "playing": {
                            "on": {"PAUSE": {"target": "paused", "guard": {
                                "type": "and", "guards": ["ok", {"type": "not", "guards": ["bad"]}]}}},
                            "invoke": {"src": "load", "onDone": "paused", "onError": "stopped"},
                        },
                        "paused": {"always": {"target": "hist", "guard": {
                            "type": "stateIn", "stateId": "#player.volume.muted"}}},
                        "hist": {"type": "history", "history": "deep"},
                    },
                },
                "volume": {
                    "initial": "normal",
                    "states": {
                        "normal": {"on": {"MUTE": "muted"}, "after": {"1000": "muted"}},
                        "muted": {"on": {"note: x; y": "normal"}},
                    },
                },
            },
        },
        guards={"ok": lambda c, e: True, "bad": lambda c, e: False},
        actors={"load": lambda i: None},
    )
    """
)


def test_diagram_of_parallel_history_invoke_and_odd_labels(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "player_machine.py").write_text(COMPLEX)
    code, out, err = run(capsys, "diagram", "player_machine:machine")
    assert code == EXIT_OK, err
    lines = [line.strip() for line in out.splitlines()]
    assert "state player {" in lines
    assert "--" in lines  # between the parallel regions
    assert 'state "H*" as playback_hist' in lines
    assert "player --> playback : RESET" in lines
    assert "playing --> paused : PAUSE [ok and (not bad)]" in lines
    assert "playing --> paused : done#58; load" in lines
    assert "playing --> stopped : error#58; load" in lines
    assert "paused --> playback_hist : always [in #35;player.volume.muted]" in lines
    assert "playback_hist --> stopped : default" in lines
    assert "normal --> muted : after 1 s" in lines
    assert "muted --> normal : note#58; x#59; y" in lines

    code, dot_out, _ = run(capsys, "diagram", "player_machine:machine", "--format", "dot")
    assert code == EXIT_OK
    assert dot_out.startswith('digraph "player" {')
    assert 'subgraph "cluster_player.playback" {' in dot_out
    assert "style=dashed;" in dot_out  # parallel regions
    assert '"player.playback.hist" [label="H*", shape=circle];' in dot_out
    assert '"player.playback.playing" -> "player.playback.paused" [label="done: load"];' in dot_out
    _check_dot(dot_out)


def test_diagram_dot_of_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", "demo", "--format", "dot")
    assert code == EXIT_OK
    assert "compound=true;" in out
    assert '"order.shipped" [label="shipped", peripheries=2];' in out
    # An arrow into a compound state ends at its border (lhead), and one out of it starts there.
    assert (
        '"order.cart" -> "order.payment:initial" [label="CHECKOUT [has_items]", '
        'lhead="cluster_order.payment"];' in out
    )
    assert 'ltail="cluster_order.payment"' in out
    _check_dot(out)


def _check_dot(source: str) -> None:
    dot = shutil.which("dot")
    if dot is None:
        return  # Graphviz is optional; the structure is asserted above
    proc = subprocess.run(
        [dot, "-Tsvg"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no warnings (e.g. about lhead/ltail)


def test_diagram_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diagram", "durable_state._demo:no_such_machine")
    assert (code, out) == (EXIT_USAGE, "")
    assert "has no attribute 'no_such_machine'" in err
    code, _, err = run(capsys, "diagram", "demo", "--format", "svg")
    assert code == EXIT_USAGE
    assert "invalid choice" in err


# --------------------------------------------------------------------------- #
# Arguments, URLs, environment
# --------------------------------------------------------------------------- #


def test_help_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == EXIT_OK
    assert out.startswith("durable-state ")
    code, out, _ = run(capsys, "--help")
    assert code == EXIT_OK
    assert "Exit codes: 0 ok, 1 error, 2 usage" in out
    code, _, err = run(capsys)
    assert code == EXIT_USAGE
    assert "required" in err


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        ("--storage", "ftp://host/x", "unknown storage scheme 'ftp'"),
        ("--storage", "not-a-url", "not a URL"),
        ("--storage", "file://", "no directory"),
        ("--storage", "s3://", "no bucket name"),
        ("--storage", "s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
        ("--storage", "s3://bucket-a?colour=red", "unknown parameter 'colour'"),
        ("--storage", "s3://bucket-a?endpoint_url=localhost:9", "is not an http(s) URL"),
        ("--lock", "dynamodb://", "no table name"),
        ("--lock", "dynamodb://table/x", "has no path"),
        ("--lock", "redis://host", "unknown lock scheme 'redis'"),
    ],
)
def test_bad_urls_are_one_line_usage_errors(
    cwd: Path, capsys: pytest.CaptureFixture[str], option: str, url: str, message: str
) -> None:
    code, out, err = run(capsys, "ls", option, url)
    assert (code, out) == (EXIT_USAGE, "")
    assert err.count("\n") == 1
    assert message in err
    assert repr(url) in err


def test_parse_storage_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse_storage_url("file:///srv/state") == StorageSpec("file", "/srv/state")
    assert parse_storage_url("file://.durable-state") == StorageSpec("file", ".durable-state")
    assert parse_storage_url("file://localhost/srv/x") == StorageSpec("file", "/srv/x")
    assert parse_storage_url("file://~/state") == StorageSpec("file", "/home/someone/state")
    assert parse_storage_url("FILE://a%20b") == StorageSpec("file", "a b")
    assert parse_storage_url("s3://my-bucket") == StorageSpec("s3", "my-bucket", "")
    assert parse_storage_url("s3://my-bucket/actors") == StorageSpec("s3", "my-bucket", "actors/")
    assert parse_storage_url("s3://my-bucket/a/b/").prefix == "a/b/"
    spec = parse_storage_url(
        "s3://my-bucket/p?region=eu-west-1&sse=aws:kms&kms_key_id=k1",
        endpoint_url="http://127.0.0.1:9000",
    )
    assert dict(spec.options) == {
        "region": "eu-west-1",
        "sse": "aws:kms",
        "kms_key_id": "k1",
        "endpoint_url": "http://127.0.0.1:9000",
    }
    # An endpoint in the URL wins over the environment's.
    spec = parse_storage_url("s3://b-1/?endpoint_url=http://a:1", endpoint_url="http://b:2")
    assert spec.options["endpoint_url"] == "http://a:1"
    assert str(parse_storage_url("s3://my-bucket/actors")) == "s3://my-bucket/actors/"
    with pytest.raises(BackendURLError) as info:
        parse_storage_url("s3://b-1?region=")
    assert isinstance(info.value, DurableStateError)
    assert isinstance(info.value, ValueError)
    assert info.value.url == "s3://b-1?region="


def test_parse_lock_urls() -> None:
    assert parse_lock_url("none") == LockSpec("none")
    assert parse_lock_url("NONE") == LockSpec("none")
    assert parse_lock_url("file:///tmp/locks") == LockSpec("file", "/tmp/locks")
    assert parse_lock_url("dynamodb://lockingTable") == LockSpec("dynamodb", "lockingTable")
    spec = parse_lock_url("dynamodb://locks?region=us-east-2", endpoint_url="http://h:1")
    assert dict(spec.options) == {"region": "us-east-2", "endpoint_url": "http://h:1"}
    with pytest.raises(BackendURLError, match="not a valid DynamoDB table name"):
        parse_lock_url("dynamodb://ab")


def test_backend_precedence() -> None:
    empty: dict[str, str] = {}
    assert resolve_backends(None, None, environ=empty) == (
        StorageSpec("file", ".durable-state"),
        LockSpec("file", ".durable-state"),
    )
    assert resolve_backends("file://x", None, environ=empty)[1] == LockSpec("file", "x")
    assert resolve_backends("s3://bucket-a", None, environ=empty)[1] == LockSpec("none")
    env = {ENV_STORAGE: "s3://bucket-b/p", ENV_LOCK: "dynamodb://locks", ENV_ENDPOINT: "http://m:5"}
    storage, lock = resolve_backends(None, None, environ=env)
    assert (storage.location, storage.prefix, lock.location) == ("bucket-b", "p/", "locks")
    assert storage.options["endpoint_url"] == lock.options["endpoint_url"] == "http://m:5"
    # --dir beats the environment; explicit URLs beat --dir.
    assert resolve_backends(None, None, directory="d", environ=env) == (
        StorageSpec("file", "d"),
        LockSpec("file", "d"),
    )
    assert resolve_backends(None, "none", directory="d", environ=env)[1] == LockSpec("none")


def test_missing_aws_extra_is_named(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes "import aioboto3" fail, as without the extra.
    monkeypatch.setitem(sys.modules, "aioboto3", None)
    code, out, err = run(capsys, "ls", "--storage", "s3://bucket-a")
    assert (code, out) == (EXIT_ERROR, "")
    assert 'pip install "durable-state[aws]"' in err
    assert err.count("\n") == 1
    code, _, err = run(capsys, "unlock", "o-1", "--lock", "dynamodb://locks", "--yes")
    assert code == EXIT_ERROR
    assert "DynamoDBLockManager" in err
    assert 'pip install "durable-state[aws]"' in err


# --------------------------------------------------------------------------- #
# S3 and DynamoDB (the moto server, over HTTP)
# --------------------------------------------------------------------------- #


@pytest.fixture
def aws(
    cwd: Path, moto_server: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A new bucket and lock table; the CLI finds them through the environment."""
    pytest.importorskip("aioboto3")
    from durable_state.locks.dynamodb import DynamoDBLockManager

    async def create() -> None:
        import aioboto3

        async with aioboto3.Session().client("s3", **moto_server.client_kwargs()) as s3:
            await s3.create_bucket(Bucket=unique_name)
        async with DynamoDBLockManager(unique_name, **moto_server.client_kwargs()) as locks:
            await locks.create_table()

    asyncio.run(create())
    monkeypatch.setenv(ENV_ENDPOINT, moto_server.url)
    monkeypatch.setenv(ENV_STORAGE, f"s3://{unique_name}/actors")
    monkeypatch.setenv(ENV_LOCK, f"dynamodb://{unique_name}")
    return unique_name, moto_server.url


def test_s3_storage_and_dynamodb_lock(
    aws: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, endpoint = aws
    add_item(capsys, "o-1", "--create", "--event-id", "m-1")
    out = add_item(capsys, "o-1", "--event-id", "m-1")
    assert "already applied; skipped" in out
    code, out, err = run(capsys, "send", "o-1", "CHECKOUT", "--machine", "demo")
    assert code == EXIT_OK, err
    assert run(capsys, "ls") == (EXIT_OK, "o-1\n", "")
    code, out, _ = run(capsys, "show", "o-1")
    assert code == EXIT_OK
    assert f"o-1  (s3://{name}/actors/)" in out
    assert "state      payment.pending" in out
    # DynamoDB tokens start from the clock in ms (see DynamoDBLockManager).
    assert "lease      free\n" in out
    assert stored(capsys, "o-1")["version"].startswith('"')  # an ETag

    # Another prefix of the same bucket is another namespace.
    assert run(capsys, "ls", "--storage", f"s3://{name}/other")[1] == ""

    # A lease taken (and never released) by another client: busy, then unlocked.
    from durable_state.locks.dynamodb import DynamoDBLockManager

    async def take() -> int:
        async with DynamoDBLockManager(name, endpoint_url=endpoint) as locks:
            lease = await locks.acquire("o-1", ttl=300)
            return lease.token

    token = asyncio.run(take())
    code, _, err = run(capsys, "send", "o-1", "PAYMENT_SUCCEEDED", "--machine", "demo")
    assert code == EXIT_CONFLICT
    assert "'o-1' is locked by" in err
    code, out, _ = run(capsys, "show", "o-1")
    assert f"(token {token}) until" in out
    code, out, err = run(capsys, "unlock", "o-1", "--yes")
    assert code == EXIT_OK, err
    code, out, err = run(capsys, "send", "o-1", "PAYMENT_SUCCEEDED", "--machine", "demo")
    assert code == EXIT_OK, err
    assert "payment.pending -> paid" in out

    # rm: refused while another client holds the lease, then a conditional delete.
    asyncio.run(take())
    code, _, err = run(capsys, "rm", "o-1", "--yes")
    assert code == EXIT_CONFLICT, err
    assert run(capsys, "unlock", "o-1", "--yes")[0] == EXIT_OK
    version = stored(capsys, "o-1")["version"]
    code, out, err = run(capsys, "rm", "o-1", "--yes")
    assert code == EXIT_OK, err
    assert out.endswith(f"removed o-1 (version {version})\n")
    assert run(capsys, "ls") == (EXIT_OK, "", "")


def test_s3_missing_bucket_is_not_found_in_one_line(
    cwd: Path, moto_server: Any, capsys: pytest.CaptureFixture[str], unique_name: str
) -> None:
    pytest.importorskip("aioboto3")
    code, out, err = run(
        capsys,
        "show",
        "o-1",
        "--storage",
        f"s3://{unique_name}?endpoint_url={moto_server.url}",
        "--lock",
        "none",
    )
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert err.startswith(f"durable-state: s3://{unique_name}/ does not exist: NoSuchBucket")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- #
# rm
# --------------------------------------------------------------------------- #


def test_rm_asks_then_deletes_the_version_it_showed(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_item(capsys, "o-1", "--create")
    version = stored(capsys, "o-1")["version"]

    # Without --yes and without a terminal to ask on: refused, nothing deleted.
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, err = run(capsys, "rm", "o-1")
    assert code == EXIT_USAGE
    assert "refusing to remove without a terminal to ask on: pass --yes" in err
    # Declined on a terminal: kept.
    monkeypatch.setattr(sys, "stdin", _Tty("n\n"))
    code, out, _ = run(capsys, "rm", "o-1")
    assert code == EXIT_ERROR
    assert out.startswith(f"o-1: cart (active), version {version}; lease free\n")
    assert "Remove it? This cannot be undone. [y/N] " in out
    assert out.endswith("not removed\n")
    assert run(capsys, "ls") == (EXIT_OK, "o-1\n", "")

    monkeypatch.setattr(sys, "stdin", _Tty("y\n"))
    code, out, err = run(capsys, "rm", "o-1")
    assert code == EXIT_OK, err
    assert out.endswith(f"removed o-1 (version {version})\n")
    assert run(capsys, "ls") == (EXIT_OK, "", "")
    assert run(capsys, "rm", "o-1", "--yes")[0] == EXIT_NOT_FOUND
    # The lease rm held for the delete is released.
    add_item(capsys, "o-1", "--create")


class _AnswerAfter(_Tty):
    """A terminal whose user takes a while: ``meanwhile`` runs before the answer."""

    def __init__(self, answer: str, meanwhile: Any) -> None:
        super().__init__(answer)
        self.meanwhile = meanwhile

    def readline(self, size: int | None = -1) -> str:
        self.meanwhile()
        return super().readline()


def test_rm_refuses_when_the_actor_was_saved_after_it_was_shown(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_item(capsys, "o-1", "--create")

    def another_writer() -> None:
        # A send from another process while rm waits for its answer.
        proc = python(
            "-m", "durable_state", "send", "o-1", "CHECKOUT", "--machine", "demo", cwd=cwd
        )
        assert proc.returncode == EXIT_OK, proc.stderr

    monkeypatch.setattr(sys, "stdin", _AnswerAfter("y\n", another_writer))
    code, _, err = run(capsys, "rm", "o-1")
    assert code == EXIT_CONFLICT
    assert "'o-1' was saved again (or removed) after version 1." in err
    assert "not removed" in err
    assert stored(capsys, "o-1")["value"] == {"payment": "pending"}


def test_rm_refuses_while_the_lease_is_held_unless_forced(
    cwd: Path, capsys: pytest.CaptureFixture[str], hold_lease: Any
) -> None:
    add_item(capsys, "o-1", "--create")
    holder = hold_lease("o-1")
    code, out, err = run(capsys, "rm", "o-1", "--yes")
    assert code == EXIT_CONFLICT
    assert "o-1: cart (active), version 1." in out
    assert f":{holder.pid}:" in out  # who holds it, before refusing
    assert "'o-1' is locked by " in err
    assert "durable-state rm o-1 --force" in err
    assert run(capsys, "ls")[1] == "o-1\n"

    code, out, err = run(capsys, "rm", "o-1", "--yes", "--force")
    assert code == EXIT_OK, err
    assert "the lease is held by" in out
    assert "removing anyway (--force)" in out
    assert run(capsys, "ls")[1] == ""
    assert holder.poll() is None  # its lease was not touched


def test_rm_removes_an_unreadable_snapshot_and_works_without_a_lock(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from durable_state.storage import LocalFileStorage

    async def corrupt() -> None:
        async with LocalFileStorage(".durable-state") as storage:
            await storage.write("bad-1", b"not json", if_version=None)

    asyncio.run(corrupt())
    code, out, _ = run(capsys, "ls", "-l")
    assert code == EXIT_OK
    assert out.startswith("bad-1  (unreadable: corrupt snapshot at 'bad-1': not valid UTF-8 JSON")
    code, out, err = run(capsys, "rm", "bad-1", "--yes", "--lock", "none")
    assert code == EXIT_OK, err
    assert out.startswith("bad-1: unreadable (not valid UTF-8 JSON")
    assert "lease none (no lock configured)" in out
    assert run(capsys, "ls")[1] == ""


# --------------------------------------------------------------------------- #
# Friendlier errors: suggestions, permissions, timeouts
# --------------------------------------------------------------------------- #


def test_a_mistyped_machine_gets_a_suggestion(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "send", "o-1", "ADD_ITEM", "--machine", "demp", "--create")
    assert code == EXIT_USAGE
    assert err.rstrip().endswith("did you mean 'demo'?")
    code, _, err = run(capsys, "diagram", "durable_state._demo:order_machin")
    assert code == EXIT_USAGE
    assert err.rstrip().endswith("did you mean 'order_machine'?")
    code, _, err = run(capsys, "diagram", "zzz")
    assert code == EXIT_USAGE
    assert "did you mean" not in err


#: Every permission error, whichever backend refused.
PERMISSION_LINE = re.compile(
    r"durable-state: permission denied: \w+( '[^']+')? in \S+: .+ \(check .+\)\n"
)


def test_a_directory_the_user_may_not_read_is_permission_denied(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import durable_state.storage.local as local

    add_item(capsys, "o-1", "--create")
    path = str(cwd / ".durable-state")

    def denied(*args: Any) -> Any:
        # What the OS says to a user without read permission on the directory.
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(local, "_scan", denied)
    monkeypatch.setattr(local, "_read_file", denied)
    for argv in (["ls"], ["show", "o-1"], ["rm", "o-1", "--yes"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (EXIT_PERMISSION, ""), err
        assert PERMISSION_LINE.fullmatch(err), err
        assert f"in file://.durable-state: [Errno 13] Permission denied: '{path}'" in err
        assert "(check the permissions of that directory for this user)" in err
    assert "read 'o-1' in" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory; the test above fakes it")
def test_a_directory_without_permissions_for_real(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_item(capsys, "o-1", "--create")
    (cwd / ".durable-state").chmod(0)
    try:
        code, out, err = run(capsys, "ls")
    finally:
        (cwd / ".durable-state").chmod(0o755)
    assert (code, out) == (EXIT_PERMISSION, "")
    assert PERMISSION_LINE.fullmatch(err), err


class _Refusing(http.server.BaseHTTPRequestHandler):
    """AWS refusing everything: S3's 403 AccessDenied, DynamoDB's AccessDeniedException."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.headers.get("X-Amz-Target", "").startswith("DynamoDB"):
            status, kind = 400, "application/x-amz-json-1.0"
            body = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
                    "message": "User: arn:aws:iam::123456789012:user/ci is not authorized "
                    "to perform: dynamodb:GetItem",
                }
            ).encode()
        else:
            status, kind = 403, "application/xml"
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message><RequestId>R1</RequestId></Error>"
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aioboto3")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def refusing_aws(dummy_credentials: None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_aws_access_denied_is_permission_denied_in_the_same_shape(
    cwd: Path, capsys: pytest.CaptureFixture[str], refusing_aws: str
) -> None:
    storage = f"s3://acme-state/actors?endpoint_url={refusing_aws}"
    lock = f"dynamodb://acme-locks?endpoint_url={refusing_aws}"
    code, out, err = run(capsys, "show", "o-1", "--storage", storage, "--lock", "none")
    assert (code, out) == (EXIT_PERMISSION, ""), err
    assert PERMISSION_LINE.fullmatch(err), err
    assert err == (
        "durable-state: permission denied: read 'o-1' in s3://acme-state/actors/: "
        "AccessDenied (HTTP 403): Access Denied "
        "(check the IAM policy of the AWS credentials in use)\n"
    )
    code, out, err = run(capsys, "ls", "--storage", storage, "--lock", "none")
    assert (code, out) == (EXIT_PERMISSION, ""), err
    assert PERMISSION_LINE.fullmatch(err), err
    code, out, err = run(capsys, "unlock", "o-1", "--yes", "--lock", lock)
    assert (code, out) == (EXIT_PERMISSION, ""), err
    assert PERMISSION_LINE.fullmatch(err), err
    assert "in dynamodb://acme-locks: AccessDeniedException (HTTP 400): User: " in err


@pytest.fixture
def silent_endpoint(dummy_credentials: None) -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung proxy, say)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections queue up in the kernel; nobody accepts them
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_endpoint_that_does_not_answer_fails_within_the_timeout(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    silent_endpoint: str,
    how: str,
) -> None:
    argv = ["ls", "--storage", f"s3://acme-state?endpoint_url={silent_endpoint}"]
    if how == "option":
        argv += ["--timeout", "0.3"]
    else:
        monkeypatch.setenv(ENV_TIMEOUT, "0.3")
    started = time.monotonic()
    code, out, err = run(capsys, *argv)
    elapsed = time.monotonic() - started
    assert (code, out) == (EXIT_ERROR, "")
    assert "ReadTimeoutError" in err
    assert f"(gave up after {ATTEMPTS} attempts; --timeout SECONDS or ${ENV_TIMEOUT}" in err
    assert err.count("\n") == 1
    # Two attempts of 0.3 s and a little backoff: about a second. botocore's
    # defaults wait 60 s for each of up to five attempts; the bound leaves
    # room for a loaded machine and still tells the two apart.
    assert elapsed < 20


def test_timeout_values(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable_state.cli import _timeout, build_parser

    parser = build_parser()
    assert _timeout(parser.parse_args(["ls"])) == DEFAULT_TIMEOUT == 3.0
    assert _timeout(parser.parse_args(["ls", "--timeout", "7.5"])) == 7.5
    monkeypatch.setenv(ENV_TIMEOUT, "12")
    assert _timeout(parser.parse_args(["ls"])) == 12.0
    assert _timeout(parser.parse_args(["ls", "--timeout", "1"])) == 1.0  # the option wins
    monkeypatch.setenv(ENV_TIMEOUT, "soon")
    with pytest.raises(UsageError, match=f"{ENV_TIMEOUT}: not a number of seconds"):
        _timeout(parser.parse_args(["ls"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["ls", "--timeout", "0"])


def test_the_timeout_reaches_the_aws_clients(dummy_credentials: None) -> None:
    spec = parse_storage_url("s3://acme-state/actors")
    storage: Any = spec.open(timeout=1.5)
    config = storage._aws._session.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": ATTEMPTS}
    lock: Any = parse_lock_url("dynamodb://acme-locks").open(timeout=1.5)
    assert lock._aws._session.config.read_timeout == 1.5
    # Without a timeout the library's defaults stand (a session of its own).
    assert parse_storage_url("s3://acme-state").open()._aws._session is None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- #
# docs/cli.md
# --------------------------------------------------------------------------- #

CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
_EXAMPLE = re.compile(
    r"^<!-- cli-example: (?P<name>[\w-]+) -->\n```console\n(?P<body>.*?)^```\n", re.M | re.S
)
#: What may differ between the page and a run: versions, moments, how far off
#: they are, lease owners and fencing tokens.
_VARYING = [
    (re.compile(r"\b\d+\.[0-9a-f]{16,}\b"), "<version>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"\((?:in )?\d+(?:\.\d+)? (?:s|min|h|days)(?: ago)?\)"), "(<in>)"),
    (re.compile(r"[\w.-]+:\d+:[0-9a-f]{25,}"), "<owner>"),
    (re.compile(r"\(token \d+\)"), "(token <n>)"),
]


def _normal(text: str) -> list[str]:
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def cli_examples(page: Path = CLI_PAGE) -> dict[str, list[tuple[list[str], str]]]:
    """The page's marked console blocks: per name, each command with the output shown."""
    text = page.read_text(encoding="utf-8")
    examples: dict[str, list[tuple[list[str], str]]] = {}
    for match in _EXAMPLE.finditer(text):
        commands: list[tuple[list[str], str]] = []
        for line in match.group("body").splitlines():
            if line.startswith("$ "):
                words = shlex.split(line[2:])
                assert words[0] == "durable-state", line
                commands.append((words[1:], ""))
            else:
                argv, shown = commands[-1]
                commands[-1] = (argv, shown + line + "\n")
        assert match.group("name") not in examples, f"two examples named {match.group('name')}"
        examples[match.group("name")] = commands
    assert text.count("<!-- cli-example:") == len(examples), "a marker without a console block"
    return examples


class _EchoingTty(_Tty):
    """A terminal: what is typed appears in the output, after the question."""

    def readline(self, size: int | None = -1) -> str:
        answer = super().readline()
        sys.stdout.write(answer)
        return answer


def test_the_cli_page_shows_what_the_commands_print(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    hold_lease: Any,
) -> None:
    examples = cli_examples()
    assert set(examples) == {"send", "ls", "show", "unlock", "rm", "diagram"}
    for name in ("send", "ls", "show", "unlock", "rm"):
        if name == "unlock":
            hold_lease("order-7")  # a holder that hung, for unlock to release
        for argv, shown in examples[name]:
            answer = "y\n" if "[y/N] y" in shown else ""
            monkeypatch.setattr(sys, "stdin", _EchoingTty(answer))
            code, out, err = run(capsys, *argv)
            assert code == EXIT_OK, err
            assert _normal(out + err) == _normal(shown), f"{name}: durable-state {shlex.join(argv)}"
    # The diagram's output is the Mermaid block that follows the command.
    ((argv, shown),) = examples["diagram"]
    assert shown == ""
    page = CLI_PAGE.read_text(encoding="utf-8")
    mermaid = page[page.index("```mermaid\n", page.index("<!-- cli-example: diagram -->")) :]
    mermaid = mermaid[len("```mermaid\n") : mermaid.index("```", len("```mermaid\n"))]
    assert run(capsys, *argv) == (EXIT_OK, mermaid, "")


def test_the_example_check_notices_a_difference(tmp_path: Path) -> None:
    page = tmp_path / "cli.md"
    page.write_text(
        "<!-- cli-example: ls -->\n```console\n$ durable-state ls -l\n"
        "o-1  active  cart  version 1.0123456789abcdef\n```\n"
    )
    ((argv, shown),) = cli_examples(page)["ls"]
    assert argv == ["ls", "-l"]
    assert _normal(shown) == ["o-1  active  cart  version <version>"]
    assert _normal(shown) != _normal("o-1  active  payment.pending  version 2.0123456789abcdef\n")


# --------------------------------------------------------------------------- #
# The formatting helpers and read_persisted
# --------------------------------------------------------------------------- #


def test_durations_and_timer_names_are_written_one_way() -> None:
    from durable_state._format import delay, duration, timer_name

    assert [duration(s) for s in (1.25, 600, 5400, 7200, 3 * 86400, -2)] == [
        "1.2 s",
        "10 min",
        "1.5 h",  # one decimal for hours everywhere (the demo used to round to "2 h")
        "2.0 h",
        "3 days",
        "-2.0 s",
    ]
    assert [delay(ms) for ms in (250, 1500, 15 * 60_000, 2 * 3_600_000)] == [
        "250 ms",
        "1.5 s",
        "15 min",
        "2 h",
    ]
    ids = ("order", "order.payment", "order.payment.declined", "m", "m.2.x")
    assert timer_name("xstate.after.retry_backoff.order.payment.declined", ids) == (
        "after retry_backoff in #order.payment.declined"
    )
    assert timer_name("xstate.after.retry_backoff.order.payment.declined") == (
        "after retry_backoff in #order.payment.declined"
    )
    assert timer_name("xstate.after.1500.m") == "after 1.5 s in #m"
    # With the machine's ids the state id is exact, even where a number could be read in it.
    assert timer_name("xstate.after.10.m.2.x", ids) == "after 10 ms in #m.2.x"
    assert timer_name("PING") == "PING"


async def test_read_persisted_decodes_without_the_machine(tmp_path: Path) -> None:
    from durable_state import SnapshotCorrupt, persisted_actor
    from durable_state._demo import order_machine
    from durable_state.persisted import read_persisted
    from durable_state.storage import MemoryStorage

    storage = MemoryStorage()
    async with persisted_actor("o-1", order_machine, storage=storage) as actor:
        await actor.send({"type": "ADD_ITEM", "sku": "mug", "price": 8}, event_id="m-1")
        await actor.send("CHECKOUT")
    view = await read_persisted(storage, "o-1")
    assert view["version"] == actor.version
    assert (view["machine"], view["machine_version"]) == ("order", 1)
    assert (view["status"], view["value"]) == ("active", {"payment": "pending"})
    assert view["processed"] == ("m-1",)
    (timer,) = view["timers"]
    assert timer.event["type"] == "xstate.after.payment_timeout.order.payment"
    assert view["next_timer_at"] == timer.due_ms == actor.next_timer_at
    assert view["document"]["$durable"]["machine"] == "order"
    with pytest.raises(TypeError):
        view["version"] = "x"  # type: ignore[index]

    with pytest.raises(ActorNotFound):
        await read_persisted(storage, "ghost")
    for bad, why in [
        (b"[]", "expected a JSON object"),
        (b'{"$durable": {"timers": [{"id": 1}]}}', "timers[0] is malformed"),
        (b'{"$durable": {"processed": [1]}}', "processed is not a list of strings"),
    ]:
        await storage.write("bad", bad)
        with pytest.raises(SnapshotCorrupt, match=re.escape(why)):
            await read_persisted(storage, "bad")


def test_wake_fires_due_timers_once_and_reports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reminders.py").write_text(
        textwrap.dedent(
            """
            from durable_state import Machine, assign

            reminder = Machine(
                {
                    "id": "reminder",
                    "initial": "waiting",
                    "context": {"sent": 0},
                    "states": {
                        "waiting": {"after": {"100": {"target": "sent", "actions": "send"}},
                                    "on": {"HELLO": {}}},
                        "sent": {},
                    },
                },
                actions={"send": assign(lambda c, e: {"sent": c["sent"] + 1})},
            )
            """
        )
    )
    code, _, err = run(
        capsys, "send", "r-1", "HELLO", "--machine", "reminders:reminder", "--create"
    )
    assert code == EXIT_OK, err
    code, out, _ = run(capsys, "wake", "--machine", "reminders:reminder", "--once")
    assert (code, out.strip()) == (EXIT_OK, "woke 0 actors")  # not due yet
    time.sleep(0.15)
    code, out, _ = run(capsys, "wake", "--machine", "reminders:reminder", "--once")
    assert (code, out.strip()) == (EXIT_OK, "woke 1 actor")
    code, out, _ = run(capsys, "show", "r-1", "--json")
    assert json.loads(out)["context"]["sent"] == 1
    code, _, err = run(capsys, "wake", "--once")
    assert code == EXIT_USAGE
    assert "wake needs --machine" in err


def test_show_lists_the_outbox_inbox_and_dead_letters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from durable_state import ActorSystem
    from durable_state._demo import order_machine
    from durable_state.locks import FileLockManager
    from durable_state.storage import LocalFileStorage

    monkeypatch.chdir(tmp_path)

    async def setup() -> None:
        async with (
            LocalFileStorage(".durable-state") as storage,
            FileLockManager(".durable-state") as locks,
            FileLockManager(".durable-state") as other,
        ):
            system = ActorSystem([order_machine], storage=storage, lock=locks)
            async with system.actor("shop", "order") as shop:
                shop.post("o-9", {"type": "ADD_ITEM", "sku": "pen", "price": 1.0}, machine="order")
                shop.post("ghost", {"type": "ADD_ITEM"})  # nobody to create it: dead
            await system.idle()
            held = await other.acquire("o-9", ttl=60)  # the receiver is busy: stays in the outbox
            async with system.actor("shop") as shop:
                shop.post("o-9", {"type": "CHECKOUT"})
            await system.idle()
            await other.release(held)

    asyncio.run(setup())
    code, out, err = run(capsys, "show", "shop")
    assert code == EXIT_OK, err
    assert 'outbox     #3 to o-9: {"type": "CHECKOUT"}' in out
    assert "dead       #2 to ghost" in out
    assert "no actor 'ghost'" in out
    code, out, _ = run(capsys, "show", "o-9")
    assert "inbox      from shop: up to #1" in out
