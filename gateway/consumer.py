"""The MQTT consumer: every telemetry message into the sinks, acknowledged only once written.

The gateway holds a persistent session (fixed client id, clean session off, or with MQTT 5 clean
start off and a session that never expires) with a QoS 1 subscription and acknowledges by hand
(docs/architecture.md, "Delivery guarantees" 2 and 3):

- the network thread (``gateway/_mqtt.py``: reads the socket in large chunks) only queues each
  chunk of messages (so it keeps pinging the broker whatever the sinks do);
- a decoder thread decodes messages with ``kits.wire`` and batches them (``batch_messages``
  messages or ``batch_age_s`` seconds, whichever comes first); a flusher thread writes each batch's
  readings to every sink and its dead letters to the store, and only then PUBACKs every message
  of the batch, in one write. The decoder fills the next batch while the flusher writes one (the
  sqlite sink writes from a child process, an HTTP sink waits on the network), so the default
  Receive Maximum is two batches;
- each sink has its own retry state: a sink that failed is retried with bounded exponential
  backoff without rewriting the sinks that already have the batch; a message is acked once every
  *required* sink has it; an optional sink (``required=False``) never holds the ack, keeps a
  bounded backlog of what it missed and counts what it drops;
- while a required sink fails nothing is acked and no further message is taken from the queue,
  so the broker's inflight window (MQTT 5: the Receive Maximum the gateway declares) bounds what
  is held in memory; when the sink returns, everything lands;
- a message acked on an older connection than the one it arrived on is not acked: the broker
  redelivers it on the new connection and the idempotent sinks absorb the duplicate;
- one message's failure, of any kind (a ``WireError`` or any other exception its decoding
  raises), is that message's: it is dead-lettered with its reason and the gateway goes on;
- in a group (``$share/{group}/...``), a member whose Last Will says it is down (or whose record's
  lease ran out) has its session
  adopted by the live member with the lowest client id: what the broker queued or had in flight
  for it comes through the adopter's pipeline, acked after the write (``gateway/group.py``);
- a worker thread (decoder, flusher, network) that dies anyway calls the gateway's fatal
  handler: the gateway stops consuming, ``on_fatal`` is called with a :class:`GatewayFatal`
  naming the thread and the cause, and :meth:`Gateway.stop` / :meth:`Gateway.wait` raise it
  (``suitcase gateway run`` exits non-zero with the reason, so its supervisor restarts it).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from gateway._adopt import AdoptedSession
from gateway._mqtt import Delivery, MqttError, MqttSession, MqttTlsError, MqttVersion
from gateway.dead_letters import DeadLetterPolicy, DeadLetters
from gateway.group import GroupMembership
from gateway.metrics import Metrics
from gateway.series_cap import DEFAULT_MAX_SERIES_PER_DEVICE, SeriesCap
from gateway.sinks import DeadLetterSink, NamedWriterSink, Sink, SinkRefused
from gateway.sinks.sqlite import SqliteSink
from gateway.store import DeadLetter, SqliteStore
from kits.errors import BadTopic, SuitcaseError, WireError
from kits.wire import Record, decode_pack, parse_topic, subscription

__all__ = ["Gateway", "GatewayError", "GatewayFatal", "GatewayStats"]

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_KEEPALIVE_S = 30
_TOPIC_CACHE = 100_000
_OPTIONAL_BACKLOG_POINTS = 1_000_000
_TRACEBACKS = 10
# How long the broker waits (MQTT 5) before saying a member that vanished is down, so that a
# supervisor's restart resumes its own session before anyone adopts it.
_WILL_DELAY_S = 5
# The network thread's wait after a small read (gateway/_mqtt.py): a wake-up per chunk, not per
# message; times the live members of a group (each gets 1/n of the stream), at most _LINGER_MAX_S.
_LINGER_S = 0.01
_LINGER_MAX_S = 0.05
# A member of a group of n waits up to n x batch_age_s for a batch (at most this long), so that its
# batches hold as many messages as one gateway's would at the same total rate: a batch's fixed
# cost (a transaction, a row per series touched, the acks' write) is spread as thinly.
_GROUP_BATCH_AGE_MAX_S = 1.0


class GatewayError(SuitcaseError):
    """The gateway cannot reach its broker or was used in the wrong order."""


class GatewayFatal(GatewayError):
    """A worker thread of the gateway died: it consumes nothing more until it is restarted."""


# The dead-letter code of a message whose decoding raised something other than a WireError.
UNEXPECTED_CODE = "unexpected"
# The dead-letter code of a message whose readings a required sink refused for their content.
SINK_REFUSED_CODE = "sink_refused"


@dataclass(slots=True)
class GatewayStats:
    """Counters of a gateway since it started.

    Attributes:
        received: messages received from the broker (redeliveries included).
        written: readings written to every required sink (a rewritten reading counts again).
        dead_lettered: messages written to the dead-letter table.
        unstored: dead messages counted and acked but not stored (over their device's rate limit).
        batches: batches written.
        acked: messages acknowledged to the broker.
        store_failures: failed writes to a required sink or the dead letters (each retry counts).
        connects: successful connections to the broker.
    """

    received: int = 0
    written: int = 0
    dead_lettered: int = 0
    unstored: int = 0
    batches: int = 0
    acked: int = 0
    store_failures: int = 0
    connects: int = 0


# What the network thread queues: (connection generation, received at, messages).
_Chunk = tuple[int, float, list[Delivery]]


# One message's readings in its batch: (start, end) in the records, then what its dead letter needs.
_Span = tuple[int, int, float, str, bytes]


@dataclass(slots=True)
class _Batch:
    records: list[Record] = dataclasses.field(default_factory=list)
    spans: list[_Span] = dataclasses.field(default_factory=list)
    letters: list[DeadLetter] = dataclasses.field(default_factory=list)
    # Per message: (connection generation, packet id, QoS), the order they arrived in.
    acks: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    opened: float = 0.0

    def __len__(self) -> int:
        return len(self.acks)


@dataclass(slots=True)
class _SinkState:
    """One sink's retry state, kept across batches."""

    sink: Sink
    delay: float = _RETRY_FIRST_S
    retry_at: float = 0.0
    up: bool = True
    backlog: collections.deque[list[Record]] = dataclasses.field(default_factory=collections.deque)
    backlog_points: int = 0

    def failed(self, now: float) -> None:
        self.up = False
        self.retry_at = now + self.delay
        self.delay = min(self.delay * 2, _RETRY_MAX_S)

    def succeeded(self) -> None:
        self.up = True
        self.delay = _RETRY_FIRST_S
        self.retry_at = 0.0


class Gateway:
    """Consumes telemetry from an MQTT broker into sinks, acking each message after its write.

    Args:
        store: where dead letters go, and readings too unless ``sinks`` is given.
        host: the broker's host.
        port: the broker's port.
        client_id: the fixed client id of the persistent session; one per gateway instance.
        group: with a name, subscribe through the shared subscription ``$share/{group}/...``, keep
            a record in the group and adopt the sessions of members that die (gateway/group.py).
        batch_messages: flush a batch once it holds this many messages; keep it within the
            broker's inflight window (deploy/mosquitto/suitcase.conf).
        batch_age_s: flush a batch at the latest this long after its first message.
        clock: UTC epoch seconds now, to stamp dead letters and reject readings from the future.
        username: the broker user, if the broker requires one.
        password: its password.
        sinks: where readings go (default: ``store`` itself); the gateway opens and closes them.
        metrics: the Prometheus metrics to update (default: a registry of its own).
        mqtt_version: ``"3.1.1"`` (any broker, the embedded one included) or ``"5"`` (Mosquitto),
            which declares ``receive_maximum`` to the broker.
        receive_maximum: the most unacknowledged messages the gateway holds: declared to the
            broker with MQTT 5, and enforced by reading no further either way; default twice
            ``batch_messages`` (so one batch is written while the next fills).
        on_fatal: called once, from the dying thread, with a :class:`GatewayFatal` when a
            worker thread dies; it must return quickly (set an event). Whether or not it is
            given, the gateway stops consuming and :meth:`stop` and :meth:`wait` raise the error.
        max_series_per_device: the most series (sensor, quantity) one device may create; a
            message past it is dead-lettered as ``series_limit`` (gateway/series_cap.py).
        dead_letters: the bounds of dead letters: payload kept, per-device rate, retention,
            log rate (gateway/dead_letters.py).
        tls: connect to the broker with TLS using this context (:func:`kits.tls.client_context`).
    """

    def __init__(
        self,
        store: SqliteStore,
        *,
        host: str,
        port: int,
        client_id: str = "suitcase-gateway",
        group: str | None = None,
        batch_messages: int = 4000,
        batch_age_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        username: str | None = None,
        password: str | None = None,
        sinks: Sequence[Sink] | None = None,
        metrics: Metrics | None = None,
        mqtt_version: MqttVersion = "3.1.1",
        receive_maximum: int | None = None,
        on_fatal: Callable[[GatewayFatal], None] | None = None,
        max_series_per_device: int = DEFAULT_MAX_SERIES_PER_DEVICE,
        dead_letters: DeadLetterPolicy | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if batch_messages < 1:
            raise GatewayError(f"batch_messages is {batch_messages}: use 1 or more")
        if batch_age_s <= 0:
            raise GatewayError(f"batch_age_s is {batch_age_s}: use a positive number of seconds")
        if mqtt_version not in ("3.1.1", "5"):
            raise GatewayError(f"mqtt_version {mqtt_version!r} is unknown: use '3.1.1' or '5'")
        self.receive_maximum = min(receive_maximum or 2 * batch_messages, 65_535)
        if self.receive_maximum < batch_messages:
            raise GatewayError(
                f"receive_maximum {self.receive_maximum} is below batch_messages {batch_messages}: "
                "the broker would stall before a batch fills; raise it or lower batch_messages"
            )
        self.store = store
        self.host = host
        self.port = port
        self.client_id = client_id
        self.topic_filter = subscription("telemetry", group=group)
        self.batch_messages = batch_messages
        self.batch_age_s = batch_age_s
        self.mqtt_version = mqtt_version
        self.metrics = metrics or Metrics()
        self.sinks: list[Sink] = list(sinks) if sinks is not None else [SqliteSink(store)]
        if not any(s.required for s in self.sinks):
            raise GatewayError("no sink is required: mark at least one sink required, or nothing is durable")
        self._states = [_SinkState(s) for s in self.sinks]
        self._letters_state = _SinkState(SqliteSink(store))  # retry state of the dead-letter writes
        self._clock = clock
        self._stats = GatewayStats()
        self._received = 0  # written by the network thread only
        self._stats_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
        self._taken = 0  # messages taken from the queue; written by the worker only
        self._topics: dict[str, tuple[str, str] | WireError] = {}
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None  # decodes messages into batches
        self._flusher: threading.Thread | None = None  # writes batches and acks them
        # Decoded batches on their way to the flusher: one is written while the next is decoded.
        self._ready: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._opened = False
        self._on_fatal = on_fatal
        if max_series_per_device < 1:
            raise GatewayError(f"max_series_per_device is {max_series_per_device}: use 1 or more")
        self._series_cap = SeriesCap(max_series_per_device)
        self._letters = DeadLetters(dead_letters, self.metrics)
        self._tracebacks = 0  # of unexpected decoding failures logged, at most _TRACEBACKS
        self._fatal: GatewayFatal | None = None
        self._dead = threading.Event()  # set once a worker thread has died
        self._username = username
        self._password = password
        self._tls = tls
        self._generations = itertools.count(1).__next__  # shared by every session of this gateway
        self._adoptions: dict[str, AdoptedSession] = {}
        self._adoptions_lock = threading.Lock()
        self._members: GroupMembership | None = None
        if group is not None:
            try:
                self._members = GroupMembership(
                    group,
                    client_id,
                    adopt=self._adopt,
                    publish=lambda topic, data, retain: self._session.publish(topic, data, retain=retain),
                    will_delay_s=_WILL_DELAY_S if mqtt_version == "5" else 0,
                )
            except SuitcaseError as exc:
                raise GatewayError(str(exc)) from exc
        self._session = self._new_session()
        for sink in self.sinks:
            self.metrics.sink_up.labels(sink.name).set(1)

    # ------------------------------------------------------------------ life cycle

    @property
    def stats(self) -> GatewayStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            snapshot = dataclasses.replace(self._stats)
        snapshot.received = self._received
        return snapshot

    @property
    def subscribed(self) -> bool:
        """Whether the current connection's subscription is in place."""
        return self._subscribed.is_set()

    @property
    def sinks_up(self) -> dict[str, bool]:
        """Each sink's name and whether its last write succeeded."""
        return {st.sink.name: st.up for st in self._states}

    @property
    def members(self) -> GroupMembership | None:
        """This gateway's view of its group (None without a group)."""
        return self._members

    def _new_session(self) -> MqttSession:
        members = self._members
        return MqttSession(
            self.host,
            self.port,
            self.client_id,
            self.topic_filter,
            self._on_messages,
            will=members.will if members is not None else None,
            also_subscribe=[(members.filter, 0)] if members is not None else (),
            on_connected=self._on_connected,
            on_subscribed=self._on_subscribed,
            on_lost=self._on_lost,
            on_fatal=lambda exc: self._die("network", exc),
            **self._session_options(),
        )

    def _session_options(self) -> dict[str, Any]:
        """What the gateway's own session and every adopted one share: account, TLS, protocol
        version, flow control, the connection generations and the clock."""
        return {
            "generations": self._generations,
            "linger_s": self._linger,
            "version": self.mqtt_version,
            "keepalive": _KEEPALIVE_S,
            "username": self._username,
            "password": self._password,
            "receive_maximum": self.receive_maximum,
            "clock": self._clock,
            "max_held": self.receive_maximum,
            "tls": self._tls,
        }

    def _adopt(self, member: str) -> bool:
        """Start draining the session of ``member``, a dead member of the group (gateway/_adopt.py)."""
        assert self._members is not None
        members = self._members
        if self._stopping.is_set() or self._worker is None:
            return False

        def deliver(generation: int, received_at: float, messages: list[Delivery]) -> None:
            self.metrics.adopted_messages.inc(len(messages))
            self._on_messages(generation, received_at, messages)

        session = AdoptedSession(
            self.host,
            self.port,
            member,
            self.topic_filter,
            deliver,
            on_done=lambda drained: self._adopted(member, session, drained),
            also_subscribe=[(members.filter, 0)],
            on_fatal=lambda exc: self._die(f"adoption of {member}", exc),
            **self._session_options(),
        )
        with self._adoptions_lock:
            self._adoptions[member] = session  # before any of its messages can be acked

        def connect() -> None:  # not in the network thread that saw the record: it reads on
            try:
                session.start()
            except (OSError, MqttError) as exc:
                log.warning("gateway %s cannot adopt %s yet: %s", self.client_id, member, exc)
                self._adopted(member, session, False)

        threading.Thread(target=connect, name=f"adopt-{member}", daemon=True).start()
        return True

    def _adopted(self, member: str, session: AdoptedSession, drained: bool) -> None:
        self.metrics.adoptions.labels("drained" if drained else "ended").inc()
        with self._adoptions_lock:
            if self._adoptions.get(member) is session:
                del self._adoptions[member]
        if self._members is not None:
            self._members.done(member, drained=drained)

    def start(self) -> None:
        """Open the sinks, connect, subscribe and start consuming in background threads.

        Raises:
            GatewayError: already started, or the broker cannot be reached.
            SinkError: a sink cannot be opened.
        """
        if self._worker is not None:
            raise GatewayError(f"gateway {self.client_id} is already running: stop() it first")
        if self._fatal is not None:
            raise GatewayError(
                f"gateway {self.client_id} died ({self._fatal}): create a new Gateway to start again"
            )
        self._stopping.clear()
        if not self._opened:
            for sink in self.sinks:
                if isinstance(sink, NamedWriterSink):
                    sink.name_writer(self.client_id)
                sink.open()
            self._opened = True
        try:
            self._session.start()
        except MqttTlsError as exc:
            self._close_sinks()
            raise GatewayError(str(exc)) from exc
        except OSError as exc:
            # A sink may write from a child process: left open, the command that gave up waited
            # for it at exit, forever, instead of exiting with the reason.
            self._close_sinks()
            raise GatewayError(
                f"cannot reach the MQTT broker at {self.host}:{self.port} ({exc}): "
                "check that it runs and the host and port are right"
            ) from exc
        self._ready = queue.Queue(maxsize=1)
        self._flusher = threading.Thread(
            target=self._guarded("flusher", self._flush_all),
            name=f"gateway-{self.client_id}-flush",
            daemon=True,
        )
        self._worker = threading.Thread(
            target=self._guarded("decoder", self._work), name=f"gateway-{self.client_id}", daemon=True
        )
        self._flusher.start()
        self._worker.start()
        log.info(
            "gateway %s consuming %s from %s:%s (MQTT %s) into %s",
            self.client_id,
            self.topic_filter,
            self.host,
            self.port,
            self.mqtt_version,
            ", ".join(s.name for s in self.sinks),
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

    @property
    def failure(self) -> GatewayFatal | None:
        """Why a worker thread died, or None while the gateway is healthy."""
        return self._fatal

    def wait(self, timeout: float | None = None) -> None:
        """Block until a worker thread dies (then raise) or ``timeout`` seconds pass (then return).

        Raises:
            GatewayFatal: a worker thread died; the gateway consumes nothing more.
        """
        if self._dead.wait(timeout) and self._fatal is not None:
            raise self._fatal

    def _guarded(self, thread: str, target: Callable[[], None]) -> Callable[[], None]:
        """Wrap a worker thread's ``target`` so that its death calls the fatal handler."""

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # whatever kills the thread must be said, never swallowed
                self._die(thread, exc)

        return run

    def _die(self, thread: str, exc: BaseException) -> None:
        """The fatal handler: record why ``thread`` died, stop consuming, tell ``on_fatal``."""
        fatal = GatewayFatal(
            f"gateway {self.client_id}: its {thread} thread died ({type(exc).__name__}: {exc}); "
            "it consumes nothing more: restart it (unacknowledged messages are redelivered) "
            "and report this traceback"
        )
        fatal.__cause__ = exc
        with self._stats_lock:
            if self._fatal is not None:
                return
            self._fatal = fatal
        log.critical("%s", fatal, exc_info=exc)
        self._stopping.set()
        self._dead.set()
        self.metrics.connected.set(0)
        if self._on_fatal is not None:
            try:
                self._on_fatal(fatal)
            except Exception:
                log.exception("gateway %s: the fatal handler itself failed", self.client_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Write and ack what is batched if the sinks take it, then disconnect and close the sinks.

        Messages not written by then stay unacknowledged: the broker redelivers them to the
        next session with this client id. In a group the Last Will is published as it leaves
        (MQTT 5: after its delay, unless this client id connects again first), so a live member
        adopts the session.

        Raises:
            GatewayFatal: a worker thread had died (raised after the cleanup).
        """
        worker, self._worker = self._worker, None
        flusher, self._flusher = self._flusher, None
        if worker is None or flusher is None:
            if self._fatal is not None:
                raise self._fatal
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        worker.join(timeout)
        flusher.join(max(deadline - time.monotonic(), 0.1))
        if worker.is_alive() or flusher.is_alive():
            log.warning(
                "gateway %s: worker still writing after %.0f s; disconnecting", self.client_id, timeout
            )
        if self._members is not None:
            self._members.close()
        with self._adoptions_lock:
            adoptions, self._adoptions = list(self._adoptions.values()), {}
        for adoption in adoptions:  # what they hold stays in those sessions, adopted again later
            adoption.stop()
        # Leaving: the group's record says down (MQTT 5: after the will's delay, unless resumed).
        self._session.stop(will=self._members is not None)
        self._session = self._new_session()  # a later start() opens a fresh connection
        self._subscribed.clear()
        self.metrics.connected.set(0)
        # What is still queued was never acked; drop our copy, the broker holds the original.
        while not self._queue.empty():
            self._taken += len(self._queue.get_nowait()[2])
        if not worker.is_alive() and not flusher.is_alive():
            self._close_sinks()
        log.info("gateway %s stopped: %s", self.client_id, self.stats)
        if self._fatal is not None:
            raise self._fatal

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # closing must not hide the stop
                log.warning("closing sink %s failed: %s", sink.name, exc)
        self._opened = False

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ session callbacks (network thread)

    def _on_connected(self, session_present: bool) -> None:
        with self._stats_lock:
            self._stats.connects += 1
        log.info("gateway %s connected (session present: %s)", self.client_id, session_present)
        if self._members is not None:
            self._members.connected()

    def _on_subscribed(self) -> None:
        self.metrics.connected.set(1)  # before the event: a waiter on it then reads the gauge at 1
        self._subscribed.set()

    def _on_lost(self, reason: str) -> None:
        self._subscribed.clear()
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("gateway %s lost the broker (%s); reconnecting", self.client_id, reason)

    def _on_messages(self, generation: int, received_at: float, messages: list[Delivery]) -> None:
        members = self._members
        if members is not None:
            prefix = members.prefix
            if any(m[0].startswith(prefix) for m in messages):
                for topic, payload, _, _ in messages:
                    if topic.startswith(prefix):
                        members.on_message(topic, payload)
                messages = [m for m in messages if not m[0].startswith(prefix)]
                if not messages:
                    return
        with self._stats_lock:  # several network threads while adopting
            self._received += len(messages)
        self._queue.put((generation, received_at, messages))

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        """The decoder: take messages from the queue, decode them into batches, hand each over."""
        batch = _Batch()
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        rest: _Chunk | None = None  # what did not fit in the last batch, taken first
        members = self._members
        while not self._stopping.is_set():
            self._letters.tick()
            if members is not None:
                members.tick()  # renew our record's lease, adopt members whose lease ran out
            age = self._batch_age()
            chunk: _Chunk | None = rest
            rest = None
            if chunk is None:
                wait = batch.opened + age - time.monotonic() if batch.acks else 0.2
                try:
                    chunk = get(timeout=max(wait, 0.001))
                except queue.Empty:
                    chunk = None
            if chunk is not None:
                if not batch.acks:
                    batch.opened = time.monotonic()
                rest = self._add(batch, chunk)
                # Take what is already queued without a timed wait.
                while rest is None and len(batch) < self.batch_messages:
                    try:
                        rest = self._add(batch, get_nowait())
                    except queue.Empty:
                        break
            if batch.acks and (len(batch) >= self.batch_messages or time.monotonic() - batch.opened >= age):
                if not self._hand_over(batch):
                    break  # stopping: the batch is handed over below
                batch = _Batch()
        # Stopping: one attempt at what is batched; what is still queued is left to redelivery.
        if batch.acks:
            self._put_last(batch)
        self._put_last(None)

    def _linger(self) -> float:
        """The network threads' wait after a small read: longer in a larger group (see _LINGER_S)."""
        members = self._members
        if members is None or members.live <= 1:
            return _LINGER_S
        return min(_LINGER_S * members.live, _LINGER_MAX_S)

    def _batch_age(self) -> float:
        """How long a batch may fill: ``batch_age_s``, times the live members of the group."""
        members = self._members
        if members is None or members.live <= 1:
            return self.batch_age_s
        return max(self.batch_age_s, min(self.batch_age_s * members.live, _GROUP_BATCH_AGE_MAX_S))

    def _put_last(self, item: _Batch | None) -> None:
        """Hand ``item`` to the flusher while stopping, unless the flusher is dead."""
        while self._fatal is None:
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _hand_over(self, batch: _Batch) -> bool:
        """Give ``batch`` to the flusher, waiting while it writes the one before; False if stopping."""
        members = self._members
        while not self._stopping.is_set():
            try:
                self._ready.put(batch, timeout=0.1)
                return True
            except queue.Full:
                # A slow or absent store: alive all the same, so the lease is renewed (else every
                # member would adopt the others' sessions through the outage).
                if members is not None:
                    members.tick()
                continue
        return False

    def _flush_all(self) -> None:
        """The flusher: write each handed-over batch to the sinks, then ack it, until the decoder ends."""
        while True:
            try:
                batch = self._ready.get(timeout=0.2)
            except queue.Empty:
                if self._fatal is not None:
                    return  # the decoder died: nothing more comes
                continue
            if batch is None:
                return
            self._flush(batch)

    def _device_of(self, topic: str) -> tuple[str, str] | WireError:
        """Parse ``topic`` into (org, device), or the reason it is no telemetry topic; cached."""
        known: tuple[str, str] | WireError
        try:
            parsed = parse_topic(topic)
            if parsed.kind != "telemetry":
                raise BadTopic(f"topic {topic!r} is not a telemetry topic")
            known = (parsed.org, parsed.device)
        except WireError as exc:
            known = exc
        if len(self._topics) >= _TOPIC_CACHE:
            self._topics.clear()
        self._topics[topic] = known
        return known

    def _add(self, batch: _Batch, chunk: _Chunk) -> _Chunk | None:
        """Decode the messages of ``chunk`` into ``batch`` while it has room; return the rest."""
        generation, received_at, messages = chunk
        room = self.batch_messages - len(batch)
        rest: _Chunk | None = None
        if len(messages) > room:
            messages, rest = messages[:room], (generation, received_at, messages[room:])
        self._taken += len(messages)
        now = self._clock()
        records = batch.records
        spans = batch.spans
        acks = batch.acks
        topics = self._topics
        for topic, payload, mid, qos in messages:
            acks.append((generation, mid, qos))
            known: tuple[str, str] | WireError | None = None
            try:
                known = topics.get(topic)
                if known is None:
                    known = self._device_of(topic)
                if isinstance(known, WireError):
                    raise known
                decoded = decode_pack(payload, org=known[0], device=known[1], now=now)
                self._series_cap.admit(known[0], known[1], decoded)
                start = len(records)
                records.extend(decoded)
                spans.append((start, len(records), received_at, topic, payload))
            except WireError as exc:
                self._dead_letter(batch, known, received_at, topic, payload, exc.code, str(exc))
            except Exception as exc:  # any other failure is this message's too, never the loop's
                reason = (
                    f"decoding raised {type(exc).__name__}: {exc}: the gateway has a bug; "
                    "report it with this payload"
                )
                if self._tracebacks < _TRACEBACKS:
                    self._tracebacks += 1
                    log.error("unexpected failure decoding a message on %s", topic[:200], exc_info=exc)
                self._dead_letter(batch, known, received_at, topic, payload, UNEXPECTED_CODE, reason)
        return rest

    def _dead_letter(
        self,
        batch: _Batch,
        known: tuple[str, str] | WireError | None,
        received_at: float,
        topic: str,
        payload: bytes,
        code: str,
        reason: str,
    ) -> None:
        """Dead-letter one message of ``batch`` within the policy's bounds (gateway/dead_letters.py)."""
        key = known if isinstance(known, tuple) else None
        dead = self._letters.make(key, received_at, topic, payload, code, reason)
        if dead is not None:
            batch.letters.append(dead)
        else:
            with self._stats_lock:
                self._stats.unstored += 1

    def _write(self, state: _SinkState, records: list[Record]) -> bool | SinkRefused:
        """One attempt to write ``records`` to one sink; update its retry state and metrics.

        Returns:
            True once written; False if the sink failed (unreachable, timed out, 5xx: retried
            later, acks held); the :class:`SinkRefused` error if it refused the content.
        """
        name = state.sink.name
        started = time.perf_counter()
        try:
            state.sink.write(records)
        except SinkRefused as exc:
            self.metrics.refused.labels(name).inc()
            return exc
        except Exception as exc:  # any other failure of a sink: keep the batch, retry later
            state.failed(time.monotonic())
            self.metrics.failures.labels(name).inc()
            self.metrics.sink_up.labels(name).set(0)
            log.error(
                "sink %s: write of %d readings failed (%s); retrying in %.2f s",
                name,
                len(records),
                exc,
                state.retry_at - time.monotonic(),
            )
            return False
        self.metrics.latency.labels(name).observe(time.perf_counter() - started)
        self.metrics.points.labels(name).inc(len(records))
        self.metrics.batches.labels(name).inc()
        if not state.up:
            log.info("sink %s is back", name)
        state.succeeded()
        self.metrics.sink_up.labels(name).set(1)
        return True

    def _write_optional(self, state: _SinkState, records: list[Record]) -> None:
        """Best effort: drain the optional sink's backlog then ``records``; keep what fails, bounded."""
        if records:
            state.backlog.append(records)
            state.backlog_points += len(records)
        if time.monotonic() >= state.retry_at:
            while state.backlog:
                outcome = self._write(state, state.backlog[0])
                if outcome is False:
                    break
                done = state.backlog.popleft()
                state.backlog_points -= len(done)
                if outcome is not True:  # refused for its content: it would be refused forever
                    self.metrics.dropped.labels(state.sink.name).inc(len(done))
                    log.error(
                        "optional sink %s refused %d readings, dropped: %s",
                        state.sink.name,
                        len(done),
                        outcome,
                    )
        while state.backlog_points > _OPTIONAL_BACKLOG_POINTS:
            dropped = state.backlog.popleft()
            state.backlog_points -= len(dropped)
            self.metrics.dropped.labels(state.sink.name).inc(len(dropped))
            log.error("optional sink %s is behind: dropped %d readings", state.sink.name, len(dropped))

    def _bisect(self, state: _SinkState, batch: _Batch, refused: SinkRefused) -> bool:
        """Find the messages ``state``'s sink refuses in ``batch``; dead-letter them, write the rest.

        Halves of a refused range of messages are written until each refused range is one
        message: k bad messages among n cost about 2k·log2(n) writes. Rewrites are idempotent.

        Returns:
            True once every other message is written; False if the sink failed otherwise
            meanwhile (the whole batch is retried later, acks held).
        """
        spans, records = batch.spans, batch.records
        culprits: dict[int, SinkRefused] = {}
        ranges = [(0, len(spans), refused)]
        while ranges:
            lo, hi, error = ranges.pop()
            if hi - lo <= 1:
                culprits[lo] = error
                continue
            mid = (lo + hi) // 2
            for a, b in ((lo, mid), (mid, hi)):
                outcome = self._write(state, records[spans[a][0] : spans[b - 1][1]])
                if outcome is False:
                    return False
                if outcome is not True:
                    ranges.append((a, b, outcome))
        kept: list[Record] = []
        kept_spans: list[_Span] = []
        for index, (start, end, received_at, topic, payload) in enumerate(spans):
            if index in culprits:
                reason = f"sink {state.sink.name} refused its readings: {culprits[index]}"
                key = self._topics.get(topic)
                self._dead_letter(batch, key, received_at, topic, payload, SINK_REFUSED_CODE, reason)
            else:
                kept_spans.append((len(kept), len(kept) + end - start, received_at, topic, payload))
                kept.extend(records[start:end])
        batch.records, batch.spans = kept, kept_spans
        log.warning(
            "sink %s refused %d of %d messages for their content: dead-lettered (%s)",
            state.sink.name,
            len(culprits),
            len(spans),
            refused,
        )
        return True

    def _write_letters(self, letters: list[DeadLetter]) -> bool:
        try:
            # The required sinks that keep dead letters first (a retry overwrites there), so the
            # server reads them where it reads readings; then the gateway's own store.
            for state in self._states:
                if state.sink.required and isinstance(state.sink, DeadLetterSink):
                    state.sink.write_dead_letters(letters)
            self.store.write_dead_letters(letters)
        except Exception as exc:
            self._letters_state.failed(time.monotonic())
            log.error("dead-letter write of %d messages failed (%s); retrying", len(letters), exc)
            return False
        self._letters_state.succeeded()
        return True

    def _flush(self, batch: _Batch) -> bool:
        """Write ``batch`` to every sink then ack it; False if stopped before it was written."""
        self.metrics.messages.inc(len(batch))
        self.metrics.inflight.set(len(batch) + self._received - self._taken)
        for state in self._states:
            if not state.sink.required:
                self._write_optional(state, batch.records)
        pending = [st for st in self._states if st.sink.required and batch.records]
        letters_done = 0  # how many of batch.letters are written (a refusal appends more)
        while True:
            stopping = self._stopping.is_set()
            now = time.monotonic()
            failures = 0
            for state in list(pending):
                if stopping or now >= state.retry_at:
                    outcome = self._write(state, batch.records)
                    if outcome is not True and outcome is not False:
                        outcome = self._bisect(state, batch, outcome)
                    if outcome:
                        pending.remove(state)
                    else:
                        failures += 1
            letters_pending = letters_done < len(batch.letters)
            if letters_pending and (stopping or now >= self._letters_state.retry_at):
                if self._write_letters(batch.letters[letters_done:]):
                    letters_done = len(batch.letters)
                    letters_pending = False
                else:
                    failures += 1
            if failures:
                with self._stats_lock:
                    self._stats.store_failures += failures
            if not pending and not letters_pending:
                break
            if stopping:
                log.warning(
                    "gateway %s stopping with %d messages unwritten: the broker redelivers them",
                    self.client_id,
                    len(batch),
                )
                return False
            retry_at = [st.retry_at for st in pending]
            if letters_pending:
                retry_at.append(self._letters_state.retry_at)
            # Woken early by stop(): the loop makes one last attempt before giving up.
            self._stopping.wait(max(min(retry_at) - time.monotonic(), 0.001))
        if batch.letters:
            self._letters.prune(self.store, self._clock())
        acked = self._ack(batch)
        for dead in batch.letters:
            self.metrics.dead_letters.labels(dead.code).inc()
        self.metrics.acked.inc(acked)
        self.metrics.inflight.set(self._received - self._taken)
        with self._stats_lock:
            self._stats.written += len(batch.records)
            self._stats.dead_lettered += len(batch.letters)
            self._stats.batches += 1
            self._stats.acked += acked
        log.debug(
            "batch of %d messages written (%d readings, %d dead letters), %d acked",
            len(batch),
            len(batch.records),
            len(batch.letters),
            acked,
        )
        return True

    def _ack(self, batch: _Batch) -> int:
        """PUBACK the batch's messages of the current connections in one write each; return how many.

        A message that arrived on an older connection is not acked: the broker redelivers it.
        """
        session = self._session
        generation = session.generation
        with self._adoptions_lock:
            adopted = {s.generation: s for s in self._adoptions.values()}
        if not adopted:
            mids = [mid for gen, mid, qos in batch.acks if gen == generation and qos]
            plain = sum(1 for gen, _, qos in batch.acks if gen == generation and not qos)
            acked = session.ack(generation, mids)
            session.release(generation, len(mids) + plain)  # the network thread reads on
            return len(mids) + plain if acked else 0
        sessions: dict[int, MqttSession] = {**adopted, generation: session}
        per: dict[int, tuple[list[int], list[int]]] = {gen: ([], []) for gen in sessions}
        for gen, mid, qos in batch.acks:
            found = per.get(gen)
            if found is not None:
                found[0 if qos else 1].append(mid)
        total = 0
        for gen, (qos1, qos0) in per.items():
            if qos1 or qos0:
                done = sessions[gen].ack(gen, qos1)
                sessions[gen].release(gen, len(qos1) + len(qos0))
                total += len(qos1) + len(qos0) if done else 0
        return total
