"""``suitcase services``: the production stack on one machine (Mosquitto, InfluxDB, PostgreSQL)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from kits.errors import SuitcaseError
from suitcase.services.layout import Layout, Ports, load_layout

__all__ = ["app"]

app = typer.Typer(
    help="The production services on one machine: up, down, status, backup, restore.", no_args_is_help=True
)

ConfigDir = Annotated[Path, typer.Option("--config-dir", help="settings, certificates and passwords")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="the services' data [default: /var/lib/suitcase]")
]


def _fail(exc: SuitcaseError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg="red")
    return typer.Exit(2)


def _layout(config_dir: Path, data_dir: Path | None = None, **given: int | str | None) -> Layout:
    saved = load_layout(config_dir)
    if saved is None:
        saved = Layout(config_dir=config_dir, data_dir=data_dir or Path("/var/lib/suitcase"))
    elif data_dir is not None and data_dir != saved.data_dir:
        raise SuitcaseError(
            f"the stack in {config_dir} keeps its data in {saved.data_dir}, not {data_dir}: "
            "leave --data-dir out, or give another --config-dir for a second stack"
        )
    ports = {k: int(v) for k, v in given.items() if k in Ports.__dataclass_fields__ and v is not None}
    layout = saved.with_ports(**ports) if ports else saved
    hostname = given.get("hostname")
    if isinstance(hostname, str):
        from dataclasses import replace

        layout = replace(layout, hostname=hostname)
    return layout


@app.command()
def up(
    config_dir: ConfigDir = Path("/etc/suitcase"),
    data_dir: DataDir = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            help="the broker's name for devices and gateways; its certificate names it [default: FQDN]"
        ),
    ] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="Mosquitto's TLS port [default: 8883]")] = None,
    influx_port: Annotated[int | None, typer.Option(help="InfluxDB's HTTP port [default: 8086]")] = None,
    influx_rpc_port: Annotated[
        int | None, typer.Option(help="InfluxDB's backup port [default: 8088]")
    ] = None,
    postgres_port: Annotated[int | None, typer.Option(help="PostgreSQL's port [default: 5432]")] = None,
    cert: Annotated[
        Path | None, typer.Option(help="the broker's certificate (PEM); default: one is made")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="its private key (PEM)")] = None,
    ca: Annotated[Path | None, typer.Option(help="the CA that signed --cert (PEM), given to clients")] = None,
) -> None:
    """Install (as root, when missing), configure and start the services; a second run changes nothing."""
    from suitcase.services.stack import up as stack_up
    from suitcase.services.tls import TlsFiles

    given = [cert, key, ca]
    if any(given) and not all(given):
        raise _fail(
            SuitcaseError("--cert, --key and --ca go together: give all three, or none to have them made")
        )
    try:
        layout = _layout(
            config_dir,
            data_dir,
            hostname=hostname or (None if load_layout(config_dir) else socket.getfqdn()),
            mqtt_tls=mqtt_port,
            influx_http=influx_port,
            influx_rpc=influx_rpc_port,
            postgres=postgres_port,
        )
        tls = TlsFiles(ca=ca, cert=cert, key=key) if cert and key and ca else None
        changes = stack_up(layout, tls=tls)
    except SuitcaseError as exc:
        raise _fail(exc) from exc
    for change in changes:
        typer.echo(f"- {change}")
    typer.echo("nothing changed: the stack is up" if not changes else "the stack is up")
    typer.echo(f"settings for the parts: {layout.gateway_env}, {layout.server_env}")


@app.command()
def down(config_dir: ConfigDir = Path("/etc/suitcase")) -> None:
    """Stop the services; their data stays."""
    from suitcase.services.stack import down as stack_down

    layout = load_layout(config_dir)
    if layout is None:
        raise _fail(SuitcaseError(f"no stack in {config_dir}: nothing to stop"))
    typer.echo("stopped" if stack_down(layout) else "was not running")


@app.command()
def status(config_dir: ConfigDir = Path("/etc/suitcase")) -> None:
    """Show whether each service answers; exit 3 when one does not."""
    from suitcase.services.stack import status as stack_status

    layout = load_layout(config_dir)
    if layout is None:
        raise _fail(SuitcaseError(f"no stack in {config_dir}: run `suitcase services up`"))
    states = stack_status(layout)
    shown = {True: "up", False: "DOWN", None: "not checked (run as root: it reads secrets.yaml)"}
    for state in states:
        typer.echo(f"{state.name:<10} {state.address:<22} {shown[state.listening]}")
    if any(s.listening is False for s in states):
        raise typer.Exit(3)


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="a new or empty directory for the backup")],
    config_dir: ConfigDir = Path("/etc/suitcase"),
) -> None:
    """Back up the registry, the store and the broker's accounts (safe while the gateway writes)."""
    from suitcase.services.backup import backup as make_backup

    layout = load_layout(config_dir)
    if layout is None:
        raise _fail(SuitcaseError(f"no stack in {config_dir}: nothing to back up"))
    try:
        manifest = make_backup(layout, dest)
    except SuitcaseError as exc:
        raise _fail(exc) from exc
    typer.echo(f"backed up to {dest} (registry at migration {manifest['registry_revision']})")


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="a directory made by `suitcase services backup`")],
    config_dir: ConfigDir = Path("/etc/suitcase"),
) -> None:
    """Restore a backup into a fresh stack (its registry and store empty), migrating the registry."""
    from suitcase.services.backup import restore as do_restore

    layout = load_layout(config_dir)
    if layout is None:
        raise _fail(SuitcaseError(f"no stack in {config_dir}: run `suitcase services up` first"))
    try:
        manifest = do_restore(layout, src)
    except SuitcaseError as exc:
        raise _fail(exc) from exc
    typer.echo(f"restored the backup made {manifest['made']} into the stack of {config_dir}")


@app.command("compose-init")
def compose_init(
    config_dir: ConfigDir = Path("/etc/suitcase"),
    data_dir: Annotated[Path, typer.Option(help="the volume of the broker's data")] = Path(
        "/var/lib/suitcase"
    ),
) -> None:
    """The Compose stack's init container: configuration and accounts from the environment (.env)."""
    import os

    from suitcase.services.compose import compose_init as init

    try:
        changes = init(os.environ, config_dir, data_dir)
    except SuitcaseError as exc:
        raise _fail(exc) from exc
    for change in changes:
        typer.echo(f"- {change}")
    typer.echo("nothing changed" if not changes else "configured")
