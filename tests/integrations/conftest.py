"""Fixtures for the integration tests: one small order machine and its backends."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from durable_state import Machine, assign
from durable_state.locks.file import FileLockManager
from durable_state.storage import LocalFileStorage


def _explode(context: Any, event: Any) -> None:
    raise RuntimeError(f"cannot handle {event['type']}")


async def _wait(context: Any, event: Any) -> None:
    await anyio.sleep(event.get("seconds", 30))


def order_machine() -> Machine:
    """Cart -> paid; ``ADD`` adds ``by`` items, ``BOOM`` fails, ``WAIT`` sleeps."""
    return Machine(
        {
            "id": "order",
            "initial": "cart",
            "context": {"items": 0},
            "states": {
                "cart": {
                    "on": {
                        "ADD": {"actions": "add"},
                        "CHECKOUT": {"target": "paid", "guard": "has_items"},
                        "BOOM": {"actions": "explode"},
                        "WAIT": {"actions": "wait"},
                    }
                },
                "paid": {"type": "final", "output": {"ok": True}},
            },
        },
        actions={
            "add": assign(lambda context, event: {"items": context["items"] + event.get("by", 1)}),
            "explode": _explode,
            "wait": _wait,
        },
        guards={"has_items": lambda context, event: context["items"] > 0},
    )


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def machine() -> Machine:
    return order_machine()


@pytest.fixture
def storage(tmp_path: Path) -> LocalFileStorage:
    return LocalFileStorage(tmp_path / "state")


@pytest.fixture
async def locks(tmp_path: Path) -> Any:
    async with FileLockManager(tmp_path / "state") as manager:
        yield manager
