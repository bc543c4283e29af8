"""Tests of gateway/settings.py: settings from arguments and SUITCASE_GATEWAY_* variables."""

from __future__ import annotations

import pytest

from gateway.settings import load_settings
from kits.errors import ConfigError


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that variables set the settings and arguments that are not None win over them."""
    monkeypatch.setenv("SUITCASE_GATEWAY_MQTT_PORT", "1999")
    monkeypatch.setenv("SUITCASE_GATEWAY_STORE", "env.db")
    settings = load_settings(store="arg.db", mqtt_host=None)
    assert (settings.mqtt_port, settings.store, settings.mqtt_host) == (1999, "arg.db", "127.0.0.1")


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that an invalid value fails with ConfigError naming the setting and its variable."""
    monkeypatch.setenv("SUITCASE_GATEWAY_MQTT_PORT", "70000")
    with pytest.raises(ConfigError, match="SUITCASE_GATEWAY_MQTT_PORT"):
        load_settings()


def test_misspelt_key_is_refused() -> None:
    """Test that an unknown setting is an error, never silently ignored."""
    with pytest.raises(ConfigError, match="mqtt_hots"):
        load_settings(mqtt_hots="x")
