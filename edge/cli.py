"""``suitcase edge``: run the agent, scan the bus."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from edge.agent import Agent
from edge.bus import open_bus
from edge.scan import scan as scan_bus
from kits.config_file import load_yaml_model
from kits.errors import ConfigError
from kits.models import DeviceConfig, DeviceSensor

__all__ = ["app"]

app = typer.Typer(
    name="edge",
    help="Edge agent: read the Pi's sensors and publish them",
    no_args_is_help=True,
    add_completion=False,
)

# The starter kit's sensor: what `scan --emulated` plugs in when given no config.
_DEFAULT_EMULATED = [DeviceSensor(name="bme280", part="bme280", address=0x77)]

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="device config YAML (kits.models.DeviceConfig)")
]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=2)


@app.command()
def run(
    config: ConfigOption,
    seed: Annotated[int, typer.Option(help="noise seed of the emulated bus")] = 0,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Read the sensors and publish them until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        device = load_yaml_model(config, DeviceConfig)
        i2c = open_bus(device.bus, device.sensors, scenario=device.scenario, clock=time.time, seed=seed)
        agent = Agent(device, i2c)
    except ConfigError as exc:
        raise _fail(str(exc)) from None

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent.run_until(stop)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def scan(
    emulated: Annotated[
        bool, typer.Option("--emulated", help="scan an emulated bus instead of the Pi's")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="device config: compare the bus with its sensors"),
    ] = None,
) -> None:
    """List the addresses that answer on the I2C bus and the part at each."""
    try:
        device = load_yaml_model(config, DeviceConfig) if config is not None else None
        sensors = device.sensors if device is not None else _DEFAULT_EMULATED
        bus: Literal["board", "emulated"] = (
            "emulated" if emulated or (device is not None and device.bus == "emulated") else "board"
        )
        scenario = device.scenario if device is not None else "office-day"
        i2c = open_bus(bus, sensors, scenario=scenario, clock=time.time)
    except ConfigError as exc:
        raise _fail(str(exc)) from None

    found = scan_bus(i2c)
    expected = {s.address: s for s in device.sensors} if device is not None else {}
    table = Table(title=f"I2C bus ({bus})")
    table.add_column("address")
    table.add_column("part")
    table.add_column("detail")
    if device is not None:
        table.add_column("config")
    for item in found:
        row = [f"{item.address:#04x}", item.part or "unknown", item.detail]
        if device is not None:
            want = expected.get(item.address)
            if want is None:
                row.append("not in config")
            elif want.part == item.part:
                row.append(f"{want.name}: ok")
            else:
                row.append(f"{want.name}: config says {want.part}")
        table.add_row(*row)
    for address, sensor in sorted(expected.items()):
        if address not in {item.address for item in found}:
            table.add_row(f"{address:#04x}", "-", "no answer: check the wiring", f"{sensor.name}: missing")
    console = Console()
    console.print(table)
    if not found:
        console.print("nothing answered: check the wiring on pins 3/5 (SDA/SCL) and that I2C is enabled")
