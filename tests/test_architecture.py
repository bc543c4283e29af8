"""The architecture checks itself: every import of every part obeys docs/architecture.md.

The rules are data (:data:`MAY_IMPORT`, :data:`SERVER_STORE`, :data:`NEVER`). The walk reads each
module's syntax tree, so it sees what an import-time check cannot: imports under
``if TYPE_CHECKING:``, inside functions, relative imports, ``importlib.import_module("...")`` with a
literal name, and the ``"module:attr"`` strings of the lazy registries (sinks, store backends,
CLI parts), which are imports that merely happen later.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Our top-level packages; imports of anything else (stdlib, third party) are not ours to police
# here, except through NEVER below.
OURS = ("kits", "edge", "gateway", "server", "dashboards", "suitcase", "deploy")

# package -> the packages of ours it may import (itself always). suitcase is the composition root.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "kits": (),
    "edge": ("kits",),
    "gateway": ("kits",),
    "server": ("kits",),  # and the store's read interface: SERVER_STORE
    "dashboards": ("kits",),
    "deploy": (),
    "suitcase": OURS,
}

# The one door between tiers: the server reads the time-series store through its read interface
# (the Reader protocol and the records it returns), whichever backend a city runs. These modules,
# and from them only these names.
SERVER_STORE_MODULES = ("gateway.store", "gateway.store.base")
SERVER_STORE = frozenset(
    {
        "Reader",
        "DeviceKey",
        "DeviceSeen",
        "DeadLetter",
        "Window",
        "SeriesWindows",  # a series' windows as columns (Reader.series_windows: what charts read)
        "StoreError",
        "open_reader",
        "OrgRoutedReader",
        "DerivedReader",
        "check_keys",
        "check_window_width",
        "ROLLUP_WIDTHS",  # the window widths reads are cheapest at (charts pick theirs from them)
        "FINE_WIDTHS",  # the same under a minute (the embedded store's 5 and 30 s rollups)
    }
)


@dataclass(frozen=True)
class Never:
    """``importer`` (a module prefix) never imports ``imported`` (a module prefix): ``why``."""

    importer: str
    imported: str
    why: str


# Finer rules inside a part, and third-party libraries a part must not pull in.
NEVER: tuple[Never, ...] = tuple(
    [
        Never("gateway.store", "gateway.consumer", "the store is read by the server; it knows no MQTT"),
        Never("gateway.sinks", "gateway.consumer", "a sink takes batches; it knows no MQTT"),
        Never(
            "gateway.store", "gateway.sinks", "the server imports the store: it must not pull in the sinks"
        ),
        Never("gateway.influx", "gateway.sinks", "the InfluxDB helpers sit below the sinks and the store"),
        Never("gateway.influx", "gateway.store", "the InfluxDB helpers sit below the sinks and the store"),
    ]
    + [
        Never("edge", lib, "the agent runs on a Raspberry Pi and imports only what it uses there")
        for lib in (
            "fastapi",
            "starlette",
            "uvicorn",
            "sqlalchemy",
            "sqlmodel",
            "alembic",
            "influxdb_client",
            "grafana_client",
            "prometheus_client",
            "amqtt",
        )
    ]
    + [
        Never("kits", lib, "kits is the contract every part imports: keep it light")
        for lib in ("paho", "fastapi")
    ]
)

_REGISTRY_STRING = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+):[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Import:
    """One import found in a file: the module, the names taken from it (empty: the module itself)."""

    path: Path
    line: int
    module: str
    names: tuple[str, ...]
    how: str


def _module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    """Yield every import of ``path`` (a module under ``root``), wherever in the file it is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_of(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, (), "import")
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, target] if target else base)
            yield Import(path, node.lineno, target, tuple(a.name for a in node.names), "from-import")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(path, node.lineno, node.args[0].value, (), "import_module")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _REGISTRY_STRING.match(node.value)
            if match and match.group(1).split(".")[0] in OURS:
                yield Import(path, node.lineno, match.group(1), (), "registry string")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Return one message per forbidden import under ``root``: file, line, what and the fix."""
    found: list[str] = []
    for package in MAY_IMPORT:
        folder = root / package
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            for imp in imports_of(path, root):
                found.extend(_check(package, imp, root))
    return found


def _check(package: str, imp: Import, root: Path) -> Iterator[str]:
    file = imp.path.relative_to(root).as_posix()
    where = f"{file}:{imp.line}"
    importer = _module_of(imp.path, root)
    what = f"{imp.how} of {imp.module}" + (f" ({', '.join(imp.names)})" if imp.names else "")
    top = imp.module.split(".")[0]
    if top in OURS and top != package and top not in MAY_IMPORT[package]:
        if package == "server" and imp.module in SERVER_STORE_MODULES and imp.names:
            wrong = [n for n in imp.names if n not in SERVER_STORE]
            if wrong:
                yield (
                    f"{where}: {what}: the server may take only the store's read interface "
                    f"({', '.join(sorted(SERVER_STORE))}), not {', '.join(wrong)}. Fix: type it as "
                    "gateway.store.Reader and let the composition root (suitcase/) or open_reader() "
                    "pick the backend"
                )
        elif package == "server" and top == "gateway":
            yield (
                f"{where}: {what}: the server reaches the gateway's side only through the store's "
                "read interface. Fix: `from gateway.store import Reader` (or another name of "
                f"{', '.join(sorted(SERVER_STORE))}); move shared code to kits/"
            )
        else:
            allowed = ", ".join((package, *MAY_IMPORT[package])) or package
            yield (
                f"{where}: {what}: {package}/ may import only {allowed} of ours (docs/architecture.md, "
                f"'Who may import whom'). Fix: move what both need to kits/, or wire the two in suitcase/"
            )
    for rule in NEVER:
        if _within(importer, rule.importer) and _within(imp.module, rule.imported):
            yield f"{where}: {what}: {rule.importer} never imports {rule.imported}: {rule.why}. Fix: drop it"


def test_every_import_obeys_the_architecture() -> None:
    """Test that no module of any part imports what docs/architecture.md forbids."""
    found = violations(REPO)
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_the_walk_sees_every_part() -> None:
    """Test that the rules cover every package of ours with code, and the walk finds imports."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "benchmarks", "hardware"}
    assert packages <= set(MAY_IMPORT), f"add {sorted(packages - set(MAY_IMPORT))} to MAY_IMPORT"
    server_imports = [i for p in (REPO / "server").rglob("*.py") for i in imports_of(p, REPO)]
    assert any(i.module in SERVER_STORE_MODULES for i in server_imports)


_BAD = {
    "edge/__init__.py": "",
    "edge/agent.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from server.app import create_app\n"
    ),
    "edge/late.py": "def f():\n    import gateway.consumer\n",
    "edge/web.py": "import fastapi\n",
    "gateway/__init__.py": "",
    "gateway/store/__init__.py": "",
    "gateway/store/x.py": "from ..consumer import Gateway\n",
    "gateway/reg.py": 'SINKS = {"web": "server.app:create_app"}\n',
    "server/__init__.py": "",
    "server/deps.py": (
        "from gateway.store import Reader, SqliteStore\nfrom gateway.store.sqlite import SqliteStore\n"
    ),
    "server/ok.py": "from gateway.store.base import Reader, Window\nfrom kits.wire import Record\n",
    "kits/__init__.py": "import importlib\nimportlib.import_module('edge.agent')\n",
}


@pytest.fixture()
def bad_tree(tmp_path: Path) -> Path:
    for name, text in _BAD.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_forbidden_imports_are_reported_with_file_line_and_fix(bad_tree: Path) -> None:
    """Test that each kind of forbidden import is found, named by file and line, with a fix."""
    found = violations(bad_tree)
    expected = {
        "edge/agent.py:3": "server.app",  # under TYPE_CHECKING
        "edge/late.py:2": "gateway.consumer",  # inside a function
        "edge/web.py:1": "edge never imports fastapi",
        "gateway/store/x.py:1": "gateway.consumer",  # relative import, resolved
        "gateway/reg.py:1": "registry string of server.app",
        "server/deps.py:1": "not SqliteStore",
        "server/deps.py:2": "only through the store's read interface",
        "kits/__init__.py:2": "import_module of edge.agent",
    }
    for where, text in expected.items():
        hits = [m for m in found if m.startswith(where + ":") and text in m]
        assert hits, f"no violation at {where} mentioning {text!r} in:\n" + "\n".join(found)
        assert all("Fix:" in m for m in hits)
    assert not [m for m in found if m.startswith("server/ok.py")]
    assert len(found) == len(expected)
