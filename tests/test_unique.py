"""Ids that never repeat: write ids and temp file names."""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings

import pytest

from durable_state._unique import unique_hex
from durable_state.storage._base import new_write_id


def test_ids_are_32_hex_digits_and_never_repeat_across_threads() -> None:
    seen: list[str] = []

    def draw() -> None:
        seen.extend(unique_hex() for _ in range(5_000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen.extend(new_write_id() for _ in range(1_000))
    assert len(set(seen)) == len(seen) == 21_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in seen)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_draws_its_own_random_part() -> None:
    parent = unique_hex()
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns about fork() beside threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the counter it inherits must not matter
        os.write(write, unique_hex().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[:20] != parent[:20]
    assert unique_hex()[:20] == parent[:20]
