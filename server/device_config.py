"""One versioned configuration per device: sampling, sensors (intervals, on/off, filters) and
calibration as sections of one version, pushed with the ``config`` command.

A version (:class:`~server.tables.DeviceConfigRow`) is never changed: a change makes the next
version, holding every section (the unchanged ones copied). Each section is checked by its
entry in :data:`SECTIONS`, which also says which device config fields it sets on the agent
(:func:`agent_payload`); a section the agent does not need (one the server applies itself) sets
none. Sections are checked together too (calibration must name a sensor of the same version).
A section a version does not hold is not managed by the server: the device keeps its own.

Version 1 is made when a Pi is bound (:func:`first_version`), with every section; a device
enrolled before versions existed, or configured by its own file, gets versions holding only the
sections changed for it. A calibration change (``server.calibration_push``) is a new version with
a new ``calibration`` section, like any other.

**Adding a section** (e.g. ``derived`` quantities, applied by the server on read): one line in
:data:`SECTIONS` with its model (pydantic, ``extra="forbid"``), ``to_agent=_server_only`` and a
default for versions made before it existed. :func:`current_section` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlmodel import Session, col, select

from kits.derived import Derivation
from kits.errors import SuitcaseError
from kits.models import Calibration, DeviceConfig, DeviceSensor
from kits.wire import CommandReply
from server.device_commands import queue_command
from server.tables import DeviceCommandRow, DeviceConfigRow, DeviceRow

__all__ = [
    "SECTIONS",
    "BadConfig",
    "Section",
    "agent_payload",
    "current",
    "current_section",
    "diff",
    "first_version",
    "new_version",
    "on_answer",
    "push",
]

MIN_INTERVAL_S = 1.0  # what a config command may set (edge.commands.CommandLimits.min_interval_s)


class BadConfig(SuitcaseError):
    """A device config version that cannot be made: each problem named, with what to send."""


class SamplingSection(BaseModel):
    """How often the agent samples and publishes."""

    model_config = ConfigDict(extra="forbid")

    publish_interval_s: float = Field(gt=0, le=86400, description="the sampling cycle")


def _server_only(_value: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Section:
    """A section of the device config: its model, the agent fields it sets, its default."""

    adapter: TypeAdapter[Any]
    to_agent: Callable[[Any], dict[str, Any]]
    default: Callable[[], Any] | None = None  # for versions made before the section existed


SECTIONS: dict[str, Section] = {
    "sampling": Section(
        TypeAdapter(SamplingSection), lambda v: {"publish_interval_s": v["publish_interval_s"]}
    ),
    "sensors": Section(TypeAdapter(list[DeviceSensor]), lambda v: {"sensors": v}),
    "calibration": Section(TypeAdapter(list[Calibration]), lambda v: {"calibration": v}, list),
    # Derived quantities (kits.derived), applied by the server on read (server.derived): never sent.
    "derived": Section(TypeAdapter(list[Derivation]), _server_only, list),
}


def _problems(exc: ValidationError, section: str) -> list[str]:
    return [f"{section}.{'.'.join(map(str, e['loc']))}: {e['msg']}".rstrip(".") for e in exc.errors()[:10]]


def check_body(body: dict[str, Any], changed: set[str] | None = None) -> dict[str, Any]:
    """Return ``body`` with every section validated (as plain JSON), or raise naming each problem.

    The limits of a remote config (intervals of at least 1 s) apply to the ``changed`` sections
    only (None: all), as on the agent: a Pi bound at 0.5 s still takes a new calibration.

    Raises:
        BadConfig: an unknown or missing section, a bad value, a sensor sampled faster than a
            command may set, every sensor off, calibration of a sensor that is not there.
    """
    problems = [
        f"unknown section {name!r}: the sections are {', '.join(SECTIONS)}"
        for name in body
        if name not in SECTIONS
    ]
    checked: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        if name not in body:
            continue  # not managed by the server: the device keeps its own
        try:
            checked[name] = section.adapter.dump_python(
                section.adapter.validate_python(body[name]), mode="json", by_alias=True
            )
        except ValidationError as exc:
            problems += _problems(exc, name)
    if not problems:
        problems += _agent_problems(checked, set(SECTIONS) if changed is None else changed)
    if problems:
        raise BadConfig(f"device config refused, nothing changed: {'; '.join(problems)}")
    return checked


def _agent_problems(body: dict[str, Any], changed: set[str]) -> list[str]:
    """What the agent would refuse, found before anything is sent."""
    sensors = body.get("sensors")
    problems = [
        f"sensors.{s['name']}.interval_s {s['interval_s']:g} s is below {MIN_INTERVAL_S:g} s: "
        "a remote config may not sample faster (it wears out the SD card)"
        for s in (sensors if sensors is not None and "sensors" in changed else [])
        if s["interval_s"] < MIN_INTERVAL_S
    ]
    cycle = body.get("sampling", {}).get("publish_interval_s")
    if "sampling" in changed and cycle is not None and cycle < MIN_INTERVAL_S:
        problems.append(f"sampling.publish_interval_s {cycle:g} s is below {MIN_INTERVAL_S:g} s")
    if sensors is None:
        return problems  # the device's own sensors: it checks its calibration against them itself
    if sensors and not any(s.get("enabled", True) for s in sensors):
        problems.append("every sensor is turned off: the device would sample nothing; keep one enabled")
    try:
        DeviceConfig.model_validate({"device": "check", "org": "check", **agent_fields(body)})
    except ValidationError as exc:
        problems += [f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()[:10]]
    return problems


def agent_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The device config fields a version sets on the agent."""
    fields: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        if name in body:
            fields.update(section.to_agent(body[name]))
    return fields


def current(session: Session, device_id: str) -> DeviceConfigRow | None:
    """The device's newest config version, or None."""
    return session.exec(
        select(DeviceConfigRow)
        .where(DeviceConfigRow.device_id == device_id)
        .order_by(col(DeviceConfigRow.version).desc())
    ).first()


def current_section(session: Session, device_id: str, section: str) -> Any:
    """One section of the device's newest version (its default when the version predates it)."""
    row = current(session, device_id)
    spec = SECTIONS[section]
    if row is not None and section in row.body:
        return row.body[section]
    return spec.default() if spec.default is not None else None


def _base(session: Session, device: DeviceRow) -> dict[str, Any]:
    row = current(session, device.id)
    # A device enrolled before versions existed, or configured by its own file (the demo's, `suitcase
    # edge run`), starts with no section managed by the server: a change sets only its sections.
    return dict(row.body) if row is not None else {}


def first_version(device: DeviceRow, config: DeviceConfig, now: float, by: str) -> DeviceConfigRow:
    """Version 1 of a newly bound device: what it was issued (the caller adds it after the device)."""
    body = check_body(
        {
            "sampling": {"publish_interval_s": config.publish_interval_s},
            "sensors": [s.model_dump(mode="json") for s in config.sensors],
            "calibration": [c.model_dump(mode="json") for c in config.calibration],
        },
        changed=set(),  # what the server issued itself, as it issued it
    )
    return DeviceConfigRow(
        device_id=device.id, version=1, body=body, created_at=now, created_by=by, note="bound"
    )


def new_version(
    session: Session,
    device: DeviceRow,
    changes: dict[str, Any],
    now: float,
    *,
    created_by: str = "",
    note: str = "",
) -> DeviceConfigRow:
    """Make the device's next config version: the newest with ``changes`` (whole sections).

    The caller commits. Raises :class:`BadConfig` when the result is invalid, or changes nothing.
    """
    base = _base(session, device)
    body = check_body({**base, **changes}, changed={k for k in changes if base.get(k) != changes[k]})
    newest = current(session, device.id)
    if newest is not None and _canonical(newest.body) == _canonical(body):
        raise BadConfig(
            f"nothing changed: version {newest.version} already holds this config; push it with "
            "the config command if the device does not have it"
        )
    row = DeviceConfigRow(
        device_id=device.id,
        version=(newest.version if newest else 0) + 1,
        body=body,
        created_at=now,
        created_by=created_by[:254],
        note=note[:500],
    )
    session.add(row)
    session.flush()
    return row


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def push(
    session: Session, device: DeviceRow, version: int, now: float, *, created_by: str = ""
) -> DeviceCommandRow:
    """Queue the ``config`` command carrying ``version``; older queued ones of the device expire
    (only the newest config goes out). The caller commits."""
    for old in session.exec(
        select(DeviceCommandRow).where(
            DeviceCommandRow.device_id == device.id,
            DeviceCommandRow.name == "config",
            DeviceCommandRow.state == "queued",
        )
    ).all():
        old.state, old.error = "expired", f"replaced by config version {version} before it was sent"
        session.add(old)
    return queue_command(session, device, "config", {"version": version}, now, created_by=created_by)


def agent_payload(session: Session, row: DeviceCommandRow) -> dict[str, Any]:
    """The ``config`` command's wire arguments: the version's agent fields and its number."""
    version = row.args.get("version")
    config = session.exec(
        select(DeviceConfigRow).where(
            DeviceConfigRow.device_id == row.device_id, DeviceConfigRow.version == version
        )
    ).first()
    if config is None:
        raise BadConfig(f"config version {version} of device {row.device_id!r} does not exist")
    return {**agent_fields(config.body), "config_version": config.version}


def on_answer(session: Session, row: DeviceCommandRow, reply: CommandReply) -> None:
    """A device that applied a version has it in force (its ``meta`` says so again later)."""
    if not reply.ok:
        return
    device = session.get(DeviceRow, row.device_id)
    version = row.args.get("version")
    if device is not None and isinstance(version, int):
        device.config_version = max(device.config_version or 0, version)
        session.add(device)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            key = item.get("name") or (
                f"{item['sensor']}.{item['quantity']}"
                if "sensor" in item and "quantity" in item
                else str(index)
            )
            _flatten({k: v for k, v in item.items() if k != "name"}, f"{path}[{key}]", out)
    else:
        out[path] = value


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed from ``old`` to ``new``: one entry per leaf, ``{"path", "old", "new"}``.

    Sensors are matched by name and calibration records by sensor and quantity, so a reordering
    is no change and an edit names the sensor.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(old or {}, "", before)
    _flatten(new, "", after)
    return [
        {"path": path, "old": before.get(path), "new": after.get(path)}
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]
