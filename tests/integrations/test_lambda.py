"""The SQS Lambda handler against S3 and DynamoDB on the moto server.

Events are SQS-shaped as Lambda delivers them; the main test sends real
messages through a FIFO queue on the moto server and builds the event from
what SQS returns.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aioboto3")
import aioboto3

from durable_state import Machine
from durable_state.integrations.aws_lambda import (
    ActorEvent,
    make_sqs_handler,
    parse_json_body,
    sync_handler,
)
from durable_state.locks.dynamodb import DynamoDBLockManager
from durable_state.locks.file import FileLockManager
from durable_state.storage import LocalFileStorage, S3Storage, Storage

from .conftest import load_example, order_machine

REGION = "us-east-1"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:orders.fifo"


@dataclass
class Aws:
    endpoint: Any
    session: Any
    bucket: str
    table: str

    def storage(self) -> S3Storage:
        return S3Storage(
            self.bucket, prefix="actors/", session=self.session, **self.endpoint.client_kwargs()
        )

    def locks(self) -> DynamoDBLockManager:
        return DynamoDBLockManager(
            self.table, session=self.session, **self.endpoint.client_kwargs()
        )


@pytest.fixture(scope="session")
def aws_session(moto_server: Any) -> Any:
    return aioboto3.Session()


@pytest.fixture
async def aws(moto_server: Any, aws_session: Any, unique_name: str) -> Aws:
    async with aws_session.client("s3", **moto_server.client_kwargs()) as s3:
        await s3.create_bucket(Bucket=unique_name)
    async with DynamoDBLockManager(
        unique_name, session=aws_session, **moto_server.client_kwargs()
    ) as manager:
        await manager.create_table()
    return Aws(moto_server, aws_session, unique_name, unique_name)


@pytest.fixture
async def backends(aws: Aws) -> AsyncIterator[tuple[S3Storage, DynamoDBLockManager]]:
    async with aws.storage() as storage, aws.locks() as locks:
        yield storage, locks


def record(
    body: str | dict[str, Any], *, message_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """One SQS record in the shape Lambda's event source mapping delivers."""
    text = body if isinstance(body, str) else json.dumps(body)
    now = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
        **extra,
    }


def msg(actor_id: str, event: dict[str, Any] | str, message_id: str) -> dict[str, Any]:
    return record({"actorId": actor_id, "event": event}, message_id=message_id)


def failures(response: dict[str, list[dict[str, str]]]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


async def stored(storage: Storage, key: str) -> tuple[dict[str, Any], str]:
    found = await storage.read(key)
    assert found is not None, f"{key} was not saved"
    return json.loads(found.data), found.version


@dataclass
class FakeContext:
    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


async def test_fifo_batch_per_actor_order_and_redelivery(
    aws: Aws, aws_session: Any, backends: tuple[S3Storage, DynamoDBLockManager], machine: Machine
) -> None:
    storage, locks = backends
    kwargs = aws.endpoint.client_kwargs()
    sent: dict[str, str] = {}
    async with aws_session.client("sqs", **kwargs) as sqs:
        queue = await sqs.create_queue(
            QueueName=f"{aws.bucket}.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )
        url = queue["QueueUrl"]
        # Interleaved actors; within an actor, CHECKOUT only succeeds if the
        # ADDs before it were applied first.
        plan = [(f"o-{n}", ev) for ev in ("ADD", "ADD", "CHECKOUT") for n in range(3)]
        for i, (actor_id, ev) in enumerate(plan):
            sent_event = {"type": ev, "by": i + 1} if ev == "ADD" else {"type": ev}
            out = await sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps({"actorId": actor_id, "event": sent_event}),
                MessageGroupId=actor_id,
            )
            sent[out["MessageId"]] = actor_id
        messages: list[dict[str, Any]] = []
        while len(messages) < len(plan):
            got = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            assert got.get("Messages"), "SQS returned fewer messages than were sent"
            messages.extend(got["Messages"])
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }
    assert {r["messageId"] for r in event["Records"]} == set(sent)

    handler = make_sqs_handler(machine, storage=storage, lock=locks, max_concurrency=2)
    assert failures(await handler(event, FakeContext(60_000))) == []
    versions = {}
    for n in range(3):
        data, versions[n] = await stored(storage, f"o-{n}")
        assert data["value"] == "paid", data
        assert data["context"] == {"items": (n + 1) + (n + 4)}
        assert set(data["$durable"]["processed"]) == {
            mid for mid, actor in sent.items() if actor == f"o-{n}"
        }

    # The same batch again (a lost response, a retry): applied once, nothing written.
    assert failures(await handler(event, FakeContext(60_000))) == []
    for n in range(3):
        data, version = await stored(storage, f"o-{n}")
        assert version == versions[n]
        assert data["context"] == {"items": (n + 1) + (n + 4)}


async def test_poison_record_reports_it_and_the_actors_later_records(
    backends: tuple[S3Storage, DynamoDBLockManager], machine: Machine
) -> None:
    storage, locks = backends
    handler = make_sqs_handler(machine, storage=storage, lock=locks)
    batch = [
        msg("x", {"type": "ADD", "by": 1}, "m1"),
        msg("y", {"type": "ADD", "by": 1}, "m2"),
        msg("x", {"type": "BOOM"}, "m3"),
        record("this is not json", message_id="m4"),
        msg("x", {"type": "ADD", "by": 5}, "m5"),
        record({"event": {"type": "ADD"}}, message_id="m6"),  # no actorId
        msg("y", {"type": "ADD", "by": 2}, "m7"),
        msg("z", {"kind": "no type"}, "m8"),  # an invalid event
    ]
    response = await handler({"Records": batch}, FakeContext(60_000))
    assert failures(response) == ["m3", "m4", "m5", "m6", "m8"]
    x, _ = await stored(storage, "x")
    assert x["context"] == {"items": 1}  # the prefix before the poison record
    assert x["$durable"]["processed"] == ["m1"]
    y, _ = await stored(storage, "y")
    assert y["context"] == {"items": 3}
    assert not await storage.exists("z")

    # SQS retries the reported records: the poison one fails again and keeps
    # the later one of its actor back.
    retry = [batch[2], batch[4]]
    assert failures(await handler({"Records": retry}, FakeContext(60_000))) == ["m3", "m5"]
    # Once the poison record has gone to the dead-letter queue, the rest goes
    # through; the earlier record, delivered again, is not applied twice.
    final = [batch[0], batch[4]]
    assert failures(await handler({"Records": final}, FakeContext(60_000))) == []
    x, _ = await stored(storage, "x")
    assert x["context"] == {"items": 6}


async def test_busy_actor_reports_all_its_records(
    backends: tuple[S3Storage, DynamoDBLockManager], machine: Machine
) -> None:
    storage, locks = backends
    handler = make_sqs_handler(machine, storage=storage, lock=locks, lock_wait=None)
    batch = [msg("b-1", "ADD", "n1"), msg("b-2", "ADD", "n2"), msg("b-1", "ADD", "n3")]
    lease = await locks.acquire("b-1", ttl=30)
    try:
        assert failures(await handler({"Records": batch}, FakeContext(60_000))) == ["n1", "n3"]
    finally:
        await locks.release(lease)
    assert not await storage.exists("b-1")
    assert (await stored(storage, "b-2"))[0]["context"] == {"items": 1}
    assert failures(await handler({"Records": [batch[0], batch[2]]})) == []
    assert (await stored(storage, "b-1"))[0]["context"] == {"items": 2}


async def test_deadline_reports_unfinished_actors_and_releases_their_leases(
    tmp_path: Path, machine: Machine
) -> None:
    storage = LocalFileStorage(tmp_path)
    async with FileLockManager(tmp_path) as locks:
        handler = make_sqs_handler(machine, storage=storage, lock=locks, deadline_margin=3.0)
        batch = [msg("slow", {"type": "WAIT", "seconds": 60}, "s1"), msg("fast", "ADD", "f1")]
        started = time.monotonic()
        # 2 s left: the batch gets 1.5 s (the margin is capped at a quarter).
        response = await handler({"Records": batch}, FakeContext(2_000))
        elapsed = time.monotonic() - started
        assert failures(response) == ["s1"]
        assert 1.0 < elapsed < 10.0
        assert await storage.exists("fast")
        assert not await storage.exists("slow")
        await locks.release(await locks.acquire("slow", ttl=10))


async def test_custom_parse_and_event_id(tmp_path: Path, machine: Machine) -> None:
    def parse(rec: Mapping[str, Any]) -> ActorEvent:
        actor = rec["messageAttributes"]["actorId"]["stringValue"]
        return ActorEvent(actor, json.loads(rec["body"]))

    def dedup_id(rec: Mapping[str, Any]) -> str:
        return str(rec["attributes"]["MessageDeduplicationId"])

    storage = LocalFileStorage(tmp_path)
    handler = make_sqs_handler(machine, storage=storage, parse=parse, event_id=dedup_id)

    def rec(message_id: str, dedup: str) -> dict[str, Any]:
        r = record({"type": "ADD", "by": 3}, message_id=message_id)
        r["attributes"]["MessageDeduplicationId"] = dedup
        r["messageAttributes"] = {"actorId": {"stringValue": "c-1", "dataType": "String"}}
        return r

    # Two messages, one deduplication id: a producer that sent twice.
    response = await handler({"Records": [rec("p1", "order-7"), rec("p2", "order-7")]})
    assert failures(response) == []
    assert (await stored(storage, "c-1"))[0]["context"] == {"items": 3}


async def test_not_an_sqs_event_fails_the_invocation(tmp_path: Path, machine: Machine) -> None:
    handler = make_sqs_handler(machine, storage=LocalFileStorage(tmp_path))
    with pytest.raises(ValueError, match="Records"):
        await handler({"detail-type": "Scheduled Event"})
    with pytest.raises(ValueError, match="messageId"):
        await handler({"Records": [{"body": "{}"}]})


def test_parse_json_body_rejects_what_it_cannot_read() -> None:
    assert parse_json_body(record({"actorId": "a", "event": "GO"})) == ("a", "GO")
    for body in ("[]", "{}", '{"actorId": "", "event": "GO"}', '{"actorId": "a", "event": 3}'):
        with pytest.raises(ValueError, match="the record body"):
            parse_json_body(record(body))


def test_sync_handler_keeps_one_event_loop() -> None:
    import asyncio

    async def which_loop(event: Any, context: Any) -> int:
        return id(asyncio.get_running_loop())

    handler = sync_handler(which_loop)
    try:
        assert handler({}, None) == handler({}, None)
    finally:
        handler.close()


def test_sync_handler_serves_warm_invocations(aws: Aws) -> None:
    storage, locks = aws.storage(), aws.locks()
    handler = sync_handler(make_sqs_handler(order_machine(), storage=storage, lock=locks))
    try:
        # Two invocations of one warm environment share the clients made in the first.
        assert failures(handler({"Records": [msg("w-1", "ADD", "w1")]}, FakeContext(30_000))) == []
        assert failures(handler({"Records": [msg("w-1", "ADD", "w2")]}, FakeContext(30_000))) == []
        data = handler.run(storage.read("w-1"))
        assert data is not None
        assert json.loads(data.data)["context"] == {"items": 2}
    finally:
        handler.run(storage.aclose())
        handler.run(locks.aclose())
        handler.close()


def test_example_function_on_moto(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # The example reads its configuration from the environment, as deployed;
    # botocore takes the endpoint from AWS_ENDPOINT_URL.
    monkeypatch.setenv("STATE_BUCKET", aws.bucket)
    monkeypatch.setenv("STATE_PREFIX", "orders/")
    monkeypatch.setenv("LOCK_TABLE", aws.table)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint.url)
    example = load_example("lambda_sqs")
    try:
        batch = [msg("e-1", {"type": "ADD", "by": 2}, "e1"), msg("e-1", "CHECKOUT", "e2")]
        assert failures(example.handler({"Records": batch}, FakeContext(30_000))) == []
        found = example.handler.run(example.storage.read("e-1"))
        assert found is not None
        assert json.loads(found.data)["value"] == "paid"
    finally:
        example.handler.run(example.storage.aclose())
        example.handler.run(example.locks.aclose())
        example.handler.close()


async def test_messages_sent_in_a_batch_are_delivered_before_the_handler_returns(
    tmp_path: Path,
) -> None:
    from durable_state import ActorSystem, assign, send_to

    count = assign(lambda c, e: {"n": c["n"] + 1})
    relay = Machine(
        {
            "id": "relay",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"GO": {"actions": ["count", "tell"]}, "TOLD": "on"}}},
        },
        actions={"count": count, "tell": send_to("sink", {"type": "TOLD"}, machine="sink")},
    )
    sink = Machine(
        {
            "id": "sink",
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"TOLD": {"actions": "count"}}}},
        },
        actions={"count": count},
    )
    storage = LocalFileStorage(tmp_path)
    system = ActorSystem([relay, sink], storage=storage, lock=FileLockManager(tmp_path))
    handler = make_sqs_handler(system, "relay")
    records = [msg(f"r-{i}", "GO", f"m{i}") for i in range(5)]
    assert failures(await handler({"Records": records})) == []
    # Nothing waits for a waker: the invocation delivered before it returned.
    assert (await stored(storage, "sink"))[0]["context"] == {"n": 5}
