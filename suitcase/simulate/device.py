"""One simulated agent: the real agent's wire behaviour without its sensors or outbox file.

It logs in with its own broker account, leaves a retained ``offline`` Last Will, publishes a
retained ``online`` status and a retained ``meta``, then a SenML pack of its sensors' readings every
interval at QoS 1. Readings made while the connection is down wait in memory and are sent when it
is back (the real agent's outbox drain). Its behaviour is one of:

- ``good``: plausible values, a gentle random walk;
- ``stale``: connected and ``online``, but no telemetry after its first pack (the fleet shows it stale);
- ``stuck``: the same values every time, and ``meta`` says ``stuck`` after three (as the sampler does);
- ``malformed``: every pack broken in a rotating way (not JSON, NaN, an unknown quantity, a wrong
  unit, a time from 1970): the gateway dead-letters each with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kits.quantities import QUANTITIES
from kits.wire import Meta, SensorMeta, Status, encode_pack, records_of
from suitcase.simulate.mqtt import MqttClient, MqttError, Will

__all__ = ["BEHAVIOURS", "Behaviour", "Counters", "Enrolled", "SimDevice"]

Behaviour = Literal["good", "stale", "stuck", "malformed"]
BEHAVIOURS: tuple[Behaviour, ...] = ("good", "stale", "stuck", "malformed")
AGENT = "sim-0.1"
_MALFORMED = ("not-json", "nan", "unknown-quantity", "wrong-unit", "epoch-1970")


@dataclass
class Counters:
    """What a process's devices did; summed across processes for the summary."""

    enrolled: int = 0
    connected: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    packs_acked: int = 0
    readings_acked: int = 0
    good_readings_acked: int = 0
    malformed_acked: int = 0
    publish_failures: int = 0
    backlog: int = 0
    all_connected_s: float | None = None
    last_connect_error: str = ""

    def add(self, other: Counters) -> None:
        for name in (
            "enrolled",
            "connected",
            "connect_failures",
            "reconnects",
            "packs_acked",
            "readings_acked",
            "good_readings_acked",
            "malformed_acked",
            "publish_failures",
            "backlog",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_connect_error = other.last_connect_error or self.last_connect_error
        if other.all_connected_s is not None:
            self.all_connected_s = max(self.all_connected_s or 0.0, other.all_connected_s)


@dataclass(frozen=True)
class Enrolled:
    """What enrollment gave one device: its config's essentials and topics."""

    org: str
    device: str
    host: str
    port: int
    username: str
    password: str
    topics: dict[str, str]
    sensors: list[tuple[str, list[str]]]  # (sensor name, quantities)
    interval_s: float
    behaviour: Behaviour = "good"
    source: str | None = None  # a local address to connect from (see MqttClient)

    @classmethod
    def from_poll(
        cls, device: dict[str, Any], behaviour: Behaviour, quantities: Callable[[str], list[str]]
    ) -> Enrolled:
        config = device["config"]
        mqtt = config["mqtt"]
        return cls(
            org=config["org"],
            device=config["device"],
            host=mqtt["host"],
            port=mqtt["port"],
            username=mqtt["username"],
            password=mqtt["password"],
            topics=device["topics"],
            sensors=[(s["name"], quantities(s["part"])) for s in config["sensors"]],
            interval_s=float(config["publish_interval_s"]),
            behaviour=behaviour,
        )


@dataclass
class SimDevice:
    """One simulated agent (see the module docstring). ``clock`` is wall time (injected)."""

    enrolled: Enrolled
    counters: Counters
    clock: Callable[[], float]
    rng: random.Random
    started: float = 0.0
    _values: dict[tuple[str, str], float] = field(default_factory=dict)
    _held: list[bytes] = field(default_factory=list)
    _packs: int = 0
    _client: MqttClient | None = None

    async def connect(self) -> None:
        """Log in (Will: retained ``offline``), then publish retained ``online`` status and meta.

        Raises:
            MqttError: refused or unreachable.
        """
        e = self.enrolled
        self._client = MqttClient(e.host, e.port, e.device, source=getattr(e, "source", None))
        will = Will(e.topics["status"], Status(state="offline", since=self.clock(), agent=AGENT).encode())
        await self._client.connect(e.username, e.password, will)
        now = self.clock()
        await self._client.publish(
            e.topics["status"], Status(state="online", since=now, agent=AGENT).encode(), retain=True
        )
        await self._client.publish(e.topics["meta"], self._meta(now), retain=True)

    def _meta(self, now: float) -> bytes:
        stuck = self.enrolled.behaviour == "stuck" and self._packs >= 3
        sensors = {
            name: SensorMeta(part=name, address=0x77, state="stuck" if stuck else "ok", readings=self._packs)
            for name, _ in self.enrolled.sensors
        }
        return (
            Meta(
                agent=AGENT,
                time=now,
                uptime_s=now - (self.started or now),
                clock_synced=True,
                publish_interval_s=self.enrolled.interval_s,
                sensors=sensors,
            )
            .model_dump_json()
            .encode()
        )

    def _pack(self, now: float) -> tuple[bytes, int]:
        e = self.enrolled
        self._packs += 1
        if e.behaviour == "malformed":
            return self._malformed(now), 0
        records = []
        for sensor, quantities in e.sensors:
            values = []
            for quantity in quantities:
                spec = QUANTITIES[quantity]
                key = (sensor, quantity)
                middle = spec.low + (spec.high - spec.low) * 0.3
                value = self._values.get(key, middle)
                if e.behaviour != "stuck":
                    value += (spec.high - spec.low) * 0.001 * self.rng.uniform(-1, 1)
                    value = min(max(value, spec.low), spec.high)
                self._values[key] = value
                values.append((quantity, round(value, 3)))
            records.extend(records_of(e.org, e.device, sensor, values, now))
        return encode_pack(records), len(records)

    def _malformed(self, now: float) -> bytes:
        kind = _MALFORMED[self._packs % len(_MALFORMED)]
        bn = f"urn:dev:suitcase:{self.enrolled.device}:"
        if kind == "not-json":
            return b'[{"bn": "' + bn.encode() + b'", "v": 1'
        if kind == "nan":
            return (
                b'[{"bn":"'
                + bn.encode()
                + b'","bt":'
                + str(now).encode()
                + b',"n":"bme280/temperature","u":"Cel","v":NaN}]'
            )
        if kind == "unknown-quantity":
            return json.dumps([{"bn": bn, "bt": now, "n": "bme280/flux", "u": "Cel", "v": 1.0}]).encode()
        if kind == "wrong-unit":
            return json.dumps(
                [{"bn": bn, "bt": now, "n": "bme280/temperature", "u": "K", "v": 290.0}]
            ).encode()
        return json.dumps([{"bn": bn, "bt": 1.0, "n": "bme280/temperature", "u": "Cel", "v": 20.0}]).encode()

    async def run(self, until: float, outage: tuple[float, float] | None = None) -> None:
        """Publish every interval until ``until`` (wall time); during ``outage`` (start, end) drop
        the connection abruptly (the Will fires), hold readings, then reconnect and send them."""
        e = self.enrolled
        assert self._client is not None
        next_at = self.clock() + self.rng.uniform(0, e.interval_s)  # spread the fleet's packs
        while True:
            now = self.clock()
            if outage and outage[0] <= now < outage[1] and self._client.connected:
                self._client.abort()
            if next_at > until:
                break
            await asyncio.sleep(max(0.0, next_at - now))
            now = self.clock()
            next_at += e.interval_s
            cut_off = bool(outage and outage[0] <= now < outage[1])
            # Every device comes back after an outage, a stale one too: it stays connected, silent.
            if not cut_off and not self._client.connected:
                with contextlib.suppress(MqttError):
                    await self.connect()
                    self.counters.reconnects += 1
            if e.behaviour == "stale" and self._packs >= 1:
                continue
            payload, _ = self._pack(now)
            self._held.append(payload)
            self.counters.backlog += 1
            if cut_off or not self._client.connected:
                continue
            await self._drain()
            if e.behaviour == "stuck" and self._packs == 3:
                await self._publish(e.topics["meta"], self._meta(now), retain=True)

    async def _drain(self) -> None:
        assert self._client is not None
        e = self.enrolled
        while self._held:
            payload = self._held[0]
            try:
                await self._client.publish(e.topics["telemetry"], payload)
            except MqttError:
                self.counters.publish_failures += 1
                return
            self._held.pop(0)
            self.counters.backlog -= 1
            self.counters.packs_acked += 1
            if e.behaviour == "malformed":
                self.counters.malformed_acked += 1
                continue
            readings = sum(len(q) for _, q in e.sensors)
            self.counters.readings_acked += readings
            if e.behaviour == "good":
                self.counters.good_readings_acked += readings

    async def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        assert self._client is not None
        try:
            await self._client.publish(topic, payload, retain=retain)
        except MqttError:
            self.counters.publish_failures += 1

    async def close(self) -> None:
        """Publish ``offline`` as a clean agent stop does, then DISCONNECT."""
        if self._client is None or not self._client.connected:
            return
        await self._publish(
            self.enrolled.topics["status"],
            Status(state="offline", since=self.clock(), agent=AGENT).encode(),
            retain=True,
        )
        await self._client.close()
