"""The agent's MQTT session: one paho client, its callbacks, and the window of unacknowledged messages.

Every message goes out with QoS 1; the session registers each message id with the outbox rows
it carries, so that the broker's PUBACK (paho's network thread) marks those rows acknowledged
(:class:`AckWindow`). The retained ``status`` is ``online`` while connected, and ``offline``
after a clean stop or as the broker's last will. Commands arriving on ``cmd/+`` are handed to
the publisher's thread; whatever a message holds, it never ends the session.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.counters import AgentCounters
from edge.logs import AgentLog, RateLimit
from kits.errors import ConfigError, WireError
from kits.models import DeviceConfig
from kits.tls import client_context
from kits.wire import build_topic, parse_topic

__all__ = ["WINDOW", "AckWindow", "Session"]

# Packs in flight (published, PUBACK not yet received) at most; more waits.
WINDOW = 32


class AckWindow:
    """Messages published and not yet acknowledged (by MQTT message id), and the acknowledged rows.

    paho calls :meth:`acknowledge` holding its own lock, so the caller of ``publish()`` registers
    the message id only after ``publish()`` returned; an acknowledgement that beats the
    registration is kept until it arrives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, list[int]] = {}
        self._early: set[int] = set()
        self._acked: deque[list[int]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def register(self, mid: int, ids: list[int]) -> None:
        """Note that message ``mid`` carries outbox rows ``ids`` (empty for other messages)."""
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
                if ids:
                    self._acked.append(ids)
            else:
                self._pending[mid] = ids

    def acknowledge(self, mid: int) -> None:
        """The broker acknowledged message ``mid`` (paho's network thread)."""
        with self._lock:
            ids = self._pending.pop(mid, None)
            if ids is None:  # acknowledged before publish() returned and registered it
                self._early.add(mid)
        if ids:
            self._acked.append(ids)

    def done(self, ids: list[int]) -> None:
        """Treat rows ``ids`` as acknowledged without publishing them (a pack that cannot be sent)."""
        self._acked.append(ids)

    def take(self) -> list[int]:
        """The outbox row ids acknowledged since the last call."""
        ids: list[int] = []
        while self._acked:
            ids += self._acked.popleft()
        return [i for i in ids if i]


class Session:
    """The MQTT session of one device.

    Args:
        config: the device config (identity and broker).
        counters: the agent's counters (``connection_refused``).
        log: the agent's logger.
        status: the ``status`` message for a state.
        on_connected: called (paho's thread) each time the broker accepts the session.
        on_command: called (paho's thread) with each command's name and payload.
        on_acknowledged: called (paho's thread) after each PUBACK.
    """

    def __init__(
        self,
        config: DeviceConfig,
        counters: AgentCounters,
        *,
        log: AgentLog,
        status: Callable[[Literal["online", "offline"]], bytes],
        on_connected: Callable[[], None],
        on_command: Callable[[str, bytes], None],
        on_acknowledged: Callable[[], None],
    ) -> None:
        self.config = config
        self.counters = counters
        self.log = log
        self._status = status
        self._on_connected = on_connected
        self._on_command = on_command
        self._on_acknowledged = on_acknowledged
        self.window = AckWindow()
        self.connection_error: str | None = None
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._closing = False
        self._bad_messages = RateLimit()
        self._connect_failures = RateLimit()
        self.topics = {
            kind: build_topic(config.org, config.device, kind) for kind in ("telemetry", "status", "meta")
        }
        self._cmd_filter = build_topic(config.org, config.device, "cmd", "x").rsplit("/", 1)[0] + "/+"

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called and :meth:`close` not yet."""
        return self._client is not None

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the session (and it has not dropped since)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def open(self) -> None:
        """Connect to the broker in the background; paho retries with backoff until it answers.

        Raises:
            ConfigError: the broker's address cannot be used.
        """
        settings = self.config.mqtt
        self._closing = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.device,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.enable_logger(logging.getLogger("edge.agent.mqtt"))
        client.will_set(self.topics["status"], self._status("offline"), qos=1, retain=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            # The broker's certificate and host name are checked against the CA (ca_file on the Pi,
            # else the one the server sent, else the system's CAs).
            client.tls_set_context(
                client_context(
                    ca_file=settings.ca_file,
                    ca_pem=None if settings.ca_file else settings.ca_pem,
                    setting="mqtt",
                )
            )
        client.max_inflight_messages_set(WINDOW + 16)
        # paho retries with backoff doubling from 1 s to 60 s; the broker sees no thundering herd
        # after an outage because every Pi's outage started at a different moment.
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_connect_fail = self._connect_failed_cb
        client.on_publish = self._published_cb
        client.on_message = self._message_cb
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

    def close(self, timeout: float) -> None:
        """Publish the retained ``offline`` status (when connected) and disconnect."""
        self._closing = True
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

    def publish(
        self, topic: str, payload: bytes, *, ids: list[int] | None = None, retain: bool = False
    ) -> str | None:
        """Publish with QoS 1 and register the message, so its PUBACK marks rows ``ids`` acknowledged.

        Returns None once paho has the message, else why not (it is not sent).
        paho calls on_publish holding its own lock, so no lock of ours is held across publish().
        """
        client = self._client
        if client is None:
            return "the session is closed"
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return mqtt.error_string(info.rc)
        self.window.register(info.mid, ids or [])
        return None

    # ------------------------------------------------------------------ paho's callbacks

    def _connected_cb(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.log.error(
                "broker refused the connection (%s): check mqtt.username/password in the device config, "
                "or re-enroll the device (`suitcase edge enroll`); retrying",
                reason_code,
            )
            # Noted and counted last: whoever sees either finds the log line (and the error) in place.
            self.connection_error = f"broker refused the connection: {reason_code}"
            self.counters.connection_refused += 1
            return
        self.connection_error = None
        self.log.info("connected")
        self.publish(self.topics["status"], self._status("online"), retain=True)
        client.subscribe(self._cmd_filter, qos=1)
        self._on_connected()
        self._connected.set()
        self._on_acknowledged()

    def _connect_failed_cb(self, client: mqtt.Client, userdata: Any) -> None:
        settings = self.config.mqtt
        error = f"cannot connect to the MQTT broker {settings.host}:{settings.port}"
        hint = (
            ": it is down or unreachable, or (TLS) its certificate was not accepted: check mqtt.ca_file "
            "(or the CA the server sent) and that mqtt.host is a name the certificate gives"
            if settings.tls
            else ": it is down or unreachable"
        )
        self._connect_failures.log(self.log, logging.WARNING, "%s%s; retrying", error, hint)
        self.connection_error = error  # once logged: whoever sees it finds the line too

    def _disconnected_cb(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()
        if not self._closing:
            self.log.warning("disconnected (%s); reconnecting, readings wait in the outbox", reason_code)

    def _published_cb(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self.window.acknowledge(mid)
        self._on_acknowledged()

    def _message_cb(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho's network thread: an exception here would end the session, so none leaves.
        try:
            topic = parse_topic(message.topic)
            if topic.kind == "cmd" and topic.command and not topic.reply:
                self._on_command(topic.command, bytes(message.payload))
        except WireError:
            return
        except Exception as exc:
            self._bad_messages.log(
                self.log,
                logging.ERROR,
                "message on %r not handled (%s: %s)",
                message.topic,
                type(exc).__name__,
                exc,
            )
            self.counters.bad_commands += 1  # counted once logged
