"""The demo's script of faults: things go wrong, and right again, at known moments.

So that every page has something true to show and an alert fires and resolves during a ten-minute
demo, the script unplugs a sensor and plugs it back, freezes one (stuck), takes a Pi offline and
back, lets a calibration fall due and recalibrates it, and lets a loan fall overdue. Times are
seconds of a ten-minute demo at ``speed`` 1; a test plays the same script ``speed`` times faster.

The player acts on a :class:`Fleet` (the demo's emulated Pis and its server), never on concrete
classes; each fault that fails is reported and the script goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CALIBRATION_DUE_S",
    "LOAN_DUE_S",
    "SCRIPT_S",
    "Fault",
    "FaultPlayer",
    "Fleet",
    "script",
]

log = logging.getLogger(__name__)

SCRIPT_S = 600.0
# Seeded in the registry at start, relative to it (suitcase.demo_history.seed_registry).
LOAN_DUE_S = 30.0
CALIBRATION_DUE_S = 300.0


class Fleet(Protocol):
    """What the script acts on: Pis by number (1-based) and the server's calibration API."""

    @property
    def size(self) -> int: ...
    def unplug(self, pi: int, sensor: str) -> None: ...
    def plug(self, pi: int, sensor: str) -> None: ...
    def freeze(self, pi: int) -> None: ...
    def thaw(self, pi: int) -> None: ...
    def offline(self, pi: int) -> None: ...
    def online(self, pi: int) -> None: ...
    def recalibrate(self, pi: int, sensor: str, quantity: str) -> None: ...


@dataclass(frozen=True)
class Fault:
    """One step of the script: at ``at_s`` (demo seconds at speed 1), say ``text`` and act."""

    at_s: float
    text: str
    action: Callable[[Fleet], None] | None = None


def script(size: int) -> list[Fault]:
    """The script for a demo of ``size`` Pis (every Pi has a BME280, which needs no warm-up)."""
    street = 2 if size >= 2 else 1
    street_sensor = "bme280"
    offline = 3 if size >= 3 else size
    steps = [
        Fault(LOAN_DUE_S, "the loan of kit OPEN-LAB-LOAN falls overdue (it stays so)"),
        Fault(
            60,
            f"sensor {street_sensor} of demo-pi-{street} unplugged",
            lambda f: f.unplug(street, street_sensor),
        ),
        Fault(120, "sensor bme280 of demo-pi-1 stuck (reads the same values)", lambda f: f.freeze(1)),
        Fault(
            150,
            f"sensor {street_sensor} of demo-pi-{street} plugged back",
            lambda f: f.plug(street, street_sensor),
        ),
        Fault(270, "sensor bme280 of demo-pi-1 unstuck", lambda f: f.thaw(1)),
        Fault(CALIBRATION_DUE_S, "calibration of bme280/temperature on Pi 1 falls due"),
        Fault(
            450,
            "bme280/temperature on Pi 1 recalibrated",
            lambda f: f.recalibrate(1, "bme280", "temperature"),
        ),
    ]
    if size >= 2:  # with one Pi, taking it offline would leave the demo with nothing live
        steps += [
            Fault(200, f"demo-pi-{offline} goes offline", lambda f: f.offline(offline)),
            Fault(330, f"demo-pi-{offline} back online", lambda f: f.online(offline)),
        ]
    steps.append(Fault(SCRIPT_S, "end of the fault script: every fault has happened and cleared"))
    return sorted(steps, key=lambda s: s.at_s)


class FaultPlayer:
    """Plays a script on a fleet in a thread, ``speed`` times faster than written.

    Args:
        fleet: what the faults act on.
        faults: the script.
        speed: 1 plays a ten-minute demo; 20 plays it in 30 s.
        say: called with one line per step, e.g. ``"t+60 s: sensor pmsa003i of demo-pi-2 unplugged"``.
        clock: monotonic seconds (injected so tests control time).
    """

    def __init__(
        self,
        fleet: Fleet,
        faults: list[Fault],
        *,
        speed: float = 1.0,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed {speed!r} must be above 0 (1: a ten-minute demo)")
        self.fleet = fleet
        self.faults = faults
        self.speed = speed
        self.say = say
        self.clock = clock
        self.played: list[Fault] = []
        self.failed: list[tuple[Fault, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="demo-faults", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Play every fault at its time, until the script ends or :meth:`stop`."""
        started = self.clock()
        for fault in self.faults:
            wait = started + fault.at_s / self.speed - self.clock()
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                if fault.action is not None:
                    fault.action(self.fleet)
            except Exception as exc:  # one failed fault must not stop the script
                log.exception("demo fault failed: %s", fault.text)
                self.failed.append((fault, str(exc)))
                self.say(f"t+{fault.at_s:.0f} s: {fault.text} FAILED: {exc}")
                continue
            self.played.append(fault)
            self.say(f"t+{fault.at_s:.0f} s: {fault.text}")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
