"""The ``durable-state`` command (also ``python -m durable_state``).

Commands::

    durable-state demo                       an order workflow, step by step, on local files
    durable-state ls                         the actor ids in the storage
    durable-state show ACTOR_ID              snapshot, pending timers, lease holder
    durable-state send ACTOR_ID EVENT --machine module:attr [--data JSON] [--event-id ID]
    durable-state rm ACTOR_ID [--yes] [--force]   delete a stored actor
    durable-state unlock ACTOR_ID [--yes]    force-release a stale lease
    durable-state wake --machine module:attr ... [--once]   fire due timers (a waker)
    durable-state diagram module:attr [--format mermaid|dot] [--no-children]

Backends are named by URL (``--storage file://DIR | s3://BUCKET/PREFIX |
dynamodb://TABLE/PREFIX``,
``--lock file://DIR | dynamodb://TABLE | none``) or by the environment
variables ``DURABLE_STATE_STORAGE``, ``DURABLE_STATE_LOCK`` and
``DURABLE_STATE_ENDPOINT_URL``; the default is ``./.durable-state`` for both.
S3 and DynamoDB requests give up after ``--timeout`` seconds per attempt
(``DURABLE_STATE_TIMEOUT``, default 3), two attempts at most.

Exit codes (scripts may rely on them): 0 success; 1 error (backend failure,
corrupt snapshot, an implementation raised); 2 usage (bad arguments, bad URL,
a ``--machine`` that cannot be loaded); 3 not found (no such actor, or no such
storage directory, bucket or lock table); 4 conflict (the lease is held
elsewhere, or another writer saved first); 5 permission denied (by the file
system or by AWS); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import importlib
import json
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import anyio
import anyio.to_thread

from . import __version__
from ._format import format_value, timer_name, when
from ._urls import ATTEMPTS, DEFAULT_DIR, ENV_LOCK, ENV_STORAGE, resolve_backends
from .errors import (
    ActorNotFound,
    BackendURLError,
    DurableStateError,
    InvalidEvent,
    InvalidKey,
    LockError,
    LockLost,
    LockTimeout,
    LockUnavailable,
    MissingDependency,
    SnapshotCorrupt,
    StorageError,
    StorageUnavailable,
    VersionConflict,
)
from .locks import Lease, LockManager
from .statechart import Machine

__all__ = (
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_USAGE",
    "main",
)

EXIT_OK: Final = 0
#: A backend failed, a snapshot is corrupt or incompatible, an implementation raised.
EXIT_ERROR: Final = 1
#: Bad arguments, a bad backend URL, a ``--machine`` that cannot be loaded.
EXIT_USAGE: Final = 2
#: The actor does not exist, or its storage directory, bucket or lock table does not.
EXIT_NOT_FOUND: Final = 3
#: The lease is held elsewhere, was lost, or another writer saved first.
EXIT_CONFLICT: Final = 4
#: The file system or AWS refused the operation (permissions, credentials).
EXIT_PERMISSION: Final = 5
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED: Final = 130

#: Environment variable naming the machine for ``send`` when ``--machine`` is not given.
ENV_MACHINE: Final = "DURABLE_STATE_MACHINE"
#: Environment variable with ``--timeout``'s value when the option is not given.
ENV_TIMEOUT: Final = "DURABLE_STATE_TIMEOUT"
#: Seconds an S3 or DynamoDB request may take to connect, and then to answer, per attempt.
DEFAULT_TIMEOUT: Final = 3.0
#: ``--machine demo`` names the order machine of ``durable-state demo``.
DEMO_MACHINE: Final = "demo"

_PROG: Final = "durable-state"


class UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


class Failure(Exception):
    """An expected failure that is not a library exception: one line, exit code 1."""


class NotFound(Exception):
    """The storage directory, bucket or lock table named does not exist: exit code 3."""


class Conflict(Exception):
    """Refused because of someone else's lease or write: exit code 4."""


class PermissionDenied(Exception):
    """The file system or AWS refused an operation: exit code 5.

    Every refusal reads the same, whichever backend refused::

        permission denied: OPERATION [KEY] in URL: DETAIL (HINT)
    """

    def __init__(self, operation: str, key: str | None, url: str, detail: str, hint: str) -> None:
        self.operation = operation
        self.key = key
        self.url = url
        self.detail = detail
        what = f"{operation} {key!r}" if key is not None else operation
        super().__init__(f"permission denied: {what} in {url}: {detail} ({hint})")


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict,
        130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    command: Callable[[argparse.Namespace], int] = args.handler
    try:
        return command(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``durable-state ls | head -1``): not an error.
        # Point stdout at /dev/null so that the interpreter's final flush is quiet.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the top of the command: every error becomes one line
        code, message = _classify(exc)
        _err(message)
        if args.traceback:
            traceback.print_exception(exc, file=sys.stderr)
        elif code == EXIT_ERROR and not isinstance(exc, DurableStateError | Failure):
            _err("(run again with --traceback to see where it came from)")
        return code


def _classify(exc: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for an exception."""
    if isinstance(exc, UsageError | BackendURLError | InvalidKey | InvalidEvent):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, ActorNotFound | NotFound):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, PermissionDenied):
        return EXIT_PERMISSION, str(exc)
    if isinstance(exc, LockTimeout):
        holder = f" by {exc.holder}" if exc.holder else ""
        until = f" until {when(exc.expires_at, time.time())}" if exc.expires_at else ""
        return EXIT_CONFLICT, (
            f"{exc.key!r} is locked{holder}{until}. Retry later, wait with --wait SECONDS, "
            f"or, if its holder is gone, release it with: {_PROG} unlock {_shell_quote(exc.key)}"
        )
    if isinstance(exc, LockLost | VersionConflict | Conflict):
        return EXIT_CONFLICT, str(exc)
    if isinstance(exc, StorageUnavailable | LockUnavailable) and _timed_out(exc):
        return EXIT_ERROR, (
            f"{exc} (gave up after {ATTEMPTS} attempts; --timeout SECONDS or "
            f"${ENV_TIMEOUT} waits longer per attempt)"
        )
    if isinstance(exc, MissingDependency | DurableStateError | Failure):
        return EXIT_ERROR, str(exc)
    # Raised by user code (an action, a guard, a machine module): name it.
    return EXIT_ERROR, f"{type(exc).__name__}: {exc}"


def _err(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- #
# Arguments
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``durable-state``.

    Returns:
        The parser; each sub-command stores its function as ``handler``.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log what the library does (-vv: more)"
    )
    common.add_argument(
        "--traceback", action="store_true", help="print the full traceback of an error"
    )

    backends = argparse.ArgumentParser(add_help=False)
    group = backends.add_argument_group("backends")
    group.add_argument(
        "--storage",
        metavar="URL",
        help=(
            f"file://DIR, s3://BUCKET/PREFIX or dynamodb://TABLE/PREFIX (default: ${ENV_STORAGE}, "
            f"else file://{DEFAULT_DIR})"
        ),
    )
    group.add_argument(
        "--lock",
        metavar="URL",
        help=f"file://DIR, dynamodb://TABLE or none (default: ${ENV_LOCK}, else the storage's "
        "directory for file storage and none for S3)",
    )
    group.add_argument(
        "--dir", metavar="DIR", help="shorthand for --storage file://DIR --lock file://DIR"
    )
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"how long an S3 or DynamoDB request may take to connect, and then to answer, "
        f"per attempt ({ATTEMPTS} attempts at most; default: ${ENV_TIMEOUT}, else "
        f"{DEFAULT_TIMEOUT:g})",
    )

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Persisted statechart actors: run the demo, inspect and drive stored actors.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict or lock busy, "
        "5 permission denied, 130 interrupted.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="drive an order workflow across separate invocations on local files",
        description="Drive one order (cart, checkout, a declined payment retried after a "
        "durable timer, shipping) across separate invocations, each loading, leasing and "
        "saving the order in a local directory.",
    )
    demo.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"where to keep the order (default: {DEFAULT_DIR})"
    )
    demo.add_argument(
        "--reset", action="store_true", help="delete the orders of earlier demo runs first"
    )
    demo.set_defaults(handler=_cmd_demo)

    ls = sub.add_parser("ls", parents=[common, backends], help="list the actor ids in the storage")
    ls.add_argument("--prefix", default="", help="only ids starting with this")
    ls.add_argument(
        "-l", "--long", action="store_true", help="also show status, state, version, next timer"
    )
    ls.set_defaults(handler=_cmd_ls)

    show = sub.add_parser(
        "show",
        parents=[common, backends],
        help="show an actor's snapshot, pending timers and lease",
    )
    show.add_argument("actor_id", metavar="ACTOR_ID")
    show.add_argument("--json", action="store_true", help="print the stored snapshot as JSON")
    show.set_defaults(handler=_cmd_show)

    send = sub.add_parser(
        "send",
        parents=[common, backends],
        help="send an event to a stored actor and save it",
        description="Load the actor (taking its lease), send one event, save with a "
        "compare-and-set and release the lease.",
    )
    send.add_argument("actor_id", metavar="ACTOR_ID")
    send.add_argument("event", metavar="EVENT", help="the event type, e.g. CHECKOUT")
    send.add_argument(
        "--data", metavar="JSON", help='more event fields as a JSON object, e.g. \'{"sku": "mug"}\''
    )
    send.add_argument(
        "--event-id", metavar="ID", help="an id for idempotent delivery (a repeat is skipped)"
    )
    send.add_argument(
        "--machine",
        metavar="MODULE:ATTR",
        help=f"the machine (a Machine or a function returning one; default: ${ENV_MACHINE}; "
        f"'{DEMO_MACHINE}' is the demo's order machine)",
    )
    send.add_argument("--create", action="store_true", help="create the actor if it does not exist")
    send.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="wait this long for a busy lease (default: fail at once, exit code 4)",
    )
    send.add_argument("--json", action="store_true", help="print the outcome as JSON")
    send.set_defaults(handler=_cmd_send)

    rm = sub.add_parser(
        "rm",
        parents=[common, backends],
        help="delete a stored actor",
        description="Delete the actor's snapshot: only the version it shows (a save made "
        "in between keeps the actor), and only while nobody holds its lease.",
    )
    rm.add_argument("actor_id", metavar="ACTOR_ID")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rm.add_argument(
        "--force",
        action="store_true",
        help="delete even while another process holds the lease (its next save then fails)",
    )
    rm.set_defaults(handler=_cmd_rm)

    unlock = sub.add_parser(
        "unlock",
        parents=[common, backends],
        help="force-release an actor's lease (when its holder is gone)",
    )
    unlock.add_argument("actor_id", metavar="ACTOR_ID")
    unlock.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    unlock.set_defaults(handler=_cmd_unlock)

    wake = sub.add_parser(
        "wake",
        parents=[common, backends],
        help="fire the timers that are due (once, or as a worker until stopped)",
        description="Read the storage's due index and step every actor whose timer is "
        "due: loading fires the timers, a compare-and-set save keeps the result. "
        "Without --once it keeps going, every --interval seconds, until SIGTERM or "
        "Ctrl-C. Any number of wakers may run at once.",
    )
    wake.add_argument(
        "--machine",
        metavar="MODULE:ATTR",
        action="append",
        help=f"a machine whose actors may be due (repeat for several; default: "
        f"${ENV_MACHINE}; '{DEMO_MACHINE}' is the demo's)",
    )
    wake.add_argument("--once", action="store_true", help="one pass, then exit (for cron)")
    wake.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between passes (default 1)",
    )
    wake.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="actors visited at once"
    )
    wake.set_defaults(handler=_cmd_wake)

    diagram = sub.add_parser(
        "diagram",
        parents=[common],
        help="draw a machine as a Mermaid or Graphviz statechart",
    )
    diagram.add_argument(
        "machine", metavar="MODULE:ATTR", help=f"the machine ('{DEMO_MACHINE}': the demo's)"
    )
    diagram.add_argument(
        "--format",
        choices=("mermaid", "dot"),
        default="mermaid",
        help="mermaid (stateDiagram-v2, default) or dot (Graphviz)",
    )
    diagram.add_argument(
        "--no-children",
        dest="children",
        action="store_false",
        help="leave out the child machines it invokes or spawns (they stay listed on their states)",
    )
    diagram.set_defaults(handler=_cmd_diagram)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds > 0: {text!r}")
    return value


def _timeout(args: argparse.Namespace) -> float:
    """``--timeout``, else ``$DURABLE_STATE_TIMEOUT``, else the default."""
    if args.timeout is not None:
        return float(args.timeout)
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        return _positive_seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"${ENV_TIMEOUT}: {exc}") from None


# --------------------------------------------------------------------------- #
# Machines by name
# --------------------------------------------------------------------------- #


def load_machine(spec: str) -> Machine:
    """Import ``module:attr`` (a :class:`Machine`, or a function returning one).

    The working directory is importable, as with ``python -m``. ``"demo"``
    names the demo's order machine.

    Args:
        spec: ``"package.module:attribute"`` (the attribute may be dotted).

    Returns:
        The machine.

    Raises:
        UsageError: the spec is malformed, the module or attribute is missing,
            or the object is not a machine.
        Failure: importing the module or building the machine raised.
    """
    if spec == DEMO_MACHINE:
        from ._demo import order_machine

        return order_machine
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"--machine {spec!r}: expected MODULE:ATTR, e.g. myapp.machines:order_machine, "
            f"or {DEMO_MACHINE!r}{_did_you_mean(spec, [DEMO_MACHINE])}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"machine {spec!r}: no module named {exc.name!r}") from None
        raise Failure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise Failure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [name for name in dir(obj) if not name.startswith("_")]
            raise UsageError(
                f"machine {spec!r}: module {module_name!r} has no attribute {attr!r}"
                f"{_did_you_mean(part, names)}"
            ) from None
    if not isinstance(obj, Machine) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise Failure(f"{spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Machine):
        raise UsageError(f"machine {spec!r} is a {type(obj).__name__}, not a durable_state.Machine")
    return obj


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- #
# Output helpers
# --------------------------------------------------------------------------- #


def _out(text: str = "") -> None:
    print(text, flush=True)


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=indent is not None)


def _block(label: str, value: Any) -> None:
    """A label and a JSON value; a long mapping gets one ``key=value`` line per key."""
    rendered = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(rendered) <= 88 or not isinstance(value, Mapping) or not value:
        _out(f"  {label:<10} {rendered}")
        return
    for i, (key, item) in enumerate(sorted(value.items())):
        text = json.dumps(item, ensure_ascii=False, sort_keys=True)
        _out(f"  {label if i == 0 else '':<10} {key}={text}")


# --------------------------------------------------------------------------- #
# Backends
# --------------------------------------------------------------------------- #


@dataclass
class _Backends:
    storage: Any
    lock: Any
    storage_url: str
    lock_url: str


@contextlib.asynccontextmanager
async def _open_backends(
    args: argparse.Namespace,
    *,
    storage: bool = True,
    lock: bool = True,
    must_exist: bool = False,
) -> AsyncIterator[_Backends]:
    """Open the storage and lock the arguments name; map their refusals to one shape.

    Args:
        args: the parsed arguments (``--storage``, ``--lock``, ``--dir``, ``--timeout``).
        storage: open the storage.
        lock: open the lock manager.
        must_exist: a file storage's directory (or, without a storage, a file
            lock's) must exist already; a command that only reads must not
            report an empty listing for a mistyped ``--dir``.

    Raises:
        NotFound: the directory, bucket or table does not exist.
        PermissionDenied: the file system or AWS refused an operation.
    """
    storage_spec, lock_spec = resolve_backends(args.storage, args.lock, directory=args.dir)
    timeout = _timeout(args)
    storage_url, lock_url = str(storage_spec), str(lock_spec)
    if must_exist:
        if storage:
            _require_directory(storage_spec.scheme, storage_spec.location, "storage")
        elif lock_spec.scheme == "file":
            _require_directory(lock_spec.scheme, lock_spec.location, "lock")
    try:
        async with contextlib.AsyncExitStack() as stack:
            store = (
                await stack.enter_async_context(storage_spec.open(timeout=timeout))
                if storage
                else None
            )
            manager = lock_spec.open(timeout=timeout) if lock else None
            if manager is not None:
                await stack.enter_async_context(manager)
            yield _Backends(store, manager, storage_url, lock_url)
    except (StorageError, LockError) as exc:
        url = storage_url if isinstance(exc, StorageError) else lock_url
        denied = _permission_problem(exc)
        if denied is not None:
            scheme = storage_spec.scheme if isinstance(exc, StorageError) else lock_spec.scheme
            hint = (
                "check the permissions of that directory for this user"
                if scheme == "file"
                else "check the IAM policy of the AWS credentials in use"
            )
            operation = getattr(exc, "operation", "access")
            raise PermissionDenied(operation, exc.key, url, denied, hint) from exc
        missing = _missing_resource(exc)
        if missing is not None:
            raise NotFound(f"{url} does not exist: {missing}") from exc
        raise


def _require_directory(scheme: str, location: str, what: str) -> None:
    if scheme == "file" and not os.path.isdir(location):
        raise NotFound(
            f"no {what} directory {location!r} (nothing has been stored there; "
            f"check --dir, --{what} or the working directory)"
        )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# The backends translate driver errors into StorageUnavailable / LockUnavailable
# and chain the original; these are the codes AWS uses for "not allowed" and
# "does not exist". They are read here, in this one place, because the
# library's errors do not yet say which kind of failure they carry.
_AWS_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
_AWS_MISSING: Final = frozenset({"NoSuchBucket", "ResourceNotFoundException"})
_TIMEOUTS: Final = frozenset(
    {"ConnectTimeoutError", "ReadTimeoutError", "ConnectTimeout", "ReadTimeout"}
)


def _aws_error(exc: BaseException) -> tuple[str, int | None, str]:
    """The error code, HTTP status and message of a botocore ``ClientError``-like exception."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return "", None, ""
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code = error.get("Code") if isinstance(error, Mapping) else None
    message = error.get("Message") if isinstance(error, Mapping) else None
    return (
        code if isinstance(code, str) else "",
        status if isinstance(status, int) else None,
        message if isinstance(message, str) and message else str(exc),
    )


def _permission_problem(exc: BaseException) -> str | None:
    """What refused the operation, if a permission or credential problem caused ``exc``."""
    for cause in _causes(exc):
        if isinstance(cause, PermissionError):
            return str(cause)
        code, status, message = _aws_error(cause)
        if code in _AWS_DENIED or (status == 403 and code not in _AWS_MISSING):
            return f"{code or 'Forbidden'} (HTTP {status}): {message}"
    return None


def _missing_resource(exc: BaseException) -> str | None:
    for cause in _causes(exc):
        code, status, message = _aws_error(cause)
        if code in _AWS_MISSING:
            return f"{code} (HTTP {status}): {message}"
    return None


def _timed_out(exc: BaseException) -> bool:
    return any(type(cause).__name__ in _TIMEOUTS for cause in _causes(exc))


# --------------------------------------------------------------------------- #
# Leases: peek and force-release
# --------------------------------------------------------------------------- #


async def peek_lease(lock: LockManager, key: str) -> Lease | None:
    """The lease holding ``key`` now (see :meth:`LockManager.peek`), or ``None``.

    Raises:
        LockUnavailable: the backend failed.
    """
    return await lock.peek(key)


def _lease_text(lease: Lease | None, now: float) -> str:
    if lease is None:
        return "free"
    until = when(lease.expires_at, now)
    return f"held by {lease.owner} (token {lease.token}) until {until}"


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #


def _cmd_demo(args: argparse.Namespace) -> int:
    """``durable-state demo``: the order workflow, step by step."""
    from ._demo import reset, run_demo

    directory: str = args.dir

    async def run() -> str:
        if args.reset:
            removed = await reset(directory)
            _out(f"removed {removed} order(s) of earlier runs from {directory}/")
        return await run_demo(directory, out=_out)

    actor_id = asyncio.run(run())
    where = "" if directory == DEFAULT_DIR else f" --dir {_shell_quote(directory)}"
    _out("Look at what is stored:")
    _out(f"  {_PROG} ls{where}")
    _out(f"  {_PROG} show {actor_id}{where}")
    _out(f"  {_PROG} diagram demo")
    _out(f"  {_PROG} wake --machine demo --once{where}   # what a waker does, once")
    return EXIT_OK


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


def _cmd_ls(args: argparse.Namespace) -> int:
    """``durable-state ls``: the actor ids, one per line."""
    from .persisted import read_persisted

    async def run() -> int:
        async with _open_backends(args, lock=False, must_exist=True) as b:
            count = 0
            async for key in b.storage.list(args.prefix):
                count += 1
                if not args.long:
                    _out(key)
                    continue
                try:
                    view = await read_persisted(b.storage, key)
                except ActorNotFound:
                    continue  # deleted while listing
                except SnapshotCorrupt as exc:
                    _out(f"{key}  (unreadable: {exc})")
                    continue
                _out(_long_line(view, time.time()))
            if count == 0 and args.long:
                _out(f"(no actors in {b.storage_url})")
        return EXIT_OK

    return asyncio.run(run())


def _long_line(view: Mapping[str, Any], now: float) -> str:
    nxt = view["next_timer_at"]
    timer = f"  next timer {when(nxt / 1000, now)}" if nxt is not None else ""
    status = view["status"] or "?"
    return (
        f"{view['actor_id']}  {status:<7} {format_value(view['value'])}  "
        f"version {view['version']}{timer}"
    )


def _cmd_show(args: argparse.Namespace) -> int:
    """``durable-state show ACTOR_ID``: snapshot, timers, processed ids, lease."""
    from .persisted import read_persisted

    async def run() -> int:
        async with _open_backends(args, must_exist=True) as b:
            view = await read_persisted(b.storage, args.actor_id)
            lease = await peek_lease(b.lock, args.actor_id) if b.lock is not None else None
            if args.json:
                _out(
                    _dumps(
                        {"actor_id": args.actor_id, "version": view["version"], **view["document"]},
                        2,
                    )
                )
                return EXIT_OK
            _print_snapshot(view, b, lease, time.time())
        return EXIT_OK

    return asyncio.run(run())


def _print_snapshot(view: Mapping[str, Any], b: _Backends, lease: Lease | None, now: float) -> None:
    machine = view["machine"] or "?"
    machine_version = view["machine_version"] if view["machine_version"] is not None else "?"
    _out(f"{view['actor_id']}  ({b.storage_url})")
    _out(f"  {'version':<10} {view['version']}")
    _out(f"  {'machine':<10} {machine} (version {machine_version})")
    _out(f"  {'status':<10} {view['status']}")
    _out(f"  {'state':<10} {format_value(view['value'])}")
    _block("context", view["context"])
    if view["output"] is not None:
        _block("output", view["output"])
    if view["error"] is not None:
        _block("error", view["error"])
    timers = view["timers"]
    if not timers:
        _out(f"  {'timers':<10} none")
    for i, timer in enumerate(timers):
        due_s = timer.due_ms / 1000
        due = when(due_s, now)
        if due_s <= now:
            due += ", fires when the actor is next loaded"
        _out(f"  {'timers' if i == 0 else '':<10} {timer_name(timer.event['type'])}: due {due}")
    processed = view["processed"]
    if processed:
        latest = ", ".join(processed[-5:])
        _out(f"  {'processed':<10} {len(processed)} event id(s); latest: {latest}")
    _print_mailbox(view["mailbox"])
    lease_text = "none (no lock configured)" if b.lock is None else _lease_text(lease, now)
    _out(f"  {'lease':<10} {lease_text}")


def _print_mailbox(box: Any) -> None:
    """The messages a ``show`` prints: parent, outbox, inbox, dead letters."""
    if box.parent is not None:
        stopped = ", stopped by it" if box.stopped else ""
        _out(f"  {'parent':<10} {box.parent} (as child {box.child!r}{stopped})")
    for i, entry in enumerate(box.outbox):
        label = "outbox" if i == 0 else ""
        _out(f"  {label:<10} #{entry['seq']} to {entry['to']}: {_dumps(entry['event'])}")
    for i, (sender, seq) in enumerate(sorted(box.inbox.items())):
        label = "inbox" if i == 0 else ""
        _out(f"  {label:<10} from {sender}: up to #{seq}")
    for i, entry in enumerate(box.dead):
        label = "dead" if i == 0 else ""
        _out(
            f"  {label:<10} #{entry.get('seq')} to {entry.get('to')}: "
            f"{_dumps(entry.get('event'))} -- {entry.get('reason')}"
        )


def _cmd_wake(args: argparse.Namespace) -> int:
    """``durable-state wake``: fire due timers, once or until stopped."""
    from .system import ActorSystem

    specs = args.machine or ([os.environ[ENV_MACHINE]] if os.environ.get(ENV_MACHINE) else [])
    if not specs:
        raise UsageError(f"wake needs --machine MODULE:ATTR (or ${ENV_MACHINE})")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {args.concurrency}")
    machines = [load_machine(spec) for spec in specs]

    async def run() -> int:
        async with _open_backends(args, must_exist=True) as b:
            system = ActorSystem(machines, storage=b.storage, lock=b.lock)
            if args.once:
                stepped = await system.fire_due(concurrency=args.concurrency)
                _report_wake(system, stepped)
                return EXIT_OK
            _err(f"waking due actors every {args.interval:g} s; stop with Ctrl-C or SIGTERM")
            await system.run_waker(args.interval, concurrency=args.concurrency)
            _report_wake(system, system.stats.stepped)
            return EXIT_OK

    return asyncio.run(run())


def _report_wake(system: Any, stepped: int) -> None:
    stats = system.stats
    extra = [
        f"{n} {label}"
        for n, label in (
            (stats.busy, "busy (retried later)"),
            (stats.unknown_machine, "with an unknown machine"),
            (stats.failed, "failed"),
        )
        if n
    ]
    _out(
        f"woke {stepped} actor{'s' if stepped != 1 else ''}"
        + (f"; {', '.join(extra)}" if extra else "")
    )


def _cmd_send(args: argparse.Namespace) -> int:
    """``durable-state send ACTOR_ID EVENT``: one event, saved."""
    from .persisted import persisted_actor

    spec = args.machine or os.environ.get(ENV_MACHINE)
    if not spec:
        raise UsageError(f"send needs --machine MODULE:ATTR (or ${ENV_MACHINE})")
    event: dict[str, Any] = {"type": args.event}
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except ValueError as exc:
            raise UsageError(f"--data is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"--data must be a JSON object, not {type(data).__name__}")
        if "type" in data:
            raise UsageError("--data must not contain 'type': the event type is EVENT")
        event.update(data)
    machine = load_machine(spec)

    async def run() -> int:
        async with _open_backends(args, must_exist=not args.create) as b:
            async with persisted_actor(
                args.actor_id,
                machine,
                storage=b.storage,
                lock=b.lock,
                create=args.create,
                lock_wait=args.wait,
            ) as actor:
                before = actor.snapshot
                before_version = actor.version
                try:
                    applied = await actor.send(event, event_id=args.event_id)
                except DurableStateError:
                    raise
                except Exception as exc:
                    # An action or guard of the machine raised: the body
                    # fails, so persisted_actor saves nothing.
                    raise Failure(
                        f"{args.event} failed in the machine's code, nothing was saved: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            snap = actor.snapshot
            if args.json:
                _out(
                    _dumps(
                        {
                            "actor_id": args.actor_id,
                            "applied": bool(applied),
                            "created": before_version is None,
                            "changed": snap is not before,
                            "status": snap.status,
                            "value": snap.value,
                            "context": dict(snap.context),
                            "output": snap.output,
                            "version": actor.version,
                        },
                        2,
                    )
                )
                return EXIT_OK
            _print_sent(args, bool(applied), before, before_version, actor)
        return EXIT_OK

    return asyncio.run(run())


def _print_sent(
    args: argparse.Namespace, applied: bool, before: Any, before_version: Any, actor: Any
) -> None:
    snap = actor.snapshot
    if not applied:
        _out(f"{args.actor_id}: event id {args.event_id!r} was already applied; skipped")
    elif snap is before:
        # The core returns the very same snapshot when no transition was enabled.
        _out(f"{args.actor_id}: {args.event} changed nothing (no enabled transition)")
        _out(f"  {'state':<10} {format_value(snap.value)}")
    else:
        change = format_value(snap.value)
        if snap.value != before.value:
            change = f"{format_value(before.value)} -> {change}"
        _out(f"{args.actor_id}: {args.event} applied")
        _out(f"  {'state':<10} {change}")
    _out(f"  {'status':<10} {snap.status}")
    _block("context", dict(snap.context))
    if snap.output is not None:
        _block("output", snap.output)
    if actor.version == before_version:
        _out(f"  {'version':<10} {before_version} (nothing changed, nothing written)")
    else:
        _out(f"  {'version':<10} {before_version or '(new)'} -> {actor.version}")


#: The lease ``rm`` holds while it deletes (seconds; it is released at once after).
_RM_LEASE_TTL: Final = 60.0


def _cmd_rm(args: argparse.Namespace) -> int:
    """``durable-state rm ACTOR_ID``: delete the version shown, under the lease."""
    from .persisted import read_persisted

    async def run() -> int:
        async with _open_backends(args, must_exist=True) as b:
            actor_id: str = args.actor_id
            try:
                view = await read_persisted(b.storage, actor_id)
                version: str = view["version"]
                what = f"{format_value(view['value'])} ({view['status']}), version {version}"
            except SnapshotCorrupt as exc:
                # Still removable: that may be why it is being removed.
                stored = await b.storage.read(actor_id)
                if stored is None:
                    raise ActorNotFound(actor_id) from exc
                version = stored.version
                what = f"unreadable ({exc.reason}), version {version}"
            now = time.time()
            lease = await peek_lease(b.lock, actor_id) if b.lock is not None else None
            lease_text = "none (no lock configured)" if b.lock is None else _lease_text(lease, now)
            _out(f"{actor_id}: {what}; lease {lease_text}")
            if lease is not None and not args.force:
                raise _held_conflict(actor_id, lease.owner, lease.expires_at)
            if not args.yes and not await anyio.to_thread.run_sync(
                _confirm, sys.stdin, sys.stdout, "Remove it? This cannot be undone.", "remove"
            ):
                _out("not removed")
                return EXIT_ERROR
            await _delete(b, actor_id, version, force=args.force)
            _out(f"removed {actor_id} (version {version})")
        return EXIT_OK

    return asyncio.run(run())


async def _delete(b: _Backends, actor_id: str, version: str, *, force: bool) -> None:
    """Delete ``version`` of the actor, holding its lease unless ``force`` and it is busy."""
    try:
        if b.lock is None:
            await b.storage.delete(actor_id, if_version=version)
            return
        try:
            async with b.lock.hold(actor_id, ttl=_RM_LEASE_TTL):
                await b.storage.delete(actor_id, if_version=version)
            return
        except LockTimeout as exc:
            if not force:
                raise _held_conflict(actor_id, exc.holder, exc.expires_at) from exc
            _out(f"{actor_id}: the lease is held by {exc.holder}; removing anyway (--force)")
        await b.storage.delete(actor_id, if_version=version)
    except VersionConflict as exc:
        raise Conflict(
            f"{actor_id!r} was saved again (or removed) after version {version} was read: "
            f"not removed. Run {_PROG} rm again to see what it is now."
        ) from exc


def _held_conflict(actor_id: str, owner: str | None, expires_at: float | None) -> Conflict:
    holder = f" by {owner}" if owner else ""
    until = f" until {when(expires_at, time.time())}" if expires_at else ""
    return Conflict(
        f"{actor_id!r} is locked{holder}{until}: not removed. Retry when its holder is done, "
        f"or remove it anyway with: {_PROG} rm {_shell_quote(actor_id)} --force "
        "(the holder's next save then fails)"
    )


def _cmd_unlock(args: argparse.Namespace) -> int:
    """``durable-state unlock ACTOR_ID``: force-release the lease after a confirmation."""

    async def run() -> int:
        async with _open_backends(args, storage=False, must_exist=True) as b:
            if b.lock is None:
                raise UsageError(
                    "no lock is configured (--lock none): there is no lease to release"
                )
            now = time.time()
            lease = await peek_lease(b.lock, args.actor_id)
            if lease is None:
                _out(f"{args.actor_id}: lease free; nothing to release")
                return EXIT_OK
            _out(f"{args.actor_id}: lease {_lease_text(lease, now)}")
            if not args.yes and not await anyio.to_thread.run_sync(
                _confirm,
                sys.stdin,
                sys.stdout,
                "Force-release it? The holder may still be running.",
                "force-release",
            ):
                _out("not released")
                return EXIT_ERROR
            # release() frees the key only while this exact owner and token hold it,
            # so a lease that changed hands since the peek is left alone.
            await b.lock.release(lease)
            after = await peek_lease(b.lock, args.actor_id)
            if after is not None:
                raise Failure(
                    f"the lease on {args.actor_id!r} changed hands meanwhile: not released"
                )
            _out(
                f"released: {args.actor_id} can be taken now. If its holder is still running, "
                "its next renewal fails (LockLost) and a save it attempts after another "
                "writer's is refused (VersionConflict)."
            )
        return EXIT_OK

    return asyncio.run(run())


def _confirm(stdin: TextIO, stdout: TextIO, question: str, verb: str) -> bool:
    if not stdin.isatty():
        raise UsageError(f"refusing to {verb} without a terminal to ask on: pass --yes")
    stdout.write(f"{question} [y/N] ")
    stdout.flush()
    answer = stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _cmd_diagram(args: argparse.Namespace) -> int:
    """``durable-state diagram MODULE:ATTR``: Mermaid or DOT source on stdout."""
    from ._diagram import to_dot, to_mermaid

    machine = load_machine(args.machine)
    render = to_dot if args.format == "dot" else to_mermaid
    sys.stdout.write(render(machine, children=args.children))
    sys.stdout.flush()
    return EXIT_OK
