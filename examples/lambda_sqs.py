"""An SQS-triggered Lambda function driving order actors on S3 and DynamoDB.

Deploy ``handler`` (``lambda_sqs.handler``) with:

* environment: ``STATE_BUCKET``, ``STATE_PREFIX`` and ``LOCK_TABLE`` -- the
  ``bucket``, ``prefix`` and ``table_name`` outputs of the Terraform module in
  ``infra/`` -- and a role with its ``policy_arn`` attached;
* an SQS event source mapping with ``FunctionResponseTypes =
  ["ReportBatchItemFailures"]`` (only failed records are retried) and a
  dead-letter queue on the source queue for records that keep failing;
* message bodies like ``{"actorId": "order-42", "event": {"type": "ADD"}}``
  (and ``MessageGroupId = actorId`` on a FIFO queue).

Everything below runs once per execution environment (cold start); warm
invocations reuse the storage and lock objects, their aioboto3 clients and
the event loop they are bound to.
"""

from __future__ import annotations

import logging
import os

from durable_state import Machine, assign
from durable_state.integrations.aws_lambda import make_sqs_handler, sync_handler
from durable_state.locks import DynamoDBLockManager
from durable_state.storage import S3Storage

logging.getLogger("durable_state").setLevel(logging.INFO)

machine = Machine(
    {
        "id": "order",
        "initial": "cart",
        "context": {"items": 0},
        "states": {
            "cart": {
                "on": {
                    "ADD": {"actions": "add"},
                    "CHECKOUT": {"target": "paid", "guard": "has_items"},
                }
            },
            "paid": {"type": "final", "output": {"ok": True}},
        },
    },
    actions={
        "add": assign(lambda context, event: {"items": context["items"] + event.get("by", 1)})
    },
    guards={"has_items": lambda context, event: context["items"] > 0},
)

storage = S3Storage(os.environ["STATE_BUCKET"], prefix=os.environ.get("STATE_PREFIX", ""))
locks = DynamoDBLockManager(os.environ.get("LOCK_TABLE", "lockingTable"))

#: The async handler (for async runtimes and tests) ... The lease is renewed
#: while a batch runs; 120 s bounds how long an invocation killed by its
#: timeout keeps its actors blocked.
handle_batch = make_sqs_handler(machine, storage=storage, lock=locks, lock_ttl=120.0)
#: ... and the entry point of Lambda's Python runtime.
handler = sync_handler(handle_batch)
