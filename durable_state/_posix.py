"""The POSIX file layer under ``LocalFileStorage`` and ``FileLockManager``.

Both backends keep small files that several processes read and replace, and
both guard a read-check-replace with an ``flock``. What they need from the
operating system is the same, so it lives here once:

* **Atomic replacement** (:func:`replace_atomically`): a temp file in the
  target's directory, every byte written (:func:`write_all` loops over short
  writes), ``fsync``, ``os.replace``, ``fsync`` of the directory. A crash at
  any instant leaves the old or the new file, and once the call returns the
  new one survives a power loss.
* **Critical sections** (:func:`run_locked`): an exclusive ``flock`` on a
  lock file, tried without blocking in a worker thread; while another holder
  has it, the event loop sleeps with jittered backoff and tries again, so a
  waiting task stays cancellable (a thread blocked in ``flock`` could not be
  interrupted and would take the lock after its caller had gone). Each
  attempt is one worker-thread call that locks, runs its step and unlocks in
  a ``finally``. A cancelled caller waits for a running attempt and makes a
  queued one do nothing, so nothing changes after the cancelled call has
  returned. A lock held for longer than the caller's ``contention_timeout``
  (a process stopped inside its critical section) ends in
  :class:`ContentionTimeout`.
* **Fork safety**: an ``flock`` belongs to the open file description, which
  a forked child shares. Every descriptor that holds an ``flock`` is
  therefore taken and given back through :func:`lock_file` and
  :func:`unlock`, which record it; a forked child closes its copies at once
  (``O_CLOEXEC`` only covers ``exec``), so it can neither pin a critical
  section nor keep a dead parent looking alive.
* **Worker threads** (:func:`run_in_thread`): every blocking call runs on
  one process-wide set of threads of its own (four per core), fed by a plain
  queue, each result handed to its event loop with ``call_soon_threadsafe``.
* **Errors**: :func:`map_exceptions` turns an ``OSError`` into the backend's
  own error (``StorageUnavailable`` or ``LockUnavailable``), described by
  :func:`describe` as errno name and text.

``flock`` and rename atomicity hold on local file systems only, not on NFS,
SMB or most FUSE mounts; POSIX only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeVar

from ._retry import backoff
from ._shield import shielded
from ._unique import unique_hex

if sys.platform != "win32":
    import fcntl

__all__ = (
    "BUSY",
    "DEFAULT_CONTENTION_TIMEOUT",
    "TMP_PREFIX",
    "BusyMarker",
    "ContentionTimeout",
    "check_contention_timeout",
    "describe",
    "fsync_dir",
    "lock_file",
    "map_exceptions",
    "pwrite_all",
    "read_file",
    "replace_atomically",
    "run_in_thread",
    "run_locked",
    "start_in_thread",
    "unlink_missing_ok",
    "unlock",
    "write_all",
)

logger = logging.getLogger("durable_state")

_T = TypeVar("_T")
_K = TypeVar("_K")

#: The name prefix of a file being written; never a name a backend lists.
TMP_PREFIX: Final = ".tmp-"
#: Default ``contention_timeout`` of both file backends, in seconds.
DEFAULT_CONTENTION_TIMEOUT: Final = 10.0
_FIRST_BACKOFF: Final = 0.0005
_MAX_BACKOFF: Final = 0.02
#: How long a cancelled caller waits for its running attempt to finish.
_ABORT_TIMEOUT: Final = 10.0


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class ContentionTimeout(TimeoutError):
    """A critical section's lock stayed held by someone else for too long.

    A ``TimeoutError``, hence an ``OSError``: :func:`map_exceptions` reports
    it like any other failure of the file system.
    """

    def __init__(self, lock_path: str, waited: float) -> None:
        super().__init__(
            errno.ETIMEDOUT,
            f"the critical section {lock_path} stayed locked for {waited:g} s "
            "(a process stopped inside it?)",
        )


def describe(exc: OSError) -> str:
    """An ``OSError`` in a few words: ``"ENOSPC: No space left on device"``."""
    name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{name}: {text}" if name else text


@contextlib.contextmanager
def map_exceptions(
    error: Callable[[str, _K, str], Exception], operation: str, key: _K
) -> Iterator[None]:
    """Raise ``error(operation, key, describe(exc)) from exc`` for an ``OSError`` in the block.

    Args:
        error: the backend's error class, called with the operation, the key
            and a description (``StorageUnavailable``, ``LockUnavailable``).
        operation: what was being done (``"write"``, ``"acquire"``, ...).
        key: the key it was done to.
    """
    try:
        yield
    except OSError as exc:
        raise error(operation, key, describe(exc)) from exc


def check_contention_timeout(value: object) -> float:
    """Validate a ``contention_timeout`` argument (seconds, positive).

    Raises:
        TypeError: it is not a number.
        ValueError: it is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"contention_timeout must be a number of seconds, not {value!r}")
    if not value > 0:
        raise ValueError(f"contention_timeout must be positive, not {value!r}")
    return float(value)


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write every byte of ``data`` at ``offset`` (``os.pwrite`` may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _write_chunks(fd: int, chunks: list[bytes]) -> None:
    """Write ``chunks`` in order with one ``writev`` (completing a short one)."""
    if len(chunks) == 1:
        write_all(fd, chunks[0])
        return
    written = os.writev(fd, chunks)
    if written < sum(map(len, chunks)):
        write_all(fd, b"".join(chunks)[written:])


def fsync_dir(path: str) -> None:
    """Make the names in a directory (a create, a rename, an unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: How much :func:`read_file` asks for per ``read``: most records and
#: snapshots fit in one, so a small file costs open, read, read (end), close.
_READ_CHUNK: Final = 256 * 1024


def read_file(path: str, limit: int = -1) -> bytes | None:
    """A whole file (or its first ``limit`` bytes); ``None`` if it is missing.

    Plain ``read`` calls on the descriptor: no buffered file object, whose
    ``fstat``, ``isatty`` and ``lseek`` calls would double the system calls
    of reading a small file (each one a hand-over of the GIL in a busy
    worker thread).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _read_fd(fd, limit)
    finally:
        os.close(fd)


def _read_fd(fd: int, limit: int) -> bytes:
    """Read from ``fd`` until the end or ``limit`` bytes (``-1``: no limit)."""
    chunks: list[bytes] = []
    got = 0
    while limit < 0 or got < limit:
        chunk = os.read(fd, _READ_CHUNK if limit < 0 else min(limit - got, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)  # one chunk: that chunk itself, not a copy


def unlink_missing_ok(path: str) -> bool:
    """Remove a file; ``False`` if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _remove_quietly(path: str) -> None:
    """Remove a leftover temp file, logging (not raising) a failure."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        # A leftover temp file is invisible to the backends; only disk space is lost.
        logger.warning("could not remove temp file %s", path, exc_info=True)


def replace_atomically(
    path: str,
    chunks: Iterable[bytes],
    *,
    mode: int = 0o666,
    before_rename: Callable[[], object] | None = None,
    sync_directory: bool = True,
) -> None:
    """Replace the file at ``path`` by ``chunks``, whole or not at all, durably.

    The new content goes to a temp file (:data:`TMP_PREFIX`) in the same
    directory, is ``fsync``-ed and renamed over ``path``; then the directory
    is ``fsync``-ed. On failure the temp file is removed and ``path`` is
    untouched (unless the failure is the directory's ``fsync``, after the
    rename: then the new file is in place but maybe not yet durable).

    Args:
        path: the file to replace.
        chunks: the new content.
        mode: the permissions of the new file (before the umask).
        before_rename: called once the new content is durable, just before
            the rename; if it raises, nothing is renamed.
        sync_directory: ``fsync`` the directory after the rename. Without
            it the call is still atomic, and the new content is durable
            whenever its name is, but after a power loss ``path`` may hold
            its old content again: for updates whose loss is harmless.

    Raises:
        OSError: the file system failed.
    """
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, TMP_PREFIX + unique_hex())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, mode)
    try:
        try:
            _write_chunks(fd, list(chunks))
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if sync_directory:
        fsync_dir(directory)


# --------------------------------------------------------------------------- #
# flock, and what a forked child must drop
# --------------------------------------------------------------------------- #

# Every descriptor that holds an flock now, with what to call in a forked
# child after closing it. The lock keeps fork() from landing between opening
# a lock file, locking it and recording it: a child forked in between would
# share the open file description and keep its lock unrecorded.
_HELD: dict[int, Callable[[], None] | None] = {}
_HELD_LOCK = threading.Lock()


def _before_fork() -> None:
    _HELD_LOCK.acquire()


def _after_fork_in_parent() -> None:
    _HELD_LOCK.release()


def _after_fork_in_child() -> None:
    # Closing our copy does not unlock the parent's: the parent still has its
    # descriptor. It only stops this child from keeping the lock alive.
    callbacks = [callback for callback in _HELD.values() if callback is not None]
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()
    _HELD_LOCK.release()
    _forget_workers()
    for callback in callbacks:
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def lock_file(
    path: str,
    *,
    flags: int = os.O_RDWR | os.O_CREAT,
    mode: int = 0o666,
    shared: bool = False,
    on_fork: Callable[[], None] | None = None,
) -> int | None:
    """Open ``path`` and take its ``flock`` without blocking.

    Args:
        path: the file to lock.
        flags: ``os.open`` flags (``O_CLOEXEC`` and ``O_NOFOLLOW`` are added).
        mode: the permissions of a file created by ``O_CREAT``.
        shared: take a shared lock instead of an exclusive one.
        on_fork: called in a forked child after its copy of the descriptor
            was closed (the child must forget the descriptor).

    Returns:
        A descriptor that holds the lock (give it back with :func:`unlock`),
        or ``None`` if another open file description holds a conflicting lock.

    Raises:
        FileNotFoundError: the file (without ``O_CREAT``) or its directory is missing.
        OSError: the file system failed.
    """
    operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    with _HELD_LOCK:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        _HELD[fd] = on_fork
    return fd


def unlock(fd: int) -> None:
    """Drop the ``flock`` a descriptor from :func:`lock_file` holds, by closing it."""
    with _HELD_LOCK:
        _HELD.pop(fd, None)
        os.close(fd)


# --------------------------------------------------------------------------- #
# Worker threads
# --------------------------------------------------------------------------- #

#: Threads for blocking file-system calls: four per core. More threads
#: overlap more ``fsync`` waits, but every one of them takes the GIL between
#: system calls, and the event loop waits for it: on 2 cores, 8 threads step
#: a fifth more actors per second on local files than 32 did.
_IO_THREADS: Final = min(32, (os.cpu_count() or 1) * 4)


class _Workers:
    """The worker threads that make the blocking file-system calls.

    Leaner than ``loop.run_in_executor`` on a ``ThreadPoolExecutor``: a call
    is one queue item, and its result reaches the loop with one
    ``call_soon_threadsafe``, without a ``concurrent.futures.Future`` (a
    condition variable each) chained to the asyncio one. The threads start
    with the first call (idle ones wait on the queue at no cost) and are
    joined when the interpreter exits, after the calls already queued.
    """

    def __init__(self, size: int) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"durable_state-io_{n}") for n in range(size)
        ]
        for thread in self._threads:
            thread.start()
        self._closed = False

    def submit(self, call: _Call) -> None:
        if self._closed:
            raise RuntimeError("the interpreter is shutting down: no new file-system calls")
        self._queue.put(call)

    def _work(self) -> None:
        while (call := self._queue.get()) is not None:
            call.run()

    def shut_down(self) -> None:
        """Let the queued calls finish, then stop the threads (at interpreter exit)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


class _Call:
    """One call for a worker thread; ``future`` (on ``loop``) gets its outcome, if any."""

    __slots__ = ("args", "function", "future", "loop")

    def __init__(
        self,
        function: Callable[..., object],
        args: tuple[object, ...],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[object] | None,
    ) -> None:
        self.function = function
        self.args = args
        self.loop = loop
        self.future = future

    def run(self) -> None:
        loop, future = self.loop, self.future
        if loop is None or future is None:
            try:
                self.function(*self.args)
            except Exception:
                logger.exception("a background file-system call failed")
            return
        if future.cancelled():
            return  # its caller is gone and it has not started: never run it
        try:
            result = self.function(*self.args)
        except BaseException as exc:  # noqa: BLE001 - the caller's to handle; the thread goes on
            _report(loop, _set_exception, future, exc)
        else:
            _report(loop, _set_result, future, result)


def _report(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[asyncio.Future[object], object], None],
    future: asyncio.Future[object],
    value: object,
) -> None:
    try:
        loop.call_soon_threadsafe(setter, future, value)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


def _set_result(future: asyncio.Future[object], result: object) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[object], exc: object) -> None:
    if not future.done():
        assert isinstance(exc, BaseException)
        future.set_exception(exc)


_workers: _Workers | None = None
_workers_lock = threading.Lock()


def _io_workers() -> _Workers:
    global _workers
    if _workers is None:
        with _workers_lock:
            if _workers is None:
                workers = _Workers(_IO_THREADS)
                _register_atexit(workers.shut_down)
                _workers = workers
    return _workers


def _register_atexit(function: Callable[[], None]) -> None:
    """Call ``function`` at exit, before the interpreter joins its threads (as
    ``concurrent.futures`` does for its pools)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every supported Python has it
        atexit.register(function)
    else:
        register(function)


async def run_in_thread(function: Callable[..., _T], *args: object) -> _T:
    """Run the blocking ``function(*args)`` in a worker thread; await the result.

    Half the event loop's cost of ``anyio.to_thread.run_sync`` per call
    (no cancel scope, capacity limiter or library detection on the way), and
    less than ``loop.run_in_executor`` (see :class:`_Workers`): that is what
    bounds how many actors per second one process steps on local files.
    Cancelling the awaiting task drops a call that has not started yet; a
    running one finishes in its thread, its result unused, so ``function``
    must be self-contained (open, use and close what it needs).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    _io_workers().submit(_Call(function, args, loop, future))  # type: ignore[arg-type]
    return await future


def start_in_thread(function: Callable[..., object], *args: object) -> None:
    """Run the blocking ``function(*args)`` in a worker thread; nobody waits for it.

    ``function`` should handle its own errors (what it raises is logged).
    """
    _io_workers().submit(_Call(function, args, None, None))


def _forget_workers() -> None:
    # A forked child has none of the pool's threads: it starts a pool of its own.
    global _workers, _workers_lock
    _workers = None
    _workers_lock = threading.Lock()


# --------------------------------------------------------------------------- #
# Critical sections
# --------------------------------------------------------------------------- #


class BusyMarker:
    """The type of :data:`BUSY`."""


#: What an attempt returns when another holder has the lock; a step may
#: return it too (a second lock it needs is held elsewhere): it is retried
#: as if the first lock had been held.
BUSY: Final = BusyMarker()


class _Attempts:
    """The attempts of one :func:`run_locked` call; :meth:`run` runs in a worker thread."""

    __slots__ = ("_abandoned", "_mutex", "lock_path", "pass_fd")

    def __init__(self, lock_path: str, *, pass_fd: bool = False) -> None:
        self.lock_path = lock_path
        self.pass_fd = pass_fd
        self._mutex = threading.Lock()
        self._abandoned = False

    def run(self, step: Callable[..., _T | BusyMarker], *args: object) -> _T | BusyMarker:
        """Run ``step(*args)`` under the lock, or return :data:`BUSY` without running it.

        With ``pass_fd``, the step gets the locked descriptor first.
        """
        with self._mutex:
            if self._abandoned:
                return BUSY
            try:
                fd = lock_file(self.lock_path)
            except FileNotFoundError:
                # The lock file's directory is created on demand.
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
                fd = lock_file(self.lock_path)
            if fd is None:
                return BUSY
            try:
                return step(fd, *args) if self.pass_fd else step(*args)
            finally:
                unlock(fd)

    def abort(self) -> None:
        """Wait for a running attempt; make every later one a no-op."""
        with self._mutex:
            self._abandoned = True


async def run_locked(
    lock_path: str,
    contention_timeout: float,
    step: Callable[..., _T | BusyMarker],
    *args: object,
    pass_fd: bool = False,
) -> _T:
    """Run ``step(*args)`` in a worker thread while holding ``lock_path``'s ``flock``.

    The lock file (and its directory) is created on demand. While another
    holder has the lock, sleep on the event loop (cancellably, with jittered
    exponential backoff from 0.5 ms to 20 ms) and try again. A caller
    cancelled before the call (an expired scope) gets its cancellation before
    any attempt starts. A running step is never interrupted: a cancelled
    caller returns only after it finished, and a step still queued (possible
    after a native ``Task.cancel()``) never runs.

    Args:
        lock_path: the lock file.
        contention_timeout: how long to keep trying while the lock is held
            elsewhere, in seconds.
        step: a blocking function; it runs in a worker thread. It may return
            :data:`BUSY` (another lock it needs is held): it is then tried
            again like a held ``lock_path``.
        args: its arguments.
        pass_fd: give ``step`` the descriptor that holds the lock as its first
            argument (it must not close it), for a step that works on the
            lock file itself.

    Returns:
        What ``step`` returned.

    Raises:
        ContentionTimeout: the lock stayed held elsewhere for ``contention_timeout``.
        OSError: locking failed.
        Exception: whatever ``step`` raised (after which the lock is free).
    """
    # A cancellation already on its way (an expired scope, a pending
    # Task.cancel()) lands here, before the step can start: a worker thread
    # picks a call up at once, and a started step always finishes.
    await asyncio.sleep(0)
    attempts = _Attempts(lock_path, pass_fd=pass_fd)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + contention_timeout
    attempt = 0
    while True:
        try:
            result: _T | BusyMarker = await run_in_thread(attempts.run, step, *args)
        except Exception:
            raise  # raised by the attempt itself: it has finished and unlocked
        except BaseException:
            # Cancelled: the attempt may still be queued or running. Wait for
            # it (whatever cancels us meanwhile) so that nothing changes after
            # this call has returned.
            try:
                await shielded(run_in_thread(attempts.abort), within=_ABORT_TIMEOUT)
            except TimeoutError:
                logger.warning("a cancelled critical section on %s is still running", lock_path)
            raise
        if not isinstance(result, BusyMarker):
            return result
        if loop.time() >= deadline:
            raise ContentionTimeout(lock_path, contention_timeout)
        await asyncio.sleep(backoff(attempt, initial=_FIRST_BACKOFF, maximum=_MAX_BACKOFF))
        attempt += 1
