"""``suitcase broker ...``: what runs on the broker's host beside Mosquitto."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from kits.errors import SuitcaseError

__all__ = ["app"]

app = typer.Typer(help="Broker host: the device-accounts service beside Mosquitto", no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Broker host: the device-accounts service beside Mosquitto."""


@app.command()
def accounts(
    dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="the broker's account files (its password_file, acl_file, pid_file) "
            "[env SUITCASE_ACCOUNTS_DIR]",
        ),
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option(help="broker host [env SUITCASE_ACCOUNTS_MQTT_HOST]")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="broker port [env SUITCASE_ACCOUNTS_MQTT_PORT]")
    ] = None,
) -> None:
    """Serve the server's device-account requests (SUITCASE_SERVER_DEVICE_ACCOUNTS=files-remote).

    Run it as the broker's user. Its account (SUITCASE_ACCOUNTS_MQTT_USERNAME/PASSWORD, role
    suitcase-accounts) and TLS (SUITCASE_ACCOUNTS_MQTT_TLS, ..._CA_FILE) are read from the
    environment.
    """
    from suitcase.broker_accounts import AccountsService, files_backend, load_settings

    try:
        settings = load_settings(dir=dir, mqtt_host=mqtt_host, mqtt_port=mqtt_port)
        service = AccountsService(
            files_backend(settings),
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value() if settings.mqtt_password else "",
            tls=settings.mqtt_tls_context(),
        )
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    def stop(_signum: int, _frame: FrameType | None) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    broker = f"{settings.mqtt_host}:{settings.mqtt_port}"
    typer.echo(f"accounts service: serving {settings.dir} for the broker at {broker}")
    try:
        service.serve()
    finally:
        service.close()
