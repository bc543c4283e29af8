"""Issue #11's acceptance: no message stops a running gateway (real Mosquitto, real influxd).

Every poison the fuzz found, every way InfluxDB refuses a batch for its content and a device past
its series cap go into one running ``suitcase gateway run`` process between good packs: every
good reading lands, every bad message is a dead letter with its reason, and the process keeps
its pid.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.dead_letters import PAYLOAD_LIMIT
from gateway.store import SqliteStore
from kits.wire import MIN_VALID_TIME, Record, build_topic, encode_pack
from suitcase.broker import MosquittoBroker
from tests.gateway.gwtools import publish_all
from tests.gateway.poison import DEVICE as POISON_DEVICE
from tests.gateway.poison import POISON
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb]

ORG = "aarhus"
DB = "suitcase_aarhus"
TAG_LIMIT = 10  # influxd's max-values-per-tag in this test


def _pack(device: str, sensors: list[tuple[str, str]], t: float, value: float = 20.0) -> tuple[str, bytes]:
    records = [Record(ORG, device, sensor, qty, value, t) for sensor, qty in sensors]
    return build_topic(ORG, device, "telemetry"), encode_pack(records)


def _write(server: InfluxD, lines: str) -> None:
    request = urllib.request.Request(
        f"{server.url}/write?db={DB}&precision=s", data=lines.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204


def _seed(server: InfluxD, now: float) -> int:
    """Make the database refuse three kinds of content; return how many points the seeding wrote.

    - a retention of 365 days: a reading from 2020 is "beyond retention policy" (a partial write);
    - ``co2`` holds an integer field ``value``: the gateway's float is a "field type conflict";
    - the ``sensor`` tag of ``temperature`` already has ``TAG_LIMIT`` values: a new sensor name
      exceeds "max-values-per-tag".
    """
    server.query(f'CREATE DATABASE "{DB}" WITH DURATION 365d')
    t = int(now) - 3600
    lines = [f"co2,device=seed,org={ORG},sensor=seed value=400i {t}"]
    sensors = ["bme280", "scd40"] + [f"seed{i}" for i in range(TAG_LIMIT - 2)]
    lines += [f"temperature,device=seed,org={ORG},sensor={s} value=1.5 {t}" for s in sensors]
    _write(server, "\n".join(lines))
    return len(lines)


def test_poison_refusals_and_series_caps_never_stop_a_running_gateway(
    mosquitto: MosquittoBroker, influxd_factory: Callable[..., InfluxD], tmp_path: Path
) -> None:
    """Test that a running gateway dead-letters every bad message with its reason and lands every good one.

    Bad: each poison of tests/gateway/poison.py; a pack InfluxDB refuses for a field-type conflict,
    for a point beyond retention and for a tag-value limit; a pack past its device's series cap.
    They arrive between good packs, in the same batches (the refused ones are found by splitting).
    """
    server = influxd_factory(f"  max-values-per-tag = {TAG_LIMIT}")
    now = time.time()
    seeded = _seed(server, now)
    good_sensors = [("bme280", "temperature"), ("bme280", "humidity")]
    goods: list[tuple[str, bytes]] = []
    bads: dict[tuple[str, bytes], str] = {}  # (topic, payload) -> the reason's telling words

    def good() -> tuple[str, bytes]:
        goods.append(_pack(f"dev-{len(goods) % 3}", good_sensors, now - 3000 + len(goods), 20 + len(goods)))
        return goods[-1]

    messages: list[tuple[str, bytes]] = []
    poison_topic = build_topic(ORG, POISON_DEVICE, "telemetry")
    for _name, payload, code in POISON:
        messages += [good(), (poison_topic, payload)]
        bads[(poison_topic, payload[:PAYLOAD_LIMIT])] = code  # dead letters keep up to the limit
    refused = {
        "field type conflict": _pack("dev-a", [("scd40", "co2")], now - 100),
        "beyond retention": _pack("dev-a", good_sensors, MIN_VALID_TIME + 86_400),
        "max-values-per-tag": _pack("dev-t", [("newsensor", "temperature")], now - 100),
    }
    for words, message in refused.items():
        messages += [good(), message, good()]
        bads[message] = words
    # Device dev-cap may have 4 series: 2 + 2 pass, a fifth is over the cap.
    messages += [
        _pack("dev-cap", good_sensors, now - 90),
        _pack("dev-cap", [("scd40", "temperature"), ("scd40", "humidity")], now - 90),
    ]
    over_cap = _pack("dev-cap", [("sht4x", "temperature")], now - 80)
    messages += [over_cap, good()]
    bads[over_cap] = "series_limit"

    store_path = tmp_path / "store.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=f"sqlite:///{store_path}",
        SUITCASE_GATEWAY_SINKS=json.dumps([server.sink_url]),
        SUITCASE_GATEWAY_MQTT_PORT=str(mosquitto.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-acc-{tmp_path.name}"[:60],
        SUITCASE_GATEWAY_BATCH_AGE_S="0.5",  # many messages per batch: refusals are found by splitting
        SUITCASE_GATEWAY_MAX_SERIES_PER_DEVICE="4",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "suitcase", "gateway", "run", "--quiet"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = proc.pid
    try:
        # The session must exist before publishing: subscribe once, then publish everything.
        probe = _pack("dev-probe", good_sensors, now - 5000)
        goods.append(probe)

        def probed() -> bool:
            publish_all(mosquitto.host, mosquitto.port, [probe])
            return server.count(DB) > seeded

        wait_until(probed, timeout=30, what="the gateway subscribed and writing")
        publish_all(mosquitto.host, mosquitto.port, messages)
        good_points = 2 * len(goods) + 4  # dev-cap's two packs that pass
        wait_until(
            lambda: server.count(DB) >= seeded + good_points, timeout=60, what="every good reading in influxd"
        )
        reader = SqliteStore(store_path)
        try:
            wait_until(
                lambda: len(reader.dead_letters(limit=1000)) >= len(bads),
                timeout=30,
                what="every dead letter",
            )
            letters = {(d.topic, d.payload): d for d in reader.dead_letters(limit=1000)}
        finally:
            reader.close()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert proc.pid == pid
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert server.count(DB) == seeded + good_points
    assert set(letters) == set(bads)
    for message, words in bads.items():
        d = letters[message]
        assert words in (d.code, *d.reason.split(": ")) or words in d.reason, (words, d.code, d.reason)
        assert d.reason and math.isfinite(d.received_at)
    assert {letters[m].code for m in refused.values()} == {"sink_refused"}
