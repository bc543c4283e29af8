"""``suitcase edge``: run the agent, scan the bus, enroll the Pi, install the systemd unit."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
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
from edge.config import (
    DEFAULT_CONFIG,
    EdgeSettings,
    effective_device_config,
    load_edge_settings,
    save_device_config,
    with_bus,
)
from edge.scan import scan as scan_bus
from edge.updates.home import HOME_ENV, RESTART_EXIT_CODE, AgentHome
from kits.config_file import load_yaml_model
from kits.errors import ConfigError, SuitcaseError
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
    Path,
    typer.Option(
        "--config", "-c", help="agent config: TOML (edge.config.EdgeSettings) or a device config YAML"
    ),
]
StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="where the outbox and the server's config are kept (default: the config's)"
    ),
]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=2)


@app.command()
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    state_dir: StateOption = None,
    seed: Annotated[int, typer.Option(help="noise seed of the emulated bus")] = 0,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
) -> None:
    """Read the sensors and publish them until Ctrl-C or SIGTERM (claiming a config first if needed)."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            settings = load_edge_settings(config)
            _log_at(log_level or settings.log_level, explicit=log_level is not None)
            legacy = config.suffix in (".yaml", ".yml") and settings.claim is None and state_dir is None
            state = None if legacy else (state_dir or settings.state_dir)
            if state is not None:
                settings = settings.model_copy(update={"state_dir": state})
            device = effective_device_config(settings)
            if device is None:
                device = with_bus(_claim(settings, stop), settings)
                if device is None:
                    return
            i2c = open_bus(device.bus, device.sensors, scenario=device.scenario, clock=time.time, seed=seed)
            home = os.environ.get(HOME_ENV)
            agent = Agent(
                device,
                i2c,
                state_dir=state,
                home=AgentHome(Path(home)) if home else None,
                updates_allowed=settings.updates,
            )
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        except SuitcaseError as exc:
            raise _fail(str(exc)) from None
        if agent.run_until(stop):
            raise typer.Exit(code=RESTART_EXIT_CODE)  # the launcher starts the version switched to
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_at(level: str, *, explicit: bool) -> None:
    """Log at ``level`` (the config's, or --log-level).

    ``suitcase`` configured logging already (at WARNING, or DEBUG with -v), so a second
    ``basicConfig`` would change nothing: the agent said nothing at INFO, not even that it waits for
    its label to be scanned. The level is set on the root logger instead; -v wins over the config's.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if explicit or root.level != logging.DEBUG:
        try:
            root.setLevel(level.upper())
        except ValueError:
            raise ConfigError(f"log level {level!r}: use DEBUG, INFO, WARNING or ERROR") from None


def _claim(settings: EdgeSettings, stop: threading.Event) -> DeviceConfig | None:
    from edge.claim import claim

    if settings.claim is None:
        raise ConfigError(
            "the config has neither a [device] table nor a [claim] table: add [claim] with server and code "
            "(from the Pi's label), or run `suitcase edge enroll --server URL --code CODE`"
        )
    device = claim(settings.claim, stop=stop)
    if device is not None:
        path = save_device_config(settings.state_dir, device)
        logging.getLogger(__name__).info("device config saved to %s", path)
    return device


@app.command()
def enroll(
    server: Annotated[str, typer.Option(help="the server's URL, e.g. https://suitcase.example.org")],
    code: Annotated[str, typer.Option(help="the enrollment or claim code")],
    config: ConfigOption = DEFAULT_CONFIG,
    state_dir: StateOption = None,
) -> None:
    """Fetch this Pi's device config from the server now and save it for `suitcase edge run`."""
    from edge.claim import poll_once

    try:
        state = state_dir or (load_edge_settings(config).state_dir if config.exists() else None)
        if state is None:
            raise ConfigError(f"{config} does not exist: pass --state-dir or create the config")
        device = poll_once(server, code)
    except SuitcaseError as exc:
        raise _fail(str(exc)) from None
    if device is None:
        raise _fail(
            "the code is valid but not bound to a device yet: ask staff to scan the label and pick the "
            "deployment, then run this again"
        )
    path = save_device_config(state, device)
    Console().print(f"enrolled as [bold]{device.device}[/] ({device.org}); config saved to {path}")


@app.command("install-service")
def install_service(
    config: ConfigOption = DEFAULT_CONFIG,
    root: Annotated[Path, typer.Option(help="install under this root (tests, image builds)")] = Path("/"),
    enable: Annotated[bool, typer.Option(help="systemctl enable --now (only with --root /)")] = True,
) -> None:
    """Write the systemd unit that runs the agent at boot, and enable it."""
    from edge.service import UNIT_NAME, write_unit

    path = write_unit(root, config)
    console = Console()
    console.print(f"wrote {path}")
    if not config.exists() and root == Path("/"):
        console.print(
            f"[yellow]{config} does not exist yet: create it ([claim] or [device]) before starting[/]"
        )
    if enable and root == Path("/"):
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise _fail("systemctl not found: this is not a systemd system; start the agent another way")
        for args in (["daemon-reload"], ["enable", "--now", UNIT_NAME]):
            result = subprocess.run([systemctl, *args], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise _fail(f"systemctl {' '.join(args)} failed: {result.stderr.strip()} (run as root)")
        console.print(f"enabled and started {UNIT_NAME}: `journalctl -u {UNIT_NAME} -f` shows its log")


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
    expected = {s.path: s for s in device.sensors} if device is not None else {}
    muxes = {s.mux.address for s in device.sensors if s.mux is not None} if device is not None else set()
    table = Table(title=f"I2C bus ({bus})")
    table.add_column("address")
    table.add_column("part")
    table.add_column("detail")
    if device is not None:
        table.add_column("config")
    for item in found:
        row = [item.path, item.part or "unknown", item.detail]
        if device is not None:
            want = expected.get(item.path)
            if want is None:
                row.append(
                    "multiplexer in config" if item.mux is None and item.address in muxes else "not in config"
                )
            elif want.part == item.part:
                row.append(f"{want.name}: ok")
            else:
                row.append(f"{want.name}: config says {want.part}")
        table.add_row(*row)
    for path, sensor in sorted(expected.items()):
        if path not in {item.path for item in found}:
            table.add_row(path, "-", "no answer: check the wiring", f"{sensor.name}: missing")
    console = Console()
    console.print(table)
    if not found:
        console.print("nothing answered: check the wiring on pins 3/5 (SDA/SCL) and that I2C is enabled")
