"""The stack's passwords: made once, kept in ``secrets.yaml`` (mode 0600), reused by every later ``up``."""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from kits.errors import ConfigError

__all__ = ["ADDED_LATER", "Secrets", "load_or_make_secrets", "make_secrets"]


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
    mqtt_accounts: str  # the broker host's accounts service (added after the first release)


# Secrets added by a later version: a file without them gets them on the next ``up``, not refused.
ADDED_LATER = ("mqtt_accounts",)


def make_secrets(token: Callable[[], str] = lambda: _random.token_urlsafe(32)) -> Secrets:
    """New random secrets (``token`` is injected by tests that need them fixed)."""
    return Secrets(**{f.name: token() for f in fields(Secrets)})


def load_or_make_secrets(path: Path) -> tuple[Secrets, bool]:
    """Read the secrets in ``path``, or make and write new ones; return them and whether they are new.

    Raises:
        ConfigError: the file exists but lacks a secret or is not YAML (it is never rewritten,
            except to add the secrets of :data:`ADDED_LATER` that a file from an older version lacks).
    """
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text())
            added = {name: _random.token_urlsafe(32) for name in ADDED_LATER if name not in data}
            made = Secrets(**{f.name: str(added[f.name] if f.name in added else data[f.name])
                              for f in fields(Secrets)})  # fmt: skip
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is damaged or incomplete ({exc!r}): restore it from the backup; it is not "
                "rewritten, because the services' accounts use these passwords"
            ) from exc
        if added:
            _save(path, made, replace=True)
        return made, False
    made = make_secrets()
    _save(path, made, replace=False)
    return made, True


def _save(path: Path, made: Secrets, *, replace: bool) -> None:
    """Write ``made`` to ``path`` (mode 0600); ``replace``: over the existing file, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# The stack's passwords, made by `suitcase services up`. Back this file up.\n")
        out.write(yaml.safe_dump(asdict(made), sort_keys=False))
        out.flush()
        os.fsync(out.fileno())
    if replace:
        target.replace(path)
