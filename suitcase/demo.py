"""``suitcase demo``: the whole path on one laptop, no hardware.

Starts a broker, the gateway, the server and N edge agents on emulated I2C buses (the real
Adafruit drivers reading emulated chips), prints the page's URL and runs until Ctrl-C or
``--duration``; then shuts everything down in reverse order and reports what landed.

On first start it backfills several days of simulated scenario history and creates a demo
organisation, a public deployment per Pi, a login and a kiosk token (``suitcase.demo_history``),
so the charts, the 24 h means and the kiosk have data at once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from edge.agent import Agent
from edge.emulated import build_bus
from gateway.consumer import Gateway
from gateway.sinks import Sink, open_sink
from gateway.store import DeviceSeen, Reader, SqliteStore
from kits.catalog import load_catalog
from kits.errors import SuitcaseError
from kits.models import DeviceConfig, DeviceSensor, MqttSettings
from kits.wire import Record
from server.app import create_app
from server.resources import open_store_checked
from server.runner import ServerThread
from server.settings import ServerSettings
from suitcase.broker import BrokerKind, default_broker_kind, free_port, start_broker
from suitcase.demo_history import HISTORY_DAYS, DemoAccess, HistoryTarget, backfill_history, seed_registry

__all__ = ["DemoResult", "demo", "run_demo"]

DEMO_ORG = "open-lab"


@dataclass(frozen=True)
class DemoResult:
    url: str
    devices: int
    readings: int
    dead_letters: int
    seconds: float
    history: int = 0
    history_seconds: float = 0.0
    kiosk_url: str = ""
    login: str = ""


def _agent_config(index: int, host: str, port: int, interval: float) -> DeviceConfig:
    """Even Pis measure an office (BME280); odd Pis street air (BME280 and a PMSA003I)."""
    street = index % 2 == 1
    sensors = [DeviceSensor(name="bme280", part="bme280", address=0x77, interval_s=interval)]
    if street:
        sensors.append(
            DeviceSensor(name="pmsa003i", part="pmsa003i", address=0x12, interval_s=max(interval, 1.0))
        )
    return DeviceConfig(
        device=f"demo-pi-{index + 1}",
        org=DEMO_ORG,
        kit_profile=None if street else "starter",
        mqtt=MqttSettings(host=host, port=port),
        sensors=sensors,
        bus="emulated",
        scenario="street-air" if street else "office-day",
        publish_interval_s=interval,
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _status(result: DemoResult, broker: str, elapsed: float) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_row("page", f"[bold link={result.url}]{result.url}[/]")
    table.add_row("public", f"{result.url}public")
    if result.kiosk_url:
        table.add_row("kiosk", result.kiosk_url)
    if result.login:
        table.add_row("fleet", f"{result.url}fleet  (log in as {result.login})")
    if result.history:
        table.add_row("history", f"{result.history} simulated readings ({result.history_seconds:.1f} s)")
    table.add_row("broker", broker)
    table.add_row("devices", str(result.devices))
    table.add_row("readings landed", f"[green]{result.readings}[/]")
    table.add_row("dead letters", str(result.dead_letters))
    table.add_row("running", f"{elapsed:.0f} s  (Ctrl-C to stop)")
    return Panel(table, title="IoT Suitcase demo", border_style="cyan")


@dataclass(frozen=True)
class _SinkTarget:
    """History written through a sink (as the gateway writes), devices read from the store."""

    sink: Sink
    reader: Reader

    def write(self, records: Sequence[Record]) -> None:
        self.sink.write(records)

    def devices(self) -> list[DeviceSeen]:
        return self.reader.devices()


def run_demo(
    *,
    broker_kind: BrokerKind,
    devices: int,
    duration: float | None,
    workdir: Path,
    port: int | None = None,
    interval: float = 2.0,
    console: Console | None = None,
    stop: threading.Event | None = None,
    store_url: str | None = None,
) -> DemoResult:
    """Run the demo until ``duration`` seconds pass or ``stop`` is set; return what landed.

    ``store_url`` (e.g. ``influxdb1://127.0.0.1:8086``) is where the gateway writes and the server
    reads, as a city runs it; by default the embedded SQLite store in ``workdir``.
    """
    console = console or Console()
    stop = stop or threading.Event()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as stack:
        broker = start_broker(broker_kind, workdir)
        stack.callback(broker.stop)
        broker_text = f"{broker_kind} on {broker.host}:{broker.port}"

        store = SqliteStore(workdir / "store.sqlite")
        stack.callback(store.close)
        sinks = None if store_url is None else [open_sink(store_url)]
        gateway = Gateway(
            store, host=broker.host, port=broker.port, client_id="suitcase-demo-gateway", sinks=sinks
        )
        gateway.start()
        stack.callback(gateway.stop)
        # What the demo writes history into and counts from: the store the server reads.
        target: HistoryTarget = store
        reader: Reader = store
        if store_url is not None:
            history_sink = open_sink(store_url)  # the gateway's sink is its threads' own
            history_sink.open()
            stack.callback(history_sink.close)
            reader = open_store_checked(store_url)
            stack.callback(reader.close)
            target = _SinkTarget(history_sink, reader)

        settings = ServerSettings(
            store=store_url or str(workdir / "store.sqlite"),
            registry_url=f"sqlite:///{workdir / 'registry.sqlite'}",
        )
        configs = [_agent_config(i, broker.host, broker.port, interval) for i in range(devices)]
        backfill_started = time.monotonic()
        now = time.time()
        access: DemoAccess = seed_registry(
            settings.registry_url,
            load_catalog(settings.catalog_dir),
            DEMO_ORG,
            configs,
            since=now - HISTORY_DAYS * 86400.0,
            now=now,
        )
        history = backfill_history(target, configs, DEMO_ORG, now)
        history_seconds = time.monotonic() - backfill_started
        server_port = port or free_port()
        server = ServerThread(create_app(settings), "127.0.0.1", server_port)
        server.start()
        stack.callback(server.stop)
        url = f"http://127.0.0.1:{server_port}/"

        kiosk_url = f"{url}kiosk#token={access.kiosk_token}"
        login = f"{access.email} / {access.password}"
        for index, config in enumerate(configs):
            bus = build_bus(config.sensors, config.scenario, clock=time.time, seed=index)
            agent = Agent(config, bus)
            agent.start()
            stack.callback(agent.stop)

        def snapshot() -> DemoResult:
            return DemoResult(
                url=url,
                devices=devices,
                readings=sum(d.readings for d in reader.devices()),
                dead_letters=reader.count_dead_letters(),
                seconds=time.monotonic() - started,
                history=history,
                history_seconds=history_seconds,
                kiosk_url=kiosk_url,
                login=login,
            )

        with (
            _stop_on_signals(stop),
            Live(
                _status(snapshot(), broker_text, 0), console=console, refresh_per_second=2, transient=False
            ) as live,
        ):
            while not stop.wait(0.5):
                elapsed = time.monotonic() - started
                live.update(_status(snapshot(), broker_text, elapsed))
                if duration is not None and elapsed >= duration:
                    break
        console.print("[cyan]stopping: agents, gateway, server, broker...[/]")
        result = snapshot()
    return result


def demo(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=50, help="Emulated Pis to run.")] = 3,
    broker: Annotated[
        str | None,
        typer.Option(help="embedded (amqtt, pure Python) or mosquitto; default: mosquitto if installed."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=1, help="Stop after this many seconds (default: run until Ctrl-C).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port of the web page (default: a free one).")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its store and registry.")] = Path(
        ".suitcase/demo"
    ),
    interval: Annotated[float, typer.Option(min=0.5, max=3600, help="Seconds between readings.")] = 2.0,
    store: Annotated[
        str | None,
        typer.Option(
            help="Where readings go and the server reads them, as a city runs it: influxdb1://host:8086 "
            "(default: the embedded SQLite store in --workdir)."
        ),
    ] = None,
) -> None:
    """Run broker, gateway, server and emulated Pis; open the printed URL in a browser."""
    console = Console()
    kind = broker or default_broker_kind()
    if kind not in ("embedded", "mosquitto"):
        console.print(f"[red]--broker {kind!r} is not a broker kind: use embedded or mosquitto[/]")
        raise typer.Exit(2)
    try:
        result = run_demo(
            broker_kind=kind,  # type: ignore[arg-type]
            devices=devices,
            duration=duration,
            workdir=workdir,
            port=port,
            interval=interval,
            console=console,
            store_url=store,
        )
    except SuitcaseError as exc:
        console.print(f"[red]demo failed: {exc}[/]")
        raise typer.Exit(1) from exc
    if result.kiosk_url:
        # soft_wrap: a long URL stays on one line, so it can be copied
        console.print(f"Open Lab kiosk: {result.kiosk_url}", soft_wrap=True)
        console.print(f"Fleet: {result.url}fleet (log in as {result.login})", soft_wrap=True)
    console.print(
        f"[bold]{result.readings} readings landed[/] from {result.devices} devices "
        f"in {result.seconds:.0f} s ({result.dead_letters} dead letters)."
    )
    if result.readings == 0:
        console.print("[red]no readings landed: see the log above (run with -v for details)[/]")
        raise typer.Exit(1)
