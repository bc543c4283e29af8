"""The sampling cycle: every ``publish_interval_s``, read the sensors that are due, keep their
readings in the outbox before anything else, and hand them to the publisher.

Readings are stamped in UTC, or held in the outbox with their monotonic time until the clock syncs
(the publisher stamps and sends them then). An outbox that cannot be written is counted, logged at
a limited rate and shown in ``meta``; the cycle's readings are then published without
store-and-forward rather than lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge.counters import AgentCounters
from edge.logs import AgentLog
from edge.outbox import Outbox, OutboxError, Row
from edge.sampler import Sampler
from kits.models import DeviceConfig
from kits.wire import Record

__all__ = ["SamplingCycle"]


class SamplingCycle:
    """Sampler to outbox to publisher, once per cycle, in the sampling thread.

    Args:
        sampler: reads the sensors that are due.
        outbox: where every reading is kept first.
        publish: queues a cycle's stamped rows for the publisher.
        counters: the agent's counters (``outbox_errors``, ``held_unsynced``).
        config: the device config in force now (a ``config`` command replaces it).
        clock: UTC epoch seconds; monotonic: a clock that never jumps.
        clock_synced: whether ``clock`` can be trusted.
        log: the device's log.
    """

    def __init__(
        self,
        sampler: Sampler,
        outbox: Outbox,
        publish: Callable[[list[Row]], None],
        counters: AgentCounters,
        config: Callable[[], DeviceConfig],
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        clock_synced: Callable[[], bool],
        log: AgentLog,
    ) -> None:
        self.sampler = sampler
        self.outbox = outbox
        self._publish = publish
        self.counters = counters
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._clock_synced = clock_synced
        self.log = log
        self.outbox_error: str | None = None
        # Set after the first round: before it, meta would call every sensor missing.
        self.meta_ready = False

    def sample_once(self) -> list[Record]:
        """Read every sensor that is due, store the readings in the outbox and return them.

        Failing sensors and out-of-range values are recorded by the sampler, never raised.
        Before the clock has synced the readings are held in the outbox unstamped and nothing is
        returned.
        """
        now = self._clock()
        mono = self._monotonic()
        values = self.sampler.read_due(now)
        if not values:
            return []
        synced = self._clock_synced()
        try:
            rows = self.outbox.add(values, time=now if synced else None, mono=mono)
            if synced:
                self.outbox.in_flight(r.id for r in rows)
            self.outbox_error = None
        except OutboxError as exc:
            errors = self.counters.outbox_errors + 1
            if self.outbox_error is None or errors % 60 == 1:
                self.log.error("%s", exc)
            self.outbox_error = str(exc)
            self.counters.outbox_errors = errors  # counted once logged and noted
            if not synced:
                return []
            rows = [Row(0, s, q, v, now) for s, q, v in values]  # published without store-and-forward
        if not synced:
            self.counters.held_unsynced += len(values)
            self.log.debug("clock not synced: %d readings held in the outbox until it is", len(values))
            return []
        self._publish(rows)
        config = self._config()
        return [Record(config.org, config.device, r.sensor, r.quantity, r.value, r.time) for r in rows]

    def run(self, stop: threading.Event, sample: Callable[[], object] | None = None) -> None:
        """Scan the bus once, then sample (``sample``, by default :meth:`sample_once`) every
        ``publish_interval_s`` until ``stop`` is set."""
        sample = sample or self.sample_once
        self.sampler.scan_unexpected()
        next_cycle = time.monotonic()
        while not stop.is_set():
            try:
                sample()
            except Exception:  # the sampler must outlive any one bad cycle
                self.log.exception("sampling cycle failed; trying again next cycle")
            self.meta_ready = True
            next_cycle += self._config().publish_interval_s
            now = time.monotonic()
            if next_cycle < now:  # a slow cycle: skip the missed ones rather than burst
                next_cycle = now
            stop.wait(next_cycle - now)
