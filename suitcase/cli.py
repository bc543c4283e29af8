"""The ``suitcase`` command: one typer sub-app per part, registered in :data:`PARTS`.

A new part's commands are one module with a typer ``app`` plus one line here. Only the sub-app a
command line names is imported, so ``suitcase edge run`` on a Pi never imports the server.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import typer
from rich.markup import escape as markup_escape

import kits

__all__ = ["COMMANDS", "EXTRAS", "PARTS", "build_app", "main", "missing_library"]

# name -> (module:attribute of its typer app, one-line help shown by `suitcase --help`)
PARTS: dict[str, tuple[str, str]] = {
    "edge": ("edge.cli:app", "Edge agent on a Raspberry Pi: read sensors, publish over MQTT."),
    "gateway": ("gateway.cli:app", "Gateway: write every reading from MQTT to the store."),
    "server": ("server.cli:app", "Server: registry API and web pages."),
    "dashboards": ("dashboards.cli:app", "Grafana dashboards as code: build and push."),
    "kit": ("suitcase.kit_cli:app", "Kits: bill of materials, quick-start card, verification."),
    "services": ("suitcase.services.cli:app", "Production services on one machine: up, down, backup."),
    "broker": ("suitcase.broker_cli:app", "Broker host: the device-accounts service beside Mosquitto."),
}
# name -> (module:function of a single top-level command, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("suitcase.demo:demo", "One command, no hardware: broker, gateway, server and emulated Pis."),
    "simulate": (
        "suitcase.simulate.cli:simulate",
        "Thousands of simulated agents against a real broker, gateway, server.",
    ),
}


# The extra a command's libraries come with, where the installed metadata does not say.
EXTRAS: dict[str, str] = {
    "edge": "edge",
    "gateway": "gateway",
    "server": "server",
    "dashboards": "dashboards",
    "kit": "server",
    "services": "gateway,server",
    "broker": "gateway,server",
    "demo": "demo",
    "simulate": "demo",
}
OURS = ("kits", "edge", "gateway", "server", "dashboards", "suitcase", "deploy")


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _extra_for(library: str, command: str | None) -> str:
    """The smallest of our extras that installs ``library`` (a module name), else the command's."""
    import importlib.metadata
    import re

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    wanted = normal(library)
    try:
        requires = importlib.metadata.requires("iot-suitcase") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    found: list[str] = []
    for line in requires:
        name = normal(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if (
            extra
            and extra.group(1) not in ("all", "dev")
            and (name == wanted or name.startswith(wanted + "-"))
        ):
            found.append(extra.group(1))
    default = EXTRAS.get(command or "", "")
    if default in found or not found:
        return default or "demo"
    return found[0]


def missing_library(exc: ModuleNotFoundError, command: str | None) -> str | None:
    """What to tell a person whose install lacks a library ``command`` imports; None if it is ours."""
    library = (exc.name or "").split(".")[0]
    if not library or library in OURS:
        return None
    where = f"`suitcase {command}`" if command else "this command"
    return (
        f"{where} needs the Python library {library!r}, which this install lacks: install the part's "
        f"extra, pip install 'iot-suitcase[{_extra_for(library, command)}]' (the base install is the "
        "CLI and the contract only)"
    )


def _not_here(name: str) -> str:
    # escaped: the help is rich markup, where [server] would be a tag and vanish
    return markup_escape(f"(not installed here: pip install 'iot-suitcase[{EXTRAS[name]}]')")


def _unavailable(name: str, exc: ModuleNotFoundError) -> typer.Typer:
    """A stand-in for a part whose libraries are not installed: listed, and says what to install."""
    message = missing_library(exc, name)
    if message is None:
        raise exc
    stand_in = typer.Typer(invoke_without_command=True, add_completion=False)

    @stand_in.callback()
    def _explain() -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2)

    return stand_in


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iot-suitcase {kits.__version__}")
        raise typer.Exit


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """Build the root app; with ``argv`` naming a part, import only that part."""
    root = typer.Typer(
        name="suitcase",
        help="IoT Suitcase: from a suitcase of Raspberry Pis and I2C sensors to live data.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )

    @root.callback()
    def _root(
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Show the version."
        ),
    ) -> None:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    only = wanted if wanted in PARTS or wanted in COMMANDS else None
    for name, (target, help_text) in PARTS.items():
        if only in (None, name):
            try:
                part = _load(target)
            except ModuleNotFoundError as exc:
                if only is not None:
                    raise
                # `suitcase --help` on a Pi ([edge]): the other parts are listed with what to install
                part = _unavailable(name, exc)
                help_text = f"{help_text} {_not_here(name)}"
            root.add_typer(part, name=name, help=help_text)
    for name, (target, help_text) in COMMANDS.items():
        if only in (None, name):
            try:
                command = _load(target)
            except ModuleNotFoundError as exc:
                if only is not None:
                    raise
                stand_in = _unavailable(name, exc)
                root.add_typer(
                    stand_in,
                    name=name,
                    help=f"{help_text} {_not_here(name)}",
                )
                continue
            root.command(name, help=help_text)(command)
    return root


def main() -> None:
    """Entry point of the ``suitcase`` console script."""
    argv = sys.argv[1:]
    wanted = next((a for a in argv if not a.startswith("-")), None)
    command = wanted if wanted in PARTS or wanted in COMMANDS else None
    try:
        build_app(argv)(args=argv, prog_name="suitcase")
    except ModuleNotFoundError as exc:
        message = missing_library(exc, command)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(2) from None
