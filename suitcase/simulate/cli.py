"""``suitcase simulate``: thousands of simulated agents against a real broker, gateway and server."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kits.errors import SuitcaseError
from suitcase.simulate.device import BEHAVIOURS, Behaviour, Counters
from suitcase.simulate.run import Options, Summary
from suitcase.simulate.run import simulate as run_simulation

__all__ = ["parse_mix", "simulate"]


def parse_mix(text: str) -> dict[Behaviour, float]:
    """Parse ``stale=0.01,stuck=0.01,malformed=0.01`` (shares of the fleet; the rest is good).

    Raises:
        typer.BadParameter: an unknown behaviour, a share that is not a number in 0..1, or a sum over 1.
    """
    mix: dict[Behaviour, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in BEHAVIOURS or name == "good":
            raise typer.BadParameter(
                f"{name!r} is not a behaviour: use stale, stuck or malformed (the rest is good)"
            )
        try:
            share = float(value)
        except ValueError:
            raise typer.BadParameter(f"{part!r}: the share must be a number, e.g. {name}=0.01") from None
        if not 0 <= share <= 1:
            raise typer.BadParameter(f"{part!r}: a share is between 0 and 1")
        mix[name] = share
    if sum(mix.values()) > 1:
        raise typer.BadParameter(f"the shares add up to {sum(mix.values()):g}, more than the whole fleet")
    return mix


def _table(counters: Counters, elapsed: float, count: int) -> Table:
    table = Table(title=f"suitcase simulate: {count} devices, {elapsed:.0f} s", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rate = counters.readings_acked / elapsed if elapsed > 0 else 0.0
    for what, value in (
        ("connected", f"{counters.connected} / {count}"),
        ("connect retries", str(counters.connect_failures)),
        ("packs acknowledged", f"{counters.packs_acked:,}"),
        ("readings acknowledged", f"{counters.readings_acked:,} ({rate:,.0f}/s)"),
        ("malformed packs sent", f"{counters.malformed_acked:,}"),
        ("reconnects", str(counters.reconnects)),
        ("packs held (offline)", str(counters.backlog)),
    ):
        table.add_row(what, value)
    return table


def simulate(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=200_000, help="simulated devices")] = 100,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, max=86400, help="seconds between a device's packs")
    ] = 10.0,
    duration: Annotated[float, typer.Option("--duration", min=1, help="seconds the fleet runs")] = 60.0,
    mix: Annotated[
        str, typer.Option("--mix", help="misbehaving shares: stale=0.01,stuck=0.01,malformed=0.01")
    ] = "stale=0.01,stuck=0.01,malformed=0.01",
    processes: Annotated[
        int, typer.Option("--processes", min=1, max=64, help="worker processes (one event loop each)")
    ] = 2,
    connect_rate: Annotated[
        float, typer.Option("--connect-rate", min=0, help="connects per second; 0: a storm, all at once")
    ] = 0.0,
    outage_share: Annotated[
        float,
        typer.Option("--outage-share", min=0, max=1, help="share of devices that lose their connection once"),
    ] = 0.0,
    outage_after: Annotated[
        float, typer.Option("--outage-after", min=0, help="seconds after the start the outage begins")
    ] = 20.0,
    outage_s: Annotated[float, typer.Option("--outage-s", min=0, help="seconds the outage lasts")] = 10.0,
    server: Annotated[str | None, typer.Option("--server", help="the server's URL (without --local)")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="SUITCASE_TOKEN", help="an operator's API token")
    ] = None,
    org_id: Annotated[int | None, typer.Option("--org-id", help="organisation of the simulated kits")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="start Mosquitto (dynamic security), a gateway and a server here")
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="with --local: where its files go (default: a temporary folder)"),
    ] = None,
    profile: Annotated[str, typer.Option("--profile", help="kit profile of the simulated kits")] = "starter",
    seed: Annotated[int, typer.Option("--seed", help="random seed (behaviours, values, timing)")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary as JSON here")] = None,
) -> None:
    """Run a simulated fleet: enroll it through the server, connect storm, telemetry, outages, summary."""
    mixed = parse_mix(mix)
    if not local and (server is None or token is None):
        raise typer.BadParameter(
            "name a stack with --server URL --token TOKEN, or start one here with --local"
        )
    options = Options(
        count=count, interval_s=interval, duration_s=duration, mix=mixed, processes=processes,
        connect_rate=connect_rate, outage_share=outage_share, outage_after_s=outage_after,
        outage_s=outage_s, profile=profile, seed=seed,
    )  # fmt: skip
    console = Console(soft_wrap=True)
    live = console.is_terminal
    last_line = [0.0]

    def on_phase(phase: str, done: int, total: int) -> None:
        if not live and done != total and time.monotonic() - last_line[0] < 5:
            return
        last_line[0] = time.monotonic()
        console.print(f"{phase}: {done}/{total}")

    with ExitStack() as stack:
        store = None
        if local:
            from suitcase.simulate.stack import LocalStack

            folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="suitcase-sim-")))
            local_stack = stack.enter_context(LocalStack(folder))
            local_stack.wait_ready()
            server, token, org_id, store = (
                local_stack.server_url,
                local_stack.token,
                local_stack.org_id,
                local_stack.store_path,
            )
            console.print(
                f"local stack: server {server}, broker "
                f"{local_stack.broker.url if local_stack.broker else ''}, folder {folder}"
            )
        assert server is not None and token is not None
        display = (
            stack.enter_context(Live(_table(Counters(), 0.0, count), console=console, refresh_per_second=4))
            if live
            else None
        )

        def on_progress(counters: Counters, elapsed: float) -> None:
            if display is not None:
                display.update(_table(counters, max(elapsed, 0.0), count))
            elif time.monotonic() - last_line[0] >= 5:
                last_line[0] = time.monotonic()
                console.print(
                    f"t={elapsed:.0f}s connected={counters.connected}/{count} "
                    f"readings={counters.readings_acked} malformed={counters.malformed_acked} "
                    f"reconnects={counters.reconnects} held={counters.backlog}"
                )

        try:
            summary = run_simulation(
                options, server, token, org_id=org_id, store=store, on_phase=on_phase, on_progress=on_progress
            )
        except (SuitcaseError, RuntimeError) as exc:
            console.print(f"error: {exc}", style="red" if live else None)
            raise typer.Exit(1) from exc
    _print_summary(console, summary)
    if json_out is not None:
        json_out.write_text(json.dumps(_as_json(summary), indent=2))
    if summary.counters.connected < summary.counters.enrolled:
        raise typer.Exit(1)
    sys.stdout.flush()


def _print_summary(console: Console, summary: Summary) -> None:
    console.print("summary:")
    for line in summary.lines():
        console.print(f"  {line}", markup=False, highlight=False)


def _as_json(summary: Summary) -> dict[str, object]:
    data = asdict(summary)
    data["readings_per_s"] = summary.readings_per_s
    return data
