"""Tests of gateway/group.py: a member's view of its group and which member adopts a dead one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.consumer import Gateway
from gateway.group import DOWN, UP, GroupMembership
from gateway.store import SqliteStore
from kits.errors import SuitcaseError
from suitcase.broker import MosquittoBroker
from tests.services.mosquitto import STACK_GATEWAY
from tests.waiting import wait_until


class _Recorder:
    """Stands in for the gateway: records adoptions asked for and what is published."""

    def __init__(self, can_adopt: bool = True) -> None:
        self.adopted: list[str] = []
        self.published: list[tuple[str, bytes, bool]] = []
        self.can_adopt = can_adopt

    def adopt(self, member: str) -> bool:
        self.adopted.append(member)
        return self.can_adopt

    def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        self.published.append((topic, payload, retain))
        return True


def _member(client_id: str, rec: _Recorder, retry_s: float = 0.05) -> GroupMembership:
    return GroupMembership("pool", client_id, adopt=rec.adopt, publish=rec.publish, retry_s=retry_s)


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
    wait_until(lambda: rec.adopted.count("gw-d") == 2, timeout=10, what="the retry")
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
        a.wait_subscribed()
        b.wait_subscribed()
        assert a.members is not None
        wait_until(lambda: a.members.records == {"gw-a": UP, "gw-b": UP}, timeout=10, what="both up")
        b.stop()  # MQTT 3.1.1: its will (down) is published as it leaves
        wait_until(lambda: "gw-b" not in a.members.records, timeout=20, what="gw-b adopted and cleared")
        assert a.metrics.adoptions.labels("drained")._value.get() >= 1
    store.close()
