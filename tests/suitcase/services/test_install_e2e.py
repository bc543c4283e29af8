"""Test a single-machine production install end to end: `suitcase services up`, then the gateway and
the server started as their units start them (`suitcase gateway run`, `suitcase server run`, with
nothing but gateway.env / server.env and the unit's per-instance lines), and a device account made
by the server's broker admin publishing over TLS: its reading reaches the store and the server."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.store import open_reader
from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import free_port
from suitcase.services.layout import Layout
from suitcase.services.settings_files import parse_env
from tests.services.mosquitto import tls_session
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.postgres]

ORG = "aarhus"
DEVICE = "aarhus-school7-k3f9"


def _start(args: list[str], env_file: Path, extra: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """Start `suitcase ARGS` as a unit would: the env file's settings plus the unit's own lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUITCASE_")}
    env |= parse_env(env_file.read_text()) | extra
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "out.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "suitcase", *args], env=env, cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip


@pytest.fixture()
def install(stack_factory: Callable[[], Layout], tmp_path: Path) -> Iterator[tuple[Layout, int, int]]:
    layout = stack_factory()
    metrics, http = free_port(), free_port()
    gateway = _start(
        ["gateway", "run"],
        layout.gateway_env,
        {
            "SUITCASE_GATEWAY_CLIENT_ID": f"suitcase-gateway-{metrics}",
            "SUITCASE_GATEWAY_METRICS_PORT": str(metrics),
            "SUITCASE_GATEWAY_STORE": str(tmp_path / "gateway" / "store.db"),
        },
        tmp_path / "gateway",
    )
    server = _start(
        ["server", "run"],
        layout.server_env,
        {"SUITCASE_SERVER_PORT": str(http), "SUITCASE_SERVER_HOST": "127.0.0.1"},
        tmp_path / "server",
    )
    try:
        yield layout, metrics, http
    finally:
        for process in (gateway, server):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for name in ("gateway", "server"):
            print(f"--- {name} ---\n" + (tmp_path / name / "out.log").read_text()[-3000:])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _server_settings(layout: Layout) -> Any:
    from server.settings import load_settings

    server_env = parse_env(layout.server_env.read_text())
    return load_settings(**{k.removeprefix("SUITCASE_SERVER_").lower(): v for k, v in server_env.items()})


@contextlib.contextmanager
def _device_session(layout: Layout, username: str, password: str) -> Iterator[tuple[mqtt.Client, bool]]:
    """A client of ``username`` connected to the broker over TLS (with the CA of server.env), and
    whether the broker accepted its login."""
    ca = parse_env(layout.server_env.read_text())["SUITCASE_SERVER_MQTT_CA_FILE"]
    with tls_session(layout.hostname, layout.ports.mqtt_tls, username, password, ca) as session:
        yield session


def _logs_in(layout: Layout, username: str, password: str) -> bool:
    """Whether the broker accepts ``username`` over TLS."""
    with _device_session(layout, username, password) as (_client, accepted):
        return accepted


def test_production_install_takes_a_devices_reading(install: tuple[Layout, int, int]) -> None:
    """Test that the gateway and the server run from the files `up` wrote (production: TLS, dynamic
    security for the stack, devices' accounts in the broker's files through the accounts service,
    no open reads), and a device with the account the server's broker admin makes gets its reading
    into the store, which the server reads."""
    from server.app import _broker_admin
    from server.broker_remote import RemoteFilesAdmin

    layout, metrics, http = install
    wait_until(lambda: "suitcase_gateway_connected 1.0" in _get(f"http://127.0.0.1:{metrics}/metrics")[1],
               timeout=60, what="the gateway subscribed over TLS")  # fmt: skip
    wait_until(
        lambda: _get(f"http://127.0.0.1:{http}/api/v1/health")[0] == 200,
        timeout=60,
        what="the server's /health",
    )
    assert _get(f"http://127.0.0.1:{http}/api/v1/devices")[0] == 401  # production: no open reads

    server_env = parse_env(layout.server_env.read_text())
    settings = _server_settings(layout)
    assert settings.environment == "production" and settings.device_accounts == "files-remote"
    admin = _broker_admin(settings)
    assert isinstance(admin, RemoteFilesAdmin)
    try:
        # `up` returned once the accounts service answered: the first request is served.
        admin.create_device(ORG, DEVICE, DEVICE, "a-device-password-of-length")
    finally:
        admin.close()
    assert DEVICE in (layout.device_accounts_dir / "devices.passwd").read_text()

    with _device_session(layout, DEVICE, "a-device-password-of-length") as (pi, accepted):
        assert accepted
        now = round(time.time(), 3)
        pack = encode_pack([Record(ORG, DEVICE, "bme280", "temperature", 21.25, now)])
        pi.publish(build_topic(ORG, DEVICE, "telemetry"), pack, qos=1).wait_for_publish(30)
    reader = open_reader(server_env["SUITCASE_SERVER_STORE"])
    latest = wait_until(lambda: reader.latest(), timeout=30, what="the reading in the store")
    assert [(r.device, r.quantity, r.value) for r in latest] == [(DEVICE, "temperature", 21.25)]
    assert json.loads(_get(f"http://127.0.0.1:{http}/api/v1/health")[1])["store"] == "influxdb1"


def test_upgrade_moves_dynsec_devices_to_the_files(stack_factory: Callable[[], Layout]) -> None:
    """Test an upgrade of an install whose devices are in dynamic security (made by `DynSecAdmin`,
    as before the accounts service): the next `up` moves them to the broker's files, the device
    logs in with its old password, the server's revocation (files-remote) refuses it after, and a
    secrets.yaml without the accounts service's secret gets it instead of being refused."""
    import yaml

    from server.app import _broker_admin
    from server.broker_admin import DynSecAdmin
    from suitcase.services.stack import up

    layout = stack_factory()
    settings = _server_settings(layout)
    assert settings.mqtt_host and settings.mqtt_username and settings.mqtt_password
    password = settings.mqtt_password.get_secret_value()
    tls = settings.mqtt_tls_context()
    legacy = DynSecAdmin(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username, password, tls=tls)
    try:
        legacy.create_device(ORG, DEVICE, DEVICE, "an-old-device-password")
    finally:
        legacy.close()
    assert _logs_in(layout, DEVICE, "an-old-device-password")
    # secrets.yaml of the version before the accounts service.
    old = yaml.safe_load(layout.secrets_file.read_text())
    del old["mqtt_accounts"]
    layout.secrets_file.write_text(yaml.safe_dump(old))

    changes = up(layout, use_systemd=False)
    assert "moved 1 device accounts from dynamic security to the broker's files" in changes
    assert "mqtt_accounts" in yaml.safe_load(layout.secrets_file.read_text())
    state = json.loads(layout.dynsec_file.read_text())
    assert DEVICE not in [c["username"] for c in state["clients"]]
    assert "suitcase-accounts" in [c["username"] for c in state["clients"]]
    assert DEVICE in (layout.device_accounts_dir / "devices.passwd").read_text()
    assert _logs_in(layout, DEVICE, "an-old-device-password")
    assert not _logs_in(layout, DEVICE, "a-wrong-password")

    admin = _broker_admin(_server_settings(layout))  # files-remote, through the accounts service
    try:
        admin.delete_device(DEVICE)
    finally:
        admin.close()
    assert not _logs_in(layout, DEVICE, "an-old-device-password")
    assert up(layout, use_systemd=False) == []
