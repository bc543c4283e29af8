"""Simulated Pis: each device its own MQTT client, publishing SenML packs at QoS 1 at a set rate.

Run on the Pis' host as ``python -m tests.hosts.pis PLAN.json STATUS.json``. The plan (JSON)::

    {"broker": "10.213.1.10", "port": 1883, "org": "city", "devices": ["pi-00", ...],
     "packs": 500, "records": 10, "rate": 400, "start": 1750000000.0, "timeout": 240,
     "credentials": {"pi-00": ["user", "password"]}, "ca": "/path/ca.crt"}

Every device publishes ``packs`` packs of ``records`` readings (see :func:`pack_records`; the test
computes the same with :func:`expected`); ``rate`` is packs per second over all devices. A Pi keeps
its session (clean session off, fixed client id) and paho keeps what is not yet acknowledged, so a
broker outage or a partition only delays: it resends on reconnect. The status file says
``{"published": n, "acked": m, "total": t, "connected": c, "done": bool}``, rewritten a few
times a second. Exit 0 once every pack is acknowledged, 3 at the timeout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kits.wire import Record, build_topic, encode_pack

__all__ = ["QUANTITIES", "expected", "pack_records"]

QUANTITIES = (("bme280", "temperature"), ("bme280", "humidity"))


def pack_records(org: str, device: str, index: int, records: int, start: float) -> list[Record]:
    """The readings of pack ``index`` of ``device``: consecutive seconds, each quantity of each."""
    per = len(QUANTITIES)
    first = index * (records // per)
    out = []
    for j in range(records):
        sensor, quantity = QUANTITIES[j % per]
        step = first + j // per
        value = round(15.0 + (step % 200) / 10 + (5.0 if quantity == "humidity" else 0.0), 3)
        out.append(Record(org, device, sensor, quantity, value, start + step))
    return out


def expected(plan: dict[str, Any]) -> Iterator[Record]:
    """Every reading the plan publishes."""
    for device in plan["devices"]:
        for index in range(plan["packs"]):
            yield from pack_records(plan["org"], device, index, plan["records"], plan["start"])


class _Pi:
    def __init__(self, plan: dict[str, Any], device: str) -> None:
        import paho.mqtt.client as mqtt

        self.device = device
        self.acked = 0
        self.connected = False
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=device, clean_session=False, protocol=mqtt.MQTTv311
        )
        user = (plan.get("credentials") or {}).get(device)
        if user:
            self.client.username_pw_set(user[0], user[1])
        if plan.get("ca"):
            self.client.tls_set(ca_certs=plan["ca"])
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.on_publish = self._published
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.connect_async(plan["broker"], plan["port"], keepalive=10)
        self.client.loop_start()

    def _published(self, *args: Any) -> None:
        with self.lock:
            self.acked += 1

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        self.connected = not getattr(reason, "is_failure", False)

    def _disconnected(self, *args: Any) -> None:
        self.connected = False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(plan: dict[str, Any], status_path: Path) -> int:
    """Publish the plan; return the exit code (0: all acknowledged)."""
    devices: list[str] = plan["devices"]
    total = len(devices) * plan["packs"]
    pis = {device: _Pi(plan, device) for device in devices}
    deadline = time.monotonic() + plan.get("timeout", 240)
    published = 0

    def write_status(done: bool = False) -> None:
        status = {
            "published": published,
            "acked": sum(pi.acked for pi in pis.values()),
            "total": total,
            "connected": sum(pi.connected for pi in pis.values()),
            "done": done,
        }
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(status_path)

    while not all(pi.connected for pi in pis.values()):  # the first connection of each Pi
        if time.monotonic() > deadline:
            write_status()
            return 3
        time.sleep(0.05)
    began = time.monotonic()
    last_status = 0.0
    for index in range(plan["packs"]):
        for device in devices:
            due = began + published / plan["rate"]
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            records = pack_records(plan["org"], device, index, plan["records"], plan["start"])
            pis[device].client.publish(
                build_topic(plan["org"], device, "telemetry"), encode_pack(records), qos=1
            )
            published += 1
            if now - last_status > 0.2:
                write_status()
                last_status = now
    while sum(pi.acked for pi in pis.values()) < total:
        if time.monotonic() > deadline:
            write_status()
            return 3
        write_status()
        time.sleep(0.1)
    write_status(done=True)
    for pi in pis.values():
        pi.close()
    return 0


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    return run(plan, Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
