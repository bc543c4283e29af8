"""Tests of deploy/compose/. Docker does not run on this machine, so the Compose file is checked for
its structure (services, volumes, dependencies, no default secret), and its `init` service's
command, `suitcase services compose-init`, runs against the real InfluxDB and PostgreSQL of a
stack; the broker config it writes is then started on a real Mosquitto."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import DEPLOY_DIR
from suitcase.broker import find_mosquitto, free_port, wait_for_port
from suitcase.services.compose import compose_init, secret_variable
from suitcase.services.layout import Layout
from suitcase.services.mosquitto import find_dynsec_plugin
from suitcase.services.preflight import ServicesError
from suitcase.services.secrets import Secrets, load_or_make_secrets
from suitcase.services.settings_files import parse_env
from tests.services import require_service
from tests.services.mosquitto import tls_session

COMPOSE = DEPLOY_DIR / "compose" / "compose.yaml"
ENV_EXAMPLE = DEPLOY_DIR / "compose" / ".env.example"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(:?[?-]?)([^}]*)\}")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_structure() -> None:
    """Test the Compose file: the stack's services, every named volume declared, dependencies on
    services that exist (init after the stores are healthy, the broker after init), fixed gateway
    client ids, and commands the `suitcase` CLI has."""
    data = _compose()
    services = data["services"]
    assert set(services) == {
        "influxdb", "postgres", "init", "mosquitto", "accounts", "gateway-1", "gateway-2", "server"
    }  # fmt: skip
    declared = set(data["volumes"])
    for name, service in services.items():
        assert "image" in service, f"{name} has no image"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name} mounts undeclared volume {source}"
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            assert condition["condition"] in {
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            }
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{needed} has no healthcheck"
    assert services["init"]["depends_on"] == {
        "influxdb": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert services["mosquitto"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    ids = [services[g]["environment"]["SUITCASE_GATEWAY_CLIENT_ID"] for g in ("gateway-1", "gateway-2")]
    assert len(set(ids)) == 2
    assert services["mosquitto"]["ports"] == ["8883:8883"]
    # Only the broker's TLS port is published to the network; the server to loopback only.
    published = {n: s.get("ports", []) for n, s in services.items() if s.get("ports")}
    assert published == {"mosquitto": ["8883:8883"], "server": ["127.0.0.1:8000:8000"]}
    from suitcase.cli import build_app

    commands = {" ".join(c[1:3]) for s in services.values() if isinstance(c := s.get("command"), list) and
                c[0] == "suitcase"}  # fmt: skip
    commands |= {re.sub(r".*exec suitcase ", "", s["command"][2]) for s in services.values()
                 if isinstance(s.get("command"), list) and s["command"][0] == "sh"}  # fmt: skip
    assert commands == {"services compose-init", "gateway run", "server run", "broker accounts"}
    # The accounts service signals the broker: it shares its PID namespace and runs as its uid.
    assert services["accounts"]["pid"] == "service:mosquitto"
    assert services["accounts"]["user"].split(":")[0] == "1883"
    for command in commands:
        part, sub = command.split()
        app = build_app([part])
        group = next(g for g in app.registered_groups if g.name == part)
        assert sub in {c.name or c.callback.__name__ for c in group.typer_instance.registered_commands}  # type: ignore[union-attr]


def test_compose_has_no_default_secret() -> None:
    """Test that every variable is required (``${X:?...}``, no default), and .env.example names each
    variable the file uses, with no value; the init service gets every password of the stack."""
    text = COMPOSE.read_text()
    used = {}
    for name, operator, _rest in _VARIABLE.findall(text):
        used[name] = operator
    assert used, "no variables found"
    assert all(op == ":?" for op in used.values()), f"variables with a default: {used}"
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert set(example) == set(used)
    assert all(value == "" for value in example.values()), "a value in .env.example"
    init = _compose()["services"]["init"]["environment"]
    assert {secret_variable(f.name) for f in fields(Secrets)} | {"SUITCASE_HOSTNAME"} == set(init)
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "TOKEN")):
                assert str(value).startswith("${"), f"{name}: {key} has a literal value"


def test_compose_init_refuses_missing_secrets(tmp_path: Path) -> None:
    """Test that compose-init names every missing or short password and writes nothing."""
    with pytest.raises(
        ServicesError, match=r"MQTT_GATEWAY_PASSWORD, .*SERVER_SECRET_KEY, MQTT_ACCOUNTS_PASSWORD not set"
    ):
        compose_init(
            {"SUITCASE_HOSTNAME": "x", "MQTT_SERVER_PASSWORD": "short"}, tmp_path / "c", tmp_path / "d"
        )
    assert not (tmp_path / "c").exists()


@pytest.mark.mosquitto
@pytest.mark.influxdb
@pytest.mark.postgres
def test_compose_init_configures_real_services(stack_factory: Callable[[], Layout], tmp_path: Path) -> None:
    """Test compose-init against the real InfluxDB and PostgreSQL of a stack (as the Compose services
    would be), twice (the second changes nothing), then start Mosquitto with the config it wrote and
    log in as the gateway over TLS with the CA it made."""
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    stack = stack_factory()
    secrets, _ = load_or_make_secrets(stack.secrets_file)
    env = {secret_variable(f.name): getattr(secrets, f.name) for f in fields(Secrets)}
    env |= {
        "SUITCASE_HOSTNAME": "localhost",
        "SUITCASE_INFLUX_HOST": "127.0.0.1",
        "SUITCASE_POSTGRES_HOST": "127.0.0.1",
        "SUITCASE_MQTT_HOST": "localhost",
        "SUITCASE_MQTT_BIND": "127.0.0.1",
        "SUITCASE_INFLUX_PORT": str(stack.ports.influx_http),
        "SUITCASE_POSTGRES_PORT": str(stack.ports.postgres),
        "SUITCASE_MQTT_PORT": str(free_port()),
    }
    config, data = tmp_path / "config", tmp_path / "data"
    kwargs: dict[str, Any] = {"plugin": find_dynsec_plugin(), "mosquitto_uid": None, "parts_gid": None}
    changes = compose_init(env, config, data, **kwargs)
    assert any("certificate" in c for c in changes)
    assert compose_init(env, config, data, **kwargs) == []
    gateway = parse_env((config / "gateway.env").read_text())
    assert gateway["SUITCASE_GATEWAY_MQTT_HOST"] == "localhost"
    assert "127.0.0.1" in gateway["SUITCASE_GATEWAY_SINKS"]
    port = int(env["SUITCASE_MQTT_PORT"])
    process = subprocess.Popen([str(find_mosquitto()), "-c", str(config / "mosquitto.conf")],
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
        with tls_session(
            "localhost", port, gateway["SUITCASE_GATEWAY_USERNAME"], gateway["SUITCASE_GATEWAY_PASSWORD"],
            gateway["SUITCASE_GATEWAY_MQTT_CA_FILE"], client_id="compose-gw",
        ) as (_client, accepted):  # fmt: skip
            assert accepted
        _device_account_through_the_accounts_service(config, tmp_path)
    finally:
        process.terminate()
        process.wait(10)


def _device_account_through_the_accounts_service(config: Path, tmp_path: Path) -> None:
    """Run `suitcase broker accounts` from accounts.env (as the `accounts` service does) and make a
    device's account with the server's admin from server.env (files-remote); the device logs in."""
    import os
    import sys

    from server.app import _broker_admin
    from server.broker_admin import BrokerAdminError
    from server.broker_files import login_probe
    from server.settings import load_settings
    from tests.waiting import wait_until

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUITCASE_")}
    env |= parse_env((config / "accounts.env").read_text())
    log = (tmp_path / "accounts.log").open("wb")
    service = subprocess.Popen([sys.executable, "-m", "suitcase", "broker", "accounts"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    server_env = parse_env((config / "server.env").read_text())
    settings = load_settings(**{k.removeprefix("SUITCASE_SERVER_").lower(): v for k, v in server_env.items()})
    assert settings.device_accounts == "files-remote" and settings.mqtt_host
    admin = _broker_admin(settings)
    admin.timeout = 10.0  # type: ignore[attr-defined]

    def made() -> bool:
        try:
            admin.create_device("city", "dev-c1", "dev-c1", "a-compose-device-password")
        except BrokerAdminError:
            return False
        return True

    try:
        wait_until(made, timeout=90, what="the accounts service answering")
        probe = login_probe(settings.mqtt_host, settings.mqtt_port, tls=settings.mqtt_tls_context())
        assert probe("dev-c1", "a-compose-device-password")
        assert not probe("dev-c1", "another-password")
    finally:
        admin.close()
        service.terminate()
        service.wait(20)
        log.close()
