"""``suitcase server ...``: run the registry API and web pages."""

from __future__ import annotations

import socket
from typing import Annotated

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
            help="embedded store file the gateway writes (path or sqlite:///path) [env SUITCASE_SERVER_STORE]"
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            help="registry database URL, e.g. sqlite:///registry.db [env SUITCASE_SERVER_REGISTRY_URL]"
        ),
    ] = None,
) -> None:
    """Serve the API (/api/v1, docs at /docs) and the live readings page (/)."""
    import uvicorn

    from server.app import create_app
    from server.resources import open_resources
    from server.settings import load_settings

    try:
        settings = load_settings(host=host, port=port, store=store, registry_url=registry_url)
        # Fail here, with exit code 2 and a clear message, rather than inside uvicorn's startup.
        open_resources(settings).close()
        _check_port_free(settings.host, settings.port)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"serving on http://{settings.host}:{settings.port} (store {settings.store})", err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
