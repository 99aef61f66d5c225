"""The README's example: a cart kept in ``.durable-state/`` across three invocations.

Run it from any directory (it writes ``./.durable-state``)::

    python examples/quickstart.py
    durable-state show cart-42

Each call of ``handle`` is what one web request or one queue message does:
load the cart and take its lease, send one event, save with a compare-and-set
on the version read, release the lease. The second message repeats the first
one's id, as an at-least-once queue may, and is skipped.
"""

import asyncio

from durable_state import Machine, assign, persisted_actor
from durable_state.locks import FileLockManager
from durable_state.storage import LocalFileStorage

cart = Machine(
    {
        "id": "cart",
        "initial": "open",
        "context": {"items": 0},
        "states": {
            "open": {
                "on": {
                    "ADD": {"actions": "add"},
                    "CHECKOUT": {"target": "ordered", "guard": "has_items"},
                }
            },
            "ordered": {"type": "final"},
        },
    },
    actions={"add": assign(lambda context, event: {"items": context["items"] + 1})},
    guards={"has_items": lambda context, event: context["items"] > 0},
)


async def handle(cart_id: str, event: str, message_id: str) -> None:
    """One invocation: load + lease, send, compare-and-set save, release."""
    async with (
        LocalFileStorage(".durable-state") as storage,
        FileLockManager(".durable-state") as lock,
        persisted_actor(cart_id, cart, storage=storage, lock=lock) as actor,
    ):
        await actor.send(event, event_id=message_id)  # a redelivered id is skipped
        print(actor.snapshot.value, actor.snapshot.context)


if __name__ == "__main__":
    for message_id, event in [("m1", "ADD"), ("m1", "ADD"), ("m2", "CHECKOUT")]:
        asyncio.run(handle("cart-42", event, message_id))
