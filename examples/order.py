"""The order machine of ``durable-state demo``, walked through in memory on a manual clock.

As a module, this names the demo's machine for the command line::

    durable-state send order-1 ADD_ITEM --data '{"sku": "mug", "price": 8}' \\
        --machine examples.order:machine --create

(``--machine demo`` names the same machine.) As a script, it drives one order
through a declined payment and its retry without waiting: the storage and the
lock manager live in memory and the clock only moves when told to, which is
how workflows with timers are tested::

    python examples/order.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from durable_state import ManualClock, persisted_actor
from durable_state._demo import RETRY_BACKOFF_MS, build_order_machine, format_value
from durable_state.locks import MemoryLockManager
from durable_state.storage import MemoryStorage

#: The order machine: cart -> payment (declined payments retried after a
#: backoff while attempts remain) -> paid -> shipped, or cancelled.
machine = build_order_machine()


async def walk_through() -> dict[str, Any]:
    """Drive one order from cart to shipped; return its final output."""
    clock = ManualClock(start_ms=1_700_000_000_000)
    storage = MemoryStorage()
    locks = MemoryLockManager(clock=clock.time)

    async def invocation(*events: dict[str, Any]) -> Any:
        async with persisted_actor(
            "order-1", machine, storage=storage, lock=locks, clock=clock
        ) as order:
            for event in events:
                await order.send(event)
            print(f"{format_value(order.snapshot.value):<18} {dict(order.snapshot.context)}")
            return order.snapshot.output

    await invocation({"type": "ADD_ITEM", "sku": "book", "price": 12.5}, {"type": "CHECKOUT"})
    await invocation({"type": "PAYMENT_FAILED", "reason": "card declined"})
    # Nobody holds the order while the backoff runs out; the timer is in the snapshot.
    await clock.advance(RETRY_BACKOFF_MS)
    await invocation()  # loading the order fires the overdue retry: payment.pending
    await invocation({"type": "PAYMENT_SUCCEEDED"})
    output: dict[str, Any] = await invocation({"type": "SHIP", "tracking": "TRK-1"})
    return output


if __name__ == "__main__":
    print(asyncio.run(walk_through()))
