"""A network partition between a Pi and the broker, with messages in flight.

Two hosts of the network-namespace lab (tests/hosts/): ``broker`` runs Mosquitto as production
does (TLS only, dynamic security: the device and the gateway log in with their own accounts),
``pi`` runs the real agent (``suitcase edge run``, its outbox on the pi's disk). The gateway runs
in the test process (the lab's operator address) and writes to the module's influxd. The
partition drops every packet between the two hosts, silently, both ways (a dead uplink, not a
refused connection), while the agent publishes six readings a second.
"""

from __future__ import annotations

import json
import secrets as random_secrets
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.consumer import Gateway
from gateway.sinks import open_sink
from kits.tls import client_context
from kits.wire import Record
from server.broker_admin import device_acls
from suitcase.services.mosquitto import GATEWAY_ROLE, Account, dynsec_state
from suitcase.services.secrets import make_secrets
from suitcase.services.settings_files import MQTT_GATEWAY_USER
from suitcase.services.tls import make_ca, make_server_cert
from tests.hosts.lab import Lab
from tests.hosts.services import HostMosquitto
from tests.reliability.conftest import ORG, SENSORS, Stack, new_device
from tests.reliability.faults import SCALE, Ledger
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.netns]

KEEPALIVE_S = 5  # the agent's MQTT keep-alive: it notices a silent partition after 1.5 x this


def _agent_config(path: Path, device: str, password: str, broker: HostMosquitto, ca: Path) -> Path:
    sensors = "".join(
        f"  - {{name: {s.name}, part: {s.part}, address: {s.address:#x}, interval_s: {s.interval_s}}}\n"
        for s in SENSORS
    )
    path.write_text(
        f"device: {device}\norg: {ORG}\nbus: emulated\nscenario: office-day\npublish_interval_s: 0.25\n"
        f"mqtt:\n  host: {broker.address}\n  port: {broker.tls_port}\n  username: {device}\n"
        f"  password: {json.dumps(password)}\n  tls: true\n  ca_file: {ca}\n  keepalive: {KEEPALIVE_S}\n"
        f"sensors:\n{sensors}"
    )
    return path


def _pending(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT COUNT(*) FROM readings WHERE state = 0").fetchone()[0])


def _outbox(db: Path, device: str) -> Ledger:
    ledger = Ledger()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT sensor, quantity, value, time FROM readings").fetchall()
    ledger.add(Record(ORG, device, s, q, v, t) for s, q, v, t in rows)
    return ledger


def test_a_partition_between_a_pi_and_the_broker_with_messages_in_flight(
    ready: Stack, lab: Lab, tmp_path: Path
) -> None:
    """Test that a silent partition between the Pi and the broker, longer than the agent's
    keep-alive takes to notice it, with packs in flight, loses nothing and doubles nothing: what
    was in flight stays pending in the outbox (no PUBACK), the readings taken meanwhile wait
    there, and after the partition heals the agent reconnects and everything lands once."""
    stack = ready
    broker_host, pi = lab.host("broker"), lab.host("pi")
    keys = make_secrets()
    ca = make_ca(lab.root / "operator-ca")
    tls = make_server_cert(ca, broker_host.dir / "tls", [broker_host.address])
    (pi.dir / "tls").mkdir()
    (pi.dir / "tls" / "ca.crt").write_bytes(ca[0].read_bytes())
    device = new_device("partition")
    password = random_secrets.token_urlsafe(24)
    accounts = [
        Account(MQTT_GATEWAY_USER, keys.mqtt_gateway, (GATEWAY_ROLE,)),
        Account(device, password, (f"device-{device}",)),
    ]
    broker = HostMosquitto(broker_host, accounts=accounts, tls=tls, plain=False)
    broker.workdir.mkdir(parents=True, exist_ok=True)
    (broker.workdir / "dynamic-security.json").write_text(
        json.dumps(
            dynsec_state(accounts, [{"rolename": f"device-{device}", "acls": device_acls(ORG, device)}])
        )
    )
    broker.start()
    gateway = Gateway(
        stack.letters,
        host=broker.address,
        port=broker.tls_port,
        client_id=f"gw-partition-{device}",
        username=MQTT_GATEWAY_USER,
        password=keys.mqtt_gateway,
        tls=client_context(ca_file=ca[0]),
        sinks=[open_sink(stack.influxd.sink_url + "?timeout=2")],
        batch_messages=200,
        batch_age_s=0.1,
        mqtt_version="5",
    )
    config = _agent_config(pi.dir / "agent.yaml", device, password, broker, pi.dir / "tls" / "ca.crt")
    state = pi.dir / "state"
    db = state / "outbox.sqlite"
    begin = time.time() - 5
    partition_s = (1.5 * KEEPALIVE_S + 4) * SCALE
    with gateway:
        gateway.wait_subscribed(30)
        run = ["-m", "suitcase", "edge", "run", "--config", str(config), "--state-dir", str(state)]
        agent = pi.python("agent", run)
        try:
            wait_until(
                lambda: stack.count([device]) >= 30, 60, f"the first readings landed: {agent.log_tail()}"
            )
            lab.partition("pi", "broker")
            cut = time.monotonic()
            time.sleep(2.0)  # two sampling rounds published into the partition: sent, never acknowledged
            in_flight = _pending(db)
            assert agent.running()
            landed_at_cut = stack.count([device])
            time.sleep(max(partition_s - (time.monotonic() - cut), 0))
            pending_at_heal = _pending(db)
            lab.heal("pi", "broker")
            back = time.monotonic()
            wait_until(lambda: _pending(db) <= 12, 60 * SCALE, "the backlog acknowledged after the heal")
        finally:
            agent.stop(30)
        assert agent.popen is not None and agent.popen.returncode == 0, agent.log_tail()
        ledger = _outbox(db, device)
        recovery = stack.landed(ledger, begin=begin, back=back, timeout=60, count=True)
    result = stack.tally(
        "Network partition Pi <-> broker, messages in flight",
        ledger,
        begin=begin,
        recovery_s=recovery,
        conditions=f"netns hosts, TLS + dynamic security; {partition_s:.1f} s of silent drop "
        f"(keep-alive {KEEPALIVE_S} s); {in_flight} readings unacknowledged at the cut, "
        f"{pending_at_heal} waiting at the heal",
        order=70,
        in_flight=in_flight,
        pending_at_heal=pending_at_heal,
        landed_at_cut=landed_at_cut,
    )
    assert lab.trespasses() == []
    assert in_flight > 0, "nothing was in flight when the partition began"
    assert pending_at_heal > in_flight, "no reading waited in the outbox during the partition"
    assert (result.lost, result.doubled) == (0, 0), result.summary()
