"""Verify a Pi after unboxing: the bus against the kit, a plausible first reading from each sensor,
the broker (with the device's credentials), the server and the clock.

Every failed check carries a fix a person without an engineer can do ("SCD4x not found at 0x62:
reseat the cable marked CO2"). Time, sleeping, the broker connection, the server request and the
clock-sync question are all injectable, so tests run each failure on an emulated bus in
milliseconds. ``suitcase kit verify`` prints the checklist; the agent may publish
:meth:`Report.as_meta` in ``meta``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edge import system
from edge.drivers import load_driver
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.mux import BusTree
from edge.scan import MUX_PART, Found, scan
from kits.errors import ConfigError, SensorError
from kits.models import DeviceSensor, KitProfile, MqttSettings
from kits.quantities import QUANTITIES

__all__ = [
    "Check",
    "PartHint",
    "Report",
    "check_broker",
    "check_bus",
    "check_clock",
    "check_readings",
    "check_server",
    "expected_sensors",
    "ntp_synchronized",
    "verify",
]

# How long a sensor that keeps answering "not ready" is waited for.
_ALIVE_CAP_S = 60.0

Outcome = Literal["ok", "fail", "warn", "skip"]
Group = Literal["bus", "reading", "broker", "server", "clock"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist.

    Attributes:
        group: what was checked: bus, reading, broker, server or clock.
        name: the thing checked, e.g. ``co2 (scd4x at 0x62)``.
        outcome: ok, fail, warn (works, but not as the kit expects) or skip (could not be checked).
        detail: what was seen.
        fix: what to do; set on every fail and warn.
    """

    group: Group
    name: str
    outcome: Outcome
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class PartHint:
    """What a person sees of a part: its short name, the tag on its cable, how to set each address.

    The facts live in ``edge/parts/<part>/facts.yaml``; the CLI passes them in.
    """

    name: str
    cable: str = ""
    addresses: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Report:
    """The checklist."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not fail verification)."""
        return all(c.outcome != "fail" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "fail"]

    def as_meta(self) -> dict[str, Any]:
        """A compact form for the agent's ``meta``: ``{"ok": bool, "checks": [...]}``."""
        return {
            "ok": self.ok,
            "checks": [
                {"group": c.group, "name": c.name, "outcome": c.outcome, "detail": c.detail, "fix": c.fix}
                for c in self.checks
            ],
        }


def _hint(part: str, hints: Mapping[str, PartHint]) -> PartHint:
    if part in hints:
        return hints[part]
    try:
        title = load_driver(part).info.title
    except ConfigError:
        title = part
    return PartHint(name=title)


def _cable(hint: PartHint) -> str:
    return f"the cable marked {hint.cable}" if hint.cable else "its cable"


def expected_sensors(
    sensors: Sequence[DeviceSensor] | None, profile: KitProfile | None
) -> list[DeviceSensor]:
    """What should be on the bus: the device config's sensors, else the kit profile's.

    Raises:
        ConfigError: neither is given.
    """
    if sensors:
        return list(sensors)
    if profile is not None:
        return [
            DeviceSensor(name=s.sensor_name, part=s.part, address=s.address, mux=s.mux)
            for s in profile.sensors
        ]
    raise ConfigError("nothing to verify against: pass --config (the agent's config) or --kit PROFILE")


def check_bus(
    i2c: I2CBus,
    expected: Sequence[DeviceSensor],
    hints: Mapping[str, PartHint] | None = None,
    *,
    profile: KitProfile | None = None,
) -> tuple[list[Check], list[DeviceSensor]]:
    """Scan the bus and compare it with ``expected``.

    Returns the checks and the expected sensors that answer at their address as the right part.
    """
    hints = hints or {}
    checks: list[Check] = []
    try:
        found = scan(i2c)
    except (OSError, ValueError, RuntimeError) as exc:
        return [
            Check(
                "bus",
                "I2C bus",
                "fail",
                f"the bus could not be scanned ({exc})",
                "enable I2C (`sudo raspi-config` > Interface Options > I2C) and reboot; "
                "check the wiring on pins 1/3/5/6 (3V3/SDA/SCL/GND)",
            )
        ], []
    by_path: dict[str, Found] = {f.path: f for f in found}
    claimed: set[str] = set()
    present: list[DeviceSensor] = []
    for mux in sorted({s.mux.address for s in expected if s.mux is not None}):
        at = by_path.get(f"{mux:#04x}")
        if at is not None and at.part == MUX_PART:
            claimed.add(at.path)
            checks.append(Check("bus", f"multiplexer at {mux:#04x}", "ok", f"TCA9548A found at {mux:#04x}"))
        else:
            checks.append(
                Check(
                    "bus",
                    f"multiplexer at {mux:#04x}",
                    "fail",
                    f"no TCA9548A multiplexer answers at {mux:#04x}"
                    + (f" ({at.part or 'an unknown chip'} does)" if at is not None else ""),
                    "reseat the multiplexer's cable and check its A0-A2 pins, or fix the sensors' paths "
                    "in the device config",
                )
            )
    for sensor in expected:
        hint = _hint(sensor.part, hints)
        name = f"{sensor.name} ({sensor.part} at {sensor.path})"
        at = by_path.get(sensor.path)
        if at is not None and at.part == sensor.part:
            claimed.add(sensor.path)
            present.append(sensor)
            checks.append(Check("bus", name, "ok", f"{hint.name} found at {sensor.path} ({at.detail})"))
            continue
        elsewhere = [
            f for f in found if f.part == sensor.part and f.path != sensor.path and f.path not in claimed
        ]
        if elsewhere:
            other = elsewhere[0]
            claimed.add(other.path)
            how = hint.addresses.get(sensor.address)
            fix = f"set the board to {sensor.path}" + (f" ({how})" if how else "")
            fix += f", or change the sensor's address to {other.path} in the device config"
            checks.append(
                Check(
                    "bus",
                    name,
                    "fail",
                    f"{hint.name} found at {other.path}, not at {sensor.path}",
                    fix,
                )
            )
        elif at is not None:
            claimed.add(sensor.path)
            what = at.part or "an unknown chip"
            checks.append(
                Check(
                    "bus",
                    name,
                    "fail",
                    f"{what} answers at {sensor.path}, not {hint.name} ({at.detail})",
                    f"plug {hint.name} into {_cable(hint)}; the part at {sensor.path} "
                    "is not the one the kit expects",
                )
            )
        else:
            checks.append(
                Check(
                    "bus",
                    name,
                    "fail",
                    f"{hint.name} not found at {sensor.path}",
                    f"reseat {_cable(hint)} at both ends (the connector clicks in), then run this again",
                )
            )
    for item in found:
        if item.path in claimed:
            continue
        what = item.part or "unknown chip"
        checks.append(
            Check(
                "bus",
                f"{what} at {item.path}",
                "warn",
                f"answers but is not expected ({item.detail})",
                "unplug it, or add it to the device config if it belongs to this kit",
            )
        )
    if profile is not None:
        configured = {(s.part, s.path) for s in expected}
        for kit_sensor in profile.sensors:
            if (kit_sensor.part, kit_sensor.path) not in configured:
                checks.append(
                    Check(
                        "bus",
                        f"{kit_sensor.sensor_name} ({kit_sensor.part} at {kit_sensor.path})",
                        "warn",
                        f"in kit profile {profile.id} but not in the device config",
                        "bind the Pi again on the server to get the kit's full config",
                    )
                )
    return checks, present


def check_readings(
    i2c: I2CBus,
    sensors: Sequence[DeviceSensor],
    hints: Mapping[str, PartHint] | None = None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    grace_s: float = 3.0,
) -> list[Check]:
    """Read each sensor until it gives a first reading, within its warm-up time plus ``grace_s``
    (and two of its read intervals), and check the values against the physical ranges."""
    hints = hints or {}
    checks: list[Check] = []
    values: dict[str, dict[str, float]] = {}
    buses = BusTree(i2c)
    for sensor in sensors:
        hint = _hint(sensor.part, hints)
        name = f"{sensor.name} ({sensor.part} at {sensor.path})"
        module = load_driver(sensor.part)
        info = module.info
        budget = info.warmup_s + grace_s + 2 * info.min_interval_s
        start = clock()
        reason = ""
        result: Reading | NotReady = NotReady("not read yet")
        try:
            driver = module.create(buses.bus_for(sensor.mux), sensor.address, sensor.options)
            while True:
                now = clock()
                if now - start >= info.warmup_s:
                    result = driver.read(ReadContext(time=now, neighbours=values))
                    if not isinstance(result, NotReady):
                        break
                    reason = result.reason
                # A part that answers "not ready" is alive: an SGP40 learns for 45 samples first.
                if now - start > (budget if not reason else max(budget, _ALIVE_CAP_S)):
                    if reason:
                        break
                    raise SensorError(f"no reading within {budget:.0f} s")
                sleep(min(0.5, max(0.05, info.min_interval_s / 4)))
        except (SensorError, ConfigError, OSError) as exc:
            checks.append(
                Check(
                    "reading",
                    name,
                    "fail",
                    f"{hint.name} gave no reading: {exc}",
                    f"reseat {_cable(hint)}; if it persists, power the Pi off and on "
                    "(unplug it for 10 s), then run this again",
                )
            )
            continue
        took = clock() - start
        if isinstance(result, NotReady):
            checks.append(
                Check(
                    "reading",
                    name,
                    "warn",
                    f"{hint.name} answers but has no value after {took:.0f} s ({result.reason})",
                    "wait a few minutes and look at the device on the server's unboxing page",
                )
            )
            continue
        bad = []
        for quantity, value in result.values.items():
            spec = QUANTITIES.get(quantity)
            if spec is None or not (spec.low <= value <= spec.high):
                unit = f" {spec.unit}" if spec is not None and spec.unit else ""
                span = f" (possible: {spec.low:g}..{spec.high:g}{unit})" if spec is not None else ""
                bad.append(f"{quantity} = {value:.6g}{unit}{span}")
        shown = ", ".join(f"{q} {v:.4g}" for q, v in result.values.items())
        if bad:
            checks.append(
                Check(
                    "reading",
                    name,
                    "fail",
                    f"implausible: {'; '.join(bad)}",
                    f"the {hint.name} is faulty or not a genuine part: replace it "
                    "(a spare is in the suitcase's accessory pocket) and run this again",
                )
            )
            continue
        values[sensor.name] = dict(result.values)
        checks.append(Check("reading", name, "ok", f"{shown} (after {took:.1f} s)"))
    return checks


Connect = Callable[[MqttSettings, str, float], str | None]


def _paho_connect(settings: MqttSettings, client_id: str, timeout: float) -> str | None:
    """Connect and disconnect; None on success, else ``refused: ...`` or ``unreachable: ...``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set()
    answered = threading.Event()
    outcome: list[str | None] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        outcome.append(f"refused: {reason_code}" if reason_code.is_failure else None)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout) + 5))
    except (OSError, ValueError) as exc:
        return f"unreachable: {exc}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return f"unreachable: no answer to CONNECT within {timeout:g} s"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


def check_broker(
    settings: MqttSettings | None,
    client_id: str,
    *,
    connect: Connect = _paho_connect,
    timeout: float = 5.0,
) -> Check:
    """Connect to the broker with the device's credentials; refused credentials and an unreachable
    broker are told apart."""
    if settings is None:
        return Check(
            "broker",
            "MQTT broker",
            "skip",
            "no device config yet, so no broker credentials",
            "bind the Pi on the server (scan its label), then run this again",
        )
    where = f"{settings.host}:{settings.port}"
    name = f"MQTT broker {where}"
    problem = connect(settings, client_id, timeout)
    if problem is None:
        who = settings.username or "anonymous"
        return Check("broker", name, "ok", f"connected as {who}" + (" over TLS" if settings.tls else ""))
    if problem.startswith("refused"):
        return Check(
            "broker",
            name,
            "fail",
            f"the broker refused the device's credentials ({problem.removeprefix('refused: ')})",
            "the device was revoked or its password changed: ask staff to bind this Pi again "
            "(scan its label), then restart the agent",
        )
    return Check(
        "broker",
        name,
        "fail",
        f"cannot reach the broker ({problem.removeprefix('unreachable: ')})",
        "check the Pi's network (Wi-Fi name and password in Raspberry Pi Imager's settings) and "
        f"that {settings.host} is reachable from this network; a firewall may block port {settings.port}",
    )


Fetch = Callable[[str, float], int]


def _http_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_server(server: str | None, *, fetch: Fetch = _http_status, timeout: float = 5.0) -> Check:
    """``GET {server}/api/v1/health``."""
    if not server:
        return Check(
            "server",
            "server",
            "skip",
            "no server URL in the config",
            'add [claim] server = "https://..." to the agent\'s config, or pass --server',
        )
    url = server.rstrip("/") + "/api/v1/health"
    try:
        status = fetch(url, timeout)
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "server",
            f"server {server}",
            "fail",
            f"cannot reach {url} ({reason})",
            "check the Pi's network and the server URL on the quick-start card",
        )
    if status != 200:
        return Check(
            "server",
            f"server {server}",
            "fail",
            f"{url} answered HTTP {status}",
            "the server is up but unwell: tell the kit's owner (the operator who lent it)",
        )
    return Check("server", f"server {server}", "ok", "reachable")


def ntp_synchronized() -> bool:
    """Whether the system clock is NTP-synchronised: ``timedatectl show -p NTPSynchronized`` on a
    Pi, else :func:`edge.system.clock_synced`."""
    timedatectl = shutil.which("timedatectl")
    if timedatectl is not None:
        try:
            out = subprocess.run(
                [timedatectl, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes"
    return system.clock_synced()


def check_clock(synced: Callable[[], bool] = ntp_synchronized) -> Check:
    """Is the clock synced? A Pi has no real-time clock; readings wait in the outbox until it is."""
    if synced():
        return Check("clock", "clock", "ok", "synchronised (NTP)")
    return Check(
        "clock",
        "clock",
        "fail",
        "not synchronised: readings are kept on the Pi and not sent until it is",
        "connect the Pi to a network with internet access and wait a minute; a network that blocks "
        "NTP (UDP port 123) needs its time server set in /etc/systemd/timesyncd.conf",
    )


def verify(
    i2c: I2CBus,
    expected: Sequence[DeviceSensor],
    *,
    hints: Mapping[str, PartHint] | None = None,
    profile: KitProfile | None = None,
    mqtt: MqttSettings | None = None,
    client_id: str = "suitcase-verify",
    server: str | None = None,
    clock_synced: Callable[[], bool] = ntp_synchronized,
    connect: Connect = _paho_connect,
    fetch: Fetch = _http_status,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Run every check and return the checklist."""
    checks, present = check_bus(i2c, expected, hints, profile=profile)
    checks += check_readings(i2c, present, hints, clock=clock, sleep=sleep)
    checks.append(check_broker(mqtt, client_id, connect=connect))
    checks.append(check_server(server, fetch=fetch))
    checks.append(check_clock(clock_synced))
    return Report(checks)
