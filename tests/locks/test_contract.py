"""The lease contract (durable_state.testing.locks), run against every bundled backend.

The ``lock_backend`` fixture in conftest.py makes each backend in turn (see
conftest.BACKENDS). Expiry is driven by fake clocks (exact boundaries, no
sleeping); waiting, heartbeats and cancellation run on real time with short
TTLs.
"""

from __future__ import annotations

from durable_state.testing.locks import LockContract


class TestLockContract(LockContract):
    """Every bundled lock backend, as conftest.lock_backend makes them."""
