"""The edge agent: sample the device's sensors, keep every reading in the outbox, publish over MQTT.

The agent puts its parts together, each in its own module:

- the :class:`~edge.sampler.Sampler` (drivers, sensor health, filters, calibration), run by the
  :class:`~edge.cycle.SamplingCycle`: every ``publish_interval_s`` the sampling thread reads the
  sensors that are due and writes their readings to the :class:`~edge.outbox.Outbox` before
  anything else (stamped in UTC, or held with their monotonic time until the clock syncs);
- the :class:`~edge.publisher.Publisher` (the MQTT session, the outbox's drain, the window of
  unacknowledged packs): publishes each new cycle's readings at once, drains the backlog, marks
  readings sent when their pack's PUBACK arrives, publishes the retained ``meta``
  (:class:`~edge.meta.MetaReport`);
- the commands (:mod:`edge.commands`), which see the agent only through
  :class:`~edge.commands.CommandTarget`.

A sensor that fails is logged, counted, shown in ``meta`` and retried with backoff; the others go
on. A value outside its quantity's physical range is never published, only counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import kits
from edge import system
from edge.commands import run_command
from edge.config import merge_changes, save_device_config
from edge.counters import AgentCounters
from edge.cycle import SamplingCycle
from edge.diagnostics import DiagnosticsProbe
from edge.drivers.base import I2CBus
from edge.logs import LogTail, RateLimit, device_log
from edge.meta import MetaReport
from edge.outbox import Outbox
from edge.publisher import META_EVERY_S, Publisher
from edge.sampler import MAX_BACKOFF_S, Sampler, SensorState, SensorStatus
from edge.updates.home import AgentHome
from edge.updates.updater import Updater
from kits.models import DeviceConfig
from kits.wire import MIN_VALID_TIME, CommandReply, Record

__all__ = ["MAX_BACKOFF_S", "META_EVERY_S", "Agent", "SensorState", "SensorStatus"]

log = logging.getLogger(__name__)


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
        home: the agent home the launcher runs it from (updates); None refuses updates.
        updates_allowed: False when the Pi's owner opted out of updates.
        diagnostics: measures disk, outbox size, writes and Wi-Fi for ``meta``; by default the
            Pi's own (``edge.diagnostics``).

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
        home: AgentHome | None = None,
        updates_allowed: bool = True,
        diagnostics: DiagnosticsProbe | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._monotonic = monotonic
        if clock_synced is None:
            clock_synced = system.clock_synced if clock is time.time else self._after_2020
        self._clock_synced = clock_synced
        self.state_dir = state_dir
        self.agent_version = agent_version
        self.leds_dir = leds_dir
        self.log = device_log(log, config.org, config.device)
        self.log_tail = LogTail(config.device)
        self.diagnostics = diagnostics or DiagnosticsProbe(
            state_dir, state_dir / "outbox.sqlite" if state_dir is not None else None
        )
        self._stop = threading.Event()
        self._sampling: threading.Thread | None = None
        self._started_at: float | None = None
        self.counters = AgentCounters()
        self._bad_commands = RateLimit()
        self.sampler = Sampler(config, i2c, log=self.log)
        self.outbox = outbox or Outbox(
            state_dir / "outbox.sqlite" if state_dir is not None else None,
            config.outbox,
            boot_id=system.boot_id(),
            clock=clock,
        )
        self.publisher = Publisher(
            config,
            self.outbox,
            self.counters,
            self,
            log=self.log,
            clock=clock,
            monotonic=monotonic,
            clock_synced=clock_synced,
            agent_version=agent_version,
        )
        self.cycle = SamplingCycle(
            self.sampler,
            self.outbox,
            self.publisher.queue_live,
            self.counters,
            lambda: self.config,
            clock=clock,
            monotonic=monotonic,
            clock_synced=clock_synced,
            log=self.log,
        )
        self.report = MetaReport(
            self.sampler,
            self.outbox,
            self.diagnostics,
            self.counters,
            agent_version=agent_version,
            cpu_temperature=cpu_temperature,
            log=self.log,
        )
        self._restart = threading.Event()
        self.updater = Updater(
            home,
            agent_version,
            allowed=updates_allowed,
            reply=lambda reply: self.publisher.reply("update", reply),
            request_restart=self._restart.set,
            healthy=lambda: self.connected and self.meta_ready,
            log=self.log,
        )

    def _after_2020(self) -> bool:
        return self._clock() >= MIN_VALID_TIME

    # ------------------------------------------------------------------ what the parts show

    @property
    def sensors(self) -> list[SensorStatus]:
        """Each sensor's driver and health."""
        return self.sampler.sensors

    @property
    def unexpected(self) -> list[dict[str, Any]]:
        """Devices that answered on the bus but are not in the config (from the last scan)."""
        return self.sampler.unexpected

    @property
    def meta_ready(self) -> bool:
        """Whether the first sampling round is done (before it, meta would call sensors missing)."""
        return self.cycle.meta_ready

    @property
    def outbox_error(self) -> str | None:
        """Why the outbox cannot be written now, or None."""
        return self.cycle.outbox_error

    @property
    def connection_error(self) -> str | None:
        """Why the broker refused the session, or None."""
        return self.publisher.session.connection_error

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the session (and it has not dropped since)."""
        return self.publisher.session.connected

    def now(self) -> float:
        """The agent's UTC epoch time."""
        return self._clock()

    def uptime_s(self) -> float:
        """Seconds since :meth:`start` (0 before)."""
        started = self._started_at
        return round(self._monotonic() - started, 3) if started is not None else 0.0

    def calibration_version(self) -> int | None:
        """The highest calibration version in force."""
        return self.sampler.calibrator.version()

    def config_version(self) -> int | None:
        """The server's device config version in force (None: never configured by the server)."""
        return self.config.config_version

    def log_lines(self, count: int) -> list[str]:
        """The agent's last ``count`` log lines, oldest first (``logs``)."""
        return self.log_tail.last(count)

    # ------------------------------------------------------------------ configuration

    def apply_config(
        self,
        changes: dict[str, Any],
        *,
        check: Callable[[DeviceConfig, Collection[str]], None] | None = None,
    ) -> list[str]:
        """Apply a ``config`` command's changes now, and persist them in the state folder.

        Args:
            changes: top-level device config fields and their new values.
            check: called with the validated new config and the changed fields before anything
                changes; raises :class:`ConfigError` to refuse.

        Returns the changed fields.

        Raises:
            ConfigError: a field that may not change, or a value the device config or ``check`` refuses.
        """
        new = merge_changes(self.config, changes)
        if check is not None:  # limits apply to what really changes (a server resends every section)
            check(new, [k for k in changes if getattr(new, k) != getattr(self.config, k)])
        self.sampler.configure(new)
        self.config = new
        self.publisher.config = new
        if self.state_dir is not None:
            save_device_config(self.state_dir, new)
        self.log.info(
            "config applied: %s (config version %s, calibration version %s)",
            ", ".join(sorted(changes)),
            new.config_version,
            self.calibration_version(),
        )
        return sorted(changes)

    # ------------------------------------------------------------------ sampling and meta

    def sample_once(self) -> list[Record]:
        """Read every sensor that is due, store the readings in the outbox and return them
        (:meth:`edge.cycle.SamplingCycle.sample_once`)."""
        return self.cycle.sample_once()

    def scan_unexpected(self) -> list[dict[str, Any]]:
        """Scan the bus and record the devices that answer but are not in the config (for meta)."""
        return self.sampler.scan_unexpected()

    def meta(self) -> dict[str, Any]:
        """The ``meta`` message (:class:`kits.wire.Meta`) as a dict."""
        return self.report.build(self.config, self._clock(), self.uptime_s(), self._clock_synced())

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Connect to the broker (in the background, retrying) and start sampling and publishing."""
        if self._sampling is not None:
            raise RuntimeError("the agent is already running")
        self._started_at = self._monotonic()
        logging.getLogger("edge").addHandler(self.log_tail)
        self._stop.clear()
        self.cycle.meta_ready = False
        self.publisher.start()
        self._sampling = threading.Thread(
            target=self.cycle.run,
            # Through the agent's own method, looked up each round: a wrapper put there runs too.
            args=(self._stop, lambda: self.sample_once()),
            name=f"sampler-{self.config.device}",
            daemon=True,
        )
        self._sampling.start()
        self.updater.watch()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the broker accepted the connection; False on timeout."""
        return self.publisher.session.wait_connected(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, publish the retained ``offline`` status, disconnect, close the outbox."""
        self._stop.set()
        self.updater.stop()
        if self._sampling is not None:
            self._sampling.join(timeout)
            self._sampling = None
        self.publisher.stop(timeout)
        self.outbox.close()
        self.log.info("stopped")
        logging.getLogger("edge").removeHandler(self.log_tail)

    @property
    def restart_requested(self) -> bool:
        """An installed update waits for the agent to stop and switch (:meth:`run_until` returns)."""
        return self._restart.is_set()

    def run_until(self, stop_event: threading.Event) -> bool:
        """Start, run until ``stop_event`` is set or an update asks to switch, then stop cleanly.

        Returns whether an update was switched to after the stop (the process should exit with
        :data:`edge.updates.home.RESTART_EXIT_CODE` for the launcher to start it).
        """
        self.start()
        try:
            while not stop_event.wait(0.5) and not self._restart.is_set():
                pass
        finally:
            self.stop()
        # Only now, with the outbox closed (after any write in progress), may the version change.
        return self._restart.is_set() and self.updater.commit_switch()

    # ------------------------------------------------------------------ commands

    def run_command(self, name: str, payload: bytes) -> CommandReply | None:
        """Run command ``name`` (:mod:`edge.commands`); return its reply, None if no id to answer."""
        return run_command(self, name, payload)

    def note_bad_command(self, name: str, reason: str) -> None:
        """Count a command that could not be answered (``bad_commands`` in ``meta``) and log it,
        at most 5 lines a minute."""
        hint = 'send {"id": ..., "args": {...}}'
        self._bad_commands.log(self.log, logging.WARNING, "command %s ignored (%s): %s", name, reason, hint)
        self.counters.bad_commands += 1  # counted once logged

    def resend(self, start: float, end: float) -> int:
        """Publish again every reading stamped in ``[start, end]`` that the outbox still holds.

        Raises:
            SuitcaseError: not connected to the broker.
        """
        return self.publisher.resend(start, end)

    def start_update(self, command_id: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Take an ``update`` offer (:meth:`edge.updates.updater.Updater.offer`)."""
        return self.updater.offer(command_id, args)

    def identify(self, seconds: float) -> str:
        """Blink the ACT LED for ``seconds``.

        Raises:
            OSError: there is no ACT LED or no permission to drive it.
        """
        return system.blink_act_led(seconds, self.leds_dir)
