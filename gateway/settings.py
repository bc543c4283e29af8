"""Gateway settings, from arguments or ``SUITCASE_GATEWAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.series_cap import DEFAULT_MAX_SERIES_PER_DEVICE
from kits.config_file import settings_from
from kits.tls import check_tls_files, refuse_insecure_production, secret_problem

__all__ = ["ENV_PREFIX", "GatewaySettings", "load_settings", "production_problems"]

ENV_PREFIX = "SUITCASE_GATEWAY_"


class GatewaySettings(BaseSettings):
    """Where the gateway reads from and writes to.

    Every field can be set by an environment variable ``SUITCASE_GATEWAY_<FIELD>``, e.g.
    ``SUITCASE_GATEWAY_MQTT_PORT=1883``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    environment: Literal["development", "production"] = Field(
        default="development", description="production refuses to start without TLS and a broker account"
    )
    store: str = Field(default="suitcase-store.db", description="store to write: a path or sqlite:///path")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(
        default="suitcase-gateway",
        min_length=1,
        max_length=64,
        description="fixed id of the persistent session; one per gateway instance",
    )
    group: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="shared-subscription group, to share the load between gateways",
    )
    batch_messages: int = Field(default=4000, ge=1, le=30_000)
    batch_age_s: float = Field(default=0.2, gt=0, le=60)
    mqtt_tls: bool = Field(default=False, description="connect to the broker's TLS listener")
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate (default: system's)",
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="the gateway's client certificate (PEM), for a broker that asks for one"
    )
    mqtt_key_file: Path | None = Field(default=None, description="the key of mqtt_cert_file (PEM)")
    username: str | None = None
    password: SecretStr | None = None
    sinks: list[str] = Field(
        default_factory=list,
        description="where readings go (sink URLs, gateway/sinks/README.md); default: the store",
    )
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="serve /metrics here")
    metrics_host: str = "127.0.0.1"
    mqtt_version: Literal["3.1.1", "5"] = Field(
        default="3.1.1", description="5 declares the Receive Maximum (Mosquitto); 3.1.1 suits any broker"
    )
    workers: int = Field(default=1, ge=1, le=64, description="gateway processes sharing the subscription")
    retention: str | None = Field(
        default=None, description="retention settings (YAML) applied to the stores on start and every hour"
    )
    retention_every_s: float = Field(default=3600.0, gt=0, description="how often the retention is applied")
    max_series_per_device: int = Field(
        default=DEFAULT_MAX_SERIES_PER_DEVICE,
        ge=1,
        description="the most series (sensor, quantity) one device may create; more is dead-lettered",
    )
    dead_letter_burst: float = Field(
        default=100.0, ge=1, description="dead letters a device may store at once (then dead_letter_rate)"
    )
    dead_letter_rate: float = Field(
        default=1.0, gt=0, description="dead letters a device may store per second after its burst"
    )
    dead_letter_retention_days: float = Field(
        default=30.0, gt=0, description="how long the store keeps dead letters"
    )

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> GatewaySettings:
        check_tls_files(ENV_PREFIX, self)
        return self

    @model_validator(mode="after")
    def _secure_in_production(self) -> GatewaySettings:
        if self.environment == "production":
            refuse_insecure_production(ENV_PREFIX, production_problems(self))
        return self


def production_problems(settings: GatewaySettings) -> list[str]:
    """Return every reason ``settings`` are not secure enough for production, each with its fix."""
    problems: list[str] = []
    if not settings.mqtt_tls:
        problems.append(
            f"the broker connection is not encrypted: set {ENV_PREFIX}MQTT_TLS=true, "
            f"{ENV_PREFIX}MQTT_PORT to the broker's TLS listener (usually 8883) and "
            f"{ENV_PREFIX}MQTT_CA_FILE to the CA that signed its certificate"
        )
    if not settings.username:
        problems.append(
            f"no broker account: with dynamic security every client logs in; set {ENV_PREFIX}USERNAME "
            f"and {ENV_PREFIX}PASSWORD to the gateway's account (`suitcase services up` makes it)"
        )
    password = secret_problem(settings.password.get_secret_value() if settings.password else None)
    if settings.username and password is not None:
        problems.append(
            f"the broker password is not fit for production ({password}): set {ENV_PREFIX}PASSWORD to "
            "the long random password of the gateway's broker account"
        )
    return problems


def load_settings(**overrides: Any) -> GatewaySettings:
    """Build the settings from ``overrides`` (those not None) and the environment.

    Raises:
        ConfigError: a value is invalid; the message names the setting, its variable and the fix.
    """
    return settings_from(GatewaySettings, ENV_PREFIX, "gateway", **overrides)
