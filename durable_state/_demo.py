"""The order workflow of ``durable-state demo``, and the demo itself.

The machine is an ordinary :class:`~durable_state.Machine`; the CLI accepts it
as ``--machine demo`` (or ``durable_state._demo:order_machine``)::

    cart --CHECKOUT [has_items]--> payment.pending --PAYMENT_SUCCEEDED--> paid --SHIP--> shipped
                                    |   ^
                     PAYMENT_FAILED |   | after retry_backoff [can_retry]
                                    v   |
                                  payment.declined --after retry_backoff--> cancelled
    payment --after payment_timeout--> cancelled

The demo drives one order through that machine in several separate
*invocations*, the way a web handler, a queue consumer or an AWS Lambda would:
each one builds its own storage and lock manager, opens the order with
``async with persisted_actor(...)``, handles one message and lets go. Nothing
is kept in memory between invocations; everything goes through
``LocalFileStorage`` and ``FileLockManager`` in one directory.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._format import duration, format_context, timer_name
from ._format import format_value as format_value  # examples/order.py imports it from here
from .errors import LockTimeout
from .locks.file import FileLockManager
from .persisted import PersistedActor, persisted_actor
from .statechart import Machine, assign, emit
from .storage.local import LocalFileStorage
from .system import ActorSystem

__all__ = (
    "ORDER_CONFIG",
    "RETRY_BACKOFF_MS",
    "build_order_machine",
    "format_value",
    "order_machine",
    "run_demo",
)

#: How long a declined payment waits before it is retried (short, for the demo).
RETRY_BACKOFF_MS = 1500
#: How long the whole payment may take before the order is cancelled.
PAYMENT_TIMEOUT_MS = 15 * 60 * 1000

#: The machine config: the JSON shape of an xstate v5 config.
ORDER_CONFIG: dict[str, Any] = {
    "id": "order",
    "initial": "cart",
    "context": {"items": [], "total": 0, "attempts": 0, "declined": None, "tracking": None},
    "states": {
        "cart": {
            "on": {
                "ADD_ITEM": {"actions": "add_item"},
                "CHECKOUT": {"target": "payment", "guard": "has_items"},
            },
        },
        "payment": {
            "initial": "pending",
            "after": {"payment_timeout": "cancelled"},
            "states": {
                "pending": {
                    "entry": "count_attempt",
                    "on": {
                        "PAYMENT_SUCCEEDED": "#order.paid",
                        "PAYMENT_FAILED": {"target": "declined", "actions": "record_decline"},
                    },
                },
                "declined": {
                    "after": {
                        "retry_backoff": [
                            {
                                "target": "pending",
                                "guard": {"type": "can_retry", "params": {"max_attempts": 3}},
                            },
                            {"target": "#order.cancelled"},
                        ],
                    },
                },
            },
        },
        "paid": {"on": {"SHIP": {"target": "shipped", "actions": "set_tracking"}}},
        "shipped": {"type": "final", "entry": "notify_shipped"},
        "cancelled": {"type": "final"},
    },
}


def _add_item(context: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "items": [*context["items"], event["sku"]],
        "total": round(context["total"] + event["price"], 2),
    }


def _output(context: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outcome": "shipped" if context["tracking"] else "cancelled",
        "items": context["items"],
        "total": context["total"],
        "tracking": context["tracking"],
    }


def build_order_machine(*, retry_backoff_ms: float = RETRY_BACKOFF_MS) -> Machine:
    """Build the demo's order machine.

    Args:
        retry_backoff_ms: how long a declined payment waits before its retry.

    Returns:
        The machine.

    Raises:
        InvalidMachine: never for the bundled config (it is checked by tests).
    """
    return Machine(
        {**ORDER_CONFIG, "output": _output},
        actions={
            "add_item": assign(_add_item),
            "count_attempt": assign(lambda context, event: {"attempts": context["attempts"] + 1}),
            "record_decline": assign(lambda context, event: {"declined": event.get("reason")}),
            "set_tracking": assign(lambda context, event: {"tracking": event["tracking"]}),
            "notify_shipped": emit(
                lambda context, event: {"type": "order.shipped", "tracking": context["tracking"]}
            ),
        },
        guards={
            "has_items": lambda context, event: bool(context["items"]),
            "can_retry": lambda context, event, max_attempts: context["attempts"] < max_attempts,
        },
        delays={"retry_backoff": retry_backoff_ms, "payment_timeout": PAYMENT_TIMEOUT_MS},
    )


#: The order machine, as ``durable-state send/diagram --machine demo`` uses it.
order_machine = build_order_machine()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Demo:
    """One run of the demo: a fresh order id, a printer, the storage directory."""

    def __init__(self, directory: str, actor_id: str, out: Callable[[str], None]) -> None:
        self.directory = directory
        self.actor_id = actor_id
        self.out = out
        self.machine = order_machine
        self.step = 0
        self.last_value: Any = None

    def line(self, label: str, text: str) -> None:
        self.out(f"    {label:<8} {text}")

    @asynccontextmanager
    async def invocation(self, title: str) -> AsyncIterator[PersistedActor]:
        """One stateless invocation: new backends, load + lease, body, fenced save, release."""
        self.step += 1
        self.out("")
        self.out(f"[{self.step}] {title}")
        async with (
            LocalFileStorage(self.directory) as storage,
            FileLockManager(self.directory) as lock,
        ):
            async with persisted_actor(
                self.actor_id, self.machine, storage=storage, lock=lock
            ) as actor:
                lease = actor.lease
                token = lease.token if lease is not None else "-"
                if actor.created:
                    self.line("load", f"new order {self.actor_id} (lease token {token})")
                else:
                    self.line(
                        "load", f"{self.actor_id} at version {actor.version} (lease token {token})"
                    )
                value = actor.snapshot.value
                if self.last_value is not None and value != self.last_value:
                    self.line(
                        "timer",
                        "came due while no process held the order; fired on load: "
                        f"{format_value(self.last_value)} -> {format_value(value)}",
                    )
                    self.state(actor)
                before = actor.version
                yield actor
                self.last_value = actor.snapshot.value
            if actor.version == before:
                self.line("save", f"nothing changed, nothing written (version stays {before})")
            else:
                self.line(
                    "save", f"version {before or '(none)'} -> {actor.version}; lease released"
                )

    async def send(
        self, actor: PersistedActor, event: dict[str, Any], event_id: str | None = None
    ) -> None:
        shown = event["type"] + (" " + _json({k: v for k, v in event.items() if k != "type"}))
        suffix = f"  (event id {event_id})" if event_id else ""
        applied = await actor.send(event, event_id=event_id)
        if not applied:
            self.line("send", f"{shown}{suffix}: already applied, skipped")
            return
        self.line("send", f"{shown.removesuffix(' {}')}{suffix}")
        self.state(actor)

    async def wake(self) -> None:
        """What a waker does (``durable-state wake``, a worker, a scheduled Lambda)."""
        self.step += 1
        self.out("")
        self.out(f"[{self.step}] a waker finds the order in the storage's due index")
        async with (
            LocalFileStorage(self.directory) as storage,
            FileLockManager(self.directory) as lock,
        ):
            system = ActorSystem([self.machine], storage=storage, lock=lock)
            stepped = await system.fire_due()
            self.line("wake", f"stepped {stepped} due actor(s): the retry timer fired, nobody sent")
            async with system.actor(self.actor_id) as actor:
                self.state(actor)
                self.timers(actor)
                self.last_value = actor.snapshot.value

    def state(self, actor: PersistedActor) -> None:
        snap = actor.snapshot
        self.line("state", f"{format_value(snap.value):<17} {format_context(snap.context)}")

    def timers(self, actor: PersistedActor) -> None:
        now = time.time() * 1000
        for timer in actor.snapshot.timers:
            name = timer_name(timer.event["type"], self.machine.state_ids)
            self.line("timer", f"{name}: due in {duration((timer.due_ms - now) / 1000)}")


def new_order_id() -> str:
    """A fresh order id, so that the demo can run again and again: ``order-<time>-<hex>``."""
    return f"order-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


async def reset(directory: str) -> int:
    """Delete the demo's orders (keys starting with ``order-``) from ``directory``.

    Returns:
        How many were deleted.

    Raises:
        StorageError: the storage failed.
    """
    async with LocalFileStorage(directory) as storage:
        keys = [key async for key in storage.list("order-")]
        for key in keys:
            await storage.delete(key)
    return len(keys)


async def run_demo(
    directory: str,
    *,
    out: Callable[[str], None] = print,
    actor_id: str | None = None,
) -> str:
    """Drive one order from cart to shipped across separate invocations, printing each step.

    Args:
        directory: where the order and its lease records are kept.
        out: where each line of the story goes.
        actor_id: the order id (default: a fresh ``order-<time>-<hex>``).

    Returns:
        The order id.

    Raises:
        DurableStateError: a storage or lock failure (the demo's own steps
            cannot conflict: it uses a fresh order id).
    """
    demo = _Demo(directory, actor_id or new_order_id(), out)
    started = time.monotonic()
    out(f"durable-state demo: one order, persisted in {directory}/")
    out("Each step is a separate invocation (a web request, a queue message, a Lambda run):")
    out("it loads the order, takes its lease, handles one message, saves with a")
    out("compare-and-set on the version it read, releases the lease and forgets everything.")

    async with demo.invocation("a customer puts a book in a new cart") as actor:
        await demo.send(actor, {"type": "ADD_ITEM", "sku": "book", "price": 12.5}, "msg-1")

    async with demo.invocation("a queue message adds a mug, then the customer checks out") as actor:
        await demo.send(actor, {"type": "ADD_ITEM", "sku": "mug", "price": 8.0}, "msg-2")
        await demo.send(actor, {"type": "CHECKOUT"})
        demo.timers(actor)

    async with demo.invocation("the queue delivers msg-2 again (at-least-once delivery)") as actor:
        await demo.send(actor, {"type": "ADD_ITEM", "sku": "mug", "price": 8.0}, "msg-2")

    async with demo.invocation("the payment provider declines the card") as actor:
        await demo.send(actor, {"type": "PAYMENT_FAILED", "reason": "card declined"}, "pay-1")
        demo.timers(actor)
        # A second process tries the same order while this one holds it.
        async with FileLockManager(directory) as other:
            try:
                stolen = await other.acquire(demo.actor_id)
            except LockTimeout as exc:
                holder = (exc.holder or "?").rsplit(":", 1)[0]
                demo.line(
                    "lock", f"a duplicate webhook for this order is refused: held by {holder}"
                )
            else:  # cannot happen while the lease is held; never leave it taken
                await other.release(stolen)
                demo.line("lock", "unexpected: a second holder got the lease")

    next_due = actor.next_timer_at
    wait = max(0.0, (next_due or 0) / 1000 - time.time()) + 0.1
    out("")
    out(f"    ... no process holds the order now, nobody sends anything; {wait:.1f} s pass ...")
    await anyio.sleep(wait)
    await demo.wake()

    async with demo.invocation("the next message arrives: the payment goes through") as actor:
        await demo.send(actor, {"type": "PAYMENT_SUCCEEDED"}, "pay-2")

    async with demo.invocation("the warehouse ships the order") as actor:

        def shipped(event: Mapping[str, Any]) -> None:
            demo.line("emit", f"{_json(dict(event))}  (delivered after the save succeeded)")

        actor.on("order.shipped", shipped)
        await demo.send(actor, {"type": "SHIP", "tracking": "TRK-0042"}, "ship-1")
        demo.line("status", f"{actor.snapshot.status}, output {_json(actor.snapshot.output)}")

    out("")
    out(f"Done in {time.monotonic() - started:.1f} s.")
    return demo.actor_id
