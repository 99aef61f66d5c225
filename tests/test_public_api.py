"""The top-level package: every exported name exists, and importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import durable_state


def test_every_name_in_all_exists() -> None:
    missing = [name for name in durable_state.__all__ if not hasattr(durable_state, name)]
    assert missing == []
    assert len(set(durable_state.__all__)) == len(durable_state.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from durable_state import *", namespace)
    exported = {k for k in namespace if k != "__builtins__"}
    assert exported == set(durable_state.__all__)


def test_exceptions_share_one_root() -> None:
    for name in durable_state.__all__:
        obj = getattr(durable_state, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, durable_state.DurableStateError), name


def test_import_does_not_load_the_aws_drivers() -> None:
    code = (
        "import json, sys\n"
        "import durable_state\n"
        "from durable_state import *\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('aioboto3', 'aiobotocore', 'boto3', 'botocore'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_importing_the_package_loads_only_what_is_used() -> None:
    code = (
        "import json, sys\n"
        "import durable_state\n"
        "before = set(sys.modules)\n"
        "durable_state.Machine\n"
        "print(json.dumps([sorted(before), sorted(set(sys.modules) - before)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    before, loaded = json.loads(out.stdout)
    ours = [m for m in before if m.startswith("durable_state.")]
    assert ours == []  # nothing of the package until a name is used
    assert not {"aiofiles", "anyio", "asyncio"} & {m.split(".")[0] for m in before}
    assert "durable_state.statechart" in loaded
    assert "durable_state.storage" not in loaded  # a machine needs no backend


def test_dir_lists_the_exported_names() -> None:
    assert set(durable_state.__all__) <= set(dir(durable_state))
