"""The integrations through an ActorSystem: turns, group commit, unhandled events, the schedule.

No ``from __future__ import annotations`` here: FastAPI resolves endpoint
annotations at run time.
"""

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI

from durable_state import ActorSystem, Machine, ManualClock, PersistedActor, assign
from durable_state.errors import UnhandledEvent
from durable_state.integrations import send_event
from durable_state.integrations.aiohttp import actor_for_request, install_error_handlers
from durable_state.integrations.aws_lambda import make_schedule_handler, make_sqs_handler
from durable_state.integrations.fastapi import actor_dependency
from durable_state.integrations.fastapi import install_error_handlers as install_fastapi
from durable_state.locks import FileLockManager
from durable_state.storage import LocalFileStorage


def fastapi_app(system: ActorSystem, *, unhandled_status: int = 409) -> FastAPI:
    app = FastAPI()
    install_fastapi(app, unhandled_status=unhandled_status)
    Order = Annotated[PersistedActor, actor_dependency(system, "order")]

    @app.post("/orders/{actor_id}/events")
    async def send(actor_id: str, event: dict[str, Any]) -> dict[str, Any]:
        result = await send_event(system, actor_id, event, machine="order")
        return {"items": result.snapshot.context["items"], "outcome": result.outcome.value}

    @app.post("/orders/{actor_id}/double")
    async def double(actor: Order) -> dict[str, Any]:
        await actor.send({"type": "ADD", "by": actor.snapshot.context["items"]})
        return {"items": actor.snapshot.context["items"]}

    return app


@pytest.fixture
async def system(tmp_path: Path, machine: Machine) -> Any:
    async with (
        LocalFileStorage(tmp_path / "state") as storage,
        FileLockManager(tmp_path / "state") as locks,
    ):
        yield ActorSystem([machine], storage=storage, lock=locks)


async def test_fastapi_concurrent_events_for_one_actor_never_answer_busy(
    system: ActorSystem,
) -> None:
    transport = httpx.ASGITransport(app=fastapi_app(system))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = await asyncio.gather(
            *(client.post("/orders/o-1/events", json={"type": "ADD"}) for _ in range(50)),
            *(client.post("/orders/o-1/double") for _ in range(5)),
        )
    assert [a.status_code for a in answers] == [200] * 55
    async with system.actor("o-1") as actor:
        assert actor.snapshot.context["items"] >= 50


async def test_fastapi_an_unhandled_event_is_a_409_or_what_is_configured(
    system: ActorSystem,
) -> None:
    for status in (409, 422):
        transport = httpx.ASGITransport(app=fastapi_app(system, unhandled_status=status))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.post("/orders/o-2/events", json={"type": "ADD"})
            await client.post("/orders/o-2/events", json={"type": "CHECKOUT"})
            answer = await client.post("/orders/o-2/events", json={"type": "ADD"})
        assert answer.status_code == status
        assert answer.json()["error"] == "event_unhandled"
        assert answer.json()["actorId"] == "o-2"


async def test_send_event_raises_a_typed_error_for_an_unhandled_event(
    system: ActorSystem,
) -> None:
    await send_event(system, "o-3", {"type": "ADD"}, machine="order")
    with pytest.raises(UnhandledEvent, match="ignores it") as info:
        await send_event(system, "o-3", {"type": "NOPE"})
    assert (info.value.key, info.value.event_type, info.value.state) == ("o-3", "NOPE", "cart")


async def test_aiohttp_turns_and_unhandled_events(system: ActorSystem) -> None:
    async def add(request: web.Request) -> web.Response:
        async with actor_for_request(request, system, "order") as actor:
            await actor.send("ADD")
            items = actor.snapshot.context["items"]
        return web.json_response({"items": items})

    async def send(request: web.Request) -> web.Response:
        result = await send_event(system, request.match_info["actor_id"], await request.json())
        return web.json_response({"items": result.snapshot.context["items"]})

    app = web.Application()
    install_error_handlers(app, unhandled_status=410)
    app.router.add_post("/orders/{actor_id}/add", add)
    app.router.add_post("/orders/{actor_id}/events", send)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answers = await asyncio.gather(*(client.post("/orders/a-1/add") for _ in range(20)))
            assert [a.status_code for a in answers] == [200] * 20
            assert sorted(a.json()["items"] for a in answers) == list(range(1, 21))
            refused = await client.post("/orders/a-1/events", json={"type": "NOPE"})
            assert refused.status_code == 410
            assert refused.json()["error"] == "event_unhandled"
    finally:
        await runner.cleanup()


async def test_lambda_sqs_handler_accepts_a_system_and_logs_unhandled_records(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_sqs_handler(system, "order")
    records = [
        {"messageId": f"m{i}", "body": json.dumps({"actorId": "l-1", "event": event})}
        for i, event in enumerate(["ADD", "CHECKOUT", "ADD"])
    ]
    with caplog.at_level(logging.INFO, logger="durable_state.integrations.aws_lambda"):
        response = await handler({"Records": records})
    assert response == {"batchItemFailures": []}
    assert "record m2 was not handled in state 'paid'" in caplog.text


async def test_lambda_schedule_handler_fires_what_is_due(tmp_path: Path) -> None:
    clock = ManualClock(start_ms=1_800_000_000_000)
    reminder = Machine(
        {
            "id": "reminder",
            "initial": "waiting",
            "context": {"sent": 0},
            "states": {
                "waiting": {"after": {"60000": {"target": "sent", "actions": "send"}}},
                "sent": {},
            },
        },
        actions={"send": assign(lambda c, e: {"sent": c["sent"] + 1})},
    )
    async with LocalFileStorage(tmp_path) as storage:
        system = ActorSystem([reminder], storage=storage, clock=clock)
        for i in range(30):
            await system.send(f"r{i}", "HELLO", machine="reminder")
        await clock.advance(60_000)
        handler = make_schedule_handler(system, limit=7)

        class Context:
            def get_remaining_time_in_millis(self) -> int:
                return 60_000

        result = await handler({"source": "aws.events"}, Context())
        assert result["stepped"] == 30
        assert result["complete"] is True
        assert result["passes"] >= 5  # 7 entries a pass
        again = await handler({}, Context())
        assert again == {"stepped": 0, "passes": 1, "complete": True}
