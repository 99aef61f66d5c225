"""AWS Lambda integration: drive persisted actors from SQS batches.

::

    # handler.py -- created once per execution environment, reused while warm
    import os
    from durable_state import ActorSystem, DynamoDBLockManager, S3Storage
    from durable_state.integrations.aws_lambda import (
        make_schedule_handler, make_sqs_handler, sync_handler,
    )

    storage = S3Storage(os.environ["STATE_BUCKET"], prefix=os.environ.get("STATE_PREFIX", ""))
    locks = DynamoDBLockManager(os.environ["LOCK_TABLE"])
    system = ActorSystem([machine], storage=storage, lock=locks, lock_wait=10)
    handler = sync_handler(make_sqs_handler(system, machine))   # what Lambda's runtime calls
    wake = sync_handler(make_schedule_handler(system))          # for a rate(1 minute) rule

Each record's body names an actor and an event, by default as JSON
``{"actorId": "order-42", "event": {"type": "ADD"}}``. The records of one
actor are applied in batch order, in one :func:`~durable_state.persisted_actor`
session (one lease, one read, one save); different actors run concurrently,
at most ``max_concurrency`` at a time.

Exactly-once state changes. The SQS ``messageId`` is the event id, so a
message delivered again (a retry, a batch whose response was lost) is
recognised and skipped instead of being applied twice. The id is remembered
in the snapshot itself and saved in the same compare-and-set as the state.

Partial batch failures. The handler returns ``{"batchItemFailures": [...]}``
(enable ``ReportBatchItemFailures`` on the event source mapping): only the
listed messages come back. If a record fails, the records of the same actor
before it are committed and the failed record and every later record of that
actor are reported, so they are retried in their original order; other
actors are not affected. A record whose body cannot be parsed is reported on
its own. If the actor cannot be opened or saved (held by someone else,
a version conflict, an unavailable backend), all its records are reported.
With FIFO queues, use the actor id as the ``MessageGroupId``.

Warm invocations. Storage and lock objects made at module scope are reused
by every invocation of the execution environment: their constructors do no
I/O, and each creates its aioboto3 client on first use and keeps it. Clients
are bound to the event loop they were made on, so :func:`sync_handler` runs
every invocation on one event loop that it keeps, rather than a fresh
``asyncio.run`` loop per invocation that would drop the connections.

Deadline. When the Lambda ``context`` tells the remaining time, the batch is
given that time minus a margin; actors still running then are cancelled
(their leases released, nothing saved) and their records reported, so that
a timeout never fails the whole batch.

Unhandled events. A record whose event the actor's state does not handle
changes nothing; it is logged and counts as processed (retrying it would
change nothing either).

Timers. :func:`make_schedule_handler` builds the handler for an EventBridge
schedule rule (``rate(1 minute)``): each invocation runs the system's waker
(:meth:`~durable_state.ActorSystem.fire_due`) until nothing is due or the
invocation's time is nearly up; what is left is due at the next run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import anyio

from ..persisted import SessionArgs, SessionOptions

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack
from ..persisted import Outcome
from ..system import ActorSystem
from . import system_of

if TYPE_CHECKING:
    from ..locks import LockManager
    from ..statechart import Machine
    from ..storage import Storage

__all__ = (
    "ActorEvent",
    "BatchResponse",
    "ScheduleHandler",
    "SqsBatchHandler",
    "SyncHandler",
    "make_schedule_handler",
    "make_sqs_handler",
    "message_id",
    "parse_json_body",
    "sync_handler",
)

logger: logging.Logger = logging.getLogger("durable_state.integrations.aws_lambda")

T = TypeVar("T")
R = TypeVar("R")
Event = Mapping[str, Any] | str
#: ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``
BatchResponse = dict[str, list[dict[str, str]]]


class ActorEvent(NamedTuple):
    """What a record asks for: send ``event`` to the actor ``actor_id``."""

    actor_id: str
    event: Event


def parse_json_body(record: Mapping[str, Any]) -> ActorEvent:
    """The default record parser: a JSON body ``{"actorId": ..., "event": ...}``.

    ``event`` is a mapping with a ``"type"`` or a bare type string (it is
    validated when it is sent).

    Args:
        record: one SQS record of a Lambda event.

    Returns:
        The actor id and the event.

    Raises:
        ValueError: the body is not such a JSON object.
    """
    try:
        body = json.loads(record["body"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the record body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("the record body is not a JSON object")
    actor_id, event = body.get("actorId"), body.get("event")
    if not isinstance(actor_id, str) or not actor_id:
        raise ValueError("the record body has no 'actorId' string")
    if not isinstance(event, dict | str):
        raise ValueError("the record body has no 'event' object or string")
    return ActorEvent(actor_id, event)


def message_id(record: Mapping[str, Any]) -> str:
    """The default event id: the record's SQS ``messageId``.

    Raises:
        KeyError: the record has no ``messageId``.
    """
    value: str = record["messageId"]
    return value


@dataclass(frozen=True)
class _Item:
    message_id: str
    event_id: str
    event: Event


class _RecordFailed(Exception):
    """Raised out of an actor session to discard it: record ``index`` failed."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class SqsBatchHandler:
    """An async Lambda handler for SQS batches; build it with :func:`make_sqs_handler`.

    Call it as ``await handler(event, context)``. See the module docs for
    ordering, idempotence, partial failures and the deadline.
    """

    def __init__(
        self,
        system: ActorSystem,
        machine: Machine | str | None,
        *,
        parse: Callable[[Mapping[str, Any]], tuple[str, Event]],
        event_id: Callable[[Mapping[str, Any]], str],
        create: bool,
        input: Any,
        session_args: SessionArgs,
        max_concurrency: int,
        deadline_margin: float,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency!r}")
        if deadline_margin < 0:
            raise ValueError(f"deadline_margin must be >= 0, not {deadline_margin!r}")
        self.system = system
        self.machine = machine
        self.max_concurrency = max_concurrency
        self.deadline_margin = deadline_margin
        self._parse = parse
        self._event_id = event_id
        self._create = create
        self._input = input
        self._session_args = session_args

    def __repr__(self) -> str:
        return f"SqsBatchHandler({self.system!r}, max_concurrency={self.max_concurrency})"

    async def __call__(self, event: Mapping[str, Any], context: Any = None) -> BatchResponse:
        """Apply one batch and report the records to retry.

        Args:
            event: the Lambda event, ``{"Records": [...]}``.
            context: the Lambda context; its ``get_remaining_time_in_millis``
                sets the deadline (optional).

        Returns:
            ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``,
            in batch order; empty when every record was applied.

        Raises:
            ValueError: the event is not an SQS batch (no ``Records`` list, or
                a record without a ``messageId``): Lambda then retries the
                whole batch.
        """
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            raise ValueError("not an SQS event: no 'Records' list")
        order: list[str] = []
        failed: set[str] = set()
        actors: dict[str, list[_Item]] = {}
        for record in records:
            mid = record.get("messageId") if isinstance(record, Mapping) else None
            if not isinstance(mid, str) or not mid:
                raise ValueError("not an SQS event: a record has no 'messageId'")
            order.append(mid)
            try:
                actor_id, ev = self._parse(record)
                if not isinstance(actor_id, str) or not actor_id:
                    raise ValueError(f"parse() gave no actor id but {actor_id!r}")
                item = _Item(mid, self._event_id(record), ev)
            except Exception:
                # Nothing else depends on a record nobody can read: report it alone.
                logger.warning("record %s cannot be parsed; reporting it", mid, exc_info=True)
                failed.add(mid)
                continue
            actors.setdefault(actor_id, []).append(item)

        done: dict[str, int] = {}
        limiter = anyio.CapacityLimiter(self.max_concurrency)
        with anyio.move_on_after(self._budget(context)) as scope:
            async with anyio.create_task_group() as tg:
                for actor_id, items in actors.items():
                    tg.start_soon(self._run_actor, actor_id, items, limiter, done)
            # Messages the batch's steps sent leave before the invocation
            # ends; what is not delivered in time stays in its sender's
            # outbox for a waker.
            await self.system.idle()
        if scope.cancelled_caught and len(done) == len(actors):
            logger.warning(
                "batch deadline reached while delivering messages; a waker delivers the rest"
            )
        elif scope.cancelled_caught:
            logger.warning(
                "batch deadline reached: %d of %d actors unfinished; their records are reported",
                len(actors) - len(done),
                len(actors),
            )
        for actor_id, items in actors.items():
            failed.update(item.message_id for item in items[done.get(actor_id, 0) :])
        reported = list(dict.fromkeys(m for m in order if m in failed))
        logger.info(
            "batch of %d records for %d actors: %d reported for retry",
            len(records),
            len(actors),
            len(reported),
        )
        return {"batchItemFailures": [{"itemIdentifier": m} for m in reported]}

    def _budget(self, context: Any) -> float | None:
        return _budget(context, self.deadline_margin)

    async def _run_actor(
        self,
        actor_id: str,
        items: list[_Item],
        limiter: anyio.CapacityLimiter,
        done: dict[str, int],
    ) -> None:
        async with limiter:
            try:
                committed = await self._apply(actor_id, items)
            except Exception:
                # The actor could not be opened or saved (busy, conflict,
                # backend down, corrupt snapshot): none of its records count.
                logger.warning(
                    "actor %s: %d records not applied; reporting them",
                    actor_id,
                    len(items),
                    exc_info=True,
                )
                committed = 0
        done[actor_id] = committed

    async def _apply(self, actor_id: str, items: list[_Item]) -> int:
        """Apply ``items`` in order and save; return how many were committed.

        When record ``i`` fails, the session is discarded (the failed record
        may have changed the actor half-way) and records ``0..i-1`` are applied
        again in a fresh session and saved. Their state changes are committed
        once; custom actions of those records run again, as they would under
        any at-least-once redelivery.
        """
        end = len(items)
        while end:
            try:
                async with self.system.actor(
                    actor_id,
                    self.machine,
                    input=self._input,
                    create=self._create,
                    **self._session_args,
                ) as pa:
                    for index in range(end):
                        item = items[index]
                        try:
                            outcome = await pa.send(item.event, event_id=item.event_id)
                        except Exception as exc:
                            raise _RecordFailed(index) from exc
                        if outcome is Outcome.UNHANDLED:
                            logger.info(
                                "actor %s: record %s was not handled in state %r; nothing changed",
                                actor_id,
                                item.message_id,
                                pa.snapshot.value,
                            )
            except _RecordFailed as failure:
                logger.warning(
                    "actor %s: record %s failed; reporting it and %d later records of the actor",
                    actor_id,
                    items[failure.index].message_id,
                    len(items) - failure.index - 1,
                    exc_info=failure.__cause__,
                )
                end = failure.index
                continue
            return end
        return 0


def make_sqs_handler(
    target: ActorSystem | Machine,
    machine: Machine | str | None = None,
    *,
    storage: Storage | None = None,
    lock: LockManager | None = None,
    parse: Callable[[Mapping[str, Any]], tuple[str, Event]] = parse_json_body,
    event_id: Callable[[Mapping[str, Any]], str] = message_id,
    create: bool = True,
    input: Any = None,
    options: SessionOptions | None = None,
    max_concurrency: int = 8,
    deadline_margin: float = 3.0,
    **overrides: Unpack[SessionArgs],
) -> SqsBatchHandler:
    """Build an async Lambda handler that applies SQS records to persisted actors.

    Args:
        target: the :class:`~durable_state.ActorSystem` to serve, or a machine
            (then give ``storage`` and, optionally, ``lock`` and options; its
            ``lock_wait`` defaults to 10 s here: a batch waits for an actor
            another invocation holds rather than failing at once).
        machine: with a system, the machine (or id) of new actors.
        storage: with a machine: where snapshots are kept (create it once,
            at module scope).
        lock: with a machine: a lock manager (``DynamoDBLockManager`` across
            Lambdas), or ``None`` for optimistic compare-and-set only.
        parse: ``parse(record) -> (actor_id, event)``; raises for a record it
            cannot read (default: :func:`parse_json_body`).
        event_id: ``event_id(record) -> str``, the id that makes a
            redelivered record a no-op (default: the SQS ``messageId``).
        create: create missing actors (else their records are reported).
        input: machine input for newly created actors.
        options: with a machine: the session options. Keep
            ``processed_limit`` above the number of messages an actor
            receives within the queue's retry window.
        max_concurrency: how many actors are processed at the same time.
        deadline_margin: seconds kept free before the Lambda timeout (at most
            a quarter of the remaining time).
        **overrides: session options (see :class:`~durable_state.SessionOptions`).

    Returns:
        The handler: ``await handler(event, context)`` returns the
        ``batchItemFailures`` response.

    Raises:
        ValueError: ``max_concurrency`` < 1 or ``deadline_margin`` < 0.
        TypeError: a system together with storage, lock or options.
    """
    if not isinstance(target, ActorSystem) and options is None and "lock_wait" not in overrides:
        overrides["lock_wait"] = 10.0
    system, session_args = system_of(
        target, storage=storage, lock=lock, options=options, overrides=overrides
    )
    chosen = (
        machine
        if machine is not None
        else (target if not isinstance(target, ActorSystem) else None)
    )
    return SqsBatchHandler(
        system,
        chosen,
        parse=parse,
        event_id=event_id,
        create=create,
        input=input,
        session_args=session_args,
        max_concurrency=max_concurrency,
        deadline_margin=deadline_margin,
    )


class ScheduleHandler:
    """An async Lambda handler for a schedule rule that fires due timers.

    Build it with :func:`make_schedule_handler`; call it as ``await
    handler(event, context)``.
    """

    def __init__(
        self, system: ActorSystem, *, limit: int, concurrency: int, deadline_margin: float
    ) -> None:
        if limit < 1 or concurrency < 1:
            raise ValueError("limit and concurrency must be at least 1")
        if deadline_margin < 0:
            raise ValueError(f"deadline_margin must be >= 0, not {deadline_margin!r}")
        self.system = system
        self.limit = limit
        self.concurrency = concurrency
        self.deadline_margin = deadline_margin

    def __repr__(self) -> str:
        return f"ScheduleHandler({self.system!r}, limit={self.limit})"

    async def __call__(self, event: Any = None, context: Any = None) -> dict[str, Any]:
        """Run waker passes until nothing is due or the time is nearly up.

        Args:
            event: the scheduled event (not read).
            context: the Lambda context; its ``get_remaining_time_in_millis``
                bounds the work (the rest is left for the next run).

        Returns:
            ``{"stepped": n, "passes": k, "complete": bool}``; ``complete`` is
            False when the time ran out with work left.
        """
        stepped = passes = 0
        complete = False
        with anyio.move_on_after(_budget(context, self.deadline_margin)) as scope:
            while True:
                stepped += await self.system.fire_due(
                    limit=self.limit, concurrency=self.concurrency
                )
                passes += 1
                if not self.system.more_due:
                    complete = True
                    break
            await self.system.idle()  # the messages the visits sent (see SqsBatchHandler)
        if scope.cancelled_caught and complete:
            logger.warning("schedule run: time is up while delivering messages; a waker goes on")
        elif scope.cancelled_caught:
            logger.warning(
                "schedule run: time is up with due actors left; the next run serves them"
            )
        logger.info("schedule run: %d actors stepped in %d passes", stepped, passes)
        return {"stepped": stepped, "passes": passes, "complete": complete}


def make_schedule_handler(
    system: ActorSystem, *, limit: int = 1000, concurrency: int = 16, deadline_margin: float = 3.0
) -> ScheduleHandler:
    """Build an async Lambda handler for an EventBridge schedule rule (``rate(1 minute)``).

    Each invocation fires what is due within its remaining time (minus
    ``deadline_margin``) and leaves the rest for the next run; actors still
    being visited when the time is up are cancelled (leases released,
    nothing half-done saved). Several invocations, or a worker running
    :meth:`~durable_state.ActorSystem.run_waker` beside them, are safe: the
    lease and the compare-and-set decide.

    Args:
        system: the system whose due actors are woken.
        limit: the most index entries read per pass.
        concurrency: the most actors visited at the same time.
        deadline_margin: seconds kept free before the Lambda timeout (at most
            a quarter of the remaining time).

    Returns:
        The handler.

    Raises:
        ValueError: ``limit`` or ``concurrency`` < 1, or ``deadline_margin`` < 0.
    """
    return ScheduleHandler(
        system, limit=limit, concurrency=concurrency, deadline_margin=deadline_margin
    )


def _budget(context: Any, margin: float) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    seconds = max(float(remaining()) / 1000.0, 0.0)
    # A quarter of the time at most, so a short Lambda timeout still works.
    return seconds - min(margin, seconds / 4)


class SyncHandler(Generic[T]):
    """A synchronous Lambda entry point running an async handler on a kept event loop.

    Every call runs on the same event loop, so clients created during one
    invocation (aioboto3's, bound to their loop) serve the next ones while
    the execution environment is warm. Build it with :func:`sync_handler`.
    """

    def __init__(self, handler: Callable[[Any, Any], Awaitable[T]]) -> None:
        self.handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, event: Any, context: Any = None) -> T:
        """Run ``handler(event, context)`` to completion and return its result.

        Raises:
            RuntimeError: called from inside a running event loop.
            Exception: whatever the handler raised.
        """
        return self.run(self._call(event, context))

    async def _call(self, event: Any, context: Any) -> T:
        return await self.handler(event, context)

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run any coroutine on the kept loop (e.g. ``storage.aclose()`` before :meth:`close`).

        Raises:
            RuntimeError: called from inside a running event loop.
        """
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        """Cancel leftover tasks and close the loop; a later call opens a new one.

        Close storage and lock managers first, with :meth:`run`, so their
        connections are closed on the loop that opened them.
        """
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def sync_handler(handler: Callable[[Any, Any], Awaitable[T]]) -> SyncHandler[T]:
    """Wrap an async handler for Lambda's (synchronous) Python runtime.

    Args:
        handler: ``async def handler(event, context)``, e.g. from
            :func:`make_sqs_handler`.

    Returns:
        A callable ``handler(event, context)`` that keeps one event loop for
        all invocations (see :class:`SyncHandler`).
    """
    return SyncHandler(handler)
