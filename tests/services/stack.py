"""The production stack of `suitcase services up` (Mosquitto TLS + dynamic security, InfluxDB with
authentication, PostgreSQL with passwords) for tests: free loopback ports, temporary directories.

``stack_factory`` makes stacks with the same code a city runs (:func:`suitcase.services.stack.up`),
supervised by the stack's own supervisor (no systemd here); each is stopped after its test.
``running_stack()`` is the same as a context manager (for a module-wide stack).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suitcase.broker import find_mosquitto, free_port
from suitcase.services.influxdb import find_influxd
from suitcase.services.layout import Layout, Ports
from suitcase.services.mosquitto import find_dynsec_plugin
from suitcase.services.postgres import find_pg_bin
from suitcase.services.stack import down, up
from tests.services import require_service

__all__ = ["new_layout", "running_stack", "stack_factory"]


def new_layout(root: Path | None = None) -> Layout:
    """A layout in a new world-readable temporary directory (the services' users must reach it)."""
    base = Path(tempfile.mkdtemp(prefix="suitcase-stack-")) if root is None else root
    base.chmod(0o755)
    return Layout(
        config_dir=base / "etc",
        data_dir=base / "data",
        hostname="localhost",
        mqtt_bind="127.0.0.1",
        ports=Ports(
            mqtt_tls=free_port(), influx_http=free_port(), influx_rpc=free_port(), postgres=free_port()
        ),
    )


def _require() -> None:
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    if find_influxd() is None:
        require_service("influxdb", "apt-get install influxdb")
    if find_pg_bin() is None:
        require_service("postgresql", "apt-get install postgresql")


@contextlib.contextmanager
def running_stack() -> Iterator[Layout]:
    """A production stack, up for the ``with`` block, then stopped and removed."""
    _require()
    layout = new_layout()
    try:
        up(layout, use_systemd=False)
        yield layout
    finally:
        down(layout, use_systemd=False)
        shutil.rmtree(layout.config_dir.parent, ignore_errors=True)


@pytest.fixture()
def stack_factory() -> Iterator[Callable[[], Layout]]:
    """Make and start production stacks on demand; each is stopped and removed after the test."""
    with contextlib.ExitStack() as stacks:
        yield lambda: stacks.enter_context(running_stack())
