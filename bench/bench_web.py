"""A FastAPI service under uvicorn with one busy actor: answers and throughput.

The scenario a new user tries first: 200 requests, 100 of them for one busy
actor and 100 spread over 20 others, 50 in flight at a time, against one
uvicorn process. Two endpoints of the same app, measured one after the other
on fresh actors:

* ``session``: the first release's way, ``async with persisted_actor(...)``
  in the endpoint, one load-lease-save per request (``lock_wait=None``: a
  busy actor answers ``409 actor_busy``, and the client retries after
  ``Retry-After``, at most 30 times);
* ``system``: ``send_event(system, ...)``, whose requests for one actor wait
  in one queue and are group-committed.

Backends: S3 + DynamoDB on a moto server (a child process), or local files
(``--files``). Reports the answers by status and code, retries, requests
given up, and completed requests per second; the goal is zero ``actor_busy``
answers with the system. Needs the ``bench`` extra (uvicorn, moto).

Usage::

    python bench/bench_web.py            # S3 + DynamoDB on moto
    python bench/bench_web.py --files    # local files
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import tempfile
import threading
import time
from typing import Any

import httpx
import uvicorn
from _moto import moto_server  # type: ignore[import-not-found]
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from durable_state import ActorSystem, Machine, assign, persisted_actor
from durable_state.errors import DurableStateError
from durable_state.integrations import http_error, send_event
from durable_state.integrations.fastapi import install_error_handlers

REQUESTS, BUSY, OTHERS, IN_FLIGHT, RETRIES = 200, 100, 20, 50, 30

ORDER = Machine(
    {
        "id": "order",
        "initial": "open",
        "context": {"items": 0},
        "states": {"open": {"on": {"ADD": {"actions": "add"}}}},
    },
    actions={"add": assign(lambda c, e: {"items": c["items"] + 1})},
)


def make_app(storage: Any, lock: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    system = ActorSystem([ORDER], storage=storage, lock=lock)

    @app.post("/session/{actor_id}")
    async def session(actor_id: str) -> Any:
        try:
            async with persisted_actor(actor_id, ORDER, storage=storage, lock=lock) as actor:
                await actor.send("ADD")
                items = actor.snapshot.context["items"]
        except DurableStateError as exc:
            answer = http_error(exc)
            if answer is None:
                raise
            return JSONResponse(answer.body(), answer.status, dict(answer.headers))
        return {"items": items}

    @app.post("/system/{actor_id}")
    async def system_send(actor_id: str) -> Any:
        result = await send_event(system, actor_id, "ADD", machine="order")
        return {"items": result.snapshot.context["items"]}

    return app


async def drive(port: int, endpoint: str, run: str) -> dict[str, Any]:
    ids = [f"{run}-busy"] * BUSY + [f"{run}-other-{i % OTHERS}" for i in range(REQUESTS - BUSY)]
    answers: collections.Counter[str] = collections.Counter()
    retries = given_up = 0
    limiter = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:

        async def one(actor_id: str) -> None:
            nonlocal retries, given_up
            async with limiter:
                for _ in range(RETRIES):
                    response = await client.post(f"/{endpoint}/{actor_id}")
                    code = (
                        response.json().get("error", "ok") if response.status_code != 200 else "ok"
                    )
                    answers[f"{response.status_code} {code}"] += 1
                    if response.status_code == 200:
                        return
                    retries += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")) / 10)
                given_up += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        elapsed = time.perf_counter() - started
    return {
        "answers": dict(answers),
        "retries": retries,
        "given_up": given_up,
        "completed_per_s": (REQUESTS - given_up) / elapsed,
    }


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


def main(files: bool) -> None:
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if files:
            from durable_state import FileLockManager, LocalFileStorage

            storage: Any = LocalFileStorage(tmp)
            lock: Any = FileLockManager(tmp)
            label = "local files"
        else:
            from durable_state import DynamoDBLockManager, S3Storage

            url = stack.enter_context(moto_server())
            storage = S3Storage("bench-web", endpoint_url=url)
            lock = DynamoDBLockManager("bench-web", endpoint_url=url)

            async def create() -> None:
                async with S3Storage("bench-web", endpoint_url=url) as maker:
                    client = await maker._aws.get()
                    await client.create_bucket(Bucket="bench-web")
                async with DynamoDBLockManager("bench-web", endpoint_url=url) as tables:
                    await tables.create_table()

            asyncio.run(create())
            label = "S3 + DynamoDB (moto)"
        server, thread, port = serve(make_app(storage, lock))
        try:
            print(
                f"FastAPI under uvicorn, {label}: {REQUESTS} requests, {BUSY} for one actor, "
                f"{IN_FLIGHT} in flight"
            )
            for endpoint in ("session", "system"):
                result = asyncio.run(drive(port, endpoint, endpoint))
                answers = ", ".join(f"{k}: {v}" for k, v in sorted(result["answers"].items()))
                print(
                    f"  {endpoint:8s} {result['completed_per_s']:6.1f} requests/s; "
                    f"answers {answers}; retries {result['retries']}, given up {result['given_up']}"
                )
        finally:
            server.should_exit = True
            thread.join(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", action="store_true", help="local files instead of moto")
    main(parser.parse_args().files)
