"""The server's own MQTT subscriber: devices' retained ``status`` and ``meta`` into the registry.

Only enrolled devices are updated, and only from their own organisation's topics: a message on
``suitcase/v1/{org}/{device}/...`` for a device registered under another organisation is ignored.

A message the registry database cannot take now (stopped, restarting, unreachable) is held, the
latest per topic, and applied once the database answers again (retried with backoff), so the
registry catches up without waiting for each device to send its status or meta again.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
import zlib
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, col, select

from kits.errors import WireError
from kits.wire import Status, parse_topic, subscription
from server.resources import Clock
from server.settings import ServerSettings
from server.tables import DeviceCommandRow, DeviceRow, OrganisationRow
from server.untrusted import load_json, safe_float, safe_int, safe_json, safe_text

if TYPE_CHECKING:
    from server.device_commands import Dispatched

__all__ = ["StatusListener", "apply_message", "refusal"]

log = logging.getLogger(__name__)


def apply_message(session: Session, topic: str, payload: bytes, now: float, *, commit: bool = True) -> bool:
    """Apply one status or meta message to the registry; return whether a device changed.

    ``commit=False`` leaves the commit to the caller (the listener applies a batch in one).

    Any payload is safe: what is not JSON, not the message's shape or not storable changes
    nothing (a field of meta that is, is kept; server/untrusted.py).
    """
    return refusal(session, topic, payload, now, commit=commit) is None


def refusal(session: Session, topic: str, payload: bytes, now: float, *, commit: bool = True) -> str | None:
    """Apply one status or meta message as :func:`apply_message`; None when a device changed, else
    why the message changed nothing (for the listener's log)."""
    try:
        parsed = parse_topic(topic)
    except WireError:
        return "not a suitcase topic"
    body = load_json(payload)
    if parsed.kind not in ("status", "meta"):
        return f"not a status or meta topic ({parsed.kind})"
    if not isinstance(body, dict):
        return "not a JSON object"
    status: Status | None = None
    if parsed.kind == "status":
        try:
            status = Status.model_validate(body)
        except ValueError:
            return "not a status (state online/offline, since, agent)"
        if safe_float(status.since) is None:
            return "status since is not a finite time"
    device = session.get(DeviceRow, parsed.device)
    if device is None or device.revoked_at is not None:
        return "device not enrolled or revoked"
    org = session.get(OrganisationRow, device.org_id)
    if org is None or org.slug != parsed.org:
        log.warning("status/meta of a device under another organisation", extra={"topic": topic})
        return "device of another organisation"
    if status is not None:
        device.online = status.state == "online"
        device.status_since = status.since
        device.agent_version = safe_text(status.agent, _AGENT_LENGTH)
        if device.online:
            device.last_seen = max(device.last_seen or 0.0, now)
    else:
        _apply_meta(device, body, now)
    session.add(device)
    if commit:
        session.commit()
    return None


_LOGGED_FAILURES = 10
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0
# Past a held lease's end before sweeping: the lease is taken only once it has run out.
_LEASE_SLACK_S = 0.05
APPLY_BATCH = 500  # status/meta messages per registry transaction
HELD_MAX = 100_000  # messages held for a registry that is down; beyond, the oldest go (counted)
# The figures of kits.wire.Diagnostics kept from meta (numbers only; anything else is dropped).
_DIAGNOSTICS = (
    "disk_free_bytes",
    "disk_total_bytes",
    "outbox_bytes",
    "writes_per_h",
    "wifi_dbm",
    "wifi_quality",
)
_AGENT_LENGTH = 32  # DeviceRow.agent_version
_PROFILE_LENGTH = 64  # DeviceRow.kit_profile


def _apply_meta(device: DeviceRow, meta: dict[str, Any], now: float) -> None:
    def pick(*names: str) -> Any:
        for name in names:
            if name in meta:
                return meta[name]
        return None

    device.agent_version = safe_text(pick("agent", "agent_version"), _AGENT_LENGTH) or device.agent_version
    device.kit_profile = safe_text(pick("kit_profile", "profile"), _PROFILE_LENGTH) or device.kit_profile
    synced = pick("clock_synced")
    device.clock_synced = bool(synced) if synced is not None else device.clock_synced
    uptime, backlog, oldest = (
        pick("uptime_s", "uptime"),
        pick("backlog", "outbox_backlog"),
        pick("oldest_pending", "outbox_oldest"),
    )
    outbox = meta.get("outbox")
    if isinstance(outbox, dict):  # kits.wire.Meta: the outbox's backlog
        backlog, oldest = outbox.get("pending"), outbox.get("oldest_pending")
    device.uptime_s = safe_float(uptime) if safe_float(uptime) is not None else device.uptime_s
    device.backlog = safe_int(backlog) if safe_int(backlog) is not None else device.backlog
    device.oldest_pending = safe_float(oldest)
    sensors = meta.get("sensors")
    if isinstance(sensors, dict):
        sensors = [{"name": name, **value} for name, value in sensors.items() if isinstance(value, dict)]
    if isinstance(sensors, list):
        device.sensors = safe_json([s for s in sensors if isinstance(s, dict)][:64])
    for key, target in (("missing", "missing"), ("unexpected", "unexpected")):
        value = meta.get(key)
        if isinstance(value, list):
            texts = [v if isinstance(v, str) else json.dumps(safe_json(v)) for v in value[:64]]
            setattr(device, target, [safe_text(t, 500) for t in texts])
    version = safe_int(meta.get("config_version"))
    device.config_version = version if version is not None and version > 0 else device.config_version
    if isinstance(meta.get("diagnostics"), dict) or isinstance(meta.get("disabled"), list):
        device.diagnostics = _diagnostics(meta)
    device.meta_at = now
    device.last_seen = max(device.last_seen or 0.0, now)


def _diagnostics(meta: dict[str, Any]) -> dict[str, Any]:
    """The numbers of meta's ``diagnostics`` (anything else dropped), its Wi-Fi interface, and the
    sensors the config turned off."""
    given = meta.get("diagnostics")
    given = given if isinstance(given, dict) else {}
    kept: dict[str, Any] = {}
    for key in _DIAGNOSTICS:
        value = safe_float(given.get(key))
        if value is not None:
            kept[key] = value
    if given.get("writes_source") in ("sd_card", "agent"):
        kept["writes_source"] = given["writes_source"]
    if isinstance(given.get("wifi_interface"), str):
        kept["wifi_interface"] = safe_text(given["wifi_interface"], 16)
    disabled = meta.get("disabled")
    if isinstance(disabled, list):
        kept["disabled"] = [safe_text(d, 64) for d in disabled[:64] if isinstance(d, str)]
    return kept


class StatusListener:
    """Subscribes to every device's status and meta and keeps the registry's device rows current."""

    def __init__(self, settings: ServerSettings, engine: Engine, clock: Clock) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.applied = 0
        self.failures = 0  # messages whose applying raised (bad messages are refused, not raised)
        self.refused = 0  # status/meta that changed nothing: malformed, unknown device, wrong org
        self._refused_by: Counter[str] = Counter()  # per reason, for the log's bound
        self.subscribed = threading.Event()  # set once the broker has granted the subscriptions
        # This replica's name on the leases of the commands it dispatches (server.device_commands).
        self.owner = f"server-{secrets.token_hex(6)}"
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        # When a lease another replica holds on a due command ends (it may have died holding it):
        # the sweeper sweeps then, not a whole command_sweep_s later.
        self._sweep_at: float | None = None
        self._sweep_lock = threading.Lock()
        self._sweep_wake = threading.Event()
        self._changed = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"suitcase-server-{secrets.token_hex(4)}"
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            self._client.username_pw_set(settings.mqtt_username, password)
        tls = settings.mqtt_tls_context()
        if tls is not None:
            self._client.tls_set_context(tls)
        self._held: dict[str, tuple[str, bytes]] = {}  # key -> (topic, payload), oldest first
        self.held_dropped = 0
        self._apply_lock = threading.Lock()
        # Messages from paho's thread, applied by the applier thread in batches: one transaction
        # per batch instead of one per message (a storm of 10,000 devices is 20,000 messages).
        self._inbox: deque[tuple[str, bytes]] = deque()
        self._inbox_ready = threading.Event()
        self._applier: threading.Thread | None = None
        self._retry_wake = threading.Event()
        self._stopping = threading.Event()
        self._retrier: threading.Thread | None = None
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._connect_failures = 0
        self._client.on_subscribe = lambda *_args: self.subscribed.set()
        self._client.on_message = self._on_message

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.error("the status listener could not log in to the broker: %s", reason)
            return
        self._connect_failures = 0
        from server.device_commands import REPLY_SUBSCRIPTION

        self.subscribed.clear()
        client.subscribe([(subscription("status"), 1), (subscription("meta"), 1), (REPLY_SUBSCRIPTION, 1)])

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self._connect_failures += 1
        if self._connect_failures in (1, 10) or self._connect_failures % 100 == 0:  # never a log flood
            log.warning(
                "the status listener cannot connect to the broker %s:%s (%d tries): it is down or "
                "unreachable%s; retrying",
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                self._connect_failures,
                ", or its certificate is not accepted (check SUITCASE_SERVER_MQTT_CA_FILE and MQTT_HOST)"
                if self.settings.mqtt_tls
                else "",
            )

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1 (a command to a device); False when not connected to the broker."""
        if not self._client.is_connected():
            return False
        return bool(self._client.publish(topic, payload, qos=1).rc == 0)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        topic, payload = str(message.topic), bytes(message.payload)
        if topic.endswith("/reply"):
            # A reply is an event: applied before paho acknowledges it, as before. Status and meta
            # are retained states: the broker sends them again after a restart, so they may wait.
            with self._apply_lock:
                self._held.pop(_held_key(topic, payload), None)
                self._try(topic, payload)
            return
        self._inbox.append((topic, payload))
        self._inbox_ready.set()

    def _apply_loop(self) -> None:
        """Apply what paho received, up to :data:`APPLY_BATCH` messages per transaction."""
        while True:
            self._inbox_ready.wait(0.5)
            self._inbox_ready.clear()
            while self._inbox:
                batch: list[tuple[str, bytes]] = []
                while self._inbox and len(batch) < APPLY_BATCH:
                    batch.append(self._inbox.popleft())
                with self._apply_lock:
                    for topic, payload in batch:
                        self._held.pop(_held_key(topic, payload), None)  # these are newer
                    self._try_batch(batch)
            if self._stopping.is_set():
                return

    def _try_batch(self, batch: list[tuple[str, bytes]]) -> None:
        """Apply a batch (holding the apply lock): status and meta in one transaction, replies one
        by one. A batch whose commit the registry refuses is held; one with a message that raises
        is applied again message by message, so one bad message costs the others nothing."""
        states = [(t, p) for t, p in batch if not t.endswith("/reply")]
        replies = [(t, p) for t, p in batch if t.endswith("/reply")]
        if len(states) == 1:
            self._try(*states[0])
        elif states:
            try:
                changed, online = self._apply_states(states)
            except (OperationalError, InterfaceError) as exc:  # the registry is down: hold them
                for topic, payload in states:
                    self._hold(topic, payload)
                self._failed("held until the registry answers", states[0][0], exc)
            except Exception:  # one message broke the batch: apply them one by one
                for topic, payload in states:
                    self._try(topic, payload)
            else:
                if changed:
                    with self._changed:
                        self.applied += changed
                        self._changed.notify_all()
                self._dispatch(online)
        for topic, payload in replies:
            self._try(topic, payload)

    def _apply_states(self, states: list[tuple[str, bytes]]) -> tuple[int, list[str]]:
        """Apply status and meta in one transaction; return how many changed a device, and the
        devices that came online with commands waiting for them.

        The batch's devices and organisations are read in one query each, not one per message,
        and written in one flush at the commit (autoflush off: a flush before each message's
        lookup would write the rows one by one).
        """
        changed, online, refused = 0, [], []
        with Session(self.engine, autoflush=False) as session:
            loaded = self._load(session, states)  # noqa: F841  (kept: the session holds rows weakly)
            for topic, payload in states:
                reason = refusal(session, topic, payload, self.clock(), commit=False)
                if reason is not None:
                    refused.append((topic, reason))
                    continue
                changed += 1
                if topic.endswith("/status"):
                    device = session.get(DeviceRow, topic.split("/")[3])
                    if device is not None and device.online:
                        online.append(device.id)
            session.commit()
            for topic, reason in refused:  # once committed: a batch applied again one by one logs once
                self._refused(topic, reason)
            waiting = _with_waiting_commands(session, online, self.clock()) if online else set()
        return changed, [device for device in online if device in waiting]

    @staticmethod
    def _load(session: Session, states: list[tuple[str, bytes]]) -> list[Any]:
        """Read the devices the batch names, and their organisations, into the session."""
        ids = {parts[3] for parts in (topic.split("/") for topic, _ in states) if len(parts) > 4}
        if not ids:
            return []
        devices = list(session.exec(select(DeviceRow).where(col(DeviceRow.id).in_(ids))).all())
        orgs = {device.org_id for device in devices}
        return [
            *devices,
            *session.exec(select(OrganisationRow).where(col(OrganisationRow.id).in_(orgs))).all(),
        ]

    def _refused(self, topic: str, reason: str) -> None:
        """Count and log (never a flood) a status or meta that changed nothing, with the reason.

        The bound is per reason (the first few, then every 1,000th): a flood of one kind (a broker's
        retained statuses of devices never enrolled here) does not hide another (malformed ones).
        """
        refused = self.refused + 1
        kind = reason.split(" (", 1)[0]  # the reason without its detail: a bounded set
        self._refused_by[kind] += 1
        seen = self._refused_by[kind]
        if seen <= _LOGGED_FAILURES or seen % 1000 == 0:
            log.warning(
                "status/meta refused (%d so far, %d for this reason): %s",
                refused,
                seen,
                reason,
                extra={"topic": topic[:200]},
            )
        # Counted once logged: whoever waits on the count (a test, a metric) then finds the line.
        self.refused = refused

    def _dispatch(self, devices: list[str]) -> None:
        """Send what waited for devices that came back online (each on its own)."""
        from server.device_commands import dispatch

        for device in dict.fromkeys(devices):
            try:
                self._sweep_after(dispatch(self.engine, self, self.clock(), self.owner, device))
            except Exception as exc:  # one device's commands must not stop the others'
                self._failed("commands not dispatched", device, exc)

    def _sweep_after(self, done: Dispatched) -> None:
        """Sweep when the earliest lease another replica holds on a due command ends."""
        if done.held_until is None:
            return
        with self._sweep_lock:
            if self._sweep_at is None or done.held_until < self._sweep_at:
                self._sweep_at = done.held_until
                self._sweep_wake.set()

    def _try(self, topic: str, payload: bytes) -> bool:
        """Apply one message (holding the apply lock); False when the registry did not answer."""
        try:
            changed = self._apply(topic, payload)
        except (OperationalError, InterfaceError) as exc:  # the registry is down: hold it
            self._hold(topic, payload)
            self._failed("held until the registry answers", topic, exc)
            return False
        except Exception as exc:  # a bug must not kill the listener thread; never retried
            self._failed("not applied", topic, exc)
            return True
        if changed:
            with self._changed:
                self.applied += 1
                self._changed.notify_all()
        return True

    def _failed(self, what: str, topic: str, exc: Exception) -> None:
        failures = self.failures + 1
        if failures <= _LOGGED_FAILURES or failures % 1000 == 0:  # never a log flood
            log.warning(
                "status/meta/reply %s (%d failures so far): %s",
                what,
                failures,
                str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                extra={"topic": topic[:200]},
                exc_info=not isinstance(exc, OperationalError | InterfaceError),
            )
        self.failures = failures  # counted once logged, as in _refused

    def _hold(self, topic: str, payload: bytes) -> None:
        key = _held_key(topic, payload)
        self._held.pop(key, None)
        self._held[key] = (topic, payload)
        while len(self._held) > HELD_MAX:
            del self._held[next(iter(self._held))]
            self.held_dropped += 1
        self._retry_wake.set()

    @property
    def held(self) -> int:
        """Messages waiting for the registry to answer again."""
        return len(self._held)

    def _retry_loop(self) -> None:
        delay = _RETRY_FIRST_S
        while not self._stopping.is_set():
            if not self._held:  # nothing to retry: sleep until something is held (or stop)
                self._retry_wake.wait()
                self._retry_wake.clear()
                continue
            if self._stopping.wait(delay):
                return
            applied_all = True
            while self._held and not self._stopping.is_set():
                with self._apply_lock:
                    if not self._held:
                        break
                    topic, payload = self._held.pop(next(iter(self._held)))
                    if not self._try(topic, payload):
                        applied_all = False
                        break
            if applied_all:
                if delay > _RETRY_FIRST_S:
                    log.info("registry answers again: held status/meta/replies applied")
                delay = _RETRY_FIRST_S
            else:
                delay = min(delay * 2, _RETRY_MAX_S)

    def _apply(self, topic: str, payload: bytes) -> bool:
        from server.device_commands import apply_reply, dispatch

        with Session(self.engine) as session:
            if topic.endswith("/reply"):
                answered = apply_reply(session, topic, payload, self.clock())
                if answered is not None and answered.name == "update":  # a rollout may offer its next ring
                    self._sweep_after(dispatch(self.engine, self, self.clock(), self.owner))
                return answered is not None
            reason = refusal(session, topic, payload, self.clock())
            if reason is not None:
                self._refused(topic, reason)
                return False
            if topic.endswith("/status"):
                device = session.get(DeviceRow, topic.split("/")[3])
                if device is not None and device.online:  # back online: send what waited
                    self._sweep_after(dispatch(self.engine, self, self.clock(), self.owner, device.id))
            return True

    def wait_applied(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages have changed devices (for tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.applied >= count, timeout)

    def start(self) -> None:
        """Connect (in the background when the broker is down; reconnects by itself).

        Raises:
            BrokerAdminError: the broker's certificate is not accepted (wrong CA or host name):
                retrying would never help, so the server does not start.
        """
        from server.broker_admin import BrokerAdminError, tls_refusal

        host, port = self.settings.mqtt_host or "127.0.0.1", self.settings.mqtt_port
        try:
            self._client.connect(host, port, keepalive=30)
        except ssl.SSLError as exc:
            raise BrokerAdminError(tls_refusal(host, port, exc)) from exc
        except OSError as exc:
            log.warning("broker %s:%s not reachable (%s): the status listener keeps trying", host, port, exc)
            self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        self._stopping.clear()
        self._retrier = threading.Thread(target=self._retry_loop, name="listener-retry", daemon=True)
        self._retrier.start()
        self._applier = threading.Thread(target=self._apply_loop, name="listener-apply", daemon=True)
        self._applier.start()
        if self.settings.command_sweep_s > 0:
            self._stop.clear()
            self._sweeper = threading.Thread(target=self._sweep_loop, name="command-sweep", daemon=True)
            self._sweeper.start()

    def sweep_once(self) -> None:
        """Expire overdue commands and send what waits for online devices (every ``command_sweep_s``,
        and when a lease another replica held on a due command ends)."""
        from server.device_commands import sweep
        from server.rollouts import advance_running

        with Session(self.engine) as session:  # an expired update stops its rollout
            advance_running(session, self.clock())
            session.commit()
        expired, done = sweep(self.engine, self, self.clock(), self.owner)
        self._sweep_after(done)
        with Session(self.engine) as session:
            advance_running(session, self.clock())
            session.commit()
        if expired or done.sent:
            log.info("command sweep: %d expired, %d sent", expired, len(done.sent))

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            wait = self.settings.command_sweep_s
            with self._sweep_lock:
                if self._sweep_at is not None:
                    wait = min(wait, max(0.0, self._sweep_at - self.clock()) + _LEASE_SLACK_S)
                self._sweep_wake.clear()
            if self._stop.is_set():
                return
            if self._sweep_wake.wait(wait):
                continue  # an earlier lease end (or the stop): wait again for that
            with self._sweep_lock:
                self._sweep_at = None  # this sweep notes again any lease still held
            try:
                self.sweep_once()
            except Exception:  # a busy registry must not end the sweeps
                log.exception("command sweep failed; trying again next round")

    def stop(self) -> None:
        self._stop.set()
        self._sweep_wake.set()
        if self._sweeper is not None:
            self._sweeper.join(5)
            self._sweeper = None
        self._client.disconnect()
        self._client.loop_stop()
        self._stopping.set()
        self._retry_wake.set()
        if self._retrier is not None:
            self._retrier.join(10)
            self._retrier = None
        self._inbox_ready.set()
        if self._applier is not None:
            self._applier.join(10)
            self._applier = None


def _with_waiting_commands(session: Session, devices: list[str], now: float) -> set[str]:
    """Those of ``devices`` with queued, unexpired commands: one query for a batch, so a storm of
    devices coming online costs no dispatch (a session and a query) per device."""
    query = (
        select(DeviceCommandRow.device_id)
        .where(
            col(DeviceCommandRow.state) == "queued",
            col(DeviceCommandRow.expires_at) > now,
            col(DeviceCommandRow.device_id).in_(set(devices)),
        )
        .distinct()
    )
    return set(session.exec(query).all())


def _held_key(topic: str, payload: bytes) -> str:
    """Status and meta are states (the latest wins); replies are events (each is kept)."""
    if topic.endswith("/reply"):
        return f"{topic}#{zlib.crc32(payload)}"
    return topic
