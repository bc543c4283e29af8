"""``suitcase gateway ...``: run the gateway (one process or a supervised pool), list dead letters."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.retention_cli import app as retention_app
from kits.errors import SuitcaseError

if TYPE_CHECKING:
    from gateway.store.retention import RetentionLoop

__all__ = ["app"]

app = typer.Typer(help="Gateway: write every reading from MQTT to the store", no_args_is_help=True)

_RESTART_MIN_S = 1.0
_EXIT_FATAL = 70  # EX_SOFTWARE (sysexits.h): a worker thread died
_RESTART_MAX_S = 30.0


app.add_typer(retention_app, name="retention")


@app.callback()
def _main() -> None:
    """Gateway: write every reading from MQTT to the store."""


@app.command()
def run(
    store: Annotated[
        str | None,
        typer.Option(
            help="store for dead letters (and readings without --sink) [env SUITCASE_GATEWAY_STORE]"
        ),
    ] = None,
    sink: Annotated[
        list[str] | None,
        typer.Option(
            help="where readings go, repeatable: sqlite:///f.db, influxdb1://host:8086, "
            "influxdb://host:8086?org=&token= (add ?required=false for best effort) "
            "[env SUITCASE_GATEWAY_SINKS='[\"...\"]']"
        ),
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option(help="broker host [env SUITCASE_GATEWAY_MQTT_HOST]")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="broker port [env SUITCASE_GATEWAY_MQTT_PORT]")
    ] = None,
    mqtt_version: Annotated[
        str | None,
        typer.Option(help="3.1.1 or 5 (declares Receive Maximum) [env SUITCASE_GATEWAY_MQTT_VERSION]"),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="fixed id of the persistent session [env SUITCASE_GATEWAY_CLIENT_ID]"),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="shared-subscription group to share load [env SUITCASE_GATEWAY_GROUP]"),
    ] = None,
    batch_messages: Annotated[
        int | None, typer.Option(help="messages per batch [env SUITCASE_GATEWAY_BATCH_MESSAGES]")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve Prometheus /metrics on this port [env SUITCASE_GATEWAY_METRICS_PORT]"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="run N supervised processes sharing the subscription, client ids {client-id}-{i} "
            "[env SUITCASE_GATEWAY_WORKERS]"
        ),
    ] = None,
    retention: Annotated[
        str | None,
        typer.Option(
            help="retention settings (YAML) to apply to the stores on start and every hour "
            "[env SUITCASE_GATEWAY_RETENTION]"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no live status line")] = False,
) -> None:
    """Consume telemetry from the broker into the sinks; ack each message after it is written."""
    from gateway.settings import load_settings

    try:
        settings = load_settings(
            store=store,
            sinks=sink or None,
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            mqtt_version=mqtt_version,
            client_id=client_id,
            group=group,
            batch_messages=batch_messages,
            metrics_port=metrics_port,
            workers=workers,
            retention=retention,
        )
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if settings.workers > 1:
        keeper = _retention_keeper(settings)  # one for the pool, in the supervisor
        try:
            _supervise(
                settings.workers, settings.client_id, settings.group or "gateways", settings.metrics_port
            )
        finally:
            if keeper is not None:
                keeper.stop()
        return
    _run_one(settings, quiet)


_PLAIN_EVERY_S = 10.0


def _retention_keeper(settings: object) -> RetentionLoop | None:
    """Start applying the retention settings to the gateway's stores, if it has any; exit 2 if bad."""
    from gateway.settings import GatewaySettings
    from gateway.store.retention import RetentionLoop, load_retention

    assert isinstance(settings, GatewaySettings)
    if not settings.retention:
        return None
    try:
        keeper = RetentionLoop(
            load_retention(settings.retention),
            settings.sinks or [settings.store],
            every_s=settings.retention_every_s,
        )
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    keeper.start()
    return keeper


def _run_one(settings: object, quiet: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    from gateway.consumer import Gateway, GatewayFatal
    from gateway.dead_letters import DeadLetterPolicy
    from gateway.metrics import Metrics
    from gateway.settings import GatewaySettings
    from gateway.sinks import open_sink
    from gateway.store import open_store
    from kits.tls import client_context

    assert isinstance(settings, GatewaySettings)
    console = Console(stderr=True)
    keeper = _retention_keeper(settings)
    try:
        tls = (
            client_context(
                ca_file=settings.mqtt_ca_file,
                cert_file=settings.mqtt_cert_file,
                key_file=settings.mqtt_key_file,
                setting="SUITCASE_GATEWAY_MQTT",
            )
            if settings.mqtt_tls
            else None
        )
        opened = open_store(settings.store)
        # The store is also the default sink, opened from its URL: it writes from a child process.
        sinks = [open_sink(url) for url in settings.sinks or [settings.store]]
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    metrics = Metrics()
    done = threading.Event()
    gateway = Gateway(
        opened,
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=settings.client_id,
        group=settings.group,
        batch_messages=settings.batch_messages,
        batch_age_s=settings.batch_age_s,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        sinks=sinks,
        metrics=metrics,
        mqtt_version=settings.mqtt_version,
        on_fatal=lambda _: done.set(),  # a worker thread died: stop, then exit non-zero below
        max_series_per_device=settings.max_series_per_device,
        tls=tls,
        dead_letters=DeadLetterPolicy(
            burst=settings.dead_letter_burst,
            per_s=settings.dead_letter_rate,
            retention_s=settings.dead_letter_retention_days * 86_400,
        ),
    )
    try:
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        gateway.start()
    except (SuitcaseError, OSError) as exc:
        opened.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    targets = ", ".join(s.name for s in gateway.sinks)
    try:
        if quiet:
            while not done.wait(0.5):
                pass
        elif not console.is_terminal:  # piped, logged or under systemd: plain lines, flushed
            typer.echo(f"gateway {settings.mqtt_host}:{settings.mqtt_port} -> {targets}: running", err=True)
            while not done.wait(_PLAIN_EVERY_S):
                s = gateway.stats
                typer.echo(
                    f"{'subscribed' if gateway.subscribed else 'connecting'}: messages {s.received}, "
                    f"readings {s.written}, dead letters {s.dead_lettered}, acked {s.acked}, "
                    f"write failures {s.store_failures}",
                    err=True,
                )
        else:
            with Live(console=console, refresh_per_second=2, transient=False) as live:
                while not done.wait(0.5):
                    s = gateway.stats
                    state = "[green]subscribed[/]" if gateway.subscribed else "[yellow]connecting[/]"
                    down = [name for name, up in gateway.sinks_up.items() if not up]
                    live.update(
                        f"{state} {settings.mqtt_host}:{settings.mqtt_port} -> {targets}  "
                        f"messages {s.received}  readings {s.written}  dead letters {s.dead_lettered}  "
                        f"acked {s.acked}  write failures {s.store_failures}"
                        + (f"  [red]down: {', '.join(down)}[/]" if down else "")
                    )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        console.print("stopping the gateway: writing what is batched, the broker keeps the rest")
        if keeper is not None:
            keeper.stop()
        try:
            gateway.stop()
        except GatewayFatal as exc:
            # Exit non-zero with the reason: the supervisor (systemd, --workers, the demo) restarts it.
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(_EXIT_FATAL) from exc
        finally:
            opened.close()


def _supervise(workers: int, client_id: str, group: str, metrics_port: int | None) -> None:
    """Run ``workers`` gateway processes with fixed client ids; restart any that exits, with backoff."""
    base = [sys.executable, "-m", "suitcase", "gateway", "run", "--workers", "1", "--quiet", "--group", group]
    env = dict(os.environ)
    env.pop("SUITCASE_GATEWAY_WORKERS", None)
    env.pop("SUITCASE_GATEWAY_RETENTION", None)  # applied once, by the supervisor

    def spawn(i: int) -> subprocess.Popen[bytes]:
        args = [*base, "--client-id", f"{client_id}-{i}"]
        if metrics_port:
            args += ["--metrics-port", str(metrics_port + i)]
        return subprocess.Popen(args, env=env)

    procs = {i: spawn(i) for i in range(workers)}
    started = dict.fromkeys(procs, time.monotonic())
    delays = dict.fromkeys(procs, _RESTART_MIN_S)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    typer.echo(
        f"supervising {workers} gateways {client_id}-0..{workers - 1} in group {group} "
        f"(pids {', '.join(str(p.pid) for p in procs.values())})",
        err=True,
    )
    try:
        while not done.wait(0.5):
            for i, proc in procs.items():
                code = proc.poll()
                if code is None:
                    continue
                if time.monotonic() - started[i] > _RESTART_MAX_S:
                    delays[i] = _RESTART_MIN_S  # it ran for a while: restart fast again
                typer.echo(
                    f"gateway {client_id}-{i} exited ({code}); restarting in {delays[i]:.0f} s", err=True
                )
                if done.wait(delays[i]):
                    break
                delays[i] = min(delays[i] * 2, _RESTART_MAX_S)
                procs[i] = spawn(i)
                started[i] = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@app.command("dead-letters")
def dead_letters(
    store: Annotated[
        str | None, typer.Option(help="the store holding the dead letters [env SUITCASE_GATEWAY_STORE]")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many, newest first")] = 50,
    payload_bytes: Annotated[int, typer.Option(min=0, help="show this much of each payload")] = 80,
) -> None:
    """List the messages the gateway dead-lettered, newest first, with their reason."""
    from rich.console import Console
    from rich.table import Table

    from gateway.settings import load_settings
    from gateway.store import open_store

    try:
        settings = load_settings(store=store)
        opened = open_store(settings.store)
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        letters = opened.dead_letters(limit)
    finally:
        opened.close()
    table = Table(title=f"dead letters in {settings.store} ({len(letters)} shown)")
    for column in ("received (UTC)", "code", "topic", "reason", "payload"):
        table.add_column(column, overflow="fold")
    for d in letters:
        when = dt.datetime.fromtimestamp(d.received_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        shown = d.payload[:payload_bytes].decode("utf-8", errors="replace")
        table.add_row(
            when, d.code, d.topic, d.reason, shown + ("..." if len(d.payload) > payload_bytes else "")
        )
    Console(width=200).print(table)
