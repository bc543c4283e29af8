"""``suitcase kit``: the hardware guide, a kit's bill of materials and its quick-start card."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kits.catalog import load_catalog
from kits.errors import ConfigError, SuitcaseError
from kits.models import DeviceConfig, KitProfile
from suitcase.hardware_docs import (
    IMPORT_CODES_HEADER,
    build_docs,
    load_claim_codes,
    load_part_facts,
    render_card,
    stale_docs,
    write_docs,
)

__all__ = ["app"]

app = typer.Typer(
    name="kit",
    help="Kits: bill of materials, quick-start card, verification.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=2)


def _profile(kit: str) -> KitProfile:
    profiles = load_catalog().kit_profiles
    if kit not in profiles:
        raise ConfigError(f"no kit profile {kit!r}: use one of {', '.join(sorted(profiles))}")
    return profiles[kit]


@app.command()
def docs(
    out: Annotated[Path, typer.Option("--out", help="the hardware folder to write")] = Path("hardware"),
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; exit 1 if a generated file is out of date")
    ] = False,
) -> None:
    """(Re)generate hardware/README.md and a page and wiring picture per part."""
    try:
        files = build_docs(load_catalog(), load_part_facts())
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    console = Console()
    if check:
        stale = stale_docs(out, files)
        for name in stale:
            console.print(f"out of date: {out / name}", highlight=False)
        if stale:
            console.print("run `suitcase kit docs` and commit the result", highlight=False)
            raise typer.Exit(code=1)
        console.print(f"{out}: up to date ({len(files)} files)", highlight=False)
        return
    changed = write_docs(out, files)
    for name in changed:
        console.print(f"wrote {out / name}" if name in files else f"removed {out / name}", highlight=False)
    console.print(f"{out}: {len(changed)} of {len(files)} files changed", highlight=False)


@app.command()
def bom(kit: Annotated[str, typer.Argument(help="kit profile id, e.g. starter")]) -> None:
    """Print a kit's bill of materials."""
    try:
        profile = _profile(kit)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"{profile.name}: bill of materials")
    for column in ("item", "part number", "qty", "each EUR", "where to buy"):
        table.add_column(column)
    for line in profile.bill_of_materials:
        price = "-" if line.price_eur is None else f"{line.price_eur:g}"
        table.add_row(line.item, line.part_number or "-", str(line.quantity), price, line.where_to_buy or "-")
    Console().print(table)


@app.command()
def card(
    kit: Annotated[str, typer.Argument(help="kit profile id, e.g. starter")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write")],
    codes: Annotated[
        Path | None,
        typer.Option(
            "--codes",
            help="claim codes: CSV with header pi,claim_code,url (or one kit's rows of "
            "`kit import --codes-out`), or YAML",
        ),
    ] = None,
) -> None:
    """Write a kit's printable quick-start card (one A4 page) with its Pis' claim QR codes."""
    try:
        profile = _profile(kit)
        claim_codes = load_claim_codes(codes) if codes is not None else []
        facts = load_part_facts()
        text = render_card(profile, claim_codes, facts)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    Console().print(
        f"wrote {out}: {profile.name}, {len(claim_codes)} of {profile.pis} claim codes. "
        "Print it on A4 at 100 % scale.",
        highlight=False,
    )


class _VirtualClock:
    """Time on an emulated bus: sleeping advances it at once, so warm-ups take no wall time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


_MARKS = {
    "ok": "[green]✔ ok[/]",
    "fail": "[bold red]✘ FAIL[/]",
    "warn": "[yellow]! warn[/]",
    "skip": "[dim]- skip[/]",
}


@app.command()
def verify(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="the agent's config: TOML (edge.config) or a device config YAML"),
    ] = None,
    emulated: Annotated[
        bool, typer.Option("--emulated", help="verify an emulated bus instead of the Pi's")
    ] = False,
    kit: Annotated[str | None, typer.Option("--kit", help="kit profile id, e.g. starter")] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="the server's URL (default: the config's [claim] server)")
    ] = None,
) -> None:
    """Check this Pi after unboxing: sensors on the bus, a plausible first reading from each, the
    broker, the server and the clock; print a checklist with a fix for every failure."""
    from edge.bus import open_bus
    from edge.config import effective_device_config, load_edge_settings
    from edge.verify import PartHint, expected_sensors
    from edge.verify import verify as run_verify

    try:
        device: DeviceConfig | None = None
        if config is not None:
            settings = load_edge_settings(config)
            device = effective_device_config(settings)
            if server is None and settings.claim is not None:
                server = settings.claim.server
        profile_id = kit or (device.kit_profile if device is not None else None)
        profile = _profile(profile_id) if profile_id else None
        expected = expected_sensors(device.sensors if device is not None else None, profile)
        facts = load_part_facts()
        hints = {
            part: PartHint(name=f.name.split(" (")[0], cable=f.cable_label, addresses=dict(f.addresses))
            for part, f in facts.items()
        }
        on_emulated = emulated or (device is not None and device.bus == "emulated")
        clock = _VirtualClock()
        i2c = open_bus(
            "emulated" if on_emulated else "board",
            expected,
            scenario=device.scenario if device is not None else "office-day",
            clock=clock if on_emulated else time.time,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    extra: dict[str, Any] = {"clock": clock, "sleep": clock.sleep} if on_emulated else {}
    report = run_verify(
        i2c,
        expected,
        hints=hints,
        profile=profile,
        mqtt=device.mqtt if device is not None else None,
        client_id=f"{device.device}-verify" if device is not None else "suitcase-verify",
        server=server,
        **extra,
    )
    table = Table(title="Kit verification" + (" (emulated bus)" if on_emulated else ""))
    for column in ("", "check", "what was seen", "fix"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(_MARKS[check.outcome], f"{check.group}: {check.name}", check.detail, check.fix)
    console = Console()
    console.print(table)
    if report.ok:
        console.print("[bold green]All checks passed:[/] this Pi is ready.")
        return
    console.print(
        f"[bold red]{len(report.failures)} check(s) failed:[/] do each fix above, then run this again."
    )
    raise typer.Exit(code=1)


@app.command("import")
def import_kits(
    csv_file: Annotated[Path, typer.Argument(help="CSV: kit,profile,pi[,claim_code,deployment,interval_s]")],
    server: Annotated[
        str, typer.Option("--server", help="the server's URL, e.g. https://suitcase.example.org")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token", envvar="SUITCASE_TOKEN", help="an API token of an operator (or SUITCASE_TOKEN)"
        ),
    ],
    org_id: Annotated[
        int | None, typer.Option("--org-id", help="owner organisation (default: your only one)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check only; write nothing")] = False,
    codes_out: Annotated[
        Path | None,
        typer.Option(
            "--codes-out",
            help="write the claim codes made to this CSV (shown only once; `kit card --codes` reads it)",
        ),
    ] = None,
) -> None:
    """Register kits and their Pis from CSV, all or nothing; problems are named by row and column."""
    from suitcase.kit_import_client import post_import

    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise _fail(f"cannot read {csv_file}: there is no such file: check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {csv_file}: {exc}: save it as CSV (UTF-8)") from exc
    try:
        answer = post_import(server, token, text, org_id=org_id, dry_run=dry_run)
    except SuitcaseError as exc:
        raise _fail(str(exc)) from exc
    if not answer.ok:
        problems = answer.problems()
        typer.echo(f"{csv_file}: refused ({answer.status}), nothing was imported:", err=True)
        for line in problems:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(code=1)
    body = answer.body
    if body.get("dry_run"):
        typer.echo(f"{csv_file}: fine: {body['kits']} kits with {body['pis']} Pis would be imported")
        return
    typer.echo(
        f"imported {body['kits']} kits with {body['pis']} Pis; {len(body['devices'])} devices bound "
        f"(registry {body['seconds_registry']:.1f} s, broker accounts {body['seconds_broker']:.1f} s)"
    )
    if body["claim_codes"]:
        lines = [",".join(IMPORT_CODES_HEADER)] + [
            f"{c['kit']},{c['pi']},{c['code']},{c['claim_url']}" for c in body["claim_codes"]
        ]
        if codes_out is not None:
            # Claim codes unlock the Pis' configs: readable by the operator only, from the start.
            fd = os.open(codes_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write("\n".join(lines) + "\n")
            typer.echo(
                f"{len(body['claim_codes'])} claim codes made: written to {codes_out} (shown only once)"
            )
        else:
            typer.echo("claim codes made (shown only once; --codes-out FILE writes them to a file):")
            typer.echo("\n".join(lines))
