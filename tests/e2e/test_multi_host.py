"""Every tier on its own host: 100,000 readings through gateway and server crashes and a store outage.

Nine hosts (network namespaces, tests/hosts/): broker (Mosquitto, dynamic security, TLS), store
(influxd, authentication on), registry (PostgreSQL), two gateways sharing one subscription, two
server replicas, and one host of 20 simulated Pis that enrolled through the replicas and publish
with their own broker accounts. Mid-stream one gateway and one replica are killed with -9 and the
store's cable is pulled for longer than the gateway's longest retry backoff; everything comes
back. Then: every reading in the store exactly once; both replicas answer the same fleet and
deployments; a session made on one works on the other; the guess limit and each alert hold across
replicas; no process opened a file under another host's directory.

The scenario runs once (module fixture); each test checks one of its outcomes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.consumer import _RETRY_MAX_S
from suitcase.services.influxdb import READINGS_DATABASE
from suitcase.services.layout import Layout
from suitcase.services.mosquitto import GATEWAY_ROLE, SERVER_ROLE, Account
from suitcase.services.secrets import make_secrets
from suitcase.services.settings_files import (
    MQTT_GATEWAY_USER,
    MQTT_SERVER_USER,
    gateway_env,
    registry_url,
    server_env,
)
from suitcase.services.tls import make_ca, make_server_cert
from tests.hosts.fixture import require_lab
from tests.hosts.host import HostProcess
from tests.hosts.lab import Lab
from tests.hosts.pis import expected
from tests.hosts.services import (
    HostInfluxD,
    HostMosquitto,
    HostPostgres,
    HostServer,
    gateway_metrics,
    metric_total,
    pis_status,
    start_gateway,
    start_pis,
)
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.mosquitto,
    pytest.mark.influxdb,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

ORG = "harbour"
DEVICES = 20
PACKS = 500  # per device
RECORDS = 10  # per pack: 20 x 500 x 10 = 100,000 readings
RATE = 500.0  # packs per second over all Pis: a 20 s stream
STORE_CUT_S = _RETRY_MAX_S + 2.0  # longer than the gateway's longest retry backoff
GUESS_LIMIT = 10
ADMIN = ("admin@harbour.example", "a long admin passphrase 1")


@dataclass
class Scenario:
    lab: Lab
    store: HostInfluxD
    servers: dict[str, HostServer]
    gateways: dict[str, HostProcess]
    plan: dict[str, Any]
    admin_token: str
    deployment_id: int
    org_id: int
    broker: HostMosquitto
    counts: dict[str, float] = field(default_factory=dict)


def _cookie(headers: dict[str, str]) -> str:
    raw = headers.get("set-cookie") or headers.get("Set-Cookie") or ""
    return raw.split(";", 1)[0]


def _login(server: HostServer, email: str, password: str) -> tuple[int, dict[str, str]]:
    status, body, headers = server.api("POST", "/auth/login", {"email": email, "password": password})
    if status != 200:
        return status, {}
    return status, {"Cookie": _cookie(headers), "X-CSRF-Token": body["csrf"]}


def _ok(result: tuple[int, Any, dict[str, str]], want: int = 200) -> Any:
    status, body, _ = result
    assert status == want, (status, body)
    return body


def _build(lab: Lab) -> Scenario:
    hosts = {
        name: lab.host(name)
        for name in ("broker", "store", "registry", "gw-a", "gw-b", "server-a", "server-b", "pis")
    }
    # The stack's secrets, as `suitcase services up` makes them; the operator's CA (outside every
    # host); each host that connects to the broker gets its own copy of the CA certificate, where
    # the stack's settings files expect it (<config dir>/tls/ca.crt, the host's directory here).
    secrets = make_secrets()
    ca = make_ca(lab.root / "operator-ca")
    tls = make_server_cert(ca, hosts["broker"].dir / "tls", [hosts["broker"].address])
    for name in ("gw-a", "gw-b", "server-a", "server-b", "pis"):
        (hosts[name].dir / "tls").mkdir()
        (hosts[name].dir / "tls" / "ca.crt").write_bytes(ca[0].read_bytes())
    accounts = [
        Account(MQTT_GATEWAY_USER, secrets.mqtt_gateway, (GATEWAY_ROLE,)),
        Account(MQTT_SERVER_USER, secrets.mqtt_server, (SERVER_ROLE,)),
    ]
    broker = HostMosquitto(hosts["broker"], accounts=accounts, tls=tls, plain=False).start()
    store = HostInfluxD(hosts["store"], secrets=secrets).start()
    registry = HostPostgres(hosts["registry"], lab.subnet, secrets=secrets).start()

    def layout(name: str, bind: str) -> Layout:
        """What the stack's settings code needs to know of host ``name``: where the broker, and the
        store or registry (``bind``), are; its config directory is its own."""
        return Layout(
            config_dir=hosts[name].dir, data_dir=hosts[name].dir, hostname=broker.address, bind=bind
        )

    servers: dict[str, HostServer] = {}
    for name in ("server-a", "server-b"):
        settings = server_env(layout(name, store.host), secrets)
        settings["SUITCASE_SERVER_REGISTRY_URL"] = registry_url(
            layout(name, registry.host.address), secrets.postgres_server
        )
        settings.update(
            {
                "SUITCASE_SERVER_PUBLIC_URL": f"http://{hosts[name].address}:8000",
                "SUITCASE_SERVER_GUESS_LIMIT_PER_MIN": str(GUESS_LIMIT),
                "SUITCASE_SERVER_ALERT_INTERVAL_S": "0.5",  # compressed: a round every half second
                "SUITCASE_SERVER_OUTBOUND_ALLOW": json.dumps([lab.subnet]),  # webhooks to the operator
                # This lab's broker host runs no accounts service (the install's default is
                # files-remote, tested in tests/suitcase/services/): devices go to dynamic security.
                "SUITCASE_SERVER_DEVICE_ACCOUNTS": "dynsec",
            }
        )
        servers[name] = HostServer(hosts[name], settings)

    # Both replicas start at once on the empty registry, as two machines booting would: they take
    # turns to make the schema (server/db.py). Then the first global admin, from a replica's host.
    for server in servers.values():
        server.start(wait=False)
    for server in servers.values():
        server.wait_ready()
    admin = hosts["server-a"].python(
        "create-admin",
        ["-m", "suitcase", "server", "create-admin", "--email", ADMIN[0]],
        {"SUITCASE_ADMIN_PASSWORD": ADMIN[1], **servers["server-a"].settings},
    )
    assert admin.wait(60) == 0, admin.log_tail()

    gateways: dict[str, HostProcess] = {}
    for name in ("gw-a", "gw-b"):
        env = gateway_env(layout(name, store.host), secrets)
        env["SUITCASE_GATEWAY_BATCH_MESSAGES"] = "500"
        gateways[name] = start_gateway(
            hosts[name], broker=broker, sink_url=store.sink_url, client_id=name, env=env
        )

    # The organisation, a deployment and 20 Pis enrolled through both replicas (each Pi gets its own
    # broker account from the replica it asked).
    a, b = servers["server-a"], servers["server-b"]
    status, root = _login(a, *ADMIN)
    assert status == 200
    org = _ok(
        a.api("POST", "/orgs", {"slug": ORG, "name": "Harbour City", "kind": "municipality"}, root), 201
    )
    token = _ok(a.api("POST", "/tokens", {"name": "ops", "org_id": org["id"], "role": "admin"}, root), 201)
    bearer = {"Authorization": f"Bearer {token['token']}"}
    deployment = _ok(
        b.api("POST", "/deployments", {"org_id": org["id"], "name": "Quay sensors"}, bearer), 201
    )
    devices: list[str] = []
    credentials: dict[str, list[str]] = {}
    for i in range(DEVICES):
        code = _ok(
            (a, b)[i % 2].api("POST", "/enrollment-codes", {"deployment_id": deployment["id"]}, bearer), 201
        )
        enrolled = _ok((b, a)[i % 2].api("POST", "/enroll", {"code": code["code"]}))
        config = enrolled["config"]
        devices.append(config["device"])
        credentials[config["device"]] = [config["mqtt"]["username"], config["mqtt"]["password"]]
        assert config["mqtt"]["host"] == broker.address and config["mqtt"]["port"] == broker.tls_port
    plan = {
        "org": ORG, "devices": devices, "packs": PACKS, "records": RECORDS, "rate": RATE,
        "start": time.time() - 3 * 86400, "timeout": 300, "credentials": credentials,
        "port": broker.tls_port, "ca": str(hosts["pis"].dir / "tls" / "ca.crt"),
    }  # fmt: skip
    return Scenario(lab, store, servers, gateways, plan, token["token"], deployment["id"], org["id"], broker)


def _stream_with_faults(sc: Scenario) -> None:
    """Stream; kill -9 gw-a and server-b; pull the store's cable; bring everything back; drain."""
    lab, store, total = sc.lab, sc.store, DEVICES * PACKS * RECORDS
    pis = start_pis(lab["pis"], sc.broker, sc.plan)
    wait_until(lambda: store.count() >= total // 5, timeout=120, what="a fifth of the stream in the store")
    sc.counts["at_kill"] = store.count()
    sc.counts["published_at_kill"] = pis_status(lab["pis"]).get("published", 0)
    sc.gateways["gw-a"].kill()  # kill -9
    sc.servers["server-b"].kill()
    wait_until(
        lambda: store.count() >= sc.counts["at_kill"] + total // 10,
        timeout=120,
        what="gw-b carrying on alone",
    )
    sc.counts["at_cut"] = store.count()
    sc.counts["published_at_cut"] = pis_status(lab["pis"]).get("published", 0)
    failures = metric_total(gateway_metrics(lab["gw-b"]), "suitcase_gateway_write_failures_total")
    cut_at = time.monotonic()
    with lab.link_cut("store"):
        gw_a = sc.gateways["gw-a"].start()  # back while the store is away
        lab["gw-a"].wait_port(9100, timeout=60, proc=gw_a)
        wait_until(
            lambda: (
                metric_total(gateway_metrics(lab["gw-b"]), "suitcase_gateway_write_failures_total") > failures
            ),
            timeout=60,
            what="the gateway's writes failing while the store is cut off",
        )
        time.sleep(max(0.0, STORE_CUT_S - (time.monotonic() - cut_at)))
        sc.counts["cut_s"] = round(time.monotonic() - cut_at, 1)
    sc.servers["server-b"].start()  # its start-up checks the store, so once the cable is back
    assert pis.wait(300) == 0, pis.log_tail()
    sc.counts["acked_by_broker"] = pis_status(lab["pis"])["acked"]
    wait_until(lambda: store.count() >= total, timeout=180, what=f"all {total:,} readings in the store")
    time.sleep(1.0)  # anything redelivered late would land now


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    """Build the nine hosts, run the stream with its faults once; removed after the module."""
    require_lab()
    lab = Lab()
    try:
        began = time.monotonic()
        sc = _build(lab)
        sc.counts["build_s"] = round(time.monotonic() - began, 1)
        _stream_with_faults(sc)
        sc.counts["stream_s"] = round(time.monotonic() - began - sc.counts["build_s"], 1)
        print(f"scenario: {sc.counts}")
        yield sc
    finally:
        print(lab.describe(40))
        lab.close()


def test_every_reading_lands_exactly_once(scenario: Scenario) -> None:
    """Test that after a gateway's and a replica's kill -9 and a store outage longer than the
    gateway's retry backoff, the store holds each of the 100,000 readings once, with its value."""
    sc = scenario
    total = DEVICES * PACKS * RECORDS
    assert sc.counts["published_at_kill"] < DEVICES * PACKS, f"the kill came after the stream: {sc.counts}"
    assert sc.counts["at_cut"] < total, f"the cut came after everything landed: {sc.counts}"
    assert sc.counts["cut_s"] > _RETRY_MAX_S
    assert sc.gateways["gw-a"].starts == 2 and sc.servers["server-b"].proc is not None
    assert sc.counts["acked_by_broker"] == DEVICES * PACKS
    assert sc.store.count() == total
    want = {(r.quantity, r.device, round(r.time * 1e6) * 1000): r.value for r in expected(sc.plan)}
    got: dict[tuple[str, str, int], float] = {}
    doubled = 0
    for series in sc.store.query(
        'SELECT "value" FROM "temperature", "humidity" GROUP BY "device"', READINGS_DATABASE
    ):
        device = series["tags"]["device"]
        for t, value in series["values"]:
            key = (series["name"], device, int(t))
            doubled += key in got
            got[key] = value
    assert doubled == 0
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"missing {missing}, unexpected {extra}"
    wrong = [(k, got[k], v) for k, v in want.items() if got[k] != v][:5]
    assert not wrong, wrong


_RELATIVE = {"now", "age_s"}  # relative to the moment of the request, not data


def _data(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items() if k not in _RELATIVE}
    if isinstance(value, list):
        return [_data(v) for v in value]
    return value


def _both(sc: Scenario, path: str) -> tuple[Any, Any]:
    """GET ``path`` from both replicas (as the org's admin); their answers minus request-time fields."""
    bearer = {"Authorization": f"Bearer {sc.admin_token}"}
    a, b = (_data(_ok(server.api("GET", path, headers=bearer))) for server in sc.servers.values())
    return a, b


def test_both_replicas_return_the_same_fleet_and_deployments(scenario: Scenario) -> None:
    """Test that both replicas, one of them killed and restarted, answer the same fleet and deployments."""
    sc = scenario
    a, b = _both(sc, "/devices?limit=100")
    assert a == b
    assert sorted(d["device"] for d in a["data"]) == sorted(sc.plan["devices"])
    a, b = _both(sc, "/deployments")
    assert a == b and sc.deployment_id in [d["id"] for d in a["data"]]
    a, b = _both(sc, f"/deployments/{sc.deployment_id}")
    assert a == b and sorted(a["devices"]) == sorted(sc.plan["devices"])
    for device in sc.plan["devices"][:3]:
        assert _both(sc, f"/devices/{device}")[0] == _both(sc, f"/devices/{device}")[1]
        a, b = _both(sc, f"/devices/{device}/latest")
        assert a == b and a["readings"], a


def test_a_session_made_on_one_replica_works_on_the_other(scenario: Scenario) -> None:
    """Test that a browser session made on one replica is valid on the other, changes included, and
    that logging out on one ends it on both."""
    a, b = scenario.servers["server-a"], scenario.servers["server-b"]
    status, session = _login(a, *ADMIN)
    assert status == 200
    me = _ok(b.api("GET", "/auth/me", headers=session))
    assert me["user"]["email"] == ADMIN[0]
    renamed = _ok(
        b.api("PATCH", f"/deployments/{scenario.deployment_id}", {"name": "Quay sensors (north)"}, session)
    )
    assert renamed["name"] == "Quay sensors (north)"
    assert (
        _ok(a.api("GET", f"/deployments/{scenario.deployment_id}", headers=session))["name"]
        == renamed["name"]
    )
    assert b.api("POST", "/auth/logout", None, session)[0] == 204
    assert a.api("GET", "/auth/me", headers=session)[0] == 401


def test_the_guess_limit_holds_across_replicas(scenario: Scenario) -> None:
    """Test that failed logins count across replicas: after the limit, both refuse the address."""
    a, b = scenario.servers["server-a"], scenario.servers["server-b"]
    statuses = []
    for i in range(2 * GUESS_LIMIT):
        server = (a, b)[i % 2]
        statuses.append(server.api("POST", "/auth/login", {"email": ADMIN[0], "password": f"wrong {i}"})[0])
    assert statuses[:GUESS_LIMIT] == [401] * GUESS_LIMIT, statuses
    assert statuses[GUESS_LIMIT:] == [429] * GUESS_LIMIT, statuses


class _Hooks(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_each_alert_fires_once_and_resolves_once_across_replicas(scenario: Scenario) -> None:
    """Test that with both replicas evaluating every half second (and on request at once), each
    device's offline alert fires once and resolves once, and its webhook hears each event once.

    The rule's limit (1 h) is far beyond the run: the scenario's data is 3 days old, so it fires at
    once, and the fresh pack cannot age past it again while the test runs, however loaded the
    machine (with a 60 s limit a slow run saw the fresh pack go stale and a second firing)."""
    sc = scenario
    hooks = _Hooks((sc.lab.operator_address, 0), _HookHandler)
    hooks.received = []
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    bearer = {"Authorization": f"Bearer {sc.admin_token}"}
    a, b = sc.servers["server-a"], sc.servers["server-b"]
    try:
        rule = _ok(
            a.api(
                "POST",
                "/alert-rules",
                {
                    "org_id": sc.org_id, "deployment_id": sc.deployment_id, "name": "Pi silent",
                    "kind": "offline", "params": {"interval_s": 1800, "intervals": 2},
                    "webhooks": [f"http://{sc.lab.operator_address}:{hooks.server_address[1]}/hook"],
                },
                bearer,
            ),
            201,
        )  # fmt: skip

        def alerts() -> list[dict[str, Any]]:
            body = _ok(b.api("GET", f"/alerts?rule_id={rule['id']}&limit=100", headers=bearer))
            return list(body["data"])

        def race() -> None:
            """Both replicas evaluate at once, besides their own loops; each call is answered
            (bounded) before this returns."""
            racers = [
                threading.Thread(target=s.api, args=("POST", "/alerts/evaluate", None, bearer))
                for s in (a, b)
            ]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(120)
                assert not racer.is_alive(), "an evaluation did not answer within 120 s"

        for _ in range(5):
            race()
        wait_until(lambda: len(alerts()) >= DEVICES, timeout=180, what="an offline alert per Pi")
        # The Pis speak again: one fresh pack each, so every alert resolves.
        fresh = dict(sc.plan, packs=1, start=time.time() - 1, rate=200)
        fresh_pis = start_pis(sc.lab["pis"], sc.broker, fresh, name="pis-fresh")
        assert fresh_pis.wait(180) == 0, fresh_pis.log_tail()
        wait_until(
            lambda: all(x["state"] == "resolved" for x in alerts()), timeout=180, what="every alert resolved"
        )
        wait_until(lambda: len(hooks.received) >= 2 * DEVICES, timeout=180, what="the webhooks")
        for _ in range(3):  # a second firing would be made by these rounds, on either replica
            race()
        time.sleep(2.0)  # grace for a duplicate notification already on its way
        final = alerts()
        subjects = [x["subject"] for x in final]
        assert sorted(subjects) == sorted(set(subjects)) and len(subjects) == DEVICES, subjects
        events = sorted((h["event"], h["alert"]["subject"]) for h in hooks.received)
        assert events == sorted(
            [("firing", d) for d in sc.plan["devices"]] + [("resolved", d) for d in sc.plan["devices"]]
        ), events
    finally:
        hooks.shutdown()
        hooks.server_close()


def test_no_process_opened_a_file_of_another_host(scenario: Scenario) -> None:
    """Test that, sampled all through the run, no process of any host held a file under another
    host's directory, and that the watcher did see each host's own files."""
    trespasses = scenario.lab.trespasses()
    assert trespasses == [], "\n".join(map(str, trespasses))
    watcher = scenario.lab.watcher
    assert watcher.samples > 100
    for name in ("broker", "store", "registry", "gw-a", "gw-b", "server-a", "server-b", "pis"):
        assert watcher.own_paths.get(name), f"the watcher saw no file of {name}"
