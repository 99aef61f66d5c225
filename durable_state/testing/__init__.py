"""Tools for testing code that uses durable_state, and backends written for it.

* :class:`~durable_state.testing.proxy.FaultProxy`: an HTTP proxy that adds
  latency, cuts connections and drops responses after the server applied the
  request, to test a backend's behaviour when an outcome is unknown.
* :mod:`durable_state.testing.storage` and :mod:`durable_state.testing.locks`:
  the storage and lease contracts as pytest suites that a backend's own tests
  subclass (see the "Writing a backend" guide). They need ``pytest`` and
  ``pytest-asyncio`` (the ``testing`` extra) and are not imported from here:
  ``import durable_state.testing`` imports neither.
"""

from .proxy import FaultProxy as FaultProxy
from .proxy import Request as Request

__all__ = ("FaultProxy", "Request")
