"""The agent's ``meta`` message (:class:`kits.wire.Meta`): who it is, its sensors' health, its
outbox, counters and diagnostics, as the fleet page shows them.

Meta must go out even when a part is broken: an outbox that cannot be read, or a diagnostics
probe that fails, leaves its section out with a warning in the log, never the whole message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.counters import AgentCounters
from edge.diagnostics import DiagnosticsProbe
from edge.logs import AgentLog
from edge.outbox import Outbox
from edge.sampler import Sampler
from kits.models import DeviceConfig
from kits.wire import Diagnostics, Meta, OutboxMeta

__all__ = ["MetaReport"]


class MetaReport:
    """Builds ``meta`` from the agent's parts.

    Args:
        sampler: the sensors' health, the bus scan's unexpected devices, calibration.
        outbox: pending and held readings, drops, write errors.
        diagnostics: disk, outbox size, writes per hour, Wi-Fi.
        counters: the agent's counters.
        agent_version: reported as ``agent``.
        cpu_temperature: the SoC temperature, or None off a Pi.
        log: the device's log.
    """

    def __init__(
        self,
        sampler: Sampler,
        outbox: Outbox,
        diagnostics: DiagnosticsProbe,
        counters: AgentCounters,
        *,
        agent_version: str,
        cpu_temperature: Callable[[], float | None],
        log: AgentLog,
    ) -> None:
        self.sampler = sampler
        self.outbox = outbox
        self.diagnostics = diagnostics
        self.counters = counters
        self.agent_version = agent_version
        self._cpu_temperature = cpu_temperature
        self.log = log

    def _outbox(self, config: DeviceConfig) -> OutboxMeta | None:
        try:
            return OutboxMeta(
                pending=self.outbox.pending,
                oldest_pending=self.outbox.oldest_pending(),
                unstamped=self.outbox.unstamped(),
                dropped=self.outbox.counter("dropped"),
                write_errors=self.outbox.write_errors,
                sync=config.outbox.sync,
            )
        except Exception as exc:  # meta must go out even when the outbox is broken
            self.log.warning("outbox state unreadable for meta: %s", exc)
            return None

    def _diagnostics(self) -> Diagnostics | None:
        try:
            return self.diagnostics.snapshot()
        except Exception as exc:  # nor may a probe stop it
            self.log.warning("diagnostics unreadable for meta: %s", exc)
            return None

    def build(self, config: DeviceConfig, now: float, uptime_s: float, clock_synced: bool) -> dict[str, Any]:
        """The ``meta`` message at ``now`` as a dict."""
        sensors, missing = self.sampler.report(now)
        return Meta(
            agent=self.agent_version,
            kit_profile=config.kit_profile,
            time=now,
            uptime_s=uptime_s,
            clock_synced=clock_synced,
            publish_interval_s=config.publish_interval_s,
            calibration_version=self.sampler.calibrator.version(),
            config_version=config.config_version,
            cpu_temperature=self._cpu_temperature(),
            outbox=self._outbox(config),
            diagnostics=self._diagnostics(),
            sensors=sensors,
            missing=missing,
            unexpected=list(self.sampler.unexpected),
            disabled=list(self.sampler.disabled),
            counters=self.counters.as_dict(),
        ).model_dump()
