"""``suitcase server ...``: run the registry API and web pages."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from kits.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="Server: registry API and web pages", no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Server: registry API and web pages."""


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): another program uses the port or the "
                "address is not on this machine; pick another with --port/--host or "
                "SUITCASE_SERVER_PORT/SUITCASE_SERVER_HOST"
            ) from exc


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="address to listen on [env SUITCASE_SERVER_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="port to listen on [env SUITCASE_SERVER_PORT]")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="the store the gateway writes: a file path or sqlite:///path (embedded), "
            "influxdb1://host:8086?username=&password= (InfluxDB 1.x) or influxdb://host:8086?token= "
            "(2.x/3.x, InfluxQL) [env SUITCASE_SERVER_STORE]"
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            help="registry database URL, e.g. sqlite:///registry.db [env SUITCASE_SERVER_REGISTRY_URL]"
        ),
    ] = None,
    org_store: Annotated[
        list[str] | None,
        typer.Option(
            help="an organisation's own store, ORG=URL (repeatable), e.g. aarhus=influxdb1://db.aarhus:8086 "
            '[env SUITCASE_SERVER_ORG_STORES=\'{"aarhus": "influxdb1://..."}\']'
        ),
    ] = None,
) -> None:
    """Serve the API (/api/v1, docs at /docs) and the live readings page (/)."""
    import uvicorn

    from server.app import create_app
    from server.resources import open_resources
    from server.settings import load_settings

    try:
        org_stores = None
        if org_store:
            pairs = [item.partition("=") for item in org_store]
            bad = [
                item
                for item, (org, eq, url) in zip(org_store, pairs, strict=True)
                if not (org and eq and url)
            ]
            if bad:
                raise ConfigError(
                    f"--org-store {bad[0]!r} is not ORG=URL: e.g. aarhus=influxdb1://db.aarhus:8086"
                )
            org_stores = {org: url for org, _, url in pairs}
        settings = load_settings(
            host=host, port=port, store=store, registry_url=registry_url, org_stores=org_stores
        )
        # Fail here, with exit code 2 and a clear message, rather than inside uvicorn's startup.
        open_resources(settings).close()
        _check_port_free(settings.host, settings.port)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    shown = settings.store.split("?", 1)[0]  # options may hold a password or token
    typer.echo(f"serving on http://{settings.host}:{settings.port} (store {shown})", err=True)
    app = create_app(settings, freeze_heap=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


def add_global_admin(session: Any, email: str, password: str, *, now: float, name: str = "") -> Any:
    """Add a global admin, or make an existing user one with this password (the caller commits)."""
    from sqlmodel import select

    from server.security import hash_password
    from server.tables import UserRow

    email = email.strip().lower()
    user = session.exec(select(UserRow).where(UserRow.email == email)).first()
    if user is None:
        user = UserRow(email=email, name=name, password_hash=hash_password(password), created_at=now)
    user.is_global_admin, user.active = True, True
    user.password_hash = hash_password(password)
    session.add(user)
    return user


_REGISTRY_HELP = "registry database URL [env SUITCASE_SERVER_REGISTRY_URL]"


@app.command()
def migrate(
    registry_url: Annotated[str | None, typer.Option(help=_REGISTRY_HELP)] = None,
) -> None:
    """Upgrade the registry database to the newest schema (Alembic); back it up first."""
    from server.db import create_registry_engine
    from server.db import migrate as run_migrations
    from server.settings import load_settings

    try:
        settings = load_settings(registry_url=registry_url)
        engine = create_registry_engine(settings.registry_url)
        before, after = run_migrations(engine)
        engine.dispose()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"registry migrated: {before or 'empty'} -> {after}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="the migration to go back to, e.g. 0006")],
    registry_url: Annotated[str | None, typer.Option(help=_REGISTRY_HELP)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Downgrade the registry database to an older schema (Alembic); back it up first.

    What the later migrations added (tables, columns) is dropped with its rows: run it only to go
    back to an older version of IoT Suitcase, with a backup (`suitcase services backup`).
    """
    from server.db import create_registry_engine, downgrade_steps
    from server.db import downgrade as run_downgrade
    from server.settings import load_settings

    engine = None
    try:
        settings = load_settings(registry_url=registry_url)
        engine = create_registry_engine(settings.registry_url)
        steps = downgrade_steps(engine, revision)
        if not steps:
            typer.echo(f"the registry is at {revision} already: nothing to do")
            return
        typer.echo(f"downgrading the registry from {steps[0][0]} to {revision} undoes:")
        for step, doc in steps:
            typer.echo(f"  {step}  {doc}")
        if not yes and not typer.confirm(
            "what those migrations added is dropped with its rows; is the registry backed up?", default=False
        ):
            typer.echo("not downgraded", err=True)
            raise typer.Exit(1)
        after = run_downgrade(engine, revision)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        if engine is not None:
            engine.dispose()
    typer.echo(f"registry downgraded: {steps[0][0]} -> {after}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="the admin's e-mail (login)")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, envvar="SUITCASE_ADMIN_PASSWORD"
        ),
    ],
    registry_url: Annotated[str | None, typer.Option(help=_REGISTRY_HELP)] = None,
) -> None:
    """Create a global admin (or reset an existing user to one with this password)."""
    import time

    from sqlmodel import Session

    from kits.catalog import load_catalog
    from server.db import create_registry_engine, init_registry
    from server.settings import load_settings

    if len(password) < 12:
        typer.echo("error: the password must have at least 12 characters", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings(registry_url=registry_url)
        engine = create_registry_engine(settings.registry_url)
        init_registry(engine, load_catalog(settings.catalog_dir), upgrade=True)
        with Session(engine) as session:
            add_global_admin(session, email, password, now=time.time())
            session.commit()
        engine.dispose()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"global admin {email.strip().lower()} is ready: log in at /api/v1/auth/login")


@app.command("import-catalog")
def import_catalog(
    registry_url: Annotated[str | None, typer.Option(help=_REGISTRY_HELP)] = None,
    catalog_dir: Annotated[Path | None, typer.Option(help="catalogue folder (kits/, usecases/)")] = None,
) -> None:
    """Load the YAML catalogue (kit profiles, use-cases) into the registry; read-only entries are
    replaced, organisations' own are kept."""
    from kits.catalog import load_catalog
    from server.db import create_registry_engine, init_registry
    from server.settings import load_settings

    try:
        settings = load_settings(registry_url=registry_url, catalog_dir=catalog_dir)
        engine = create_registry_engine(settings.registry_url)
        result = init_registry(engine, load_catalog(settings.catalog_dir), upgrade=True)
        engine.dispose()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"catalogue imported: {len(result.added)} added, {len(result.updated)} updated, "
        f"{len(result.removed)} removed, {result.unchanged} unchanged"
    )


@app.command("check-alerts")
def check_alerts(
    registry_url: Annotated[str | None, typer.Option(help=_REGISTRY_HELP)] = None,
    store: Annotated[str | None, typer.Option(help="embedded store file")] = None,
) -> None:
    """Evaluate every alert rule once (fire/resolve, notify), e.g. from cron."""
    from server.alerts import evaluate, notify_due
    from server.resources import open_resources
    from server.settings import load_settings

    try:
        resources = open_resources(load_settings(registry_url=registry_url, store=store))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        result = evaluate(resources, wait_s=60.0)
        sent = notify_due(resources)
    finally:
        resources.close()
    if result.skipped:
        typer.echo("alerts: another server replica kept evaluating for over 60 s; nothing done", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"alerts: {len(result.fired)} fired, {len(result.resolved)} resolved; notifications: "
        f"{len(sent.sent)} sent, {len(sent.retrying)} to retry, {len(sent.failed)} given up"
    )
