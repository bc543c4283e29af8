"""``suitcase dashboards ...``: build Grafana dashboard JSON and push it to Grafana."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, cast

import typer

from dashboards.schema import Flavour
from kits.errors import SuitcaseError

__all__ = ["app"]

app = typer.Typer(help="Grafana dashboards as code: build and push.", no_args_is_help=True)

FlavourOption = Annotated[
    str,
    typer.Option(help="query language: influxql (InfluxDB 1.x) or flux (InfluxDB 2)"),
]


@app.callback()
def _main() -> None:
    """Grafana dashboards as code: build and push."""


def _orgs(values: list[str]) -> list[str]:
    return [o.strip() for v in values for o in v.split(",") if o.strip()]


def _check_flavour(flavour: str) -> Flavour:
    if flavour not in ("influxql", "flux"):
        raise typer.BadParameter(f"{flavour!r}: use influxql (InfluxDB 1.x) or flux (InfluxDB 2)")
    return cast(Flavour, flavour)


@app.command()
def build(
    out: Annotated[Path, typer.Option(help="folder to write {template}.json into")],
    flavour: FlavourOption = "influxql",
    template: Annotated[
        list[str] | None, typer.Option("--template", help="template id (repeatable); all by default")
    ] = None,
) -> None:
    """Write one dashboard JSON file per use-case template."""
    from dashboards.build import write_dashboards

    try:
        paths = write_dashboards(out, _check_flavour(flavour), template or None)
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for path in paths:
        typer.echo(str(path))


@app.command()
def push(
    grafana_url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://grafana:3000")],
    influx_url: Annotated[str, typer.Option(help="InfluxDB URL the data sources query, as Grafana sees it")],
    credentials: Annotated[
        Path,
        typer.Option(
            help="YAML file: orgs: {<org>: {user, password} | {token}}, read-only, one database each"
        ),
    ],
    orgs: Annotated[
        list[str], typer.Option("--orgs", help="organisation slugs (repeatable or comma-separated)")
    ],
    token: Annotated[
        str | None, typer.Option(help="Grafana service-account token (one organisation) [env GRAFANA_TOKEN]")
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option(
            help="Grafana server admin as user:password, to create organisations [env GRAFANA_BASIC_AUTH]"
        ),
    ] = None,
    flavour: FlavourOption = "influxql",
    influx_org: Annotated[str, typer.Option(help="InfluxDB 2 organisation (flux only)")] = "suitcase",
    template: Annotated[
        list[str] | None, typer.Option("--template", help="template id (repeatable); all by default")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="overwrite dashboards edited in Grafana since the last push")
    ] = False,
    rotate_secrets: Annotated[
        bool, typer.Option(help="send the read credentials even if Grafana has some")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds per HTTP request")] = 10.0,
) -> None:
    """Create, per organisation, a Grafana organisation, its data source and the dashboards."""
    from dashboards.push import InfluxTarget, load_credentials
    from dashboards.push import push as do_push

    chosen = _check_flavour(flavour)
    token = token or os.environ.get("GRAFANA_TOKEN") or None
    basic = basic_auth or os.environ.get("GRAFANA_BASIC_AUTH") or None
    pair: tuple[str, str] | None = None
    if basic is not None:
        user, sep, password = basic.partition(":")
        if not sep or not user:
            raise typer.BadParameter("--basic-auth must be user:password")
        pair = (user, password)
    try:
        report = do_push(
            grafana_url,
            orgs=_orgs(orgs),
            target=InfluxTarget(influx_url, chosen, influx_org),
            credentials=load_credentials(credentials),
            token=token if pair is None else None,
            basic_auth=pair,
            templates=template or None,
            force=force,
            rotate_secrets=rotate_secrets,
            timeout=timeout,
        )
    except SuitcaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line in report.changes:
        typer.echo(line)
    typer.echo(f"{len(report.changes)} changed, {report.unchanged} already up to date")
