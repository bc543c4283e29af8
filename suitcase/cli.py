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

import kits

__all__ = ["COMMANDS", "PARTS", "build_app", "main"]

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


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


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
            root.add_typer(_load(target), name=name, help=help_text)
    for name, (target, help_text) in COMMANDS.items():
        if only in (None, name):
            root.command(name, help=help_text)(_load(target))
    return root


def main() -> None:
    """Entry point of the ``suitcase`` console script."""
    argv = sys.argv[1:]
    build_app(argv)(args=argv, prog_name="suitcase")
