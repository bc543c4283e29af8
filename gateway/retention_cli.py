"""``suitcase gateway retention show|apply``: retention and downsampling of the store, per org."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from kits.errors import SuitcaseError

__all__ = ["app"]

app = typer.Typer(
    help="Retention and downsampling of the store: how long raw readings and rollups are kept",
    no_args_is_help=True,
)

_STORE_HELP = (
    "the store, as the sink URL the gateway writes: sqlite:///store.db (or a path), "
    "influxdb1://host:8086?username=&password= (an admin user) [env SUITCASE_GATEWAY_STORE]"
)


def _store(store: str | None) -> str:
    from gateway.settings import load_settings

    return store or load_settings().store


@app.command()
def show(store: Annotated[str | None, typer.Option(help=_STORE_HELP)] = None) -> None:
    """Show the retention each org of the store keeps now."""
    from gateway.store.influxdb1_rollups import InfluxDB1Rollups
    from gateway.store.retention import open_target

    bare: list[str] = []
    older: dict[str, list[str]] = {}
    try:
        target = open_target(_store(store))
        fine = not isinstance(target, InfluxDB1Rollups)  # the embedded store's 5-, 30-s windows
        try:
            orgs = target.show()
            if isinstance(target, InfluxDB1Rollups):
                bare = target.without_rollups()
                older = target.missing_tiers()
        finally:
            target.close()
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not orgs:
        typer.echo("no org has a retention yet: every tier is kept forever")
    for org, retention in sorted(orgs.items()):
        typer.echo(f"{org}: {retention.describe(fine=fine)}")
    for db in bare:
        typer.echo(f"{db}: no rollups yet (charts read raw readings only): run `retention apply`")
    for db, policies in sorted(older.items()):
        typer.echo(
            f"{db}: made by an older version, lacks {', '.join(policies)} (charts group the minute "
            "and hour windows instead): run `retention apply`, which computes them from those"
        )


@app.command()
def apply(
    config: Annotated[
        str,
        typer.Option(help="the retention settings (YAML: default and orgs, see docs/architecture.md)"),
    ],
    store: Annotated[str | None, typer.Option(help=_STORE_HELP)] = None,
    backfill_days: Annotated[
        float,
        typer.Option(
            min=0,
            help="InfluxDB 1.x: also recompute the rollups of the last N days from the raw readings "
            "(after adding rollups to a database that already holds data)",
        ),
    ] = 0.0,
) -> None:
    """Make the store keep what the settings say: SQLite records and applies them; InfluxDB 1.x
    gets retention policies and continuous queries. Idempotent."""
    from gateway.store.influxdb1_rollups import InfluxDB1Rollups
    from gateway.store.retention import load_retention, open_target

    try:
        settings = load_retention(config)
        target = open_target(_store(store))
        fine = not isinstance(target, InfluxDB1Rollups)  # the embedded store's 5-, 30-s windows
        try:
            if isinstance(target, InfluxDB1Rollups):
                applied = target.apply(settings, time.time(), backfill_days=backfill_days)
            else:
                applied = target.apply(settings, time.time())
        finally:
            target.close()
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for action in applied.actions:
        typer.echo(action)
    if not applied.actions:
        typer.echo("nothing to change")
    if applied.deleted:
        typer.echo(f"{applied.deleted} readings past their retention deleted")
    for org, retention in sorted(applied.orgs.items()):
        typer.echo(f"{org}: {retention.describe(fine=fine)}")
