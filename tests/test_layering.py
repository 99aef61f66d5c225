"""The package's layers, enforced on its imports (read with ``ast``, nothing is imported).

From the bottom up::

    foundation  errors, _json, _keys, _clock, _aws,        shared by everything below the top
                _dynamodb, _retry, _shield, _await, _options, _posix, _unique
    core        statechart/                                pure and synchronous
    backends    storage/, locks/                           two independent families
    shell       actor, persisted, system, _mailbox,        runs the core on the backends
                _item_leases
    surface     cli, __main__, integrations/, testing/,    what users touch
                _demo, _diagram, _urls, _format
    top         durable_state/__init__.py                  re-exports

Rules:

1. A module imports only from its own layer or lower ones.
2. The core imports no asyncio, anyio or other I/O library, not even through
   the foundation modules it uses (only ``errors`` and ``_json``).
3. Storage and locks never import each other, the core, or anything above.
4. A surface module never imports a private module (a path component that
   starts with ``_``) or a private name of a lower layer: it uses what those
   layers make public. Its own layer's private helpers (``_format``) are fine.

Every import counts, including those inside functions and under
``TYPE_CHECKING``. The crossings still to fix are listed in ``KNOWN``, each
with what should replace it; the list may only shrink (a listed crossing
that is gone fails the test, so that the list stays true).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "durable_state"

#: Layers from the bottom up; a module belongs to the first prefix it matches.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": (
        "errors",
        "_json",
        "_keys",
        "_clock",
        "_aws",
        "_dynamodb",
        "_retry",
        "_shield",
        "_await",
        "_options",
        "_posix",
        "_unique",
    ),
    "core": ("statechart",),
    "backends": ("storage", "locks"),
    "shell": ("actor", "persisted", "system", "_mailbox", "_item_leases"),
    "surface": (
        "cli",
        "__main__",
        "integrations",
        "testing",
        "_demo",
        "_diagram",
        "_urls",
        "_format",
    ),
    "top": ("",),
}
ORDER = list(LAYERS)
#: The only foundation modules the core may use.
CORE_MAY_USE = frozenset({f"{PACKAGE}.errors", f"{PACKAGE}._json"})
#: Libraries that wait: the core must not reach them.
ASYNC_LIBRARIES = frozenset(
    {"asyncio", "anyio", "trio", "aiofiles", "aioboto3", "aiobotocore", "aiohttp", "botocore"}
)

#: Crossings still to fix, each with what should replace it.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One imported module, or one name imported from a module."""

    importer: str
    module: str
    name: str | None
    line: int

    def __str__(self) -> str:
        what = self.module if self.name is None else f"{self.module}.{self.name}"
        return f"{self.importer}:{self.line} imports {what}"


def module_names(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    names: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def read_imports(root: Path, package: str = PACKAGE) -> list[Import]:
    """Every import statement of every module of the package, resolved to absolute names."""
    modules = module_names(root, package)
    found: list[Import] = []
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(importer, alias.name, None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = importer.split(".")
                    if not is_package:
                        base.pop()
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:  # "from . import _json" imports a module
                        found.append(Import(importer, submodule, None, node.lineno))
                    else:
                        found.append(Import(importer, source, alias.name, node.lineno))
    return found


def layer(module: str, package: str = PACKAGE) -> str | None:
    """The layer of a module of the package (``None`` for anything outside it)."""
    if module != package and not module.startswith(package + "."):
        return None
    rest = module[len(package) + 1 :]
    for name, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (prefix == "" and rest == "") or (
                prefix and (rest == prefix or rest.startswith(prefix + "."))
            ):
                return name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _family(module: str) -> str:
    """``storage`` or ``locks`` for a backend module."""
    return module.split(".")[1]


def _private(module: str, name: str | None, package: str = PACKAGE) -> bool:
    parts = module.split(".")[1:]
    if any(p.startswith("_") and not p.startswith("__") for p in parts):
        return True
    return name is not None and name.startswith("_") and not name.startswith("__")


def violations(imports: Iterable[Import], package: str = PACKAGE) -> list[tuple[Import, str]]:
    """Each import that breaks a rule, with the rule it breaks."""
    imports = list(imports)
    broken: list[tuple[Import, str]] = []
    by_importer: dict[str, list[Import]] = {}
    for imp in imports:
        by_importer.setdefault(imp.importer, []).append(imp)
    for imp in imports:
        own, target = layer(imp.importer, package), layer(imp.module, package)
        assert own is not None
        top_level = imp.module.split(".")[0]
        if own == "core":
            if top_level in ASYNC_LIBRARIES:
                broken.append((imp, "the core imports no asyncio, anyio or I/O library"))
            elif target is not None and target != "core" and imp.module not in CORE_MAY_USE:
                broken.append((imp, "the core imports nothing above it"))
            elif imp.module in CORE_MAY_USE:
                for reached in _reach(imp.module, by_importer, package):
                    if reached.module.split(".")[0] in ASYNC_LIBRARIES:
                        broken.append(
                            (imp, f"the core reaches {reached.module} through {reached.importer}")
                        )
        if target is None:
            continue
        if target == "top" and imp.name is not None and imp.name.startswith("__"):
            continue  # the package's metadata (__version__) is for everyone
        if ORDER.index(target) > ORDER.index(own):
            broken.append((imp, f"a {own} module imports from the {target} layer above it"))
        elif (
            own == "backends"
            and target == "backends"
            and _family(imp.importer) != _family(imp.module)
        ):
            broken.append((imp, "storage and locks never import each other"))
        elif own == "backends" and target == "core":
            broken.append((imp, "storage and locks never import the core"))
        elif own == "surface" and target != "surface" and _private(imp.module, imp.name):
            broken.append((imp, "a surface module uses only the public API of lower layers"))
    return broken


def _reach(module: str, by_importer: Mapping[str, list[Import]], package: str) -> list[Import]:
    """Every import made by ``module`` and, transitively, by the package modules it imports."""
    seen: set[str] = set()
    out: list[Import] = []
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imp in by_importer.get(current, ()):
            out.append(imp)
            if layer(imp.module, package) is not None:
                todo.append(imp.module)
    return out


# --------------------------------------------------------------------------- #
# The package as it is
# --------------------------------------------------------------------------- #


def test_every_module_has_a_layer_and_the_scan_sees_the_imports() -> None:
    imports = read_imports(ROOT)
    assert {layer(name) for name in module_names(ROOT)} == set(LAYERS)
    seen = {(i.importer, i.module) for i in imports}
    # A scan that stopped seeing imports would make every rule pass.
    assert ("durable_state.persisted", "durable_state.statechart") in seen
    assert ("durable_state.cli", "durable_state._urls") in seen  # "from ._urls import ..."
    assert ("durable_state.persisted", "durable_state._json") in seen  # "from . import _json"
    assert ("durable_state.storage.s3", "durable_state._aws") in seen  # "from .._aws import ..."
    assert ("durable_state.cli", "durable_state._demo") in seen  # inside a function


def test_the_layers_hold() -> None:
    found: dict[tuple[str, str], list[str]] = {}
    for imp, rule in violations(read_imports(ROOT)):
        found.setdefault((imp.importer, imp.module), []).append(f"{imp}: {rule}")
    new = {key: lines for key, lines in found.items() if key not in KNOWN}
    assert not new, "imports that cross the layers:\n" + "\n".join(
        line for lines in new.values() for line in lines
    )
    gone = sorted(set(KNOWN) - set(found))
    assert not gone, f"fixed, so remove from KNOWN: {gone}"


def test_the_cli_and_its_helpers_cross_nothing() -> None:
    mine = {"durable_state.cli", "durable_state._diagram", "durable_state._demo"}
    mine |= {"durable_state._urls", "durable_state._format"}
    assert not [str(imp) for imp, _ in violations(read_imports(ROOT)) if imp.importer in mine]


# --------------------------------------------------------------------------- #
# The checker itself, on a package made up for the purpose
# --------------------------------------------------------------------------- #

SYNTHETIC = {
    "__init__.py": "from .persisted import run\n",
    "errors.py": "class Oops(Exception): ...\n",
    "_json.py": "import json\nfrom .errors import Oops\n",
    "_clock.py": "import asyncio\n",
    "statechart/__init__.py": "from ._machine import Machine\n",
    "statechart/_machine.py": (
        "from .._json import dumps\n"
        "from ..errors import Oops\n"
        "import anyio\n"  # rule 2
        "from .._clock import now\n"  # rule 2 (a foundation module the core may not use)
        "def later():\n"
        "    from ..persisted import run\n"  # rules 1 and 2, hidden in a function
    ),
    "storage/__init__.py": "",
    "storage/local.py": (
        "from ..locks.file import FileLockManager\n"  # rule 3
        "from ..statechart import Machine\n"  # rule 3
        "from ..errors import Oops\n"
    ),
    "locks/__init__.py": "",
    "locks/file.py": "from .._clock import now\n",
    "persisted.py": (
        "from typing import TYPE_CHECKING\n"
        "from .statechart import Machine\n"
        "if TYPE_CHECKING:\n"
        "    from .cli import main\n"  # rule 1, even for typing only
    ),
    "cli.py": (
        "from . import __version__\n"  # the package's metadata: fine
        "from ._format import when\n"  # its own layer's helper: fine
        "from .statechart import Machine\n"
        "from .statechart._machine import Machine as M\n"  # rule 4: private module
        "from .persisted import _helper\n"  # rule 4: private name
        "from . import _clock\n"  # rule 4: private foundation module
    ),
    "_format.py": "import datetime\n",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    for name, source in SYNTHETIC.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return tmp_path


def test_the_checker_finds_each_kind_of_crossing(synthetic: Path) -> None:
    found = {(str(imp), rule) for imp, rule in violations(read_imports(synthetic))}
    assert found == {
        (
            "durable_state.statechart._machine:3 imports anyio",
            "the core imports no asyncio, anyio or I/O library",
        ),
        (
            "durable_state.statechart._machine:4 imports durable_state._clock.now",
            "the core imports nothing above it",
        ),
        (
            "durable_state.statechart._machine:6 imports durable_state.persisted.run",
            "the core imports nothing above it",
        ),
        (
            "durable_state.statechart._machine:6 imports durable_state.persisted.run",
            "a core module imports from the shell layer above it",
        ),
        (
            "durable_state.storage.local:1 imports durable_state.locks.file.FileLockManager",
            "storage and locks never import each other",
        ),
        (
            "durable_state.storage.local:2 imports durable_state.statechart.Machine",
            "storage and locks never import the core",
        ),
        (
            "durable_state.persisted:4 imports durable_state.cli.main",
            "a shell module imports from the surface layer above it",
        ),
        (
            "durable_state.cli:4 imports durable_state.statechart._machine.Machine",
            "a surface module uses only the public API of lower layers",
        ),
        (
            "durable_state.cli:5 imports durable_state.persisted._helper",
            "a surface module uses only the public API of lower layers",
        ),
        (
            "durable_state.cli:6 imports durable_state._clock",
            "a surface module uses only the public API of lower layers",
        ),
    }


def test_the_core_may_not_reach_asyncio_through_a_foundation_module(synthetic: Path) -> None:
    (synthetic / PACKAGE / "_json.py").write_text("import asyncio\n")
    found = [(str(imp), rule) for imp, rule in violations(read_imports(synthetic))]
    assert (
        "durable_state.statechart._machine:1 imports durable_state._json.dumps",
        "the core reaches asyncio through durable_state._json",
    ) in found


def test_a_clean_package_passes(synthetic: Path) -> None:
    for name in ("statechart/_machine.py", "storage/local.py", "persisted.py", "cli.py"):
        (synthetic / PACKAGE / name).write_text(
            "from ..errors import Oops\n" if "/" in name else ""
        )
    assert violations(read_imports(synthetic)) == []
