"""The edge agent: sample the device's sensors, keep every reading in the outbox, publish over MQTT.

Two threads of ours and paho's network thread:

- the *sampler*, every ``publish_interval_s``, reads each sensor that is due (its ``interval_s``,
  never faster than its driver's minimum, with backoff after failures), checks the physical
  range, filters and calibrates, and writes the readings to the :class:`~edge.outbox.Outbox`
  before anything else (stamped in UTC, or held with their monotonic time until the clock syncs);
- the *publisher* publishes each new cycle's readings at once (live data first), drains the
  backlog oldest first at ``outbox.drain_readings_per_s``, marks readings sent when their pack's
  PUBACK arrives, stamps held readings once the clock syncs, answers commands on ``cmd/{name}``
  and publishes the retained ``meta`` on change and every 5 minutes.

A sensor that fails is logged, counted, shown in ``meta`` and retried with backoff; the others go
on. A value outside its quantity's physical range is never published, only counted.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

import kits
from edge import system
from edge.calibration import Calibrator, Filter
from edge.drivers import DriverModule, load_driver
from edge.drivers.base import Driver, I2CBus, NotReady, ReadContext, Reading
from edge.outbox import Outbox, OutboxError, Row
from edge.scan import scan
from kits.errors import ConfigError, SensorError, SuitcaseError, WireError
from kits.models import DeviceConfig, DeviceSensor
from kits.quantities import QUANTITIES
from kits.wire import (
    MIN_VALID_TIME,
    Meta,
    OutboxMeta,
    Record,
    SensorMeta,
    Status,
    build_topic,
    encode_pack,
    parse_topic,
)

__all__ = ["MAX_BACKOFF_S", "META_EVERY_S", "Agent", "SensorState", "SensorStatus"]

log = logging.getLogger(__name__)

META_EVERY_S = 300.0
MAX_BACKOFF_S = 300.0
# After this many failed reads in a row the driver is created again: the sensor may have been
# power-cycled or replaced and need its reset and configuration.
_RECREATE_AFTER = 3
# A sensor is due a little early rather than a whole cycle late when the loop jitters.
_DUE_SLACK = 0.05
# Packs in flight (published, PUBACK not yet received) at most; more waits.
_WINDOW = 32
_PRUNE_EVERY_S = 600.0
# Fields the config command may not change: identity and the session it arrives on.
_FIXED = ("device", "org", "mqtt", "bus")

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
            state=self.state,
            consecutive_failures=self.consecutive_failures,
            failures=self.failures,
            readings=self.readings,
            out_of_range=self.out_of_range,
            last_error=self.last_error,
            calibration_version=calibration_version,
            retry_in_s=retry,
        )


class Agent:
    """The edge agent of one device.

    Args:
        config: the device config (who it is, the broker, the sensors, calibration, outbox).
        i2c: the I2C bus: ``board.I2C()`` on a Pi, or an :class:`edge.emulated.EmulatedI2C`.
        clock: the current UTC epoch time; stamps readings and schedules reads.
        monotonic: a clock that never jumps, kept with readings taken before the clock synced.
        clock_synced: whether ``clock`` can be trusted; by default, after 2020 for an injected
            clock and :func:`edge.system.clock_synced` for the system's.
        state_dir: where the outbox and the config received from the server are kept; None keeps
            both in memory (demo, tests).
        outbox: an outbox to use instead of the one in ``state_dir``.
        agent_version: reported in ``status`` and ``meta``.
        cpu_temperature: the SoC temperature, or None off a Pi.
        leds_dir: where the ACT LED is (``identify``).

    Raises:
        ConfigError: a sensor's part has no driver.
        OutboxError: the outbox cannot be opened.
    """

    def __init__(
        self,
        config: DeviceConfig,
        i2c: I2CBus,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        clock_synced: Callable[[], bool] | None = None,
        state_dir: Path | None = None,
        outbox: Outbox | None = None,
        agent_version: str = kits.__version__,
        cpu_temperature: Callable[[], float | None] = system.cpu_temperature,
        leds_dir: Path = Path("/sys/class/leds"),
    ) -> None:
        self.config = config
        self._i2c = i2c
        self._clock = clock
        self._monotonic = monotonic
        if clock_synced is None:
            clock_synced = system.clock_synced if clock is time.time else self._after_2020
        self._clock_synced = clock_synced
        self.state_dir = state_dir
        self.agent_version = agent_version
        self._cpu_temperature = cpu_temperature
        self._leds_dir = leds_dir
        self.log = _ContextAdapter(log, {"org": config.org, "device": config.device})
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        # Set after the first sampling round: meta waits for it, so it never reports a sensor the
        # agent has not tried yet as missing.
        self._sampled = threading.Event()
        self._started_at: float | None = None
        self._last_meta: tuple[float, str] | None = None
        self.unexpected: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {
            "packs_published": 0,
            "readings_published": 0,
            "readings_acknowledged": 0,
            "held_unsynced": 0,
            "outbox_errors": 0,
            "published_without_outbox": 0,
            "publish_errors": 0,
            "commands": 0,
            "connection_refused": 0,
        }
        self.connection_error: str | None = None
        self.outbox_error: str | None = None
        self.outbox = outbox or Outbox(
            state_dir / "outbox.sqlite" if state_dir is not None else None,
            config.outbox,
            boot_id=system.boot_id(),
            clock=clock,
        )
        self._live: deque[list[Row]] = deque()
        self._pending_mids: dict[int, list[int]] = {}
        self._early_acks: set[int] = set()
        self._acked: deque[list[int]] = deque()
        self._mid_lock = threading.Lock()
        self._commands: deque[tuple[str, bytes]] = deque()
        self.sensors: list[SensorStatus] = []
        self.calibrator = Calibrator(config.calibration)
        self._set_sensors(config)
        self.topics = {
            kind: build_topic(config.org, config.device, kind) for kind in ("telemetry", "status", "meta")
        }
        self._cmd_filter = build_topic(config.org, config.device, "cmd", "x").rsplit("/", 1)[0] + "/+"

    def _after_2020(self) -> bool:
        return self._clock() >= MIN_VALID_TIME

    # ------------------------------------------------------------------ configuration

    def _set_sensors(self, config: DeviceConfig) -> None:
        old = {
            (s.config.name, s.config.part, s.config.address, json.dumps(s.config.options, sort_keys=True)): s
            for s in self.sensors
        }
        sensors = []
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
            key = (sensor.name, sensor.part, sensor.address, json.dumps(sensor.options, sort_keys=True))
            status = old.get(key) or SensorStatus(sensor, module, interval)
            status.config, status.interval_s = sensor, interval
            if sensor.filter is None:
                status.filter = None
            elif status.filter is None or status.filter.spec != sensor.filter:
                status.filter = Filter(sensor.filter)
            sensors.append(status)
        self.sensors = sensors

    def apply_config(self, changes: dict[str, Any]) -> list[str]:
        """Apply a ``config`` command's changes now, and persist them in the state folder.

        Returns the changed fields.

        Raises:
            ConfigError: a field that may not change, or a value the device config refuses.
        """
        fixed = sorted(set(changes) & set(_FIXED))
        if fixed:
            raise ConfigError(
                f"config may not change {', '.join(fixed)}: "
                "re-enroll the device to change its identity or broker"
            )
        merged = {**self.config.model_dump(), **changes}
        try:
            new = DeviceConfig.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"config refused, nothing changed: {problems}") from exc
        with self._lock:
            self._set_sensors(new)
            self.calibrator = Calibrator(new.calibration)
            self.config = new
        if self.state_dir is not None:
            from edge.config import save_device_config

            save_device_config(self.state_dir, new)
        self.log.info(
            "config applied: %s (calibration version %s)",
            ", ".join(sorted(changes)),
            self.calibrator.version(),
        )
        return sorted(changes)

    # ------------------------------------------------------------------ sampling

    def sample_once(self) -> list[Record]:
        """Read every sensor that is due, store the readings in the outbox and return them.

        Failing sensors and out-of-range values are recorded in :attr:`sensors`, never raised.
        Before the clock has synced the readings are held in the outbox unstamped and nothing is
        returned.
        """
        now = self._clock()
        mono = self._monotonic()
        values: list[tuple[str, str, float]] = []
        with self._lock:
            for status in self.sensors:
                if not self._due(status, now):
                    continue
                values += [(status.config.name, q, v) for q, v in self._read(status, now).items()]
        if not values:
            return []
        synced = self._clock_synced()
        try:
            rows = self.outbox.add(values, time=now if synced else None, mono=mono)
            if synced:
                self.outbox.in_flight(r.id for r in rows)
            self.outbox_error = None
        except OutboxError as exc:
            self.counters["outbox_errors"] += 1
            if self.outbox_error is None or self.counters["outbox_errors"] % 60 == 1:
                self.log.error("%s", exc)
            self.outbox_error = str(exc)
            if not synced:
                return []
            rows = [Row(0, s, q, v, now) for s, q, v in values]  # published without store-and-forward
        if not synced:
            self.counters["held_unsynced"] += len(values)
            self.log.debug("clock not synced: %d readings held in the outbox until it is", len(values))
            return []
        self._live.append(rows)
        self._wake.set()
        return [self._record(r) for r in rows]

    def _record(self, row: Row) -> Record:
        return Record(self.config.org, self.config.device, row.sensor, row.quantity, row.value, row.time)

    def _due(self, status: SensorStatus, now: float) -> bool:
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
            if self._impossible(qty, value, rejected, "read"):
                continue
            raw[qty] = float(value)
        status.readings += 1
        status.consecutive_failures = 0
        stuck = bool(raw) and raw == status.last_raw
        status.identical = status.identical + 1 if stuck else 0
        status.last_raw = raw
        values = status.filter.apply(raw) if status.filter is not None else raw
        values = self.calibrator.apply(name, values)
        valid = {q: v for q, v in values.items() if not self._impossible(q, v, rejected, "calibrated")}
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

    @staticmethod
    def _impossible(qty: str, value: float, rejected: list[str], what: str) -> bool:
        spec = QUANTITIES[qty]
        if math.isfinite(value) and spec.low <= value <= spec.high:
            return False
        unit = f" {spec.unit}" if spec.unit else ""
        rejected.append(f"{qty}={value!r} ({what}) outside {spec.low:g}..{spec.high:g}{unit}")
        return True

    def _create(self, status: SensorStatus, now: float) -> bool:
        sensor = status.config
        try:
            status.driver = status.driver_module.create(self._i2c, sensor.address, sensor.options)
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
        self.log.info("sensor %s: %s at %#04x ready", sensor.name, sensor.part, sensor.address)
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

    # ------------------------------------------------------------------ meta and status

    def meta(self) -> dict[str, Any]:
        """The ``meta`` message (:class:`kits.wire.Meta`) as a dict."""
        now = self._clock()
        with self._lock:
            sensors = {
                s.config.name: s.as_meta(self.calibrator.version(s.config.name), now) for s in self.sensors
            }
            counters = dict(self.counters)
            missing = [s.config.name for s in self.sensors if s.state == "missing"]
        try:
            outbox = OutboxMeta(
                pending=self.outbox.pending,
                oldest_pending=self.outbox.oldest_pending(),
                unstamped=self.outbox.unstamped(),
                dropped=self.outbox.counter("dropped"),
                write_errors=self.outbox.write_errors,
                sync=self.config.outbox.sync,
            )
        except Exception as exc:  # meta must go out even when the outbox is broken
            self.log.warning("outbox state unreadable for meta: %s", exc)
            outbox = None
        return Meta(
            agent=self.agent_version,
            kit_profile=self.config.kit_profile,
            time=now,
            uptime_s=round(self._monotonic() - self._started_at, 3) if self._started_at is not None else 0.0,
            clock_synced=self._clock_synced(),
            publish_interval_s=self.config.publish_interval_s,
            calibration_version=self.calibrator.version(),
            cpu_temperature=self._cpu_temperature(),
            outbox=outbox,
            sensors=sensors,
            missing=missing,
            unexpected=list(self.unexpected),
            counters=counters,
        ).model_dump()

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        return Status(state=state, since=self._clock(), agent=self.agent_version).encode()

    def _publish_meta(self, *, force: bool = False) -> None:
        client = self._client
        if client is None:
            return
        meta = self.meta()
        # "On change and every 5 min": compare what is not expected to change on its own.
        watched = {
            "clock_synced": meta["clock_synced"],
            "sensors": {
                n: (s["state"], s["last_error"], s["calibration_version"]) for n, s in meta["sensors"].items()
            },
            "unexpected": meta["unexpected"],
            "outbox_error": self.outbox_error,
        }
        key = json.dumps(watched, sort_keys=True)
        now = self._monotonic()
        if not force and self._last_meta is not None:
            last_time, last_key = self._last_meta
            if key == last_key and now - last_time < META_EVERY_S:
                return
        self._last_meta = (now, key)
        self._publish(self.topics["meta"], json.dumps(meta).encode(), retain=True)

    # ------------------------------------------------------------------ MQTT session

    def start(self) -> None:
        """Connect to the broker (in the background, retrying) and start sampling and publishing."""
        if self._threads:
            raise RuntimeError("the agent is already running")
        settings = self.config.mqtt
        self._started_at = self._monotonic()
        self._stop.clear()
        self._sampled.clear()
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
        client.max_inflight_messages_set(_WINDOW + 16)
        # paho retries with backoff doubling from 1 s to 60 s; the broker sees no thundering herd
        # after an outage because every Pi's outage started at a different moment.
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
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
        for target, name in ((self._sample_loop, "sampler"), (self._publish_loop, "publisher")):
            thread = threading.Thread(target=target, name=f"{name}-{self.config.device}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, publish the retained ``offline`` status, disconnect, close the outbox."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        client = self._client
        if client is not None:
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
        self._flush_acks()
        self.outbox.close()
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
            self.counters["connection_refused"] += 1
            self.connection_error = f"broker refused the connection: {reason_code}"
            self.log.error(
                "broker refused the connection (%s): check mqtt.username/password in the device config, "
                "or re-enroll the device (`suitcase edge enroll`); retrying",
                reason_code,
            )
            return
        self.connection_error = None
        self.log.info("connected")
        self._publish(self.topics["status"], self._status("online"), retain=True)
        client.subscribe(self._cmd_filter, qos=1)
        self._last_meta = None
        self.outbox.rewind()
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            self.log.warning("disconnected (%s); reconnecting, readings wait in the outbox", reason_code)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        with self._mid_lock:
            ids = self._pending_mids.pop(mid, None)
            if ids is None:  # acknowledged before publish() returned and registered it
                self._early_acks.add(mid)
        if ids:
            self._acked.append(ids)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = parse_topic(message.topic)
        except WireError:
            return
        if topic.kind == "cmd" and topic.command and not topic.reply:
            self._commands.append((topic.command, bytes(message.payload)))
            self._wake.set()

    # ------------------------------------------------------------------ the two loops

    def _sample_loop(self) -> None:
        self.scan_unexpected()
        next_cycle = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # the sampler must outlive any one bad cycle
                self.log.exception("sampling cycle failed; trying again next cycle")
            self._sampled.set()
            self._wake.set()
            next_cycle += self.config.publish_interval_s
            now = time.monotonic()
            if next_cycle < now:  # a slow cycle: skip the missed ones rather than burst
                next_cycle = now
            self._stop.wait(next_cycle - now)

    def _publish_loop(self) -> None:
        tokens = 0.0
        last = time.monotonic()
        last_prune = 0.0
        last_meta_check = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                self._flush_acks()
                self._run_commands()
                if self.outbox.pending and self._clock_synced() and self.outbox.unstamped():
                    stamped = self.outbox.stamp(self._clock(), self._monotonic())
                    self.log.info("clock synced: %d held readings stamped and queued", stamped)
                now = time.monotonic()
                rate = self.config.outbox.drain_readings_per_s
                tokens = min(tokens + (now - last) * rate, max(rate, float(self.config.outbox.pack_records)))
                last = now
                if self._connected.is_set():
                    self._publish_live()
                    tokens = self._drain(tokens)
                else:
                    self._live_not_sent()
                if now - last_meta_check >= 1.0:
                    last_meta_check = now
                    if self._connected.is_set() and self._sampled.is_set():
                        self._publish_meta()
                if now - last_prune >= _PRUNE_EVERY_S:
                    last_prune = now
                    self.outbox.prune()
            except Exception:  # the publisher must outlive any one bad round
                self.log.exception("publishing round failed; trying again")
                self._stop.wait(1.0)

    def _flush_acks(self) -> None:
        ids: list[int] = []
        while self._acked:
            ids += self._acked.popleft()
        ids = [i for i in ids if i]
        if ids:
            try:
                self.outbox.mark_sent(ids)
            except OutboxError as exc:
                self.log.error("could not mark %d readings sent (they will be sent again): %s", len(ids), exc)
            self.counters["readings_acknowledged"] += len(ids)

    def _live_not_sent(self) -> None:
        while self._live:
            rows = self._live.popleft()
            self.outbox.release(r.id for r in rows if r.id)

    def _publish_live(self) -> None:
        while self._live:
            rows = self._live.popleft()
            if not self._publish_rows(rows):
                self.outbox.release(r.id for r in rows if r.id)
            elif not any(r.id for r in rows):
                self.counters["published_without_outbox"] += len(rows)

    def _drain(self, tokens: float) -> float:
        pack = self.config.outbox.pack_records
        while tokens >= 1.0 and len(self._pending_mids) < _WINDOW and self._connected.is_set():
            rows = self.outbox.take(min(pack, int(tokens)))
            if not rows:
                break
            if not self._publish_rows(rows):
                self.outbox.release(r.id for r in rows)
                break
            tokens -= len(rows)
            if self._live:  # live data first
                self._publish_live()
        return tokens

    def _publish_rows(self, rows: Sequence[Row], *, track: bool = True) -> bool:
        client = self._client
        if client is None or not rows:
            return False
        try:
            payload = encode_pack([self._record(r) for r in rows])
        except WireError as exc:
            self.counters["publish_errors"] += 1
            self.log.error("pack of %d readings not encodable, marked sent to skip it: %s", len(rows), exc)
            self._acked.append([r.id for r in rows])
            return True
        info = self._publish(self.topics["telemetry"], payload, ids=[r.id for r in rows] if track else [])
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.counters["publish_errors"] += 1
            self.log.warning(
                "publish failed (%s); the readings stay in the outbox", mqtt.error_string(info.rc)
            )
            return False
        self.counters["packs_published"] += 1
        self.counters["readings_published"] += len(rows)
        return True

    def _publish(
        self, topic: str, payload: bytes, *, ids: list[int] | None = None, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish with QoS 1 and register the mid, so its PUBACK marks ``ids`` sent.

        paho calls on_publish holding its own lock, so ours is never held across publish();
        an acknowledgement that beats the registration is kept in ``_early_acks``.
        """
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._mid_lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    if ids:
                        self._acked.append(ids)
                else:
                    self._pending_mids[info.mid] = ids or []
        return info

    # ------------------------------------------------------------------ commands

    def _run_commands(self) -> None:
        from edge.commands import run_command

        while self._commands:
            name, payload = self._commands.popleft()
            self.counters["commands"] += 1
            reply = run_command(self, name, payload)
            if reply is not None and self._client is not None:
                topic = build_topic(self.config.org, self.config.device, "cmd", name, reply=True)
                self._publish(topic, reply.model_dump_json().encode())

    def resend(self, start: float, end: float) -> int:
        """Publish again every reading stamped in ``[start, end]`` that the outbox still holds.

        Raises:
            SuitcaseError: not connected to the broker.
        """
        if not self._connected.is_set():
            raise SuitcaseError("not connected to the broker: resend once the device is online")
        sent = 0
        after: tuple[float, int] | None = None
        while True:
            rows = self.outbox.history(start, end, after=after, limit=self.config.outbox.pack_records)
            if not rows:
                return sent
            while len(self._pending_mids) >= _WINDOW and self._connected.is_set():
                self._stop.wait(0.01)
            if not self._publish_rows(rows, track=False):
                raise SuitcaseError(
                    f"resend interrupted after {sent} readings: the connection dropped; send it again"
                )
            sent += len(rows)
            after = (rows[-1].time, rows[-1].id)

    def identify(self, seconds: float) -> str:
        """Blink the ACT LED for ``seconds``.

        Raises:
            OSError: there is no ACT LED or no permission to drive it.
        """
        return system.blink_act_led(seconds, self._leds_dir)

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
