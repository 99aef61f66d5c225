"""A saga of persisted actors: order -> inventory -> payment -> shipping, with compensation.

Every order is an actor. It reserves stock from the shared ``inventory``
actor, invokes a ``payment`` child machine (a persisted actor of its own,
``order-7/pay``) that charges the shared ``bank`` actor, and asks the
``shipping`` actor to ship. A declined payment releases the reserved stock
again (the compensation). Nothing here is a queue or a hand-written outbox:
``send_to`` and ``send_parent`` write messages into the sender's snapshot in
the same compare-and-set as the step that sent them, and each receiver
applies each message exactly once.

Run it::

    python examples/saga.py --orders 100

It runs the orders on local files (a temporary directory by default, or
``--root``), waits until every message was delivered and prints what the
shared actors counted: the stock taken equals the units of the shipped
orders, and every shipped order was charged exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from typing import Any

from durable_state import ActorSystem, Machine, assign, send_to
from durable_state.locks import FileLockManager
from durable_state.storage import LocalFileStorage

#: Units in stock when the inventory actor is created.
STOCK = 1_000_000


def payment() -> Machine:
    """A payment child: charges the bank once, or is declined; its output tells the order."""
    return Machine(
        {
            "id": "payment",
            "initial": "deciding",
            "context": lambda input, **_: dict(input),
            "states": {
                "deciding": {
                    "always": [
                        {"guard": "declined", "target": "declined"},
                        {"target": "charged"},
                    ]
                },
                "charged": {"type": "final", "entry": "charge"},
                "declined": {"type": "final"},
            },
            "output": lambda context, event, **_: {"ok": not context["decline"]},
        },
        actions={
            "charge": send_to(
                "bank",
                lambda c, e: {"type": "CHARGE", "order": c["order"], "amount": c["amount"]},
                machine="bank",
            ),
        },
        guards={"declined": lambda context, event: context["decline"]},
    )


def order() -> Machine:
    """One order: reserve, pay (a child machine), ship; release the stock if the payment fails."""
    reserve = {"type": "RESERVE", "units": 0, "order": ""}
    return Machine(
        {
            "id": "order",
            "initial": "new",
            "context": lambda input, **_: {**input, "log": []},
            "states": {
                "new": {"on": {"START": "reserving"}},
                "reserving": {
                    "entry": "reserve",
                    "on": {"RESERVED": "paying", "OUT_OF_STOCK": "rejected"},
                },
                "paying": {
                    "invoke": {
                        "id": "pay",
                        "src": "payment",
                        "input": lambda context, event, **_: {
                            "order": context["id"],
                            "amount": context["amount"],
                            "decline": context["decline"],
                        },
                        "onDone": [
                            {"guard": "paid", "target": "shipping"},
                            {"target": "compensating"},
                        ],
                    }
                },
                "shipping": {"entry": "ship", "on": {"SHIPPED": "shipped"}},
                "compensating": {"entry": "release", "always": "compensated"},
                "shipped": {"type": "final"},
                "compensated": {"type": "final"},
                "rejected": {"type": "final"},
            },
        },
        actions={
            "reserve": send_to(
                "inventory",
                lambda c, e: {**reserve, "units": c["units"], "order": c["id"]},
                machine="inventory",
            ),
            "release": send_to("inventory", lambda c, e: {"type": "RELEASE", "units": c["units"]}),
            "ship": send_to(
                "shipping", lambda c, e: {"type": "SHIP", "order": c["id"]}, machine="shipping"
            ),
        },
        guards={"paid": lambda context, event: event["output"]["ok"]},
        actors={"payment": payment()},
    )


def inventory() -> Machine:
    """The shared stock: answers every reservation, takes released units back."""
    return Machine(
        {
            "id": "inventory",
            "initial": "open",
            "context": {"stock": STOCK, "reservations": 0, "releases": 0},
            "states": {
                "open": {
                    "on": {
                        "RESERVE": [
                            {"guard": "in_stock", "actions": ["take", "reserved"]},
                            {"actions": "out_of_stock"},
                        ],
                        "RELEASE": {"actions": "give_back"},
                    }
                }
            },
        },
        actions={
            "take": assign(
                lambda c, e: {
                    "stock": c["stock"] - e["units"],
                    "reservations": c["reservations"] + 1,
                }
            ),
            "give_back": assign(
                lambda c, e: {"stock": c["stock"] + e["units"], "releases": c["releases"] + 1}
            ),
            "reserved": send_to(lambda c, e: e["order"], {"type": "RESERVED"}),
            "out_of_stock": send_to(lambda c, e: e["order"], {"type": "OUT_OF_STOCK"}),
        },
        guards={"in_stock": lambda context, event: context["stock"] >= event["units"]},
    )


def bank() -> Machine:
    """Counts the charges per order: every number must end up 1."""
    return Machine(
        {
            "id": "bank",
            "initial": "open",
            "context": {"charges": {}, "total": 0},
            "states": {"open": {"on": {"CHARGE": {"actions": "charge"}}}},
        },
        actions={
            "charge": assign(
                lambda c, e: {
                    "charges": {**c["charges"], e["order"]: c["charges"].get(e["order"], 0) + 1},
                    "total": c["total"] + e["amount"],
                }
            )
        },
    )


def shipping() -> Machine:
    """Ships an order and tells it so."""
    return Machine(
        {
            "id": "shipping",
            "initial": "open",
            "context": {"shipped": 0},
            "states": {"open": {"on": {"SHIP": {"actions": ["count", "done"]}}}},
        },
        actions={
            "count": assign(lambda c, e: {"shipped": c["shipped"] + 1}),
            "done": send_to(lambda c, e: e["order"], {"type": "SHIPPED"}),
        },
    )


def machines() -> list[Machine]:
    """Every machine of the saga (the payment child is registered with the order)."""
    return [order(), inventory(), bank(), shipping()]


def order_input(i: int) -> dict[str, Any]:
    """Order ``i``: 1 to 5 units, and every seventh payment is declined."""
    return {
        "id": f"order-{i}",
        "units": 1 + i % 5,
        "amount": 10 * (1 + i % 5),
        "decline": i % 7 == 0,
    }


async def start_orders(system: ActorSystem, orders: range) -> None:
    """Start the orders (at most once each, however often this runs)."""
    for i in orders:
        await system.send(
            f"order-{i}", "START", machine="order", input=order_input(i), event_id="start"
        )


async def read(system: ActorSystem, actor_id: str) -> dict[str, Any] | None:
    """The stored snapshot of an actor, or ``None``."""
    found = await system.storage.read(actor_id)
    return None if found is None else dict(json.loads(found.data))


def problems(
    orders: dict[int, dict[str, Any] | None], shared: dict[str, dict[str, Any] | None]
) -> list[str]:
    """What is wrong with a finished saga (nothing, when every count is exact)."""
    wrong: list[str] = []
    shipped = [i for i, o in orders.items() if o is not None and o["value"] == "shipped"]
    for i, o in orders.items():
        want = "compensated" if order_input(i)["decline"] else "shipped"
        if o is None or o["value"] != want:
            wrong.append(f"order-{i} is {o and o['value']!r}, not {want!r}")
    inv, bank_, ship = shared["inventory"], shared["bank"], shared["shipping"]
    if inv is None or bank_ is None or ship is None:
        return [*wrong, "a shared actor is missing"]
    taken = sum(order_input(i)["units"] for i in shipped)
    if inv["context"]["stock"] != STOCK - taken:
        wrong.append(f"stock {inv['context']['stock']}, expected {STOCK - taken}")
    if inv["context"]["reservations"] != len(orders):
        wrong.append(f"{inv['context']['reservations']} reservations for {len(orders)} orders")
    charges = bank_["context"]["charges"]
    expected = {f"order-{i}": 1 for i in shipped}
    if charges != expected:
        wrong.append(f"charges {charges} != {expected}")
    if ship["context"]["shipped"] != len(shipped):
        wrong.append(f"{ship['context']['shipped']} shipments for {len(shipped)} orders")
    return wrong


async def collect(
    system: ActorSystem, count: int
) -> tuple[dict[int, dict[str, Any] | None], dict[str, dict[str, Any] | None]]:
    """Every order's and every shared actor's stored snapshot."""
    orders = {i: await read(system, f"order-{i}") for i in range(count)}
    shared = {name: await read(system, name) for name in ("inventory", "bank", "shipping")}
    return orders, shared


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--root", default=None, help="directory for snapshots and leases")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        system = ActorSystem(machines(), storage=LocalFileStorage(root), lock=FileLockManager(root))
        started = time.perf_counter()
        await asyncio.gather(*(start_orders(system, range(i, i + 1)) for i in range(args.orders)))
        await system.idle()  # every message delivered, in this process
        elapsed = time.perf_counter() - started
        orders, shared = await collect(system, args.orders)
        wrong = problems(orders, shared)
        states = [o["value"] for o in orders.values() if o is not None]
        print(
            f"{args.orders} orders in {elapsed:.2f} s: "
            f"{states.count('shipped')} shipped, {states.count('compensated')} compensated"
        )
        inv, bank_ = shared["inventory"], shared["bank"]
        assert inv is not None
        assert bank_ is not None
        print(
            f"stock left {inv['context']['stock']} of {STOCK}, charged {bank_['context']['total']}"
        )
        for line in wrong:
            print("WRONG:", line, file=sys.stderr)
        return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
