"""Server settings, from arguments or ``SUITCASE_SERVER_*`` environment variables."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kits.catalog import CATALOG_DIR
from kits.config_file import settings_from
from kits.tls import check_tls_files, client_context, refuse_insecure_production, secret_problem

__all__ = ["DEFAULT_SECRET_KEY", "ENV_PREFIX", "ServerSettings", "load_settings", "production_problems"]

ENV_PREFIX = "SUITCASE_SERVER_"
DEFAULT_SECRET_KEY = "changethis"


class ServerSettings(BaseSettings):
    """Where the server keeps its registry and reads readings, and how it listens.

    Every field can be set by an environment variable ``SUITCASE_SERVER_<FIELD>``, e.g.
    ``SUITCASE_SERVER_PORT=8080``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    environment: Literal["development", "production"] = "development"
    registry_url: str = Field(
        default="sqlite:///suitcase-registry.db",
        description="SQLAlchemy URL of the registry database (SQLite file or PostgreSQL)",
    )
    store: str = Field(
        default="suitcase-store.db",
        description="the time-series store the gateway writes: a path or sqlite:///path (embedded), "
        "influxdb1://host:8086?... or influxdb://host:8086?token=... (read in InfluxQL)",
    )
    org_stores: dict[str, str] = Field(
        default_factory=dict,
        description="organisations with a store of their own: org slug -> store URL (e.g. their "
        "own InfluxDB); the gateway writes their readings there with a sink ?orgs=<slug>",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    catalog_dir: Path = CATALOG_DIR
    stale_after_s: float = Field(
        default=120.0, gt=0, description="a device with no reading for this long is shown as stale"
    )
    open_reads: bool | None = Field(
        default=None,
        description="let requests without credentials read devices, readings and dead letters (the "
        "demo's live page); default: on in development, off in production",
    )
    session_max_age_s: int = Field(default=12 * 3600, gt=0)
    # The broker the server listens to for status/meta and manages device clients in.
    mqtt_host: str | None = Field(default=None, description="broker host; unset: no listener")
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_tls: bool = Field(default=False, description="connect to the broker's TLS listener")
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate (default: the system's "
        "CAs); also given to devices in their config",
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="the server's client certificate (PEM), for a broker that asks for one"
    )
    mqtt_key_file: Path | None = Field(default=None, description="the key of mqtt_cert_file (PEM)")
    mqtt_username: str | None = Field(
        default=None, description="the server's broker account (a dynamic-security admin)"
    )
    mqtt_password: SecretStr | None = None
    mqtt_dynsec: bool = Field(
        default=False, description="create device clients in Mosquitto's dynamic-security plugin"
    )
    device_accounts: Literal["dynsec", "files", "files-remote"] = Field(
        default="dynsec",
        description="where devices' broker accounts go (with mqtt_dynsec): 'dynsec', the plugin's "
        "commands (O(n^2): minutes past a few thousand devices); 'files-remote', Mosquitto's own "
        "password and ACL files, kept by `suitcase broker accounts` on the broker's host (requests "
        "over MQTT; README, 'Device accounts'); or 'files', the same files written by the server "
        "itself in device_accounts_dir (broker on the server's host as its user: simulator, bench)",
    )
    device_accounts_dir: Path | None = Field(
        default=None,
        description="with device_accounts=files: the directory of devices.passwd, devices.acl and "
        "the broker's pid file (its config names them)",
    )
    device_mqtt_host: str | None = Field(
        default=None, description="broker host given to devices (default: mqtt_host)"
    )
    device_mqtt_port: int | None = Field(default=None, ge=1, le=65535)
    command_sweep_s: float = Field(
        default=10.0,
        ge=0,
        description="how often queued device commands are retried and overdue ones expired; 0: never",
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="base URL on QR labels")
    enrollment_code_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    pending_ttl_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="how long a bound Pi's config waits for the Pi to collect it; then bind again",
    )
    guess_limit_per_min: int = Field(
        default=10, ge=1, description="failed code or login attempts per client address per minute"
    )
    alert_interval_s: float = Field(
        default=60.0, ge=0, description="how often alert rules are evaluated; 0: only on request"
    )
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "suitcase@localhost"
    open_data_licence: str = "CC-BY-4.0"
    open_data_licence_url: str = "https://creativecommons.org/licenses/by/4.0/"
    blur_m: float = Field(default=500.0, ge=0, description="location blur of private addresses")
    # Pages show times in the organisation's time zone: ``timezone`` unless the org is listed in
    # ``org_timezones`` (slug -> IANA name, e.g. {"tromso": "Europe/Oslo"}).
    timezone: str = Field(default="Europe/Copenhagen", description="IANA time zone of the organisations")
    org_timezones: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="largest request body accepted; larger ones get 413"
    )
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="addresses (CIDR, e.g. 10.20.0.0/16, or single IPs) on loopback, private or "
        "link-local networks that webhooks and data targets may reach; everything else there is refused",
    )
    notify_attempts: int = Field(default=8, ge=1, le=50, description="tries per notification")
    notify_backoff_s: float = Field(
        default=30.0, gt=0, description="wait before the first retry of a notification; doubles per try"
    )
    export_per_min: int = Field(
        default=6, ge=1, description="readings exports a client (address or account) may start per minute"
    )
    public_cache_s: float = Field(
        default=300.0, ge=0, description="how long public pages' computed figures are reused; 0: never"
    )
    fleet_cache_s: float | None = Field(
        default=None,
        ge=0,
        description="how long the fleet page's index of every device (its counts, filters and order) is "
        "reused per organisation, on a monotonic clock; the page says how old its counts are; 0: never; "
        "default: 10 in production, 0 in development",
    )
    fleet_cache_stale_s: float | None = Field(
        default=None,
        ge=0,
        description="how long past fleet_cache_s the fleet page still shows its index (saying how old) "
        "while a new one is read in the background, so a page viewed or polled at least that often "
        "never waits for the read of every device; default: fleet_cache_s in production, 0 in development",
    )
    fleet_cache_warm: bool | None = Field(
        default=None,
        description="read the fleet page's index (of every organisation, and of each one) in the "
        "background as the server starts, so the first pages after a start, such as those left "
        "open across a restart, do not wait for it; needs fleet_cache_s; default: on in production",
    )
    map_tiles_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="map tiles of the pages (OpenStreetMap); empty: no tiles, an offline outline map",
    )

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of the server's broker clients (None without ``mqtt_tls``).

        Raises:
            ConfigError: a CA, certificate or key file is missing or not PEM; names the setting.
        """
        if not self.mqtt_tls:
            return None
        return client_context(
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
            setting=f"{ENV_PREFIX}MQTT",
        )

    @property
    def fleet_cache_ttl_s(self) -> float:
        """How long the fleet page's index is reused (``fleet_cache_s``, or its default)."""
        if self.fleet_cache_s is not None:
            return self.fleet_cache_s
        return 10.0 if self.environment == "production" else 0.0

    @property
    def fleet_cache_stale_ttl_s(self) -> float:
        """How long past its age the fleet page's index is shown while a new one is read."""
        if self.fleet_cache_stale_s is not None:
            return self.fleet_cache_stale_s
        return self.fleet_cache_ttl_s if self.environment == "production" else 0.0

    @property
    def fleet_cache_warm_at_start(self) -> bool:
        """Whether the fleet page's index is read as the server starts (``fleet_cache_warm``)."""
        warm = (
            self.fleet_cache_warm if self.fleet_cache_warm is not None else self.environment == "production"
        )
        return warm and self.fleet_cache_ttl_s > 0

    @property
    def reads_open(self) -> bool:
        """Whether requests without credentials may read the demo's live data."""
        return self.open_reads if self.open_reads is not None else self.environment == "development"

    @model_validator(mode="after")
    def _known_timezones(self) -> ServerSettings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        for where, name in [("timezone", self.timezone), *self.org_timezones.items()]:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"time zone {name!r} ({where}) is unknown: use an IANA name such as Europe/Copenhagen"
                ) from None
        return self

    @model_validator(mode="after")
    def _outbound_allow_networks(self) -> ServerSettings:
        import ipaddress

        for entry in self.outbound_allow:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"outbound_allow entry {entry!r} is not an address or network: write e.g. "
                    "10.20.0.0/16 or 10.20.0.5"
                ) from None
        return self

    @model_validator(mode="after")
    def _files_need_a_directory(self) -> ServerSettings:
        if self.device_accounts == "files" and self.device_accounts_dir is None:
            raise ValueError(
                f"device_accounts=files needs the directory of the broker's account files: set "
                f"{ENV_PREFIX}DEVICE_ACCOUNTS_DIR to the directory its config names in password_file "
                f"and acl_file, or {ENV_PREFIX}DEVICE_ACCOUNTS=dynsec"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> ServerSettings:
        check_tls_files(ENV_PREFIX, self)
        return self

    @model_validator(mode="after")
    def _secure_in_production(self) -> ServerSettings:
        if self.environment == "production":
            refuse_insecure_production(ENV_PREFIX, production_problems(self))
        return self


def production_problems(settings: ServerSettings) -> list[str]:
    """Return every reason ``settings`` are not secure enough for production, each with its fix.

    The checks hold whatever the environment; the settings refuse to load in production when
    any fails (docs/architecture.md, "Secure by default").
    """
    problems: list[str] = []
    secret = secret_problem(settings.secret_key.get_secret_value())
    if secret is not None:
        problems.append(
            f"the secret key is not fit for production ({secret}): set "
            f"{ENV_PREFIX}SECRET_KEY to a long random value, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if settings.open_reads:
        problems.append(
            f"open_reads lets anyone read devices, readings and dead letters without logging in: "
            f"unset {ENV_PREFIX}OPEN_READS (or set it false); publish open data through public deployments"
        )
    if not settings.mqtt_host:
        problems.append(
            f"no broker: set {ENV_PREFIX}MQTT_HOST to the broker's host (its TLS listener), so devices "
            "get their own accounts and the server hears their status"
        )
    if not settings.mqtt_tls:
        problems.append(
            f"the broker connection is not encrypted: set {ENV_PREFIX}MQTT_TLS=true, "
            f"{ENV_PREFIX}MQTT_PORT to the broker's TLS listener (usually 8883) and "
            f"{ENV_PREFIX}MQTT_CA_FILE to the CA that signed its certificate"
        )
    if not settings.mqtt_dynsec:
        problems.append(
            f"dynamic security is off, so any client could publish for any device: set "
            f"{ENV_PREFIX}MQTT_DYNSEC=true (Mosquitto's dynamic-security plugin; `suitcase services up` "
            "configures it)"
        )
    if not settings.mqtt_username:
        problems.append(
            f"no broker account: set {ENV_PREFIX}MQTT_USERNAME and {ENV_PREFIX}MQTT_PASSWORD to the "
            "server's dynamic-security admin account"
        )
    password = secret_problem(settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)
    if settings.mqtt_username and password is not None:
        problems.append(
            f"the broker password is not fit for production ({password}): set {ENV_PREFIX}MQTT_PASSWORD "
            "to the long random password of the server's broker account"
        )
    return problems


def load_settings(**overrides: Any) -> ServerSettings:
    """Build the settings from ``overrides`` (those not None) and the environment.

    Raises:
        ConfigError: a value is invalid; the message names the setting, its variable and the fix.
    """
    return settings_from(ServerSettings, ENV_PREFIX, "server", **overrides)
