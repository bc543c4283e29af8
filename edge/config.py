"""The agent's config file: ``/etc/suitcase/edge.toml`` (TOML; YAML still read for ``.yaml``).

```toml
state_dir = "/var/lib/suitcase/edge"   # outbox, config received from the server
bus = "emulated"                       # optional: emulated sensors (a laptop), whatever the server says

[claim]                                # a new Pi: poll the server until staff bind it
server = "https://suitcase.example.org"
code = "K3F9-7QX2-M4PA"

[device]                               # or: the device config itself (kits.models.DeviceConfig)
device = "aarhus-school7-k3f9"
org = "aarhus"
...
```

The device config the server sends (at claim, or later with the ``config`` command) is saved in
``{state_dir}/device.json`` and wins over ``[device]``, which is only the starting point.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kits.config_file import load_yaml_model
from kits.errors import ConfigError
from kits.models import DeviceConfig

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_STATE_DIR",
    "ClaimSettings",
    "EdgeSettings",
    "effective_device_config",
    "load_edge_settings",
    "load_saved_device_config",
    "merge_changes",
    "save_device_config",
    "with_bus",
]

DEFAULT_CONFIG = Path("/etc/suitcase/edge.toml")
DEFAULT_STATE_DIR = Path("/var/lib/suitcase/edge")
SAVED = "device.json"
# Fields a config command may not change: identity and the session it arrives on.
FIXED = ("device", "org", "mqtt", "bus")


class ClaimSettings(BaseModel):
    """How a Pi without credentials claims its config (docs/architecture.md, "Enrollment")."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(pattern=r"^https?://", description="the server's base URL")
    code: str = Field(min_length=4, max_length=128, description="the claim code on the Pi's label")
    poll_s: float = Field(
        default=15.0, ge=1, le=3600, description="first poll interval; backs off to max_poll_s"
    )
    max_poll_s: float = Field(default=300.0, ge=1, le=86400)


class EdgeSettings(BaseModel):
    """The agent's config file."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "INFO"
    claim: ClaimSettings | None = None
    device: DeviceConfig | None = None
    # False: this Pi refuses `update` commands (its owner's opt-out; the server may not change it).
    updates: bool = True
    # "emulated": read emulated sensors whatever bus the server's config names (a laptop without
    # I2C trying the claim path); the server may not change it.
    bus: Literal["board", "emulated"] | None = None


def load_edge_settings(path: Path) -> EdgeSettings:
    """Read the agent's config file (TOML, or YAML for ``.yaml``/``.yml``).

    A YAML file may also be a bare device config (as ``suitcase edge run`` used to take).

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and the key.
    """
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            data = None
        if (isinstance(data, dict) and not (set(EdgeSettings.model_fields) >= set(data))) or (
            isinstance(data, dict) and isinstance(data.get("device"), str)
        ):
            return EdgeSettings(device=load_yaml_model(path, DeviceConfig))
        return load_yaml_model(path, EdgeSettings)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the file ({exc.strerror}): create it (see `suitcase edge install-service`) "
            "or pass --config"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}): check quoting and [section] headers") from exc
    try:
        return EdgeSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from exc


def _explain(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _fields(EdgeSettings, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(known)}"
            lines.append(f"{path}, key {key}: unknown key: {fix}")
        elif err["type"] == "missing":
            lines.append(f"{path}, key {key}: required key is missing: add it")
        else:
            lines.append(f"{path}, key {key}: {err['msg']} (got {err.get('input')!r}): correct the value")
    return "\n".join(lines)


def _fields(model: Any, loc: list[str]) -> list[str]:
    current = model
    for part in loc:
        if part.isdigit():
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _inner(fields[part].annotation)
    return sorted(getattr(current, "model_fields", {}))


def _inner(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner(arg)
        if found is not None:
            return found
    return None


def merge_changes(config: DeviceConfig, changes: dict[str, Any]) -> DeviceConfig:
    """``config`` with a ``config`` command's top-level ``changes``, validated as a whole.

    Raises:
        ConfigError: a field that may not change (:data:`FIXED`), or a value the device config
            refuses; the message names each field.
    """
    fixed = sorted(set(changes) & set(FIXED))
    if fixed:
        raise ConfigError(
            f"config may not change {', '.join(fixed)}: re-enroll the device to change its identity or broker"
        )
    try:
        return DeviceConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"config refused, nothing changed: {problems}") from exc


def save_device_config(state_dir: Path, config: DeviceConfig) -> Path:
    """Write ``config`` to ``{state_dir}/device.json`` atomically (a power cut leaves old or new).

    The file holds the broker password, so it is readable by the agent's user only from the
    moment it exists: a new temporary file is created with mode 0600 (never an existing one, never
    through a symlink), written, synced and renamed over the old one.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / SAVED
    tmp = state_dir / f".{SAVED}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(config.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        folder = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return target


def load_saved_device_config(state_dir: Path) -> DeviceConfig | None:
    """The device config saved from the server, or None.

    Raises:
        ConfigError: the saved file is corrupt.
    """
    path = state_dir / SAVED
    if not path.exists():
        return None
    try:
        return DeviceConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is corrupt ({exc}): delete it and claim or enroll the device again"
        ) from exc


def effective_device_config(settings: EdgeSettings) -> DeviceConfig | None:
    """The config to run: the one saved from the server, else ``[device]``; None if neither.

    The file's ``bus``, when set, replaces the config's (the server knows no laptop's bus).
    """
    device = load_saved_device_config(settings.state_dir) or settings.device
    return with_bus(device, settings)


def with_bus(device: DeviceConfig | None, settings: EdgeSettings) -> DeviceConfig | None:
    """``device`` on the bus the config file names, if it names one."""
    if device is None or settings.bus is None or device.bus == settings.bus:
        return device
    return device.model_copy(update={"bus": settings.bus})
