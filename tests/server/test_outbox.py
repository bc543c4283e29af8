"""The outbox (``server/outbox.py``): notifications leave after the commit that caused them, from
a durable queue, with retries and backoff; a real SMTP server (aiosmtpd) and an HTTP receiver on
loopback (allow-listed), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session, select

from server.outbound import OutboundPolicy
from server.outbox import _claim, deliver_due, enqueue
from server.tables import AlertRow, OutboundMessageRow
from tests.server.data import NOW
from tests.server.receivers import Hook, Mailbox, mailbox, webhook_receiver
from tests.server.world import World

LOOPBACK = OutboundPolicy.from_settings(["127.0.0.1/32"])


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def box() -> Iterator[Mailbox]:
    with mailbox() as server:
        yield server


def _allow_loopback(world: World, box: Mailbox | None = None) -> Any:
    app: Any = world.client.app
    res = app.state.resources
    if box is not None:
        res.settings.smtp_host, res.settings.smtp_port = "127.0.0.1", box.port
    app.state.resources = dataclasses.replace(res, outbound=LOOPBACK)
    return app.state.resources


def _offline_rule(world: World, webhooks: list[str], emails: list[str] | None = None) -> None:
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    world.client.post("/api/v1/enroll", json={"code": code})
    world.ok(
        "a-operator",
        "POST",
        "/alert-rules",
        201,
        json={
            "name": "offline",
            "kind": "offline",
            "params": {"interval_s": 60, "intervals": 3},
            "webhooks": webhooks,
            "emails": emails or [],
        },
    )


def _committed_alerts(url: str) -> set[int]:
    """The alert ids another connection sees: only what has been committed."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT id FROM alerts"))}
    finally:
        engine.dispose()


def test_notifications_leave_after_the_commit(world: World, hook: Hook, box: Mailbox) -> None:
    """Test that when the webhook and the e-mail arrive, the alert they announce is already
    committed (a second connection sees it), i.e. nothing is sent inside the transaction."""
    res = _allow_loopback(world, box)
    url = res.settings.registry_url
    seen_by_hook: list[set[int]] = []
    seen_by_mail: list[set[int]] = []
    hook.on_post = lambda body: seen_by_hook.append(_committed_alerts(url))
    box.on_message = lambda envelope: seen_by_mail.append(_committed_alerts(url))
    _offline_rule(world, [hook.url], ["ops@a.example.org"])
    fired = world.ok("a-operator", "POST", "/alerts/evaluate")["fired"]
    assert len(fired) == 1
    assert [p["alert"]["id"] for p in hook.posts] == fired
    assert seen_by_hook == [set(fired)] and seen_by_mail == [set(fired)]
    assert "[FIRING]" in box.messages[0].content.decode() and box.messages[0].rcpt_tos == [
        "ops@a.example.org"
    ]
    alert = world.ok("a-operator", "GET", "/alerts")["data"][0]
    assert [(n["target"], n["ok"]) for n in alert["notifications"]] == [(hook.url, True), ("smtp", True)]


def test_a_failing_receiver_is_retried_with_backoff(world: World, hook: Hook) -> None:
    """Test that a receiver answering 500 twice gets the message on the third try, 30 s then 60 s
    later (exponential backoff), and that nothing goes out before a retry is due."""
    res = _allow_loopback(world)
    hook.answer = lambda n: (500, {}) if n <= 2 else (204, {})
    _offline_rule(world, [hook.url])
    world.ok("a-operator", "POST", "/alerts/evaluate")  # first try, at NOW
    assert len(hook.posts) == 1

    def at(t: float) -> Any:
        return deliver_due(res.engine, res.settings, t, policy=LOOPBACK)

    assert at(NOW + 29).sent == [] and len(hook.posts) == 1  # not due before 30 s
    assert at(NOW + 30).retrying and len(hook.posts) == 2
    assert at(NOW + 89).sent == [] and len(hook.posts) == 2  # the next wait is 60 s
    assert len(at(NOW + 90).sent) == 1 and len(hook.posts) == 3
    assert at(NOW + 10_000).sent == []  # sent once, never again
    with Session(res.engine) as s:
        row = s.exec(select(OutboundMessageRow)).one()
        assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)
        alert = s.exec(select(AlertRow)).one()
        assert alert.notifications == [{"event": "firing", "target": hook.url, "ok": True, "attempts": 3}]


def test_a_receiver_that_never_answers_is_given_up(world: World, hook: Hook) -> None:
    """Test that after notify_attempts tries the message is marked failed with a generic error."""
    res = _allow_loopback(world)
    res.settings.notify_attempts = 3
    hook.answer = lambda n: (503, {})
    _offline_rule(world, [hook.url])
    world.ok("a-operator", "POST", "/alerts/evaluate")
    t = NOW
    for _ in range(5):
        t += 3600
        deliver_due(res.engine, res.settings, t, policy=LOOPBACK)
    assert len(hook.posts) == 3
    alert = world.ok("a-operator", "GET", "/alerts")["data"][0]
    assert alert["notifications"] == [
        {
            "event": "firing",
            "target": hook.url,
            "ok": False,
            "attempts": 3,
            "error": "the receiver answered HTTP 503",
        }
    ]


def test_a_refused_target_is_not_retried_and_says_why(world: World, hook: Hook) -> None:
    """Test that a webhook to loopback without the allow-list never reaches it, is not retried, and
    its stored error points at the allow-list setting (and reveals nothing about the port)."""
    _offline_rule(world, [hook.url, "http://169.254.169.254/latest/meta-data/"])
    world.ok("a-operator", "POST", "/alerts/evaluate")
    res: Any = world.client.app.state.resources  # type: ignore[attr-defined]
    deliver_due(res.engine, res.settings, NOW + 86400)
    assert hook.posts == []
    notes = world.ok("a-operator", "GET", "/alerts")["data"][0]["notifications"]
    assert [(n["ok"], n["attempts"]) for n in notes] == [(False, 1), (False, 1)]
    assert all("SUITCASE_SERVER_OUTBOUND_ALLOW" in n["error"] for n in notes)
    assert hook.url.rsplit(":", 1)[1].split("/")[0] not in notes[0]["error"]


def test_the_queue_survives_a_restart_and_a_message_is_claimed_once(world: World, hook: Hook) -> None:
    """Test that a queued message is still sent by a fresh engine (a restarted server), and that two
    replicas cannot claim the same message at once."""
    res = _allow_loopback(world)
    with Session(res.engine) as s:
        row = enqueue(s, "webhook", hook.url, {"hello": 1}, NOW, org_id=None)
        s.commit()
        assert row.id is not None
        message_id = row.id
    fresh = create_engine(res.settings.registry_url)
    try:
        assert _claim(fresh, message_id, NOW) and not _claim(res.engine, message_id, NOW + 1)
        assert deliver_due(fresh, res.settings, NOW + 1, policy=LOOPBACK).sent == []  # leased
        assert deliver_due(fresh, res.settings, NOW + 200, policy=LOOPBACK).sent == [message_id]
    finally:
        fresh.dispose()
    assert hook.posts == [{"hello": 1}]
