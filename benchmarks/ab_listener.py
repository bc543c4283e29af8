"""The server's MQTT listener alone at 10,000 devices: a real Mosquitto, a SQLite registry of
10,000 enrolled devices and :class:`server.listener.StatusListener` in this process.

A publisher in a child process (its CPU is not the listener's) sends a connect storm: each
device's ``online`` status and its ``meta`` (20,000 messages), then every device's ``offline``
status. Per phase: the time from the first message to the registry showing every device
online (offline), and the listener process's CPU seconds per 1,000 messages (paho's network
thread, the applier, the dispatch of waiting commands: everything the server does with them).

``python -m benchmarks.ab_listener [devices]`` prints one run's figures as JSON;
``python -m benchmarks.ab_listener 10000 /tmp/old-tree 2`` alternates an older tree (``git archive
<commit> | tar -x -C /tmp/old-tree``, first on ``PYTHONPATH``) with this one, two rounds each, each
run in a fresh process, and prints every run's figures (compare the ratios, not the seconds: the
machine is shared).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["measure", "run"]

ORG = "bench"

_PUBLISHER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, first, count, phase = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{phase}-{first}")
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.connect("127.0.0.1", port)
client.loop_start()
now = time.time()
infos = []
for i in range(first, first + count):
    base = f"suitcase/v1/bench/dev-{i:05d}"
    if phase == "online":
        status = {"state": "online", "since": now, "agent": "1.4.0"}
        infos.append(client.publish(base + "/status", json.dumps(status), qos=1, retain=True))
        meta = {
            "agent": "1.4.0", "kit_profile": "indoor", "time": now, "uptime_s": 12.0, "clock_synced": True,
            "publish_interval_s": 20.0, "config_version": 1,
            "outbox": {"pending": 0, "oldest_pending": None},
            "diagnostics": {"disk_free_bytes": 1e9, "disk_total_bytes": 3e10, "wifi_dbm": -60},
            "sensors": {"indoor": {"part": "bme280", "address": 119, "ok": True}},
        }
        infos.append(client.publish(base + "/meta", json.dumps(meta), qos=1, retain=True))
    else:
        status = {"state": "offline", "since": now + 1, "agent": "1.4.0"}
        infos.append(client.publish(base + "/status", json.dumps(status), qos=1, retain=True))
for info in infos:
    info.wait_for_publish(120)
client.disconnect()
client.loop_stop()
"""


def _registry(url: str, devices: int) -> None:
    from sqlalchemy import insert
    from sqlmodel import Session

    from server.db import create_registry_engine, ensure_schema
    from server.tables import DeviceRow, OrganisationRow

    engine = create_registry_engine(url)
    ensure_schema(engine, upgrade=True)
    with Session(engine) as session:
        org = OrganisationRow(slug=ORG, name="Bench", created_at=time.time())
        session.add(org)
        session.flush()
        rows: list[dict[str, Any]] = [
            {
                "id": f"dev-{i:05d}",
                "org_id": org.id,
                "registered_at": time.time(),
                "sensors": [],
                "missing": [],
                "unexpected": [],
                "diagnostics": {},
            }
            for i in range(devices)
        ]
        session.execute(insert(DeviceRow), rows)
        session.commit()
    engine.dispose()


def _online(engine: Any) -> int:
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from server.tables import DeviceRow

    with Session(engine) as session:
        return int(session.exec(select(func.count()).where(col(DeviceRow.online).is_(True))).one())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _phase(listener: Any, engine: Any, port: int, devices: int, phase: str, target: int) -> dict[str, float]:
    """Publish one phase from child publishers; wait until the registry shows ``target`` online."""
    before, started = _cpu(), time.monotonic()
    half = devices // 2  # two publishers, as devices are many clients
    children = [
        subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(port), str(first), str(count), phase])
        for first, count in ((0, half), (half, devices - half))
    ]
    messages = devices * (2 if phase == "online" else 1)
    expected = listener.applied + messages
    listener.wait_applied(expected, 600)
    # The registry is the truth (applied counts changed rows): poll it, lightly, until it agrees.
    deadline = time.monotonic() + 600
    while _online(engine) != target and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed, cpu = time.monotonic() - started, _cpu() - before
    for child in children:
        child.wait(120)
    if _online(engine) != target:
        raise RuntimeError(f"{phase}: the registry shows {_online(engine)} online, expected {target}")
    return {
        f"{phase}_s": round(elapsed, 2),
        f"{phase}_cpu_s": round(cpu, 2),
        f"{phase}_cpu_s_per_1000": round(cpu / messages * 1000, 4),
        f"{phase}_messages": messages,
    }


def measure(devices: int = 10_000) -> dict[str, Any]:
    """Run the storm and the offline wave at ``devices`` against a real Mosquitto."""
    import logging

    from server.db import create_registry_engine
    from server.listener import StatusListener
    from server.settings import ServerSettings
    from suitcase.broker import MosquittoBroker, free_port

    logging.basicConfig(level=logging.WARNING)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="suitcase-bench-listener-") as tmp:
        root = Path(tmp)
        registry = Path(tempfile.mkdtemp(dir=shm, prefix="suitcase-bench-listener-")) if shm else root
        url = f"sqlite:///{registry / 'registry.db'}"
        _registry(url, devices)
        port = free_port()
        broker = MosquittoBroker(root / "broker", port=port, extra_config="max_queued_messages 100000\n")
        broker.start()
        settings = ServerSettings(
            registry_url=url,
            store=str(root / "store.db"),
            mqtt_host="127.0.0.1",
            mqtt_port=port,
            command_sweep_s=0,
        )
        engine = create_registry_engine(url)
        listener = StatusListener(settings, engine, time.time)
        try:
            listener.start()
            if not listener.subscribed.wait(30):
                raise RuntimeError("the listener did not subscribe")
            result: dict[str, Any] = {"devices": devices}
            result |= _phase(listener, engine, port, devices, "online", devices)
            result |= _phase(listener, engine, port, devices, "offline", 0)
            result["failures"] = listener.failures
            return result
        finally:
            listener.stop()
            engine.dispose()
            broker.stop()
            if registry != root:
                import shutil

                shutil.rmtree(registry, ignore_errors=True)


def run(devices: int = 10_000, baseline_tree: str | None = None, rounds: int = 2) -> list[dict[str, Any]]:
    """Alternate this tree and ``baseline_tree`` (an older checkout), ``rounds`` times each."""
    here = Path(__file__).resolve().parent.parent
    results = []
    for _ in range(rounds):
        for name, tree in (("baseline", baseline_tree), ("this", str(here))):
            if tree is None:
                continue
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), str(devices)],
                env=env,
                cwd=tree,
                capture_output=True,
                text=True,
                check=True,
                timeout=1800,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            results.append({"tree": name, **figures})
            print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) > 2:
        run(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    else:
        print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
