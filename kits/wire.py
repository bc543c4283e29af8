"""The wire contract: MQTT topics and payloads (docs/architecture.md, "The wire").

Every part builds and parses topics and SenML packs here; none re-implements them.

Telemetry is a SenML pack (RFC 8428, JSON). The first record carries the base name
``urn:dev:suitcase:{device}:`` and base time; each record is one reading named
``{sensor}/{quantity}`` with the registry unit of its quantity. A pack that uses an RFC 8798
secondary unit declares ``"bver": 26`` (RFC 9100 feature 4) in its first record.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kits.errors import (
    BadTopic,
    BadValue,
    DeviceMismatch,
    MissingField,
    PayloadNotJson,
    PayloadShapeError,
    PayloadTooLarge,
    TimeOutOfRange,
    UnitMismatch,
    UnknownQuantity,
    UnknownUnit,
)
from kits.quantities import QUANTITIES, SECONDARY_UNITS, spec

__all__ = [
    "BASE_NAME_PREFIX",
    "BVER_SECONDARY_UNITS",
    "COMMANDS",
    "MAX_FUTURE_SKEW_S",
    "MAX_PACK_BYTES",
    "MAX_PACK_RECORDS",
    "MIN_VALID_TIME",
    "TOPIC_ROOT",
    "CommandReply",
    "CommandRequest",
    "Diagnostics",
    "Meta",
    "OutboxMeta",
    "Record",
    "SensorMeta",
    "Status",
    "Topic",
    "build_topic",
    "decode_pack",
    "encode_pack",
    "parse_topic",
    "records_of",
    "subscription",
]

TOPIC_ROOT = "suitcase/v1"
BASE_NAME_PREFIX = "urn:dev:suitcase:"
BVER_SECONDARY_UNITS = 26
MAX_PACK_BYTES = 64 * 1024
MAX_PACK_RECORDS = 1000
MAX_FUTURE_SKEW_S = 300.0
# 2020-01-01T00:00:00Z. Anything older is a Pi whose clock has not synced since boot.
MIN_VALID_TIME = 1_577_836_800.0

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_SENSOR = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
_KINDS = ("telemetry", "status", "meta", "cmd")
TopicKind = Literal["telemetry", "status", "meta", "cmd"]


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: ``suitcase/v1/{org}/{device}/{kind}[/{command}[/reply]]``."""

    org: str
    device: str
    kind: TopicKind
    command: str | None = None
    reply: bool = False

    def __str__(self) -> str:
        return build_topic(self.org, self.device, self.kind, self.command, reply=self.reply)


def _check_slug(what: str, value: str) -> None:
    if not _SLUG.match(value):
        raise BadTopic(
            f"{what} {value!r} is not a valid id: use 1-64 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )


def build_topic(
    org: str,
    device: str,
    kind: TopicKind,
    command: str | None = None,
    *,
    reply: bool = False,
) -> str:
    """Build the MQTT topic of a device's ``kind`` of message.

    Raises:
        BadTopic: an id is not a valid slug, or ``command`` is missing or given where not allowed.
    """
    _check_slug("organisation", org)
    _check_slug("device", device)
    if kind not in _KINDS:
        raise BadTopic(f"topic kind {kind!r} is unknown: use one of {', '.join(_KINDS)}")
    topic = f"{TOPIC_ROOT}/{org}/{device}/{kind}"
    if kind == "cmd":
        if command is None:
            raise BadTopic("a cmd topic needs a command name, e.g. 'config'")
        _check_slug("command", command)
        topic += f"/{command}" + ("/reply" if reply else "")
    elif command is not None or reply:
        raise BadTopic(f"only cmd topics take a command name, not {kind}")
    return topic


def parse_topic(topic: str) -> Topic:
    """Parse a topic published under ``suitcase/v1``.

    Raises:
        BadTopic: the topic is not one of the shapes in docs/architecture.md.
    """
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise BadTopic(f"topic {topic!r} is not of the form {TOPIC_ROOT}/{{org}}/{{device}}/{{kind}}")
    org, device, kind = parts[2], parts[3], parts[4]
    _check_slug("organisation", org)
    _check_slug("device", device)
    if kind == "cmd":
        if len(parts) == 6:
            _check_slug("command", parts[5])
            return Topic(org, device, "cmd", parts[5])
        if len(parts) == 7 and parts[6] == "reply":
            _check_slug("command", parts[5])
            return Topic(org, device, "cmd", parts[5], reply=True)
        raise BadTopic(f"topic {topic!r}: cmd topics are .../cmd/{{command}}[/reply]")
    if len(parts) != 5 or kind not in _KINDS:
        raise BadTopic(f"topic {topic!r}: kind must be one of {', '.join(_KINDS)}")
    return Topic(org, device, kind)  # type: ignore[arg-type]


def subscription(kind: TopicKind, *, org: str = "+", device: str = "+", group: str | None = None) -> str:
    """Return the subscription filter for every device's ``kind`` messages.

    With ``group``, an MQTT 5 shared subscription ``$share/{group}/...`` so gateways share load.
    """
    tail = "#" if kind == "cmd" else ""
    topic = f"{TOPIC_ROOT}/{org}/{device}/{kind}" + (f"/{tail}" if tail else "")
    return f"$share/{group}/{topic}" if group else topic


# --------------------------------------------------------------------------- telemetry


@dataclass(frozen=True, slots=True)
class Record:
    """One reading: one SenML record, identified by (org, device, sensor, quantity, time).

    ``time`` is UTC epoch seconds. The org is not in the pack: it comes from the topic.
    """

    org: str
    device: str
    sensor: str
    quantity: str
    value: float
    time: float

    @property
    def unit(self) -> str | None:
        found = spec(self.quantity)  # a derived quantity too (computed on read, never on the wire)
        return found.unit if found is not None else None


def encode_pack(records: Sequence[Record]) -> bytes:
    """Encode ``records`` of one device as a SenML JSON pack.

    The base time is the earliest record time; record times are offsets from it.

    Raises:
        BadTopic: ``device`` is not a valid id.
        PayloadShapeError: no records, or a record of another device.
        UnknownQuantity / BadValue / TimeOutOfRange: a record the gateway would reject.
    """
    if not records:
        raise PayloadShapeError("a telemetry pack needs at least one record")
    org, device = records[0].org, records[0].device
    _check_slug("device", device)
    base_time = min(r.time for r in records)
    secondary = any(
        QUANTITIES[r.quantity].unit in SECONDARY_UNITS for r in records if r.quantity in QUANTITIES
    )
    pack: list[dict[str, Any]] = []
    for index, rec in enumerate(records):
        if (rec.org, rec.device) != (org, device):
            raise PayloadShapeError(
                f"record of {rec.org}/{rec.device} in a pack of {org}/{device}: one pack, one device"
            )
        _check_record(rec)
        entry: dict[str, Any] = {}
        if index == 0:
            entry["bn"] = f"{BASE_NAME_PREFIX}{device}:"
            entry["bt"] = base_time
            if secondary:
                entry["bver"] = BVER_SECONDARY_UNITS
        entry["n"] = f"{rec.sensor}/{rec.quantity}"
        unit = QUANTITIES[rec.quantity].unit
        if unit is not None:
            entry["u"] = unit
        entry["v"] = rec.value
        offset = rec.time - base_time
        if offset:
            entry["t"] = offset
        pack.append(entry)
    return json.dumps(pack, separators=(",", ":"), allow_nan=False).encode()


def _check_record(rec: Record) -> None:
    if not _SENSOR.match(rec.sensor):
        raise PayloadShapeError(
            f"sensor name {rec.sensor!r} is invalid: use 1-32 lower-case letters, digits and '_'"
        )
    if rec.quantity not in QUANTITIES:
        raise UnknownQuantity(
            f"quantity {rec.quantity!r} is not in the registry (kits/quantities.py): "
            "add it there before a driver emits it"
        )
    if isinstance(rec.value, bool) or not isinstance(rec.value, (int, float)):
        raise BadValue(f"{rec.sensor}/{rec.quantity}: value must be a number, got {rec.value!r}")
    if not math.isfinite(rec.value):
        raise BadValue(f"{rec.sensor}/{rec.quantity}: value {rec.value} is not a finite number")
    if not math.isfinite(rec.time) or rec.time < MIN_VALID_TIME:
        raise TimeOutOfRange(
            f"{rec.sensor}/{rec.quantity}: time {rec.time} is before 2020: the clock has not synced; "
            "keep the reading in the outbox until it has"
        )


def _fast_json_loads() -> Callable[[bytes | str], Any] | None:
    try:
        from orjson import loads
    except ImportError:  # the edge agent installs without orjson (it is in the gateway and demo extras)
        return None
    return loads


_orjson_loads = _fast_json_loads()


def _reject_constant(name: str) -> float:
    raise BadValue(f"payload contains {name}, which is not a number: send only finite values")


def _parse_json(payload: bytes | str) -> Any:
    """Parse ``payload`` as JSON: orjson when installed, the standard library's json otherwise.

    orjson refuses whatever is not strict RFC 8259 (NaN, Infinity, 1e400, a BOM, lone
    surrogates, UTF-16): those payloads are parsed again by ``json``, so every payload is accepted
    or refused exactly as ``json`` alone would, with the same error.
    """
    if _orjson_loads is not None:
        try:
            return _orjson_loads(payload)
        except ValueError:  # orjson.JSONDecodeError: take the standard path for the exact error
            pass
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except BadValue:
        raise
    except RecursionError as exc:  # deep nesting: the parser's recursion limit, not the thread's end
        raise PayloadShapeError(
            "payload nests arrays or objects too deeply to parse: a SenML pack is an array of flat records"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadNotJson(f"payload is not JSON ({exc}): send a SenML JSON array") from exc


def decode_pack(
    payload: bytes | str,
    *,
    org: str,
    device: str,
    now: float,
    max_bytes: int = MAX_PACK_BYTES,
) -> list[Record]:
    """Decode and validate a telemetry pack received on ``device``'s topic.

    Args:
        payload: the MQTT payload.
        org: the organisation from the topic.
        device: the device id from the topic; the pack's base name must name the same device.
        now: the receiver's current UTC epoch time, to reject readings from the future.
        max_bytes: the largest payload accepted.

    Raises:
        PayloadTooLarge, PayloadNotJson, PayloadShapeError, MissingField, BadValue,
        UnknownQuantity, UnknownUnit, UnitMismatch, TimeOutOfRange, DeviceMismatch: the
        pack breaks the contract; the message says which record and what to do.
    """
    size = len(payload)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"payload of {size} bytes is over the {max_bytes}-byte limit: send fewer records per pack"
        )
    data = _parse_json(payload)
    if not isinstance(data, list):
        raise PayloadShapeError(
            f"payload is a JSON {type(data).__name__}, not an array: a SenML pack is an array of records"
        )
    if not data:
        raise PayloadShapeError("the SenML pack is empty: send at least one record")
    if len(data) > MAX_PACK_RECORDS:
        raise PayloadTooLarge(f"pack has {len(data)} records, over the limit of {MAX_PACK_RECORDS}: split it")
    records = _decode_plain(data, org, device, now)
    if records is None:
        records = _decode_checked(data, org, device, now)
    return records


# The slot setters of Record: a frozen dataclass's __init__ sets each field through
# object.__setattr__, twice the cost of the hot decode loop's setting the slots directly.
_RECORD_SLOTS: tuple[Callable[[Record, Any], None], ...] = tuple(
    Record.__dict__[name].__set__ for name in ("org", "device", "sensor", "quantity", "value", "time")
)

# Integers this small convert to float exactly as ``float()`` does anywhere else: no overflow.
_SAFE_INT = 1 << 63
_MISSING: Any = object()


_NameInfo = tuple[str, str, str | None, bool]
_PLAIN_NAMES: dict[str, _NameInfo | None] = {}  # a plain dict: a lookup costs a third of lru_cache's
_PLAIN_NAMES_MAX = 4096


def _plain_name(name: str) -> _NameInfo | None:
    """Return (sensor, quantity, unit, unit is secondary) of a valid record name, else None; cached."""
    sensor, sep, qty = name.partition("/")
    spec = QUANTITIES.get(qty)
    info = None
    if sep and spec is not None and _SENSOR.match(sensor):
        info = (sensor, qty, spec.unit, spec.unit in SECONDARY_UNITS)
    if len(_PLAIN_NAMES) >= _PLAIN_NAMES_MAX:
        _PLAIN_NAMES.clear()
    _PLAIN_NAMES[name] = info
    return info


def _decode_plain(data: list[Any], org: str, device: str, now: float) -> list[Record] | None:
    """Decode the common, valid pack fast; None whenever :func:`_decode_checked` must judge it.

    Accepts only what :func:`_decode_checked` accepts, and returns the very same records: the
    base fields in the first record only, no ``bu``, every record with a known name, its
    registry unit, a finite number and a time in range. Anything else (including every invalid
    pack) returns None, and the checked path raises the precise error.
    """
    first = data[0]
    if type(first) is not dict or first.get("bn") != f"{BASE_NAME_PREFIX}{device}:" or "bu" in first:
        return None
    base_time = first.get("bt", 0.0)
    kind = type(base_time)
    if kind is int:
        if not -_SAFE_INT < base_time < _SAFE_INT:
            return None
        base_time = float(base_time)
    elif kind is not float or base_time - base_time != 0.0:  # not a number, or not finite
        return None
    bver = first.get("bver", 10)
    kind = type(bver)
    if (kind is not int or not -_SAFE_INT < bver < _SAFE_INT) and (kind is not float or bver - bver != 0.0):
        return None
    secondary_ok = bool(int(bver) & 16)
    latest = now + MAX_FUTURE_SKEW_S
    records: list[Record] = []
    append = records.append
    new = object.__new__
    set_org, set_device, set_sensor, set_quantity, set_value, set_time = _RECORD_SLOTS
    names = _PLAIN_NAMES
    for index, entry in enumerate(data):
        if type(entry) is not dict:
            return None
        if index and ("bn" in entry or "bt" in entry or "bver" in entry or "bu" in entry):
            return None
        name = entry.get("n")
        if type(name) is not str:
            return None
        known = names.get(name, _MISSING)
        if known is _MISSING:
            known = _plain_name(name)
        if known is None:
            return None
        sensor, qty, unit, secondary = known
        if entry.get("u") != unit or (secondary and not secondary_ok):
            return None
        value = entry.get("v", _MISSING)
        kind = type(value)
        if kind is int:
            if not -_SAFE_INT < value < _SAFE_INT:
                return None
            value = float(value)
        elif kind is not float or value - value != 0.0:
            return None
        offset = entry.get("t", 0.0)
        kind = type(offset)
        if kind is int:
            if not -_SAFE_INT < offset < _SAFE_INT:
                return None
        elif kind is not float or offset - offset != 0.0:
            return None
        time = base_time + offset
        if not MIN_VALID_TIME <= time <= latest:  # also false for NaN and infinities
            return None
        rec = new(Record)
        set_org(rec, org)
        set_device(rec, device)
        set_sensor(rec, sensor)
        set_quantity(rec, qty)
        set_value(rec, value)
        set_time(rec, time)
        append(rec)
    return records


def _decode_checked(data: list[Any], org: str, device: str, now: float) -> list[Record]:
    """Decode ``data`` checking every rule in order; raise the first rule the pack breaks."""
    base_name: str | None = None
    base_time = 0.0
    base_unit: str | None = None
    bver = 10
    records: list[Record] = []
    for index, entry in enumerate(data):
        where = f"record {index}"
        if not isinstance(entry, dict):
            raise PayloadShapeError(f"{where} is a JSON {type(entry).__name__}, not an object")
        if "bver" in entry:
            if index != 0:
                raise PayloadShapeError(f"{where}: bver may only appear in the first record")
            bver = _number(entry["bver"], where, "bver")  # type: ignore[assignment]
        if "bn" in entry:
            if not isinstance(entry["bn"], str):
                raise PayloadShapeError(f"{where}: bn must be a string")
            base_name = entry["bn"]
        if "bt" in entry:
            base_time = _number(entry["bt"], where, "bt")
        if "bu" in entry:
            if not isinstance(entry["bu"], str):
                raise PayloadShapeError(f"{where}: bu must be a string")
            base_unit = entry["bu"]
        if base_name is None:
            raise MissingField(
                f'{where}: no base name: the first record needs "bn": "{BASE_NAME_PREFIX}{device}:"'
            )
        if not base_name.startswith(BASE_NAME_PREFIX) or not base_name.endswith(":"):
            raise PayloadShapeError(
                f"{where}: base name {_short(base_name)} is not of the form {BASE_NAME_PREFIX}{{device}}:"
            )
        named = base_name[len(BASE_NAME_PREFIX) : -1]
        if named != device:
            raise DeviceMismatch(
                f"pack names device {_short(named)} but arrived on the topic of device {device!r}: "
                "a device may only publish its own readings"
            )
        if "n" not in entry:
            raise MissingField(f'{where}: no name: every record needs "n": "{{sensor}}/{{quantity}}"')
        name = entry["n"]
        if not isinstance(name, str):
            raise PayloadShapeError(f"{where}: n must be a string")
        label = _label(name)
        if "v" not in entry:
            extra = [k for k in ("vs", "vb", "vd", "s") if k in entry]
            hint = f" ({extra[0]} is not accepted: send a number in v)" if extra else ""
            raise MissingField(f"{where} ({label}): no numeric value v{hint}")
        sensor, sep, qty = name.partition("/")
        if not sep or not _SENSOR.match(sensor):
            raise PayloadShapeError(
                f"{where}: name {_short(name)} is not of the form {{sensor}}/{{quantity}} "
                "with a sensor name of lower-case letters, digits and '_'"
            )
        spec = QUANTITIES.get(qty)
        if spec is None:
            raise UnknownQuantity(
                f"{where}: quantity {_short(qty)} is not in the registry (kits/quantities.py)"
            )
        unit = entry.get("u", base_unit)
        if unit is not None and not isinstance(unit, str):
            raise PayloadShapeError(f"{where} ({label}): u must be a string")
        _check_unit(where, label, unit, spec.unit, bver)
        value = entry["v"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(f"{where} ({label}): v must be a number, got {_short(value)}")
        if not _finite(value):
            raise BadValue(f"{where} ({label}): v is not a finite number a float can hold")
        offset = _number(entry["t"], where, "t") if "t" in entry else 0.0
        time = base_time + offset
        if not math.isfinite(time) or time < MIN_VALID_TIME:
            raise TimeOutOfRange(
                f"{where} ({label}): time {time} is before 2020 or relative: "
                "stamp readings with UTC epoch seconds once the clock has synced"
            )
        if time > now + MAX_FUTURE_SKEW_S:
            raise TimeOutOfRange(
                f"{where} ({label}): time {time:.0f} is {time - now:.0f} s in the future: "
                "check the device's clock (NTP)"
            )
        records.append(Record(org, device, sensor, qty, float(value), float(time)))
    return records


def _finite(value: float) -> bool:
    """Whether ``value`` (a JSON int or float) is finite as a float: a huge int is not."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range (JSON allows 4300 digits)
        return False


def _label(name: str) -> str:
    """A record name as error messages show it: as is when short and printable, else cut and escaped."""
    return name if len(name) <= 80 and name.isprintable() else _short(name)


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _number(value: object, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadShapeError(f"{where}: {field} must be a number, got {_short(value)}")
    if not _finite(value):
        raise BadValue(f"{where}: {field} is not a finite number a float can hold")
    return float(value)


def _check_unit(where: str, label: str, unit: str | None, expected: str | None, bver: float) -> None:
    if unit == expected:
        if unit in SECONDARY_UNITS and not int(bver) & 16:
            raise UnknownUnit(
                f"{where} ({label}): {_short(unit)} is an RFC 8798 secondary unit: "
                f'declare "bver": {BVER_SECONDARY_UNITS} in the first record'
            )
        return
    known = {q.unit for q in QUANTITIES.values()}
    if unit is not None and unit not in known:
        raise UnknownUnit(
            f"{where} ({label}): unit {_short(unit)} is unknown: use {expected!r}"
            if expected
            else f"{where} ({label}): unit {_short(unit)} is unknown: omit u, the quantity is dimensionless"
        )
    raise UnitMismatch(
        f"{where} ({label}): unit {_short(unit)} does not match the registry: use "
        + (f"{expected!r}" if expected else "no unit (omit u)")
    )


# --------------------------------------------------------------------------- status, commands


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Status(_Message):
    """The retained ``status`` message; ``offline`` is the Last Will."""

    state: Literal["online", "offline"]
    since: float
    agent: str

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class CommandRequest(_Message):
    """A command to a device on ``cmd/{name}``."""

    id: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class CommandReply(_Message):
    """A device's reply on ``cmd/{name}/reply``."""

    id: str
    ok: bool
    result: Any = None
    error: str | None = None


# The commands an edge agent answers on cmd/{name} (docs/architecture.md, "Commands"):
# ping -> {"pong": t, "agent": version, "uptime_s": s}; identify {"seconds": n} -> blinks the ACT
# LED; config {<DeviceConfig fields but device, org, mqtt, bus>} -> applied and persisted, result
# {"applied": [fields], "calibration_version": v, "config_version": n}; resend {"from": t0, "to": t1}
# -> re-publishes the outbox's readings stamped in [t0, t1], result {"readings": n}; logs
# {"lines": n} -> {"lines": [the agent's last n log lines, oldest first]}; update: see edge.updates.
COMMANDS = ("ping", "identify", "config", "resend", "update", "logs")

SensorState = Literal["ok", "missing", "failing", "stuck", "out_of_range"]


class SensorMeta(_Message):
    """One sensor's health in ``meta``."""

    part: str
    address: int
    path: str | None = Field(
        default=None, description="behind a multiplexer: its address, channel, then address"
    )
    state: SensorState
    consecutive_failures: int = 0
    failures: int = 0
    readings: int = 0
    out_of_range: int = 0
    last_error: str | None = None
    calibration_version: int | None = None
    retry_in_s: float | None = None


class OutboxMeta(_Message):
    """The outbox in ``meta``: backlog and losses (docs/architecture.md, "Delivery guarantees" 1)."""

    pending: int
    oldest_pending: float | None = None
    unstamped: int = 0
    dropped: int = 0
    write_errors: int = 0
    sync: str = "full"


class Diagnostics(_Message):
    """The device's health beyond its sensors, in ``meta`` (None where the Pi cannot tell)."""

    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    outbox_bytes: int | None = Field(default=None, description="the outbox file with its journal")
    writes_per_h: float | None = Field(
        default=None, description="bytes written to the SD card per hour over the last hour"
    )
    writes_source: Literal["sd_card", "agent"] | None = Field(
        default=None, description="sd_card: the card's own counter; agent: this agent's writes only"
    )
    wifi_dbm: float | None = Field(default=None, description="Wi-Fi signal level, dBm")
    wifi_quality: float | None = Field(default=None, description="Wi-Fi link quality, 0..70 on a Pi")
    wifi_interface: str | None = None


class Meta(_Message):
    """The retained ``meta`` message of a device: published on change and every 5 minutes."""

    agent: str
    kit_profile: str | None = None
    time: float
    uptime_s: float
    clock_synced: bool
    publish_interval_s: float
    calibration_version: int | None = None
    config_version: int | None = None
    cpu_temperature: float | None = None
    outbox: OutboxMeta | None = None
    diagnostics: Diagnostics | None = None
    sensors: dict[str, SensorMeta]
    missing: list[str] = Field(default_factory=list)
    unexpected: list[dict[str, Any]] = Field(default_factory=list)
    disabled: list[str] = Field(default_factory=list, description="sensors the config turned off")
    counters: dict[str, int] = Field(default_factory=dict)


def records_of(
    org: str, device: str, sensor: str, values: Iterable[tuple[str, float]], time: float
) -> list[Record]:
    """Return one record per (quantity, value) read from ``sensor`` at ``time``."""
    return [Record(org, device, sensor, qty, value, time) for qty, value in values]
