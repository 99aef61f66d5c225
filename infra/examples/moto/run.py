"""Apply the Terraform module to a moto server, then run a persisted actor on it.

::

    python infra/examples/moto/run.py                     # starts its own moto server
    python infra/examples/moto/run.py --endpoint http://127.0.0.1:5000
    python infra/examples/moto/run.py --plugin-dir /path/to/providers   # offline

Needs ``terraform`` on the PATH and ``pip install "durable-state[aws]"
"moto[server]"``. Terraform runs in a temporary copy of ``infra/`` (no state
or ``.terraform`` directory is left in the checkout); ``terraform init``
downloads the AWS provider unless ``--plugin-dir`` names a local mirror. The
script applies the module, drives an order actor with ``S3Storage`` and
``DynamoDBLockManager`` built from the module's outputs, reads the snapshot
back, and destroys everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parents[2]


def terraform(workdir: Path, *args: str) -> str:
    """Run a terraform command in ``workdir``; return its stdout.

    Raises:
        subprocess.CalledProcessError: terraform failed (its output is printed).
    """
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
    done = subprocess.run(
        ["terraform", f"-chdir={workdir}", *args, "-no-color"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        done.check_returncode()
    return done.stdout


async def drive_actor(outputs: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """Run an order actor on what Terraform created; return the stored snapshot."""
    from durable_state import Machine, assign, persisted_actor
    from durable_state.locks import DynamoDBLockManager
    from durable_state.storage import S3Storage

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
                "paid": {"type": "final"},
            },
        },
        actions={"add": assign(lambda context, event: {"items": context["items"] + 1})},
        guards={"has_items": lambda context, event: context["items"] > 0},
    )
    where = {"endpoint_url": endpoint, "region_name": outputs["region"]}
    async with (
        S3Storage(outputs["bucket"], prefix=outputs["prefix"], **where) as storage,
        DynamoDBLockManager(outputs["table_name"], **where) as locks,
    ):
        for event in ("ADD", "ADD", "CHECKOUT"):
            async with persisted_actor("order-1", machine, storage=storage, lock=locks) as actor:
                await actor.send(event)
        stored = await storage.read("order-1")
        assert stored is not None
        snapshot: dict[str, Any] = json.loads(stored.data)
        return snapshot


def run(endpoint: str, plugin_dir: str | None) -> dict[str, Any]:
    """Apply, drive an actor, destroy; return the actor's stored snapshot."""
    with tempfile.TemporaryDirectory(prefix="durable-state-infra-") as tmp:
        copy = Path(tmp) / "infra"
        shutil.copytree(
            INFRA, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "__pycache__")
        )
        workdir = copy / "examples" / "moto"
        init = ["init", "-backend=false"]
        if plugin_dir:
            init.append(f"-plugin-dir={plugin_dir}")
        terraform(workdir, *init)
        variables = ["-var", f"endpoint={endpoint}", "-var", f"name=ds-{uuid.uuid4().hex[:12]}"]
        terraform(workdir, "apply", "-auto-approve", *variables)
        try:
            raw = json.loads(terraform(workdir, "output", "-json"))
            outputs = {name: value["value"] for name, value in raw.items()}
            print("terraform outputs:", json.dumps(outputs, sort_keys=True))
            snapshot = asyncio.run(drive_actor(outputs, endpoint))
        finally:
            terraform(workdir, "destroy", "-auto-approve", *variables)
    return snapshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoint", help="a running moto server (default: start one)")
    parser.add_argument("--plugin-dir", help="a local provider mirror for terraform init")
    args = parser.parse_args(argv)
    if shutil.which("terraform") is None:
        print("terraform is not on the PATH", file=sys.stderr)
        return 2
    # moto accepts any credentials; these keep real ones from ever being used.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    try:
        snapshot = run(endpoint, args.plugin_dir)
    finally:
        if server is not None:
            server.stop()
    print(
        "actor order-1:",
        json.dumps({k: snapshot[k] for k in ("status", "value", "context")}, sort_keys=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
