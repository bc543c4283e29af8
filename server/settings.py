"""Server settings, from arguments or ``SUITCASE_SERVER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kits.catalog import CATALOG_DIR
from kits.errors import ConfigError

__all__ = ["DEFAULT_SECRET_KEY", "ENV_PREFIX", "ServerSettings", "load_settings"]

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
        description="path (or sqlite:///path) of the embedded time-series store the gateway writes",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    catalog_dir: Path = CATALOG_DIR
    stale_after_s: float = Field(
        default=120.0, gt=0, description="a device with no reading for this long is shown as stale"
    )

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> ServerSettings:
        if self.environment == "production" and self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ValueError(
                "the secret key is the default, which is not allowed in production: set "
                f"{ENV_PREFIX}SECRET_KEY to a long random value, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self


def load_settings(**overrides: Any) -> ServerSettings:
    """Build the settings from ``overrides`` (those not None) and the environment.

    Raises:
        ConfigError: a value is invalid; the message names the setting, its variable and the fix.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            where = f"{field} ({ENV_PREFIX}{field.upper()})" if field else "settings"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid server settings: " + "; ".join(problems)) from exc
