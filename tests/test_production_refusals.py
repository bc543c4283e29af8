"""Tests of the production refusals of the server and the gateway (issue 14, "Secure by default").

Each refusal is checked alone (every other setting secure), so a message that stops being given,
or a check that stops firing, fails its own case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.settings import load_settings as gateway_settings
from kits.errors import ConfigError
from kits.tls import secret_problem
from server.settings import load_settings as server_settings

SECRET = "k9Qe2-ZpRbT4wXy7_Lm3NcV8"


def secure_server(tmp_path: Path) -> dict[str, Any]:
    """Server settings that pass every production check."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the settings\n")
    return {
        "environment": "production",
        "secret_key": SECRET,
        "mqtt_host": "broker.example.org",
        "mqtt_port": 8883,
        "mqtt_tls": True,
        "mqtt_ca_file": ca,
        "mqtt_dynsec": True,
        "mqtt_username": "suitcase-server",
        "mqtt_password": SECRET[::-1],
    }


def secure_gateway(tmp_path: Path) -> dict[str, Any]:
    """Gateway settings that pass every production check."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the settings\n")
    return {
        "environment": "production",
        "mqtt_host": "broker.example.org",
        "mqtt_port": 8883,
        "mqtt_tls": True,
        "mqtt_ca_file": ca,
        "username": "suitcase-gateway",
        "password": SECRET,
    }


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("SUITCASE_SERVER_", "SUITCASE_GATEWAY_")):
            monkeypatch.delenv(name)


def test_secure_settings_start(tmp_path: Path) -> None:
    """Test that settings with TLS, dynamic security and real secrets load in production."""
    assert server_settings(**secure_server(tmp_path)).environment == "production"
    assert gateway_settings(**secure_gateway(tmp_path)).environment == "production"


SERVER_REFUSALS = [
    ({"secret_key": "changethis"}, "SUITCASE_SERVER_SECRET_KEY", "well-known default"),
    ({"secret_key": "short-secret"}, "SUITCASE_SERVER_SECRET_KEY", "shorter than 16"),
    ({"open_reads": True}, "SUITCASE_SERVER_OPEN_READS", "without logging in"),
    ({"mqtt_host": None}, "SUITCASE_SERVER_MQTT_HOST", "no broker"),
    (
        {"mqtt_tls": False, "mqtt_ca_file": None, "mqtt_port": 1883},
        "SUITCASE_SERVER_MQTT_TLS=true",
        "not encrypted",
    ),
    ({"mqtt_dynsec": False}, "SUITCASE_SERVER_MQTT_DYNSEC=true", "dynamic security is off"),
    ({"mqtt_username": None}, "SUITCASE_SERVER_MQTT_USERNAME", "no broker account"),
    ({"mqtt_password": None}, "SUITCASE_SERVER_MQTT_PASSWORD", "it is not set"),
    ({"mqtt_password": "admin"}, "SUITCASE_SERVER_MQTT_PASSWORD", "well-known default"),
]


@pytest.mark.parametrize(("change", "variable", "problem"), SERVER_REFUSALS)
def test_server_refuses_insecure_production(
    tmp_path: Path, change: dict[str, Any], variable: str, problem: str
) -> None:
    """Test that each insecure server setting alone stops production, naming the fix."""
    with pytest.raises(ConfigError) as refused:
        server_settings(**{**secure_server(tmp_path), **change})
    message = str(refused.value)
    assert "production refuses to start" in message
    assert variable in message and problem in message
    assert message.count("\n- ") == 1, message  # only the one problem is reported


GATEWAY_REFUSALS = [
    (
        {"mqtt_tls": False, "mqtt_ca_file": None, "mqtt_port": 1883},
        "SUITCASE_GATEWAY_MQTT_TLS=true",
        "not encrypted",
    ),
    ({"username": None, "password": None}, "SUITCASE_GATEWAY_USERNAME", "no broker account"),
    ({"password": None}, "SUITCASE_GATEWAY_PASSWORD", "it is not set"),
    ({"password": "changethis"}, "SUITCASE_GATEWAY_PASSWORD", "well-known default"),
    ({"password": "gw-pass"}, "SUITCASE_GATEWAY_PASSWORD", "shorter than 16"),
]


@pytest.mark.parametrize(("change", "variable", "problem"), GATEWAY_REFUSALS)
def test_gateway_refuses_insecure_production(
    tmp_path: Path, change: dict[str, Any], variable: str, problem: str
) -> None:
    """Test that each insecure gateway setting alone stops production, naming the fix."""
    with pytest.raises(ConfigError) as refused:
        gateway_settings(**{**secure_gateway(tmp_path), **change})
    message = str(refused.value)
    assert "production refuses to start" in message
    assert variable in message and problem in message
    assert message.count("\n- ") == 1, message


def test_every_problem_is_listed_at_once() -> None:
    """Test that a bare production server lists all its problems in one refusal, not one per try."""
    with pytest.raises(ConfigError) as refused:
        server_settings(environment="production")
    assert str(refused.value).count("\n- ") == 5  # secret, broker, TLS, dynsec, account
    with pytest.raises(ConfigError) as refused:
        gateway_settings(environment="production")
    assert str(refused.value).count("\n- ") == 2  # TLS, account


def test_development_stays_open() -> None:
    """Test that the demo and trials (development) start without any of it."""
    assert server_settings().reads_open
    assert gateway_settings().environment == "development"


@pytest.mark.parametrize("load", [server_settings, gateway_settings])
def test_tls_files_need_tls_in_any_environment(tmp_path: Path, load: Any) -> None:
    """Test that a CA file without TLS on, or a certificate without its key, is refused."""
    with pytest.raises(ConfigError, match="mqtt_tls is off"):
        load(mqtt_ca_file=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="go together"):
        load(mqtt_tls=True, mqtt_cert_file=tmp_path / "client.pem")


def test_secret_problem() -> None:
    """Test what counts as a production secret."""
    assert secret_problem(None) == "it is not set"
    assert secret_problem("") == "it is not set"
    assert secret_problem("ChangeThis") == "it is a well-known default"
    assert secret_problem("x" * 15) == "it is shorter than 16 characters"
    assert secret_problem(SECRET) is None


def test_the_commands_refuse_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that `suitcase server run` and `suitcase gateway run` in production exit 2 with the fixes."""
    from gateway.cli import app as gateway_app
    from server.cli import app as server_app

    monkeypatch.setenv("SUITCASE_SERVER_ENVIRONMENT", "production")
    monkeypatch.setenv("SUITCASE_GATEWAY_ENVIRONMENT", "production")
    runner = CliRunner()
    result = runner.invoke(server_app, ["run", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert "SUITCASE_SERVER_MQTT_DYNSEC=true" in result.output
    result = runner.invoke(gateway_app, ["run", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert "SUITCASE_GATEWAY_MQTT_TLS=true" in result.output
