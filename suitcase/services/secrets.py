"""The stack's passwords: made once, kept in ``secrets.yaml`` (mode 0600), reused by every later ``up``."""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from kits.errors import ConfigError

__all__ = ["Secrets", "load_or_make_secrets", "make_secrets"]


@dataclass(frozen=True)
class Secrets:
    """Every password of one stack. No default exists: each is random (32 url-safe bytes)."""

    mqtt_gateway: str
    mqtt_server: str
    influx_admin: str
    influx_gateway: str
    influx_server: str
    postgres_admin: str
    postgres_server: str
    server_secret_key: str


def make_secrets(token: Callable[[], str] = lambda: _random.token_urlsafe(32)) -> Secrets:
    """New random secrets (``token`` is injected by tests that need them fixed)."""
    return Secrets(**{f.name: token() for f in fields(Secrets)})


def load_or_make_secrets(path: Path) -> tuple[Secrets, bool]:
    """Read the secrets in ``path``, or make and write new ones; return them and whether they are new.

    Raises:
        ConfigError: the file exists but lacks a secret or is not YAML (it is never rewritten).
    """
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text())
            return Secrets(**{f.name: str(data[f.name]) for f in fields(Secrets)}), False
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is damaged or incomplete ({exc!r}): restore it from the backup; it is not "
                "rewritten, because the services' accounts use these passwords"
            ) from exc
    made = make_secrets()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# The stack's passwords, made by `suitcase services up`. Back this file up.\n")
        out.write(yaml.safe_dump(asdict(made), sort_keys=False))
    return made, True
