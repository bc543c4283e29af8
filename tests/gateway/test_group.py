"""Tests of gateway/group.py: a member's view of its group and which member adopts a dead one."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import consumer
from gateway.consumer import Gateway
from gateway.group import DOWN, UP, GroupMembership
from gateway.store import SqliteStore
from kits.errors import SuitcaseError
from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import MosquittoBroker
from tests.gateway.gwtools import FlakyStore
from tests.services.mosquitto import STACK_GATEWAY
from tests.waiting import wait_until


class _Recorder:
    """Stands in for the gateway: records adoptions asked for and what is published."""

    def __init__(self, can_adopt: bool = True) -> None:
        self.adopted: list[str] = []
        self.published: list[tuple[str, bytes, bool]] = []
        self.can_adopt = can_adopt
        self.online = True  # whether there is a connection to publish on

    def adopt(self, member: str) -> bool:
        self.adopted.append(member)
        return self.can_adopt

    def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        if self.online:
            self.published.append((topic, payload, retain))
        return self.online


def _member(
    client_id: str, rec: _Recorder, retry_s: float = 0.05, clock: Callable[[], float] = time.monotonic
) -> GroupMembership:
    return GroupMembership(
        "pool", client_id, adopt=rec.adopt, publish=rec.publish, retry_s=retry_s,
        heartbeat_s=30, lease_s=90, clock=clock,
    )  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lowest_live_member_adopts_each_dead_one_once() -> None:
    """Test that the live member with the lowest client id adopts every member whose record says
    down, once while it adopts; the others adopt nothing."""
    a_rec, b_rec = _Recorder(), _Recorder()
    a, b = _member("gw-a", a_rec), _member("gw-b", b_rec)
    for m in (a, b):
        m.on_message("suitcase/gateways/pool/gw-a", UP)
        m.on_message("suitcase/gateways/pool/gw-b", UP)
        m.on_message("suitcase/gateways/pool/gw-c", DOWN)
        m.on_message("suitcase/gateways/pool/gw-d", DOWN)
        m.on_message("suitcase/gateways/pool/gw-d", DOWN)  # the same record again
    assert a_rec.adopted == ["gw-c", "gw-d"]
    assert b_rec.adopted == []
    assert a.adopting == {"gw-c", "gw-d"}
    # gw-a dies too: gw-b now adopts it, and what gw-a had not finished.
    b.on_message("suitcase/gateways/pool/gw-a", DOWN)
    assert b_rec.adopted == ["gw-a", "gw-c", "gw-d"]


def test_a_drained_member_record_is_cleared_and_an_undrained_one_tried_again() -> None:
    """Test that a drained adoption clears the dead member's record (empty retained) and one that
    ended first is tried again while the record says down."""
    rec = _Recorder()
    a = _member("gw-a", rec)
    a.on_message("suitcase/gateways/pool/gw-c", DOWN)
    a.on_message("suitcase/gateways/pool/gw-d", DOWN)
    a.done("gw-c", drained=True)
    assert ("suitcase/gateways/pool/gw-c", b"", True) in rec.published
    assert "gw-c" not in a.records
    a.done("gw-d", drained=False)
    wait_until(lambda: rec.adopted.count("gw-d") == 2, timeout=30, what="the retry")
    a.close()


def test_a_member_says_up_again_when_its_record_says_otherwise() -> None:
    """Test that a member seeing its own will (published while it was away) or its record cleared
    says up again, and never adopts itself."""
    rec = _Recorder()
    a = _member("gw-a", rec)
    a.connected()
    a.on_message("suitcase/gateways/pool/gw-a", DOWN)
    a.on_message("suitcase/gateways/pool/gw-a", b"")
    assert rec.published == [("suitcase/gateways/pool/gw-a", UP, True)] * 3
    assert rec.adopted == []


def test_a_member_that_came_back_is_not_adopted() -> None:
    """Test that a member whose record says up again before an adoption ends is neither adopted
    again nor has its record cleared."""
    rec = _Recorder()
    a = _member("gw-a", rec)
    a.on_message("suitcase/gateways/pool/gw-c", DOWN)
    a.on_message("suitcase/gateways/pool/gw-c", UP)
    a.done("gw-c", drained=True)
    assert not [p for p in rec.published if p[0].endswith("gw-c")]
    assert rec.adopted == ["gw-c"]
    a.close()


def test_a_client_id_that_is_not_one_topic_level_is_refused() -> None:
    """Test that a client id with '/', '+' or '#' is refused with the fix."""
    for bad in ("a/b", "a+", "#"):
        with pytest.raises(SuitcaseError, match="letters, digits and dashes"):
            _member(bad, _Recorder())


@pytest.mark.mosquitto
def test_members_under_the_gateway_role_see_each_other_and_adopt(
    mosquitto_dynsec: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that gateways logged in with the stack's gateway role (dynamic security, default deny)
    subscribe to their group, publish their records and Last Will, and that one that stops has its
    session adopted and its record cleared by the other."""
    store = SqliteStore(tmp_path / "s.db")
    user, password = STACK_GATEWAY.username, STACK_GATEWAY.password

    def member(cid: str) -> Gateway:
        return Gateway(
            store,
            host=mosquitto_dynsec.host,
            port=mosquitto_dynsec.port,
            client_id=cid,
            group="pool",
            username=user,
            password=password,
            batch_age_s=0.05,
        )

    a, b = member("gw-a"), member("gw-b")
    with a:
        b.start()
        a.wait_subscribed(60)
        b.wait_subscribed(60)
        assert a.members is not None
        wait_until(lambda: a.members.records == {"gw-a": UP, "gw-b": UP}, timeout=30, what="both up")
        b.stop()  # MQTT 3.1.1: its will (down) is published as it leaves
        wait_until(lambda: "gw-b" not in a.members.records, timeout=60, what="gw-b adopted and cleared")
        assert a.metrics.adoptions.labels("drained")._value.get() >= 1
    store.close()


def test_an_up_record_never_renewed_expires_and_is_adopted() -> None:
    """Test that a member whose record says up but is not renewed within the lease (it vanished
    without its will) stops counting as live and is adopted by the lowest live member, whose
    drained adoption clears its record; a member that keeps renewing is never adopted."""
    clock, rec = _Clock(), _Recorder()
    a = _member("gw-b", rec, clock=clock)
    a.connected()
    a.on_message("suitcase/gateways/pool/gw-a", UP)  # the ghost: lowest id, never renewed
    a.on_message("suitcase/gateways/pool/gw-c", UP)
    assert (a.live, rec.adopted) == (3, [])
    for _ in range(4):  # 4 x 30 s: gw-b and gw-c renew, gw-a does not
        clock.now += 30
        a.on_message("suitcase/gateways/pool/gw-c", UP)
        a.tick()
    assert a.expired == {"gw-a"} and a.live == 2
    assert rec.adopted == ["gw-a"]  # once, while adopting
    assert rec.published.count(("suitcase/gateways/pool/gw-b", UP, True)) == 5  # connected + 4 renewals
    a.done("gw-a", drained=True)
    assert ("suitcase/gateways/pool/gw-a", b"", True) in rec.published
    assert "gw-a" not in a.records and a.expired == set()
    a.close()


def test_an_expired_member_that_renews_is_not_cleared() -> None:
    """Test that a member adopted because its lease ran out, which says up again before the
    adoption ends (it was alive, only quiet), keeps its record and is not adopted again."""
    clock, rec = _Clock(), _Recorder()
    a = _member("gw-a", rec, clock=clock, retry_s=0.01)
    a.on_message("suitcase/gateways/pool/gw-c", UP)
    clock.now += 91
    a.tick()
    assert rec.adopted == ["gw-c"]
    a.on_message("suitcase/gateways/pool/gw-c", UP)  # back: it took its session over again
    a.done("gw-c", drained=False)
    a.tick()
    assert rec.adopted == ["gw-c"]
    assert a.records["gw-c"] == UP and not [p for p in rec.published if p[0].endswith("gw-c")]
    a.close()


def test_a_member_renews_only_while_connected() -> None:
    """Test that a member renews its up record every heartbeat while it has a connection, not when
    publishing fails (no connection), until it connects again; and that a lease not longer than
    the heartbeat is refused."""
    clock, rec = _Clock(), _Recorder()
    a = _member("gw-a", rec, clock=clock)
    a.tick()
    assert rec.published == []  # never connected: nothing to renew
    a.connected()
    clock.now += 29
    a.tick()
    assert len(rec.published) == 1
    clock.now += 1
    rec.online = False  # the connection is gone: the renewal fails, and no more are tried
    a.tick()
    clock.now += 60
    a.tick()
    assert len(rec.published) == 1
    with pytest.raises(SuitcaseError, match="lease"):
        GroupMembership("pool", "gw-a", adopt=rec.adopt, publish=rec.publish, heartbeat_s=30, lease_s=30)


@pytest.mark.mosquitto
def test_a_member_gone_without_its_will_is_adopted_once_its_lease_runs_out(
    mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test, on a real broker, the group healing from a record left saying up: a member whose
    session holds its share of the readings and whose record says up, but that is gone without its
    will (as after a broker restart), is adopted by the live gateway once its lease runs out: every
    reading reaches the store and the stale record is cleared."""
    monkeypatch.setattr(
        consumer, "GroupMembership", functools.partial(GroupMembership, heartbeat_s=0.2, lease_s=1.0)
    )
    ghost = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="gw-0ghost", clean_session=False, protocol=mqtt.MQTTv311
    )
    ghost.connect(mosquitto.host, mosquitto.port)
    ghost.loop_start()
    ghost.subscribe("$share/pool/suitcase/v1/+/+/telemetry", qos=1)
    ghost.publish("suitcase/gateways/pool/gw-0ghost", UP, qos=1, retain=True).wait_for_publish(30)
    wait_until(lambda: ghost.is_connected(), timeout=30, what="the ghost connected")
    ghost.loop_stop()
    ghost.disconnect()  # a clean DISCONNECT: no will, the record stays up, the session stays
    store = SqliteStore(tmp_path / "s.db")
    gateway = Gateway(
        store, host=mosquitto.host, port=mosquitto.port, client_id="gw-live", group="pool", batch_age_s=0.05
    )
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pi")
    sender.connect(mosquitto.host, mosquitto.port)
    sender.loop_start()
    try:
        with gateway:
            gateway.wait_subscribed(60)
            assert gateway.members is not None
            wait_until(lambda: "gw-0ghost" in gateway.members.records, timeout=30, what="the ghost's record")
            packs = [_pack(i) for i in range(20)]  # round robin: about half go to the ghost's session
            for topic, payload in packs:
                sender.publish(topic, payload, qos=1).wait_for_publish(30)
            wait_until(lambda: store.count_readings() == 20, timeout=60, what="every reading stored")
            wait_until(lambda: "gw-0ghost" not in gateway.members.records, timeout=30, what="record cleared")
    finally:
        sender.loop_stop()
        sender.disconnect()
        store.close()


def _pack(i: int) -> tuple[str, bytes]:
    record = Record("city", f"d{i}", "bme280", "temperature", float(i), time.time())
    return build_topic("city", f"d{i}", "telemetry"), encode_pack([record])


@pytest.mark.mosquitto
def test_a_member_waiting_on_its_store_keeps_renewing_its_lease(
    mosquitto: MosquittoBroker, store: FlakyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a gateway whose store blocks (down for longer than the lease) still renews its
    record: it is alive and holds its session, so no other member may adopt it meanwhile."""
    monkeypatch.setattr(
        consumer, "GroupMembership", functools.partial(GroupMembership, heartbeat_s=0.2, lease_s=1.0)
    )
    renewals: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    watcher.on_message = lambda _c, _u, message: renewals.append(bytes(message.payload))
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.loop_start()
    watcher.subscribe("suitcase/gateways/pool/gw-slow", qos=0)
    gateway = Gateway(
        store, host=mosquitto.host, port=mosquitto.port, client_id="gw-slow", group="pool", batch_age_s=0.05
    )
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pi")
    sender.connect(mosquitto.host, mosquitto.port)
    sender.loop_start()
    try:
        with gateway:
            gateway.wait_subscribed(60)
            store.gate.clear()  # the store stops answering: writes block
            sent = 0

            def decoder_waits_on_the_store() -> bool:
                # One batch in the store's write, one handed over, the decoder waiting with the next
                # (in _hand_over: seen in its thread's stack); until then, another reading.
                nonlocal sent
                worker = gateway._worker
                frame = sys._current_frames().get(worker.ident or 0) if worker is not None else None
                while frame is not None:
                    if frame.f_code.co_name == "_hand_over":
                        return True
                    frame = frame.f_back
                topic, payload = _pack(sent)
                sender.publish(topic, payload, qos=1).wait_for_publish(30)
                sent += 1
                return False

            wait_until(
                decoder_waits_on_the_store, timeout=60, what="the decoder waiting on the store", every=0.2
            )
            seen = len(renewals)
            wait_until(lambda: len(renewals) >= seen + 5, timeout=60, what="renewals while the store blocks")
            assert set(renewals) == {UP}
            store.gate.set()
            wait_until(lambda: store.count_readings() == sent, timeout=60, what="the readings written after")
    finally:
        store.gate.set()
        sender.loop_stop()
        sender.disconnect()
        watcher.loop_stop()
        watcher.disconnect()
