"""``suitcase demo``: the whole path on one laptop, no hardware.

Starts a broker, the gateway, the server and N edge agents on emulated I2C buses (the real
Adafruit drivers reading emulated chips), prints the page's URL and runs until Ctrl-C or
``--duration``; then shuts everything down in reverse order and reports what landed.

On first start it backfills several days of simulated scenario history and creates a demo
organisation, a public deployment per Pi, a login and a kiosk token (``suitcase.demo_history``),
so the charts, the 24 h means and the kiosk have data at once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

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
from suitcase.broker import BrokerKind, MosquittoBroker, default_broker_kind, free_port, start_broker
from suitcase.demo_faults import FaultPlayer, script
from suitcase.demo_history import HISTORY_DAYS, DemoAccess, HistoryTarget, backfill_history, seed_registry
from suitcase.demo_output import Progress, open_output
from suitcase.demo_pis import DemoFleet, DemoPi
from suitcase.demo_stage import seed_fault_stage
from suitcase.lan import LanJoin, make_join_codes, qr_text
from suitcase.lan import lan_address as find_lan_address

__all__ = ["DEFAULT_DEVICES", "DEMO_SCENARIOS", "DemoResult", "demo", "run_demo"]

DEMO_ORG = "open-lab"
# The scripted stuck sensor stays frozen this long (demo seconds at speed 1): see demo_faults.
_FROZEN_S = 150.0

log = logging.getLogger(__name__)
JOIN_CODE_TTL_S = 12 * 3600.0  # an Open Lab evening


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


def stuck_after(interval: float, speed: float) -> int:
    """Identical readings in a row that flag a sensor stuck in the demo: the scripted stuck sensor
    is flagged within the first third of its frozen time, so the fleet page shows it for a while
    (production waits an hour or more); never fewer than 3 (the chips' noise makes a natural
    repeat of every value unlikely, see suitcase.demo_pis)."""
    readings = _FROZEN_S / speed / max(interval, 1.0)  # the BME280 reads at most once a second
    return max(3, min(10, int(readings / 3)))


# What the demo's Pis measure, in turn: each use-case the demo ships, read as a person reads it
# (an office's dew point, street air, a bin's fill level, passes per hour and day, a board's power);
# the default five Pis show every one, more Pis repeat them.
DEMO_SCENARIOS = ("office-day", "street-air", "bin-filling", "footpath", "office-power")
DEFAULT_DEVICES = len(DEMO_SCENARIOS)


def _agent_config(index: int, host: str, port: int, interval: float, speed: float = 1.0) -> DeviceConfig:
    """Pi ``index + 1``: every Pi has a BME280 (the fault script's sensor); the street Pi a PMSA003I,
    the bin's a VL53L1X under the lid, the path counter's a VL53L1X counting passes across the
    path, the distribution board's an ADS1x15 reading a current clamp's RMS volts on a0."""
    scenario = DEMO_SCENARIOS[index % len(DEMO_SCENARIOS)]
    frozen = stuck_after(interval, speed)
    sensors = [
        DeviceSensor(name="bme280", part="bme280", address=0x77, interval_s=interval, stuck_after=frozen)
    ]
    if scenario == "bin-filling":
        # A bin fills over days: its distance may hold still for long, which is not a stuck sensor.
        sensors.append(
            DeviceSensor(name="vl53l1x", part="vl53l1x", address=0x29, interval_s=interval, stuck_after=0)
        )
    elif scenario == "footpath":
        # Each read samples the whole of its interval, so every pass is counted (none fall between).
        burst = min(interval, 1.0)
        sensors.append(
            DeviceSensor(
                name="vl53l1x",
                part="vl53l1x",
                address=0x29,
                interval_s=burst,
                stuck_after=0,  # an empty path reads the wall, and 0 passes, for long
                options={"mode": "passes", "baseline_mm": 1500, "rate_hz": 20, "burst_s": burst},
            )
        )
    elif scenario == "office-power":
        sensors.append(
            DeviceSensor(
                name="ads1x15",
                part="ads1x15",
                address=0x48,
                interval_s=max(interval, 1.0),
                stuck_after=0,  # the night's base load may repeat to the last digit
                options={"channels": ["a0"], "rms": ["a0"]},
            )
        )
    elif scenario == "street-air":
        sensors.append(
            DeviceSensor(
                name="pmsa003i",
                part="pmsa003i",
                address=0x12,
                interval_s=max(interval, 1.0),
                stuck_after=frozen,
            )
        )
    return DeviceConfig(
        device=f"demo-pi-{index + 1}",
        org=DEMO_ORG,
        kit_profile=None if scenario == "street-air" else "starter",
        mqtt=MqttSettings(host=host, port=port),
        sensors=sensors,
        bus="emulated",
        scenario=scenario,
        publish_interval_s=interval,
    )


@dataclass(frozen=True)
class _SinkTarget:
    """History written through a sink (as the gateway writes), devices read from the store."""

    sink: Sink
    reader: Reader

    def write(self, records: Sequence[Record]) -> None:
        self.sink.write(records)

    def devices(self) -> list[DeviceSeen]:
        return self.reader.devices()


class _Signals:
    """SIGINT, SIGTERM and SIGHUP stop the demo in order; a second one forces it out at once.

    The handler only sets flags (it may interrupt the main thread inside a print holding a lock);
    the forced exit writes its one line with ``os.write``, which takes no lock.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: str | None = None  # the signal that asked for the stop
        self.force: list[Callable[[], None]] = []  # last words of a forced exit (kill the broker)
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            self.received = name
            self.stop.set()
            return
        with contextlib.suppress(OSError):
            os.write(1, f"{name} again: forcing the demo to stop\n".encode())
        for hook in self.force:
            with contextlib.suppress(Exception):
                hook()
        os._exit(130)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()


class _Shutdown:
    """What the demo started, stopped in the order that loses nothing and warns of nothing:
    the fault script, the Pis (each says offline), the gateway (writing its last batch), the store,
    the server, and the broker last."""

    ORDER = ("fault script", "emulated Pis", "gateway", "store", "server", "broker")

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self._steps: dict[str, Callable[[], None]] = {}

    def add(self, name: str, stop: Callable[[], None]) -> None:
        assert name in self.ORDER, name
        self._steps[name] = stop

    def run(self, *, verbose: bool) -> float:
        started = time.monotonic()
        for name in self.ORDER:
            step = self._steps.pop(name, None)
            if step is None:
                continue
            t0 = time.monotonic()
            try:
                step()
            except Exception as exc:  # one part failing to stop must not leave the others running
                log.exception("stopping the %s failed", name)
                self.say(f"stopping the {name} failed: {exc}")
                continue
            if verbose:
                self.say(f"stopped the {name} ({time.monotonic() - t0:.1f} s)")
        return time.monotonic() - started


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
    speed: float = 1.0,
    faults: bool = True,
    lan: bool = False,
    lan_address: str | None = None,
    lan_pis: int = 3,
    map_tiles_url: str | None = None,
    store_url: str | None = None,
) -> DemoResult:
    """Run the demo until ``duration`` seconds pass or ``stop`` is set; return what landed.

    Args:
        speed: play the fault script this many times faster (1: a ten-minute demo).
        faults: play the fault script at all.
        lan: listen on the laptop's network address (``lan_address``, or found) instead of
            loopback, and make ``lan_pis`` single-use codes with which real Pis join.
        map_tiles_url: the pages' map tiles; "" draws the offline outline map; None: the default.
        store_url: where the gateway writes and the server reads (e.g. ``influxdb1://127.0.0.1:8086``),
            as a city runs it; by default the embedded SQLite store in ``workdir``.

    Raises:
        ConfigError: ``lan`` on a machine with no network address, or a wrong ``lan_address``.
    """
    console = console or Console()
    stop = stop or threading.Event()
    output = open_output(console)

    def say(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
            output.say(line)

    host = find_lan_address(lan_address) if lan or lan_address else "127.0.0.1"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    shutdown = _Shutdown(say)
    with _Signals(stop) as signals:
        try:
            broker = start_broker(broker_kind, workdir, host=host)
            shutdown.add("broker", broker.stop)
            if isinstance(broker, MosquittoBroker):
                signals.force.append(broker.kill)
            broker_text = f"{broker_kind} on {broker.host}:{broker.port}" + (
                f" (pid {broker.pid})" if isinstance(broker, MosquittoBroker) else ""
            )

            store = SqliteStore(workdir / "store.sqlite")
            closing: list[Callable[[], None]] = [store.close]

            def close_stores() -> None:
                for close in reversed(closing):
                    close()

            shutdown.add("store", close_stores)
            sinks = None if store_url is None else [open_sink(store_url)]
            gateway = Gateway(
                store, host=broker.host, port=broker.port, client_id="suitcase-demo-gateway", sinks=sinks
            )
            gateway.start()
            shutdown.add("gateway", gateway.stop)
            # What the demo writes history into and counts from: the store the server reads.
            target: HistoryTarget = store
            reader: Reader = store
            if store_url is not None:
                history_sink = open_sink(store_url)  # the gateway's sink is its threads' own
                history_sink.open()
                closing.append(history_sink.close)
                reader = open_store_checked(store_url)
                closing.append(reader.close)
                target = _SinkTarget(history_sink, reader)

            server_port = port or free_port(host)
            url = f"http://{host}:{server_port}/"
            settings = ServerSettings(
                store=store_url or str(workdir / "store.sqlite"),
                registry_url=f"sqlite:///{workdir / 'registry.sqlite'}",
                mqtt_host=broker.host,
                mqtt_port=broker.port,
                alert_interval_s=max(1.0, min(60.0, 15.0 / speed)),
                public_url=url.rstrip("/"),
            )
            if map_tiles_url is not None:
                settings = settings.model_copy(update={"map_tiles_url": map_tiles_url})
            configs = [_agent_config(i, broker.host, broker.port, interval, speed) for i in range(devices)]
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
            configs = [
                c.model_copy(update={"config_version": access.config_versions[c.device]})
                if c.device in access.config_versions
                else c
                for c in configs
            ]
            stage = seed_fault_stage(settings.registry_url, DEMO_ORG, now, speed=speed, interval=interval)
            join = None
            if host != "127.0.0.1":
                name, codes = make_join_codes(
                    settings.registry_url, DEMO_ORG, now, count=lan_pis, ttl_s=JOIN_CODE_TTL_S
                )
                join = LanJoin(url, codes, name)
            history = backfill_history(target, configs, DEMO_ORG, now)
            history_seconds = time.monotonic() - backfill_started
            server = ServerThread(create_app(settings), host, server_port)
            server.start()
            shutdown.add("server", server.stop)

            kiosk_url = f"{url}kiosk#token={access.kiosk_token}"
            login = f"{access.email} / {access.password}"
            fleet = DemoFleet(
                [DemoPi(c, seed=i) for i, c in enumerate(configs)], url, stage.token, stage.kit_id
            )
            shutdown.add("emulated Pis", fleet.stop)
            fleet.start()

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

            extra = dict(join.lines()) if join is not None else {}
            if faults:
                extra["faults"] = f"a scripted fault every minute or two (speed x{speed:g})"

            def progress(result: DemoResult) -> Progress:
                return Progress(
                    url=url,
                    broker=broker_text,
                    devices=devices,
                    readings=result.readings,
                    dead_letters=result.dead_letters,
                    elapsed=result.seconds,
                    kiosk_url=kiosk_url,
                    login=login,
                    history=history,
                    history_seconds=history_seconds,
                    extra=extra,
                )

            if join is not None:
                say(qr_text(url).rstrip("\n"))
            output.start(progress(snapshot()))
            if faults:
                player = FaultPlayer(fleet, script(devices), speed=speed, say=say)
                player.start()
                shutdown.add("fault script", player.stop)
            while not stop.wait(0.5):
                result = snapshot()
                with contextlib.suppress(OSError, ValueError):
                    output.update(progress(result))
                if duration is not None and result.seconds >= duration:
                    break
            result = snapshot()
        finally:
            with contextlib.suppress(OSError, ValueError):
                output.stop()
            if signals.received:
                say(f"{signals.received}: stopping in order (again to force)")
            say("stopping: emulated Pis, gateway, server, broker...")
            took = shutdown.run(verbose=True)
            say(f"stopped in {took:.1f} s")
    return result


def demo(
    devices: Annotated[
        int,
        typer.Option(
            "--devices",
            "-n",
            min=1,
            max=50,
            help="Emulated Pis to run (the default five show every use-case: office, street air, waste "
            "bin, path counter, energy meter).",
        ),
    ] = DEFAULT_DEVICES,
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
    speed: Annotated[
        float,
        typer.Option(
            min=0.1, max=1000, help="Play the fault script this many times faster (1: ten minutes)."
        ),
    ] = 1.0,
    faults: Annotated[
        bool, typer.Option(help="Play the script of faults (unplugged, stuck, offline...).")
    ] = True,
    lan: Annotated[
        bool, typer.Option(help="Listen on the laptop's network address so real Pis (and phones) can join.")
    ] = False,
    lan_address: Annotated[
        str | None, typer.Option(help="With --lan: which of the laptop's addresses (default: found).")
    ] = None,
    tiles: Annotated[
        str | None,
        typer.Option(
            help="Map tile URL ({z}/{x}/{y}); empty: the offline outline map (default: OpenStreetMap)."
        ),
    ] = None,
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
            speed=speed,
            faults=faults,
            lan=lan,
            lan_address=lan_address,
            map_tiles_url=tiles,
            store_url=store,
        )
    except SuitcaseError as exc:
        console.print(f"[red]demo failed: {exc}[/]")
        raise typer.Exit(1) from exc
    if result.kiosk_url:
        # soft_wrap: a long URL stays on one line, so it can be copied
        console.print(f"Open Lab kiosk: {result.kiosk_url}", soft_wrap=True, highlight=False)
        console.print(f"Fleet: {result.url}fleet (log in as {result.login})", soft_wrap=True, highlight=False)
    console.print(
        f"[bold]{result.readings} readings landed[/] from {result.devices} devices "
        f"in {result.seconds:.0f} s ({result.dead_letters} dead letters)."
    )
    console.file.flush()
    # Everything is stopped: the interpreter's exit need not search the whole heap for cycles.
    # That search took 3-5 s on a loaded laptop, after the summary and before the prompt came back.
    gc.freeze()
    if result.readings == 0:
        console.print("[red]no readings landed: see the log above (run with -v for details)[/]")
        raise typer.Exit(1)
