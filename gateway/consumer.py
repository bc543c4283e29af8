"""The MQTT consumer: every telemetry message into the store, acknowledged only once written.

The gateway holds a persistent session (fixed client id, clean session off) with a QoS 1
subscription and acknowledges by hand (ARCHITECTURE.md, "Delivery guarantees" 2 and 3):

- paho's network thread only queues each message (so it keeps pinging the broker whatever the
  store does);
- a worker thread decodes messages with ``kits.wire``, batches them (``batch_messages`` messages
  or ``batch_age_s`` seconds, whichever comes first), writes the readings and the dead letters
  and only then PUBACKs every message of the batch;
- if the store fails, the batch is kept and retried with bounded exponential backoff, nothing is
  acked, and no further message is taken from the queue, so the broker's inflight window bounds
  what is held; when the store returns, everything lands;
- a message acked on an older connection than the one it arrived on is not acked: the broker
  redelivers it on the new connection and the idempotent store absorbs the duplicate.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.store import DeadLetter, SqliteStore
from kits.errors import BadTopic, SuitcaseError, WireError
from kits.wire import Record, decode_pack, parse_topic, subscription

__all__ = ["Gateway", "GatewayError", "GatewayStats"]

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_KEEPALIVE_S = 30


class GatewayError(SuitcaseError):
    """The gateway cannot reach its broker or was used in the wrong order."""


@dataclass(slots=True)
class GatewayStats:
    """Counters of a gateway since it started.

    Attributes:
        received: messages received from the broker (redeliveries included).
        written: readings written to the store (a rewritten reading counts again).
        dead_lettered: messages written to the dead-letter table.
        batches: batches written.
        acked: messages acknowledged to the broker.
        store_failures: failed store writes (each retry that fails counts).
        connects: successful connections to the broker.
    """

    received: int = 0
    written: int = 0
    dead_lettered: int = 0
    batches: int = 0
    acked: int = 0
    store_failures: int = 0
    connects: int = 0


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float


@dataclass(slots=True)
class _Batch:
    records: list[Record] = dataclasses.field(default_factory=list)
    letters: list[DeadLetter] = dataclasses.field(default_factory=list)
    messages: list[_Message] = dataclasses.field(default_factory=list)
    opened: float = 0.0


class Gateway:
    """Consumes telemetry from an MQTT broker into a store, acking each message after its write.

    Args:
        store: where readings and dead letters go.
        host: the broker's host.
        port: the broker's port.
        client_id: the fixed client id of the persistent session; one per gateway instance.
        group: with a name, subscribe through the shared subscription ``$share/{group}/...``.
        batch_messages: flush a batch once it holds this many messages; keep it within the
            broker's inflight window (deploy/mosquitto/suitcase.conf).
        batch_age_s: flush a batch at the latest this long after its first message.
        clock: UTC epoch seconds now, to stamp dead letters and reject readings from the future.
        username: the broker user, if the broker requires one.
        password: its password.
    """

    def __init__(
        self,
        store: SqliteStore,
        *,
        host: str,
        port: int,
        client_id: str = "suitcase-gateway",
        group: str | None = None,
        batch_messages: int = 1000,
        batch_age_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if batch_messages < 1:
            raise GatewayError(f"batch_messages is {batch_messages}: use 1 or more")
        if batch_age_s <= 0:
            raise GatewayError(f"batch_age_s is {batch_age_s}: use a positive number of seconds")
        self.store = store
        self.host = host
        self.port = port
        self.client_id = client_id
        self.topic_filter = subscription("telemetry", group=group)
        self.batch_messages = batch_messages
        self.batch_age_s = batch_age_s
        self._clock = clock
        self._stats = GatewayStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[_Message] = queue.Queue()
        self._generation = 0  # bumped on each connection: acks of older connections are void
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # ------------------------------------------------------------------ life cycle

    @property
    def stats(self) -> GatewayStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    @property
    def subscribed(self) -> bool:
        """Whether the current connection's subscription is in place."""
        return self._subscribed.is_set()

    def start(self) -> None:
        """Connect, subscribe and start consuming in background threads.

        Raises:
            GatewayError: already started, or the broker cannot be reached.
        """
        if self._worker is not None:
            raise GatewayError(f"gateway {self.client_id} is already running: stop() it first")
        self._stopping.clear()
        try:
            self._client.connect(self.host, self.port, keepalive=_KEEPALIVE_S)
        except OSError as exc:
            raise GatewayError(
                f"cannot reach the MQTT broker at {self.host}:{self.port} ({exc}): "
                "check that it runs and the host and port are right"
            ) from exc
        self._worker = threading.Thread(target=self._work, name=f"gateway-{self.client_id}", daemon=True)
        self._worker.start()
        self._client.loop_start()
        log.info(
            "gateway %s consuming %s from %s:%s", self.client_id, self.topic_filter, self.host, self.port
        )

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Block until the subscription is acknowledged by the broker.

        Raises:
            GatewayError: not subscribed within ``timeout`` seconds.
        """
        if not self._subscribed.wait(timeout):
            raise GatewayError(
                f"gateway {self.client_id} is not subscribed to {self.topic_filter} after {timeout:.0f} s: "
                f"check the broker at {self.host}:{self.port} and its ACL"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Write and ack what is queued if the store takes it, then disconnect.

        Messages not written by then stay unacknowledged: the broker redelivers them to the
        next session with this client id.
        """
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._stopping.set()
        worker.join(timeout)
        if worker.is_alive():
            log.warning(
                "gateway %s: worker still writing after %.0f s; disconnecting", self.client_id, timeout
            )
        self._client.disconnect()
        self._client.loop_stop()
        self._subscribed.clear()
        # What is still queued was never acked; drop our copy, the broker holds the original.
        while not self._queue.empty():
            self._queue.get_nowait()
        log.info("gateway %s stopped: %s", self.client_id, self.stats)

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error(
                "broker %s:%s refused gateway %s: %s", self.host, self.port, self.client_id, reason_code
            )
            return
        self._generation += 1
        with self._stats_lock:
            self._stats.connects += 1
        log.info("gateway %s connected (session present: %s)", self.client_id, flags.session_present)
        result, _ = client.subscribe(self.topic_filter, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("gateway %s could not subscribe to %s: %s", self.client_id, self.topic_filter, result)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused the subscription to %s: %s", self.topic_filter, reason_codes)
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("gateway %s lost the broker (%s); reconnecting", self.client_id, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._stats_lock:
            self._stats.received += 1
        self._queue.put(
            _Message(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                self._generation,
                self._clock(),
            )
        )

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        batch = _Batch()
        while not self._stopping.is_set():
            wait = batch.opened + self.batch_age_s - time.monotonic() if batch.messages else 0.2
            try:
                message: _Message | None = self._queue.get(timeout=max(wait, 0.001))
            except queue.Empty:
                message = None
            if message is not None:
                if not batch.messages:
                    batch.opened = time.monotonic()
                self._add(batch, message)
            if batch.messages and (
                len(batch.messages) >= self.batch_messages
                or time.monotonic() - batch.opened >= self.batch_age_s
            ):
                if not self._flush(batch):
                    return
                batch = _Batch()
        # Stopping: one attempt at what is batched; what is still queued is left to redelivery.
        if batch.messages:
            self._flush(batch)

    def _add(self, batch: _Batch, message: _Message) -> None:
        batch.messages.append(message)
        try:
            topic = parse_topic(message.topic)
            if topic.kind != "telemetry":
                raise BadTopic(f"topic {message.topic!r} is not a telemetry topic")
            batch.records.extend(
                decode_pack(message.payload, org=topic.org, device=topic.device, now=self._clock())
            )
        except WireError as exc:
            log.warning(
                "dead letter on %s: %s: %s",
                message.topic,
                exc.code,
                exc,
                extra={"topic": message.topic, "code": exc.code},
            )
            batch.letters.append(
                DeadLetter(message.received_at, message.topic, message.payload, exc.code, str(exc))
            )

    def _flush(self, batch: _Batch) -> bool:
        """Write ``batch`` then ack it, retrying the write; False if stopped before it was written."""
        delay = _RETRY_FIRST_S
        while True:
            try:
                self.store.write(batch.records)
                self.store.write_dead_letters(batch.letters)
                break
            except Exception as exc:  # any failure of the store: keep the batch, retry
                with self._stats_lock:
                    self._stats.store_failures += 1
                if self._stopping.is_set():
                    log.warning(
                        "gateway %s stopping with %d messages unwritten (%s): the broker redelivers them",
                        self.client_id,
                        len(batch.messages),
                        exc,
                    )
                    return False
                log.error(
                    "store write of %d readings failed (%s); retrying in %.2f s, nothing acked",
                    len(batch.records),
                    exc,
                    delay,
                )
                if self._stopping.wait(delay):
                    continue  # one last attempt before giving up
                delay = min(delay * 2, _RETRY_MAX_S)
        generation = self._generation
        acked = 0
        for message in batch.messages:
            if message.generation != generation:
                continue  # arrived on an older connection: the broker redelivers it
            result = self._client.ack(message.mid, message.qos)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
                acked += 1
        with self._stats_lock:
            self._stats.written += len(batch.records)
            self._stats.dead_lettered += len(batch.letters)
            self._stats.batches += 1
            self._stats.acked += acked
        log.debug(
            "batch of %d messages written (%d readings, %d dead letters), %d acked",
            len(batch.messages),
            len(batch.records),
            len(batch.letters),
            acked,
        )
        return True
