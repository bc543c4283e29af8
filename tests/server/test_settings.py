"""Tests of server/settings.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kits.catalog import CATALOG_DIR
from kits.errors import ConfigError
from server.settings import ServerSettings, load_settings


def test_defaults_are_a_local_development_server() -> None:
    """Test that the defaults serve on localhost with SQLite files and the packaged catalogue."""
    settings = ServerSettings()
    assert settings.environment == "development"
    assert settings.host == "127.0.0.1"
    assert settings.registry_url.startswith("sqlite:///")
    assert settings.catalog_dir == CATALOG_DIR


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that SUITCASE_SERVER_* variables set the fields."""
    monkeypatch.setenv("SUITCASE_SERVER_PORT", "8123")
    monkeypatch.setenv("SUITCASE_SERVER_STORE", "/data/store.db")
    settings = ServerSettings()
    assert (settings.port, settings.store) == (8123, "/data/store.db")


def test_unknown_field_is_refused() -> None:
    """Test that a misspelt setting is an error, not silently ignored."""
    with pytest.raises(ValidationError, match="registry_ulr"):
        ServerSettings(registry_ulr="sqlite://")  # type: ignore[call-arg]


def test_production_refuses_the_default_secret() -> None:
    """Test that production with the default secret fails, saying which variable to set."""
    with pytest.raises(ValidationError, match="SUITCASE_SERVER_SECRET_KEY"):
        ServerSettings(environment="production")


def test_production_accepts_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test that production starts once the secret is set (and the broker is secure)."""
    monkeypatch.setenv("SUITCASE_SERVER_ENVIRONMENT", "production")
    monkeypatch.setenv("SUITCASE_SERVER_SECRET_KEY", "s3cr3t-from-the-vault")
    for name, value in {
        "MQTT_HOST": "broker.example.org",
        "MQTT_TLS": "true",
        "MQTT_DYNSEC": "true",
        "MQTT_USERNAME": "suitcase-server",
        "MQTT_PASSWORD": "another-s3cr3t-from-the-vault",
    }.items():
        monkeypatch.setenv(f"SUITCASE_SERVER_{name}", value)
    assert ServerSettings().environment == "production"


def test_load_settings_translates_errors_and_skips_none() -> None:
    """Test that load_settings ignores None overrides and reports bad values as ConfigError."""
    assert load_settings(port=None).port == 8000
    with pytest.raises(ConfigError, match=r"port \(SUITCASE_SERVER_PORT\)"):
        load_settings(port=70000)
