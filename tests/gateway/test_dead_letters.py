"""Tests of gateway/dead_letters.py: bounded payloads and reasons, per-device rate, retention, log rate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.dead_letters import PAYLOAD_LIMIT, REASON_LIMIT, DeadLetterPolicy, DeadLetters, letter, storable
from gateway.metrics import Metrics
from gateway.store import DeadLetter, SqliteStore
from suitcase.broker import EmbeddedBroker
from tests.gateway.gwtools import FlakyStore, Publisher
from tests.waiting import wait_until


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_letter_keeps_its_payload_up_to_the_limit_and_says_the_full_size() -> None:
    """Test that payload and reason are cut to their limits and untrusted text becomes storable."""
    big = b"x" * (PAYLOAD_LIMIT + 5)
    d = letter(1.0, "t\ud800\x00", big, "oversize", "r\udfff" * 5000)
    assert d.payload == big[:PAYLOAD_LIMIT]
    assert d.reason.endswith(f"[payload of {PAYLOAD_LIMIT + 5} bytes, first {PAYLOAD_LIMIT} kept]")
    assert len(d.reason) < REASON_LIMIT + 100 and "reason cut" in d.reason
    assert d.topic == "t\\ud800\\x00"
    for text in (d.topic, d.reason):
        text.encode("utf-8")  # storable: no lone surrogate, no NUL
        assert "\x00" not in text
    assert storable("plain") == "plain"
    small = letter(1.0, "t", b"abc", "not_json", "why")
    assert (small.payload, small.reason) == (b"abc", "why")


def test_each_device_stores_a_burst_then_a_rate_and_the_rest_is_counted() -> None:
    """Test the per-device token bucket: devices apart, bad topics together, what is over counted."""
    clock = Clock()
    metrics = Metrics()
    letters = DeadLetters(DeadLetterPolicy(burst=3, per_s=0.5), metrics, clock)

    def make(key: tuple[str, str] | None) -> DeadLetter | None:
        return letters.make(key, 1.0, "t", b"p", "not_json", "why")

    a, b = ("org", "dev-a"), ("org", "dev-b")
    assert [make(a) is not None for _ in range(5)] == [True, True, True, False, False]
    assert make(b) is not None  # another device has its own bucket
    clock.now += 2.0  # 0.5 a second: one more
    assert [make(a) is not None for _ in range(2)] == [True, False]
    assert [make(None) is not None for _ in range(4)] == [True, True, True, False]  # bad topics share one
    value = metrics.registry.get_sample_value(
        "suitcase_gateway_dead_letters_unstored_total", {"reason": "not_json"}
    )
    assert value == 4


def test_the_dead_letter_log_is_a_few_lines_and_a_summary_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Test that a flood of dead letters logs ``log_detail`` lines, then one summary per interval."""
    clock = Clock()
    letters = DeadLetters(DeadLetterPolicy(burst=10, log_interval_s=10, log_detail=3), Metrics(), clock)
    with caplog.at_level(logging.WARNING, logger="gateway.dead_letters"):
        for i in range(1000):
            letters.make(("org", f"dev-{i % 7}"), 1.0, "t", b"p", "bad_shape" if i % 2 else "not_json", "why")
        assert len(caplog.records) == 3
        clock.now += 10
        letters.tick()
    assert len(caplog.records) == 4
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("1000 dead letters in the last 10 s (bad_shape 500, not_json 500)")
    assert "930 over the per-device rate limit and not stored" in summary


def test_dead_letters_older_than_the_retention_are_dropped_hourly(tmp_path: Path) -> None:
    """Test that prune drops what is older than the retention from the SQLite store, at most once an hour."""
    clock = Clock()
    letters = DeadLetters(DeadLetterPolicy(retention_s=100), Metrics(), clock)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write_dead_letters([DeadLetter(t, "t", b"", "not_json", "why") for t in (800.0, 899.0, 950.0)])
        letters.prune(store, now=1000.0)
        assert [d.received_at for d in store.dead_letters()] == [950.0]
        store.write_dead_letters([DeadLetter(10.0, "t", b"", "not_json", "why")])
        letters.prune(store, now=1000.0)  # within the hour: nothing done
        assert len(store.dead_letters()) == 2
        clock.now += 3600
        letters.prune(store, now=1000.0)
        assert len(store.dead_letters()) == 1


def test_a_flood_from_one_device_is_acked_counted_and_bounded_in_the_gateway(
    embedded_broker: EmbeddedBroker, store: FlakyStore, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that 60 bad messages of one device store 5 dead letters, count the rest, ack all, log 2 lines."""
    from gateway.consumer import Gateway
    from kits.wire import build_topic

    gw = Gateway(
        store,
        host=embedded_broker.host,
        port=embedded_broker.port,
        client_id=client_id,
        batch_messages=10,
        batch_age_s=0.05,
        dead_letters=DeadLetterPolicy(burst=5, per_s=0.001, log_detail=2),
    )
    pub = Publisher(embedded_broker.host, embedded_broker.port)
    try:
        with caplog.at_level(logging.WARNING), gw:
            gw.wait_subscribed(60)
            for i in range(60):
                pub.publish(build_topic("aarhus", "dev-flood", "telemetry"), b"{bad %d" % i)
            wait_until(lambda: gw.stats.acked == 60, what="every message acked")
            stats = gw.stats
    finally:
        pub.close()
    assert (stats.dead_lettered, stats.unstored) == (5, 55)
    assert len(store.dead_letters(limit=100)) == 5
    flood_lines = [r for r in caplog.records if "dev-flood" in r.getMessage()]
    assert len(flood_lines) == 2
