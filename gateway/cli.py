"""``suitcase gateway ...``: run the gateway until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from kits.errors import SuitcaseError

__all__ = ["app"]

app = typer.Typer(help="Gateway: write every reading from MQTT to the store", no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Gateway: write every reading from MQTT to the store."""


@app.command()
def run(
    store: Annotated[
        str | None, typer.Option(help="store to write: a path or sqlite:///path [env SUITCASE_GATEWAY_STORE]")
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option(help="broker host [env SUITCASE_GATEWAY_MQTT_HOST]")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="broker port [env SUITCASE_GATEWAY_MQTT_PORT]")
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="fixed id of the persistent session [env SUITCASE_GATEWAY_CLIENT_ID]"),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="shared-subscription group to share load [env SUITCASE_GATEWAY_GROUP]"),
    ] = None,
) -> None:
    """Consume telemetry from the broker into the store; ack each message after it is written."""
    from rich.console import Console
    from rich.live import Live

    from gateway.consumer import Gateway
    from gateway.settings import load_settings
    from gateway.store import open_store

    console = Console(stderr=True)
    try:
        settings = load_settings(
            store=store, mqtt_host=mqtt_host, mqtt_port=mqtt_port, client_id=client_id, group=group
        )
        opened = open_store(settings.store)
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
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
    )
    try:
        gateway.start()
    except SuitcaseError as exc:
        opened.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not done.wait(0.5):
                s = gateway.stats
                state = "[green]subscribed[/]" if gateway.subscribed else "[yellow]connecting[/]"
                live.update(
                    f"{state} {settings.mqtt_host}:{settings.mqtt_port} -> {settings.store}  "
                    f"messages {s.received}  readings {s.written}  dead letters {s.dead_lettered}  "
                    f"acked {s.acked}  store failures {s.store_failures}"
                )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        console.print("stopping the gateway: writing what is batched, the broker keeps the rest")
        gateway.stop()
        opened.close()
