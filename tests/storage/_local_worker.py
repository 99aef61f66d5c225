"""A child process for the multi-process tests of LocalFileStorage (not a test module).

Usage:
    python _local_worker.py increment ROOT KEY COUNT
        Print "ready", wait for a line on stdin, then do COUNT successful
        read-then-conditional-write increments of the integer at KEY, retrying
        on VersionConflict. Print "<successes> <conflicts>".
    python _local_worker.py churn ROOT KEY
        Write self-checking 1 MiB values to KEY (read, then conditional write)
        forever; print "ready" after the first one. Meant to be SIGKILLed.
    python _local_worker.py hold-lock PATH
        Take an exclusive flock on PATH, print "locked", sleep until killed.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import sys
import time

from durable_state.errors import VersionConflict
from durable_state.storage import LocalFileStorage

CHUNK = 1 << 20


def churn_value(seq: int) -> bytes:
    """A value whose integrity can be checked: header, filler, SHA-256 trailer."""
    head = b"%012d|" % seq
    filler = hashlib.sha256(head).digest() * ((CHUNK - len(head)) // 32)
    body = head + filler
    return body + hashlib.sha256(body).digest()


def check_churn_value(data: bytes) -> int:
    """Return the sequence number of an intact value; raise if it is torn."""
    body, trailer = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != trailer:
        raise ValueError(f"torn value ({len(data)} bytes)")
    return int(body[:12])


async def increment(root: str, key: str, count: int) -> None:
    storage = LocalFileStorage(root)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    successes = conflicts = 0
    while successes < count:
        stored = await storage.read(key)
        value = int(stored.data) if stored is not None else 0
        try:
            await storage.write(
                key,
                b"%d" % (value + 1),
                if_version=stored.version if stored is not None else None,
            )
        except VersionConflict:
            conflicts += 1
            continue
        successes += 1
    print(successes, conflicts, flush=True)


async def churn(root: str, key: str) -> None:
    storage = LocalFileStorage(root)
    seq = 0
    while True:
        stored = await storage.read(key)
        seq += 1
        await storage.write(
            key, churn_value(seq), if_version=stored.version if stored is not None else None
        )
        if seq == 1:
            print("ready", flush=True)


def hold_lock(path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    while True:
        time.sleep(60)


def main(argv: list[str]) -> None:
    mode = argv[1]
    if mode == "increment":
        asyncio.run(increment(argv[2], argv[3], int(argv[4])))
    elif mode == "churn":
        asyncio.run(churn(argv[2], argv[3]))
    elif mode == "hold-lock":
        hold_lock(argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
