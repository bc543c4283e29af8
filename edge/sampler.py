"""The sampler: reads the sensors that are due, keeps each sensor's health, filters and calibrates.

A sensor is read every ``interval_s`` (never faster than its driver's minimum). A read that fails
marks the sensor ``missing`` or ``failing`` and retries it with backoff (1, 2, 4 ... s, at most
:data:`MAX_BACKOFF_S`); after :data:`_RECREATE_AFTER` failures in a row its driver is created
again. A value outside its quantity's physical range is never returned, only counted
(``out_of_range``); the same values ``stuck_after`` times in a row flag the sensor ``stuck``.
One sensor's failure, of any kind, never costs the others their readings.

The sampler knows nothing of the outbox or MQTT: :meth:`Sampler.read_due` returns values.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.calibration import Calibrator, Filter
from edge.drivers import DriverModule, load_driver
from edge.drivers.base import Driver, I2CBus, NotReady, ReadContext, Reading
from edge.logs import AgentLog
from edge.mux import BusTree
from edge.scan import scan
from kits.errors import ConfigError, SensorError
from kits.models import DeviceConfig, DeviceSensor
from kits.quantities import QUANTITIES
from kits.wire import SensorMeta

__all__ = ["MAX_BACKOFF_S", "Sampler", "SensorState", "SensorStatus"]

MAX_BACKOFF_S = 300.0
# After this many failed reads in a row the driver is created again: the sensor may have been
# power-cycled or replaced and need its reset and configuration.
_RECREATE_AFTER = 3
# A sensor is due a little early rather than a whole cycle late when the loop jitters.
_DUE_SLACK = 0.05

SensorState = Literal["ok", "missing", "failing", "stuck", "out_of_range"]


@dataclass
class SensorStatus:
    """What the agent knows about one sensor; reported in ``meta``."""

    config: DeviceSensor
    driver_module: DriverModule
    interval_s: float
    driver: Driver | None = None
    created_at: float | None = None
    last_read: float | None = None
    next_try: float | None = None
    state: SensorState = "missing"
    consecutive_failures: int = 0
    failures: int = 0
    readings: int = 0
    out_of_range: int = 0
    identical: int = 0
    last_error: str | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    last_raw: dict[str, float] = field(default_factory=dict)
    filter: Filter | None = None

    def as_meta(self, calibration_version: int | None, now: float) -> SensorMeta:
        """The sensor's entry in the ``meta`` message."""
        retry = None if self.next_try is None else max(0.0, round(self.next_try - now, 1))
        return SensorMeta(
            part=self.config.part,
            address=self.config.address,
            path=self.config.path if self.config.mux is not None else None,
            state=self.state,
            consecutive_failures=self.consecutive_failures,
            failures=self.failures,
            readings=self.readings,
            out_of_range=self.out_of_range,
            last_error=self.last_error,
            calibration_version=calibration_version,
            retry_in_s=retry,
        )


class Sampler:
    """The sensors of one device: their drivers, health, filters and calibration.

    Thread-safe: the sampling thread reads, a ``config`` command reconfigures, ``meta`` reports.

    Args:
        config: the device config (its sensors and calibration are used).
        i2c: the bus the drivers talk to.
        log: the agent's logger (with the device's context).

    Raises:
        ConfigError: a sensor's part has no driver.
    """

    def __init__(self, config: DeviceConfig, i2c: I2CBus, *, log: AgentLog) -> None:
        self._i2c = i2c
        self._buses = BusTree(i2c)  # the Pi's bus and any multiplexer channels behind it
        self.log = log
        self._lock = threading.RLock()
        self.sensors: list[SensorStatus] = []
        self.disabled: list[str] = []  # sensors in the config that it turned off (not read)
        self._paths: set[str] = set()  # every configured sensor's place, read or not
        self._muxes: set[int] = set()
        self.unexpected: list[dict[str, Any]] = []
        self.calibrator = Calibrator(config.calibration)
        self.configure(config)

    # ------------------------------------------------------------------ configuration

    def configure(self, config: DeviceConfig) -> None:
        """Take ``config``'s sensors and calibration; a sensor whose settings did not change keeps
        its driver, health and filter history.

        Raises:
            ConfigError: a sensor's part has no driver (nothing changes).
        """
        with self._lock:
            self.sensors = self._statuses(config)
            self.calibrator = Calibrator(config.calibration)
            self.disabled = [s.name for s in config.sensors if not s.enabled]
            self._paths = {s.path for s in config.sensors}
            self._muxes = {s.mux.address for s in config.sensors if s.mux is not None}

    def _statuses(self, config: DeviceConfig) -> list[SensorStatus]:
        old = {_key(s.config): s for s in self.sensors}
        sensors = []
        for sensor in config.sensors:
            module = load_driver(sensor.part)  # a disabled sensor's part must have a driver too
            if not sensor.enabled:
                continue
            interval = max(sensor.interval_s, module.info.min_interval_s)
            if interval > sensor.interval_s:
                self.log.warning(
                    "sensor %s: interval %.3g s is below the %s minimum; reading every %.3g s",
                    sensor.name,
                    sensor.interval_s,
                    sensor.part,
                    interval,
                )
            status = old.get(_key(sensor)) or SensorStatus(sensor, module, interval)
            status.config, status.interval_s = sensor, interval
            if sensor.filter is None:
                status.filter = None
            elif status.filter is None or status.filter.spec != sensor.filter:
                status.filter = Filter(sensor.filter)
            sensors.append(status)
        return sensors

    # ------------------------------------------------------------------ reading

    def read_due(self, now: float) -> list[tuple[str, str, float]]:
        """Read every sensor that is due at ``now``; return ``(sensor, quantity, value)`` to publish.

        Failing sensors and out-of-range values are recorded in :attr:`sensors`, never raised.
        """
        values: list[tuple[str, str, float]] = []
        with self._lock:
            for status in self.sensors:
                if not self._due(status, now):
                    continue
                values += [(status.config.name, q, v) for q, v in self._read(status, now).items()]
        return values

    @staticmethod
    def _due(status: SensorStatus, now: float) -> bool:
        if status.next_try is not None:
            return now >= status.next_try or now < status.next_try - MAX_BACKOFF_S  # or the clock went back
        if status.last_read is None or now < status.last_read:  # never read, or the clock went back
            return True
        return now - status.last_read >= status.interval_s * (1.0 - _DUE_SLACK)

    def _read(self, status: SensorStatus, now: float) -> dict[str, float]:
        """Read one sensor; return its publishable values (empty when it failed or is not ready)."""
        name = status.config.name
        if status.driver is None and not self._create(status, now):
            return {}
        assert status.driver is not None
        info = status.driver_module.info
        if status.created_at is not None and now - status.created_at < info.warmup_s:
            return {}
        neighbours = {s.config.name: s.last_values for s in self.sensors if s is not status and s.last_values}
        try:
            result = status.driver.read(ReadContext(time=now, neighbours=neighbours))
        except SensorError as exc:
            self._failed(status, "failing", str(exc), now)
        except Exception as exc:  # a driver bug must not cost the other sensors their readings
            self.log.exception("sensor %s: driver %s failed unexpectedly", name, info.part)
            self._failed(status, "failing", f"driver error {type(exc).__name__}: {exc}", now)
        else:
            return self._accept(status, result, now)
        if status.consecutive_failures >= _RECREATE_AFTER:
            status.driver = None
        return {}

    def _accept(self, status: SensorStatus, result: Reading | NotReady, now: float) -> dict[str, float]:
        """Check, filter and calibrate a read's values; return the publishable ones."""
        name = status.config.name
        info = status.driver_module.info
        status.last_read = now
        status.next_try = None
        if isinstance(result, NotReady):
            self.log.debug("sensor %s not ready: %s", name, result.reason)
            return {}
        raw: dict[str, float] = {}
        rejected: list[str] = []
        for qty, value in result.values.items():
            if qty not in QUANTITIES or qty not in info.quantity_names:
                self.log.error("sensor %s: driver %s returned unregistered quantity %r", name, info.part, qty)
                continue
            if _impossible(qty, value, rejected, "read"):
                continue
            raw[qty] = float(value)
        status.readings += 1
        status.consecutive_failures = 0
        stuck = bool(raw) and raw == status.last_raw
        status.identical = status.identical + 1 if stuck else 0
        status.last_raw = raw
        values = status.filter.apply(raw) if status.filter is not None else raw
        values = self.calibrator.apply(name, values)
        valid = {q: v for q, v in values.items() if not _impossible(q, v, rejected, "calibrated")}
        if rejected:
            status.out_of_range += len(rejected)
            status.state = "out_of_range"
            status.last_error = f"impossible values not published: {', '.join(rejected)}"
            self.log.warning("sensor %s: %s", name, status.last_error)
        elif status.config.stuck_after and status.identical >= status.config.stuck_after:
            status.state = "stuck"
            status.last_error = (
                f"the same values {status.identical + 1} times in a row: the sensor may be frozen; "
                "it is reset now; if it persists, power-cycle the Pi or replace the sensor"
            )
            if status.identical == status.config.stuck_after:
                self.log.warning("sensor %s: %s", name, status.last_error)
                status.driver = None
        else:
            status.state = "ok"
            status.last_error = None
        status.last_values = valid
        return valid

    def _create(self, status: SensorStatus, now: float) -> bool:
        sensor = status.config
        try:
            bus = self._buses.bus_for(sensor.mux)
            status.driver = status.driver_module.create(bus, sensor.address, sensor.options)
        except SensorError as exc:
            self._failed(status, "missing", str(exc), now)
            return False
        except ConfigError as exc:
            self._failed(status, "failing", str(exc), now)
            return False
        except Exception as exc:  # a driver bug must not cost the other sensors their readings
            self.log.exception("sensor %s: driver %s failed unexpectedly", sensor.name, sensor.part)
            self._failed(status, "failing", f"driver error {type(exc).__name__}: {exc}", now)
            return False
        status.created_at = now
        # The chip answered: it is there, even while it warms up (a PMSA003I takes 30 s) and before
        # its first reading; "missing" would raise a false alarm on every start.
        if status.state == "missing":
            status.state, status.last_error = "ok", None
        self.log.info("sensor %s: %s at %s ready", sensor.name, sensor.part, sensor.path)
        return True

    def _failed(self, status: SensorStatus, state: SensorState, message: str, now: float) -> None:
        status.state = state
        status.failures += 1
        status.consecutive_failures += 1
        status.last_error = message
        status.last_values = {}
        # Retry after 1, 2, 4 ... s, at most MAX_BACKOFF_S: a dead sensor costs little bus time.
        status.next_try = now + min(MAX_BACKOFF_S, 2.0 ** (status.consecutive_failures - 1))
        # Log the first failure loudly and then every tenth, so a dead sensor does not flood the log.
        level = logging.WARNING if status.consecutive_failures % 10 == 1 else logging.DEBUG
        self.log.log(
            level,
            "sensor %s (%d failures in a row): %s",
            status.config.name,
            status.consecutive_failures,
            message,
        )

    # ------------------------------------------------------------------ reporting

    def report(self, now: float) -> tuple[dict[str, SensorMeta], list[str]]:
        """Each sensor's ``meta`` entry, and the names of the sensors that are missing."""
        with self._lock:
            sensors = {
                s.config.name: s.as_meta(self.calibrator.version(s.config.name), now) for s in self.sensors
            }
            missing = [s.config.name for s in self.sensors if s.state == "missing"]
        return sensors, missing

    def scan_unexpected(self) -> list[dict[str, Any]]:
        """Scan the bus and record the devices that answer but are not in the config (for meta)."""
        configured = set(self._paths)  # a disabled sensor's chip is expected on the bus too
        muxes = set(self._muxes)
        try:
            found = scan(self._i2c)
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("bus scan failed: %s", exc)
            return self.unexpected
        self.unexpected = [
            {"address": f.address, "part": f.part, "detail": f.detail}
            | ({"path": f.path} if f.mux is not None else {})
            for f in found
            if f.path not in configured and not (f.mux is None and f.address in muxes)
        ]
        for item in self.unexpected:
            self.log.warning(
                "unexpected device at %s (%s): add it to the device config or unplug it",
                item.get("path", f"{item['address']:#04x}"),
                item["part"] or item["detail"],
            )
        return self.unexpected


def _key(sensor: DeviceSensor) -> tuple[object, ...]:
    return (sensor.name, sensor.part, sensor.path, json.dumps(sensor.options, sort_keys=True))


def _impossible(qty: str, value: float, rejected: list[str], what: str) -> bool:
    spec = QUANTITIES[qty]
    if math.isfinite(value) and spec.low <= value <= spec.high:
        return False
    unit = f" {spec.unit}" if spec.unit else ""
    rejected.append(f"{qty}={value!r} ({what}) outside {spec.low:g}..{spec.high:g}{unit}")
    return True
