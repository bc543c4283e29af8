"""The edge agent: sample the device's sensors and publish them over MQTT.

One thread samples: every ``publish_interval_s`` it reads each sensor that is due (its
``interval_s``, never faster than its driver's minimum interval) and publishes one SenML pack on
the telemetry topic with QoS 1. paho's network thread keeps the session: the retained ``online``
status on connect, ``offline`` as the Last Will and on a clean stop, and the retained ``meta``.

A sensor that fails is logged, counted, shown in ``meta`` and retried next cycle; the others go on.
A value outside its quantity's physical range is never published, only counted. Readings are not
published while the clock has not synced (before 2020): without the outbox, they are dropped and
counted.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import kits
from edge.drivers import DriverModule, load_driver
from edge.drivers.base import Driver, I2CBus, NotReady, ReadContext, Reading
from edge.scan import scan
from kits.errors import ConfigError, SensorError, WireError
from kits.models import DeviceConfig, DeviceSensor
from kits.quantities import QUANTITIES
from kits.wire import MIN_VALID_TIME, Record, Status, build_topic, encode_pack, records_of

__all__ = ["META_EVERY_S", "Agent", "SensorState", "SensorStatus"]

log = logging.getLogger(__name__)

META_EVERY_S = 300.0
# After this many failed reads in a row the driver is created again: the sensor may have been
# power-cycled or replaced and need its reset and configuration.
_RECREATE_AFTER = 3
# A sensor is due a little early rather than a whole cycle late when the loop jitters.
_DUE_SLACK = 0.05

SensorState = Literal["ok", "missing", "failing", "stuck", "out_of_range"]


class _ContextAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefix every message with ``org/device`` and pass both as ``extra`` for structured logs."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('org')}/{extra.get('device')}] {msg}", kwargs


@dataclass
class SensorStatus:
    """What the agent knows about one sensor; reported in ``meta``."""

    config: DeviceSensor
    driver_module: DriverModule
    interval_s: float
    driver: Driver | None = None
    created_at: float | None = None
    last_read: float | None = None
    state: SensorState = "missing"
    consecutive_failures: int = 0
    failures: int = 0
    readings: int = 0
    out_of_range: int = 0
    last_error: str | None = None
    last_values: dict[str, float] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        """The sensor's entry in the ``meta`` message."""
        return {
            "part": self.config.part,
            "address": self.config.address,
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "failures": self.failures,
            "readings": self.readings,
            "out_of_range": self.out_of_range,
            "last_error": self.last_error,
        }


class Agent:
    """The edge agent of one device.

    Args:
        config: the device config (who it is, the broker, the sensors).
        i2c: the I2C bus: ``board.I2C()`` on a Pi, or an :class:`edge.emulated.EmulatedI2C`.
        clock: the current UTC epoch time; stamps readings and schedules reads.
        agent_version: reported in ``status`` and ``meta``.

    Raises:
        ConfigError: a sensor's part has no driver.
    """

    def __init__(
        self,
        config: DeviceConfig,
        i2c: I2CBus,
        *,
        clock: Callable[[], float] = time.time,
        agent_version: str = kits.__version__,
    ) -> None:
        self.config = config
        self._i2c = i2c
        self._clock = clock
        self.agent_version = agent_version
        self.log = _ContextAdapter(log, {"org": config.org, "device": config.device})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._started_at: float | None = None
        self._last_meta: tuple[float, str] | None = None
        self.unexpected: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {
            # Handed to paho: sent now, or queued (QoS 1) until the broker is back.
            "packs_queued": 0,
            "records_queued": 0,
            "dropped_unsynced": 0,
            "publish_errors": 0,
        }
        self.sensors: list[SensorStatus] = []
        for sensor in config.sensors:
            module = load_driver(sensor.part)
            interval = max(sensor.interval_s, module.info.min_interval_s)
            if interval > sensor.interval_s:
                self.log.warning(
                    "sensor %s: interval %.3g s is below the %s minimum; reading every %.3g s",
                    sensor.name,
                    sensor.interval_s,
                    sensor.part,
                    interval,
                )
            self.sensors.append(SensorStatus(sensor, module, interval))
        self.topics = {
            kind: build_topic(config.org, config.device, kind) for kind in ("telemetry", "status", "meta")
        }

    # ------------------------------------------------------------------ sampling

    def sample_once(self) -> list[Record]:
        """Read every sensor that is due and return the readings to publish.

        Failing sensors and out-of-range values are recorded in :attr:`sensors`, never raised.
        Before the clock has synced nothing is returned (the readings are counted as dropped).
        """
        now = self._clock()
        records: list[Record] = []
        with self._lock:
            for status in self.sensors:
                if not self._due(status, now):
                    continue
                values = self._read(status, now)
                if values:
                    records += records_of(
                        self.config.org, self.config.device, status.config.name, values.items(), now
                    )
            if records and now < MIN_VALID_TIME:
                self.counters["dropped_unsynced"] += len(records)
                self.log.warning(
                    "clock not synced (%.0f is before 2020): %d readings not published; "
                    "check NTP (`timedatectl`)",
                    now,
                    len(records),
                )
                return []
        return records

    def _due(self, status: SensorStatus, now: float) -> bool:
        if status.last_read is None or now < status.last_read:  # never read, or the clock went back
            return True
        return now - status.last_read >= status.interval_s * (1.0 - _DUE_SLACK)

    def _read(self, status: SensorStatus, now: float) -> dict[str, float]:
        """Read one sensor; return its valid values (empty when it failed or is not ready)."""
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
            self._failed(status, "failing", str(exc))
        except Exception as exc:  # a driver bug must not cost the other sensors their readings
            self.log.exception("sensor %s: driver %s failed unexpectedly", name, info.part)
            self._failed(status, "failing", f"driver error {type(exc).__name__}: {exc}")
        else:
            return self._accept(status, result, now)
        if status.consecutive_failures >= _RECREATE_AFTER:
            status.driver = None
        return {}

    def _accept(self, status: SensorStatus, result: Reading | NotReady, now: float) -> dict[str, float]:
        """Check a read's values against the physical ranges; return the publishable ones."""
        name = status.config.name
        info = status.driver_module.info
        status.last_read = now
        if isinstance(result, NotReady):
            self.log.debug("sensor %s not ready: %s", name, result.reason)
            return {}
        valid: dict[str, float] = {}
        rejected: list[str] = []
        for qty, value in result.values.items():
            spec = QUANTITIES.get(qty)
            if spec is None or qty not in info.quantity_names:
                self.log.error("sensor %s: driver %s returned unregistered quantity %r", name, info.part, qty)
                continue
            if not math.isfinite(value) or not spec.low <= value <= spec.high:
                unit = f" {spec.unit}" if spec.unit else ""
                rejected.append(f"{qty}={value!r} outside {spec.low:g}..{spec.high:g}{unit}")
                continue
            valid[qty] = float(value)
        status.readings += 1
        status.consecutive_failures = 0
        if rejected:
            status.out_of_range += len(rejected)
            status.state = "out_of_range"
            status.last_error = f"impossible values not published: {', '.join(rejected)}"
            self.log.warning("sensor %s: %s", name, status.last_error)
        else:
            status.state = "ok"
        status.last_values = valid
        return valid

    def _create(self, status: SensorStatus, now: float) -> bool:
        sensor = status.config
        try:
            status.driver = status.driver_module.create(self._i2c, sensor.address, {})
        except SensorError as exc:
            self._failed(status, "missing", str(exc))
            return False
        except Exception as exc:  # a driver bug must not cost the other sensors their readings
            self.log.exception("sensor %s: driver %s failed unexpectedly", sensor.name, sensor.part)
            self._failed(status, "failing", f"driver error {type(exc).__name__}: {exc}")
            return False
        status.created_at = now
        self.log.info("sensor %s: %s at %#04x ready", sensor.name, sensor.part, sensor.address)
        return True

    def _failed(self, status: SensorStatus, state: SensorState, message: str) -> None:
        status.state = state
        status.failures += 1
        status.consecutive_failures += 1
        status.last_error = message
        status.last_values = {}
        # Log the first failure loudly and then every tenth, so a dead sensor does not flood the log.
        level = logging.WARNING if status.consecutive_failures % 10 == 1 else logging.DEBUG
        self.log.log(
            level,
            "sensor %s (%d failures in a row): %s",
            status.config.name,
            status.consecutive_failures,
            message,
        )

    # ------------------------------------------------------------------ meta and status

    def meta(self) -> dict[str, Any]:
        """The ``meta`` message: agent, clock, uptime and the state of every sensor."""
        now = self._clock()
        with self._lock:
            sensors = {s.config.name: s.as_meta() for s in self.sensors}
            counters = dict(self.counters)
        return {
            "agent": self.agent_version,
            "kit_profile": self.config.kit_profile,
            "time": now,
            "uptime_s": round(now - self._started_at, 3) if self._started_at is not None else 0.0,
            "clock_synced": now >= MIN_VALID_TIME,
            "publish_interval_s": self.config.publish_interval_s,
            "sensors": sensors,
            "unexpected": list(self.unexpected),
            "counters": counters,
        }

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        since = self._clock() if state == "online" or self._started_at is None else self._started_at
        return Status(state=state, since=since, agent=self.agent_version).encode()

    def _publish_meta(self, *, force: bool = False) -> None:
        client = self._client
        if client is None:
            return
        meta = self.meta()
        # "On change and every 5 min": compare what is not expected to change on its own.
        watched = {
            "clock_synced": meta["clock_synced"],
            "sensors": {n: (s["state"], s["last_error"]) for n, s in meta["sensors"].items()},
        }
        key = json.dumps(watched, sort_keys=True)
        now = meta["time"]
        if not force and self._last_meta is not None:
            last_time, last_key = self._last_meta
            if key == last_key and 0 <= now - last_time < META_EVERY_S:
                return
        self._last_meta = (now, key)
        client.publish(self.topics["meta"], json.dumps(meta).encode(), qos=1, retain=True)

    # ------------------------------------------------------------------ MQTT session

    def start(self) -> None:
        """Connect to the broker (in the background, retrying) and start sampling."""
        if self._thread is not None:
            raise RuntimeError("the agent is already running")
        settings = self.config.mqtt
        self._started_at = self._clock()
        self._stop.clear()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.device,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.enable_logger(logging.getLogger(f"{__name__}.mqtt"))
        client.will_set(self.topics["status"], self._status("offline"), qos=1, retain=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self.log.info("connecting to %s:%d", settings.host, settings.port)
        try:
            client.connect_async(settings.host, settings.port, keepalive=settings.keepalive)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach the MQTT broker {settings.host}:{settings.port} ({exc}): "
                "check the mqtt section of the device config"
            ) from exc
        client.loop_start()
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{self.config.device}", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, publish the retained ``offline`` status, disconnect cleanly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        client = self._client
        if client is None:
            return
        if self._connected.is_set():
            info = client.publish(self.topics["status"], self._status("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                self.log.warning("offline status not acknowledged: %s", exc)
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected.clear()
        self.log.info("stopped")

    def run_until(self, stop_event: threading.Event) -> None:
        """Start, run until ``stop_event`` is set, then stop cleanly."""
        self.start()
        try:
            while not stop_event.wait(0.5):
                pass
        finally:
            self.stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.log.error(
                "broker refused the connection (%s): check mqtt.username/password in the device config",
                reason_code,
            )
            return
        self.log.info("connected")
        client.publish(self.topics["status"], self._status("online"), qos=1, retain=True)
        self._publish_meta(force=True)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            self.log.warning("disconnected (%s); reconnecting, readings queue meanwhile", reason_code)

    def scan_unexpected(self) -> list[dict[str, Any]]:
        """Scan the bus and record the devices that answer but are not in the config (for meta)."""
        configured = {s.address for s in self.config.sensors}
        try:
            found = scan(self._i2c)
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("bus scan failed: %s", exc)
            return self.unexpected
        self.unexpected = [
            {"address": f.address, "part": f.part, "detail": f.detail}
            for f in found
            if f.address not in configured
        ]
        for item in self.unexpected:
            self.log.warning(
                "unexpected device at %#04x (%s): add it to the device config or unplug it",
                item["address"],
                item["part"] or item["detail"],
            )
        return self.unexpected

    def _loop(self) -> None:
        self.scan_unexpected()
        period = self.config.publish_interval_s
        next_cycle = time.monotonic()
        while not self._stop.is_set():
            try:
                self._cycle()
            except Exception:  # the sampler must outlive any one bad cycle
                self.log.exception("sampling cycle failed; trying again next cycle")
            next_cycle += period
            now = time.monotonic()
            if next_cycle < now:  # a slow cycle: skip the missed ones rather than burst
                next_cycle = now
            self._stop.wait(next_cycle - now)

    def _cycle(self) -> None:
        records = self.sample_once()
        client = self._client
        if records and client is not None:
            try:
                payload = encode_pack(records)
            except WireError as exc:
                self.counters["publish_errors"] += 1
                self.log.error("pack not encoded, %d readings lost: %s", len(records), exc)
            else:
                info = client.publish(self.topics["telemetry"], payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self.counters["publish_errors"] += 1
                    self.log.error("publish failed: %s", mqtt.error_string(info.rc))
                else:
                    self.counters["packs_queued"] += 1
                    self.counters["records_queued"] += len(records)
        self._publish_meta()
