"""The demo's emulated Pis: real edge agents on emulated I2C buses, and the faults done to them.

A :class:`DemoPi` owns one agent and its bus; a fault unplugs a chip from the bus (as a loose cable
would), freezes the chips' clock (the sensor keeps answering with the same values: stuck), or
stops the agent (it says ``offline`` and leaves) and starts a new one on the same bus.
:class:`DemoFleet` is what :mod:`suitcase.demo_faults` acts on; it recalibrates through the
server's API, as a technician would, so the server sends the new calibration to the Pi.
"""

from __future__ import annotations

import importlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from edge.agent import Agent
from edge.emulated import EMULATORS, Chip, EmulatedI2C, Scenario, get_scenario
from kits.errors import SuitcaseError
from kits.models import DeviceConfig

__all__ = ["DemoFleet", "DemoPi"]


class _ChipClock:
    """The time the emulated chips see: the wall clock, or the moment it was frozen."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        return self.frozen_at if self.frozen_at is not None else self._clock()


def _with_sensor_noise(values: Scenario, seed: int) -> Scenario:
    """The scenario plus a sensor's own noise, a function of time like the scenario.

    A real sensor never reads exactly the same twice in a row; the scenarios are smooth, and at a
    reading a second a chip's resolution would make them repeat, which the agent rightly flags as
    stuck. The noise keeps the stuck sensor the script's own doing (its clock frozen).
    """

    def noisy(now: float) -> Mapping[str, float]:
        rng = random.Random(f"{seed}:{now!r}")
        out = {}
        for quantity, value in values(now).items():
            jitter = rng.uniform(-1.0, 1.0) * (0.02 + abs(value) * 0.0002)  # 0.02 Cel, 0.2 hPa
            out[quantity] = max(0.0, value + jitter) if value >= 0 else value + jitter
        return out

    return noisy


def _bus(config: DeviceConfig, clock: Callable[[], float], seed: int) -> EmulatedI2C:
    values = _with_sensor_noise(get_scenario(config.scenario or "office-day", seed=seed), seed)
    bus = EmulatedI2C()
    for sensor in config.sensors:
        chip: Chip = importlib.import_module(EMULATORS[sensor.part]).create(values, clock=clock)
        bus.attach(sensor.address, chip)
    return bus


class DemoPi:
    """One emulated Pi: its config, bus and running agent."""

    def __init__(self, config: DeviceConfig, seed: int) -> None:
        self.config = config
        self.clock = _ChipClock()
        self.bus = _bus(config, self.clock, seed)
        self.agent: Agent | None = None
        self._unplugged: dict[str, Chip] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.agent is None:
                self.agent = Agent(self.config, self.bus)
                self.agent.start()

    def stop(self) -> None:
        with self._lock:
            agent, self.agent = self.agent, None
        if agent is not None:
            agent.stop(timeout=3.0)

    def _address(self, sensor: str) -> int:
        for s in self.config.sensors:
            if s.name == sensor:
                return s.address
        raise SuitcaseError(f"{self.config.device} has no sensor {sensor!r}")

    def unplug(self, sensor: str) -> None:
        chip = self.bus.detach(self._address(sensor))
        if chip is not None:
            self._unplugged[sensor] = chip

    def plug(self, sensor: str) -> None:
        chip = self._unplugged.pop(sensor, None)
        if chip is not None:
            self.bus.attach(self._address(sensor), chip)

    def freeze(self) -> None:
        self.clock.frozen_at = time.time()

    def thaw(self) -> None:
        self.clock.frozen_at = None


class DemoFleet:
    """The demo's Pis by number (1-based), and the server's API for recalibration.

    Args:
        pis: the Pis, in order.
        api: the server's base URL, e.g. ``http://127.0.0.1:8000/``.
        token: an operator API token of the demo organisation.
        kit_id: the demo kit's id.
    """

    def __init__(self, pis: Sequence[DemoPi], api: str, token: str, kit_id: int) -> None:
        self.pis = list(pis)
        self.api = api.rstrip("/")
        self.token = token
        self.kit_id = kit_id

    @property
    def size(self) -> int:
        return len(self.pis)

    def _pi(self, number: int) -> DemoPi:
        if not 1 <= number <= len(self.pis):
            raise SuitcaseError(f"the demo has no Pi {number}: it runs {len(self.pis)}")
        return self.pis[number - 1]

    def start(self) -> None:
        for pi in self.pis:
            pi.start()

    def stop(self) -> None:
        """Stop every agent at once (each says ``offline``); returns when all have stopped."""
        threads = [threading.Thread(target=pi.stop, daemon=True) for pi in self.pis]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    def unplug(self, pi: int, sensor: str) -> None:
        self._pi(pi).unplug(sensor)

    def plug(self, pi: int, sensor: str) -> None:
        self._pi(pi).plug(sensor)

    def freeze(self, pi: int) -> None:
        self._pi(pi).freeze()

    def thaw(self, pi: int) -> None:
        self._pi(pi).thaw()

    def offline(self, pi: int) -> None:
        self._pi(pi).stop()

    def online(self, pi: int) -> None:
        self._pi(pi).start()

    def recalibrate(self, pi: int, sensor: str, quantity: str) -> None:
        """Record a new calibration (due in a year) through the server's API."""
        now = time.time()
        response = httpx.post(
            f"{self.api}/api/v1/kits/{self.kit_id}/calibrations",
            json={
                "pi_index": pi,
                "sensor": sensor,
                "quantity": quantity,
                "offset": 0.0,
                "scale": 1.0,
                "calibrated_at": now,
                "due_at": now + 365 * 86400.0,
                "reference": "demo: checked against the Open Lab's reference thermometer",
            },
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if response.status_code != 201:
            raise SuitcaseError(
                f"recalibration refused by the server ({response.status_code}): {response.text}"
            )
