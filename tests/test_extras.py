"""The extras install what their commands import (pyproject.toml's ``[tool.suitcase.extras]``, setup.py).

``make demo`` installs ``.[demo]`` into a fresh venv and runs ``suitcase demo``; the test venv has
every extra, so a library the demo imports but its extra lacks passes every other test and fails
only on a newcomer's laptop. This walks the modules ``suitcase demo`` imports when it loads (their
module-level imports, followed through our packages) and checks each third-party library is in the
closure of the ``demo`` extra's requirements, as the installed distributions' metadata resolves it;
and the same for each part's command and the extras its install names.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
OURS = ("kits", "edge", "gateway", "server", "dashboards", "suitcase", "deploy")


def _module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _load_time_imports(path: Path, module: str) -> Iterator[str]:
    """The modules ``path`` imports when it is imported: not in functions, not for type checkers."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    target = ".".join([*base, target] if target else base)
                yield target
                # `from package import module` imports the submodule
                yield from (f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                # an import inside `try: ... except ImportError` is optional: only its body counts
                yield from walk(node.body)
            elif isinstance(node, ast.With | ast.ClassDef):
                yield from walk(node.body)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")).body)


def _every_import(path: Path) -> Iterator[str]:
    """Every absolute import in ``path``, in functions too (a lazy import runs when it is used),
    except those a ``try`` makes optional (``except ImportError``: orjson where it is installed)."""

    def optional(node: ast.Try) -> bool:
        return any("ImportError" in ast.unparse(h.type) for h in node.handlers if h.type is not None)

    def walk(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.Try) and optional(node) and child in node.body:
                continue
            yield from walk(child)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")))


def third_party_imported_by(entry: str) -> dict[str, str]:
    """Top-level third-party module -> the first of our modules that imports it.

    The modules are those ``entry`` loads (module-level imports, followed through our packages);
    their third-party imports are taken from anywhere in them, since a lazy import in a function
    (the embedded broker, a route's library) runs as soon as the command uses it.
    """
    seen: set[str] = set()
    found: dict[str, str] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = _module_file(module)
        if path is None:
            continue
        todo.extend(m for m in _load_time_imports(path, module) if m.split(".")[0] in OURS)
        for imported in _every_import(path):
            top = imported.split(".")[0]
            if top not in OURS and top not in _STDLIB:
                found.setdefault(top, module)
    return found


_STDLIB = frozenset(__import__("sys").stdlib_module_names) | {"__future__"}


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def extra_requirements(extra: str) -> list[Requirement]:
    """The requirements of one of our extras, read from the source as setup.py reads them."""
    extras: dict[str, list[str]] = _pyproject()["tool"]["suitcase"]["extras"]
    out: list[Requirement] = []
    for line in extras[extra]:
        requirement = Requirement(line)
        if requirement.name == "iot-suitcase":
            for inner in requirement.extras:
                out.extend(extra_requirements(inner))
        else:
            out.append(requirement)
    if extra == "edge":
        for facts in sorted((REPO / "edge" / "parts").glob("*/facts.yaml")):
            out.extend(Requirement(r) for r in yaml.safe_load(facts.read_text(encoding="utf-8"))["requires"])
    return out


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution pip would install for ``requirements`` (normalised names)."""
    closure: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (_normal(name), extras) in done:
            continue
        done.add((_normal(name), extras))
        closure.add(_normal(name))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return closure


# The module a command line loads -> the extras its documented install brings (README).
COMMAND_INSTALLS: dict[str, tuple[str, ...]] = {
    "suitcase.demo": ("demo",),  # make demo, pip install ".[demo]"
    "suitcase.simulate.cli": ("demo",),
    "edge.cli": ("edge",),  # hardware/pi-setup.sh
    "gateway.cli": ("gateway",),
    "server.cli": ("server",),
    "suitcase.services.cli": ("gateway", "server"),  # the production install
    "suitcase.broker_cli": ("gateway", "server"),
    "dashboards.cli": ("dashboards",),
    "suitcase.cli": (),
}


@pytest.mark.parametrize("entry", sorted(COMMAND_INSTALLS))
def test_each_extra_installs_every_library_its_commands_import(entry: str) -> None:
    """Test that the extras a command is documented with (`make demo`'s `pip install ".[demo]"`, the
    Pi's `[edge]`, production's `[gateway,server]`) bring every library it imports as it loads: a
    missing one is a traceback on the first command a newcomer types."""
    installed = distribution_closure(
        [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
        + [r for extra in COMMAND_INSTALLS[entry] for r in extra_requirements(extra)]
    )
    providers = importlib.metadata.packages_distributions()
    missing = {
        top: (importer, providers.get(top, [top]))
        for top, importer in third_party_imported_by(entry).items()
        if not {_normal(d) for d in providers.get(top, [top])} & installed
    }
    assert not missing, (
        f"{entry} imports libraries that {COMMAND_INSTALLS[entry] or 'the base install'} does not install "
        f"(module: imported by, distribution): {missing}. Fix: add them to that extra in "
        "pyproject.toml's [tool.suitcase.extras]"
    )


def test_the_walk_sees_the_demo_s_parts() -> None:
    """Test that the walk reaches the server, the gateway and the embedded broker the demo starts."""
    found = third_party_imported_by("suitcase.demo")
    assert {"fastapi", "amqtt", "sqlmodel", "paho"} <= set(found), sorted(found)
