"""Tools for testing code that uses durable_state, and backends written for it.

* :class:`~durable_state.testing.proxy.FaultProxy`: an HTTP proxy that adds
  latency, cuts connections and drops responses after the server applied the
  request, to test a backend's behaviour when an outcome is unknown.
"""

from .proxy import FaultProxy as FaultProxy
from .proxy import Request as Request

__all__ = ("FaultProxy", "Request")
