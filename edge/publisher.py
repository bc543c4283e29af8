"""The publisher: the agent's MQTT session, the outbox's drain and the window of unacknowledged packs.

It runs in its own thread (beside paho's network thread): each round it marks the readings of
acknowledged packs sent, answers the commands that arrived, stamps readings held while the clock
was not synced, publishes each new cycle's readings at once (live data first), drains the backlog
oldest first at ``outbox.drain_readings_per_s`` with at most :data:`WINDOW` packs unacknowledged,
and publishes the retained ``meta`` on change and every :data:`META_EVERY_S` seconds.

A reading is marked sent only when its pack's PUBACK arrives; until then it stays in the outbox
and is published again after a reconnect. A reading the outbox could not take (its disk full)
is held in memory while the broker is unreachable, at most :data:`MAX_UNSTORED`, and published
on the next connection: only a restart of the agent meanwhile, or more than that bound, loses it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol

from edge.counters import AgentCounters
from edge.logs import AgentLog, RateLimit
from edge.outbox import Outbox, OutboxError, Row
from edge.session import WINDOW, Session
from kits.errors import SuitcaseError, WireError
from kits.models import DeviceConfig
from kits.wire import CommandReply, Record, Status, build_topic, encode_pack

__all__ = [
    "COMMAND_QUEUE",
    "MAX_COMMAND_BYTES",
    "MAX_UNSTORED",
    "META_EVERY_S",
    "CommandInbox",
    "Publisher",
    "Reporter",
]

META_EVERY_S = 300.0
# Readings the outbox could not take, held in memory while offline (about 100 bytes each).
MAX_UNSTORED = 100_000
_PRUNE_EVERY_S = 600.0
# Commands waiting to run at most; beyond, new ones are dropped and counted (a flood).
COMMAND_QUEUE = 100
# A command larger than this is dropped unread (a config with every calibration record is a few KiB).
MAX_COMMAND_BYTES = 256 * 1024


class Reporter(Protocol):
    """What the publisher needs from the agent to publish ``meta`` and answer commands."""

    @property
    def outbox_error(self) -> str | None:
        """Why the outbox cannot be written now, or None."""
        ...

    @property
    def meta_ready(self) -> bool:
        """Whether every sensor has been tried once: before that, meta would call them missing."""
        ...

    def meta(self) -> dict[str, Any]:
        """The ``meta`` message as a dict."""
        ...

    def run_command(self, name: str, payload: bytes) -> CommandReply | None:
        """Run command ``name``; return its reply (None when there is no id to answer to)."""
        ...


class CommandInbox:
    """Commands that arrived on ``cmd/+`` (paho's thread), waiting for the publishing thread.

    Bounded: a command over :data:`MAX_COMMAND_BYTES`, or beyond :data:`COMMAND_QUEUE` waiting,
    is dropped unread, counted (``commands_dropped``) and logged at a limited rate.
    """

    def __init__(self, counters: AgentCounters, log: AgentLog) -> None:
        self._queue: deque[tuple[str, bytes]] = deque()
        self._counters = counters
        self._log = log
        self._rate = RateLimit()

    def offer(self, name: str, payload: bytes) -> bool:
        """Queue command ``name``; False when it was dropped."""
        if len(payload) > MAX_COMMAND_BYTES:
            why = f"{len(payload)} bytes, over the {MAX_COMMAND_BYTES} a command may have"
        elif len(self._queue) >= COMMAND_QUEUE:
            why = f"{COMMAND_QUEUE} commands already wait: send fewer at once"
        else:
            self._queue.append((name, payload))
            return True
        self._rate.log(self._log, logging.WARNING, "command %s dropped unread: %s", name, why)
        self._counters.commands_dropped += 1  # counted once logged
        return False

    def take(self) -> Iterator[tuple[str, bytes]]:
        """The waiting commands, oldest first, each removed as it is taken."""
        while self._queue:
            yield self._queue.popleft()


class Publisher:
    """The MQTT session of one device and the thread that publishes through it.

    Args:
        config: the device config (identity, broker, outbox settings); :attr:`config` is replaced
            when a ``config`` command changes it.
        outbox: where the readings wait until acknowledged.
        counters: the agent's counters (the publisher's are bumped here).
        reporter: the agent, for ``meta`` and commands.
        log: the agent's logger.
        clock: UTC epoch time (stamps, ``status``).
        monotonic: a clock that never jumps (stamps held readings, paces ``meta``).
        clock_synced: whether ``clock`` can be trusted.
        agent_version: reported in ``status``.
    """

    def __init__(
        self,
        config: DeviceConfig,
        outbox: Outbox,
        counters: AgentCounters,
        reporter: Reporter,
        *,
        log: AgentLog,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        clock_synced: Callable[[], bool],
        agent_version: str,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.counters = counters
        self._reporter = reporter
        self.log = log
        self._clock = clock
        self._monotonic = monotonic
        self._clock_synced = clock_synced
        self._agent_version = agent_version
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: deque[list[Row]] = deque()
        self._unstored: deque[Row] = deque()  # readings the outbox could not take, not yet published
        self._inbox = CommandInbox(counters, log)
        self._last_meta: tuple[float, str] | None = None
        self.session = Session(
            config,
            counters,
            log=log,
            status=self._status,
            on_connected=self._connected,
            on_command=self._command,
            on_acknowledged=self._wake.set,
        )

    def queue_live(self, rows: list[Row]) -> None:
        """Publish a cycle's new readings as soon as possible (before the backlog)."""
        self._live.append(rows)
        self._wake.set()

    def start(self) -> None:
        """Connect to the broker (in the background, retrying) and start the publishing thread.

        Raises:
            ConfigError: the broker's address cannot be used.
        """
        self._stop.clear()
        self.session.open()
        self._thread = threading.Thread(
            target=self._loop, name=f"publisher-{self.config.device}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop publishing, publish the retained ``offline`` status, disconnect, and mark the
        readings acknowledged meanwhile sent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.session.close(timeout)
        self._flush_acks()

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        return Status(state=state, since=self._clock(), agent=self._agent_version).encode()

    def _connected(self) -> None:
        self._last_meta = None
        self.outbox.rewind()

    def _command(self, name: str, payload: bytes) -> None:
        if self._inbox.offer(name, payload):
            self._wake.set()

    # ------------------------------------------------------------------ the publishing loop

    def _loop(self) -> None:
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
                if self.session.connected:
                    self._publish_live()
                    tokens = self._drain(tokens)
                else:
                    self._live_not_sent()
                if now - last_meta_check >= 1.0:
                    last_meta_check = now
                    if self.session.connected:
                        self._publish_meta()
                if now - last_prune >= _PRUNE_EVERY_S:
                    last_prune = now
                    self.outbox.prune()
            except Exception:  # the publisher must outlive any one bad round
                self.log.exception("publishing round failed; trying again")
                self._stop.wait(1.0)

    def _flush_acks(self) -> None:
        ids = self.session.window.take()
        if ids:
            try:
                self.outbox.mark_sent(ids)
            except OutboxError as exc:
                self.log.error("could not mark %d readings sent (they will be sent again): %s", len(ids), exc)
            self.counters.readings_acknowledged += len(ids)

    def _run_commands(self) -> None:
        for name, payload in self._inbox.take():
            self.counters.commands += 1
            reply = self._reporter.run_command(name, payload)
            if reply is not None and self.session.is_open:
                topic = build_topic(self.config.org, self.config.device, "cmd", name, reply=True)
                self.session.publish(topic, reply.model_dump_json().encode())

    def reply(self, name: str, reply: CommandReply) -> bool:
        """Publish a reply that comes after its command's round (``update``); False when not connected."""
        if not self.session.connected:
            return False
        topic = build_topic(self.config.org, self.config.device, "cmd", name, reply=True)
        return self.session.publish(topic, reply.model_dump_json().encode()) is None

    def _publish_meta(self, *, force: bool = False) -> None:
        if not self.session.is_open or not self._reporter.meta_ready:
            return
        meta = self._reporter.meta()
        key = _meta_key(meta, self._reporter.outbox_error)
        now = self._monotonic()
        if not force and self._last_meta is not None:
            last_time, last_key = self._last_meta
            if key == last_key and now - last_time < META_EVERY_S:
                return
        self._last_meta = (now, key)
        self.session.publish(self.session.topics["meta"], json.dumps(meta).encode(), retain=True)

    def _live_not_sent(self) -> None:
        while self._live:
            rows = self._live.popleft()
            self.outbox.release(r.id for r in rows if r.id)
            self._keep_unstored(rows)

    def _keep_unstored(self, rows: Sequence[Row]) -> None:
        """Hold in memory the readings of ``rows`` that are not in the outbox (id 0)."""
        self._unstored.extend(r for r in rows if not r.id)
        over = len(self._unstored) - MAX_UNSTORED
        if over > 0:
            for _ in range(over):
                self._unstored.popleft()
            self.counters.unstored_dropped += over
            self.log.error(
                "%d readings dropped: the outbox's disk is full and the broker unreachable for more "
                "than %d readings; free space on the SD card",
                over,
                MAX_UNSTORED,
            )

    def _publish_live(self) -> None:
        pack = self.config.outbox.pack_records
        while self._unstored:
            rows = [self._unstored.popleft() for _ in range(min(pack, len(self._unstored)))]
            if not self._publish_rows(rows):
                self._unstored.extendleft(reversed(rows))
                return
            self.counters.published_without_outbox += len(rows)
        while self._live:
            rows = self._live.popleft()
            if not self._publish_rows(rows):
                self.outbox.release(r.id for r in rows if r.id)
                self._keep_unstored(rows)
            elif not any(r.id for r in rows):
                self.counters.published_without_outbox += len(rows)

    def _drain(self, tokens: float) -> float:
        pack = self.config.outbox.pack_records
        while tokens >= 1.0 and len(self.session.window) < WINDOW and self.session.connected:
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

    # ------------------------------------------------------------------ publishing

    def resend(self, start: float, end: float) -> int:
        """Publish again every reading stamped in ``[start, end]`` that the outbox still holds.

        Raises:
            SuitcaseError: not connected to the broker, or the connection dropped meanwhile.
        """
        if not self.session.connected:
            raise SuitcaseError("not connected to the broker: resend once the device is online")
        sent = 0
        after: tuple[float, int] | None = None
        while True:
            rows = self.outbox.history(start, end, after=after, limit=self.config.outbox.pack_records)
            if not rows:
                return sent
            while len(self.session.window) >= WINDOW and self.session.connected:
                self._stop.wait(0.01)
            if not self._publish_rows(rows, track=False):
                raise SuitcaseError(
                    f"resend interrupted after {sent} readings: the connection dropped; send it again"
                )
            sent += len(rows)
            after = (rows[-1].time, rows[-1].id)

    def _publish_rows(self, rows: Sequence[Row], *, track: bool = True) -> bool:
        if not self.session.is_open or not rows:
            return False
        org, device = self.config.org, self.config.device
        try:
            payload = encode_pack([Record(org, device, r.sensor, r.quantity, r.value, r.time) for r in rows])
        except WireError as exc:
            self.counters.publish_errors += 1
            self.log.error("pack of %d readings not encodable, marked sent to skip it: %s", len(rows), exc)
            self.session.window.done([r.id for r in rows])
            return True
        ids = [r.id for r in rows] if track else []
        error = self.session.publish(self.session.topics["telemetry"], payload, ids=ids)
        if error is not None:
            self.log.warning("publish failed (%s); the readings stay in the outbox", error)
            self.counters.publish_errors += 1  # counted once logged
            return False
        self.counters.packs_published += 1
        self.counters.readings_published += len(rows)
        return True


def _meta_key(meta: dict[str, Any], outbox_error: str | None) -> str:
    """What ``meta`` is compared on ("on change and every 5 min"): what is not expected to change
    on its own (not the time, uptime or counters)."""
    watched = {
        "clock_synced": meta["clock_synced"],
        "sensors": {
            n: (s["state"], s["last_error"], s["calibration_version"]) for n, s in meta["sensors"].items()
        },
        "unexpected": meta["unexpected"],
        "outbox_error": outbox_error,
    }
    return json.dumps(watched, sort_keys=True)
