"""Tests of gateway/metrics.py and ``suitcase gateway dead-letters``."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.consumer import Gateway
from gateway.metrics import Metrics
from gateway.store import DeadLetter
from suitcase.broker import EmbeddedBroker, free_port
from tests.gateway.gwtools import NOW, FlakyStore, Publisher
from tests.gateway.test_consumer import BAD, pack
from tests.waiting import wait_until


def test_metrics_endpoint_counts_messages_points_dead_letters_and_sink_state(
    embedded_broker: EmbeddedBroker, store: FlakyStore, client_id: str
) -> None:
    """Test that /metrics shows messages, points per sink, latency, dead letters by reason, sink up/down."""
    metrics = Metrics()
    port = free_port()
    metrics.serve(port)
    pub = Publisher(embedded_broker.host, embedded_broker.port)
    gw = Gateway(
        store,
        host=embedded_broker.host,
        port=embedded_broker.port,
        client_id=client_id,
        batch_messages=10,
        batch_age_s=0.05,
        clock=lambda: NOW,
        metrics=metrics,
    )
    with gw:
        gw.wait_subscribed(60)
        for i in range(5):
            pub.publish(*pack("dev-m", i))
        pub.publish(*BAD["not_json"])
        wait_until(lambda: gw.stats.acked == 6, what="6 acks")
        store.failing = True
        pub.publish(*pack("dev-m", 99))
        wait_until(lambda: gw.stats.store_failures >= 1, what="a failed write")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        store.failing = False
        wait_until(lambda: gw.stats.acked == 7, what="recovery")
    pub.close()
    sink = f'sink="sqlite:{store.path}"'
    assert "suitcase_gateway_messages_total 7.0" in text  # the 7th is in the batch being retried
    assert "suitcase_gateway_acked_total 6.0" in text
    assert f"suitcase_gateway_points_written_total{{{sink}}} 10.0" in text
    assert f"suitcase_gateway_write_seconds_count{{{sink}}}" in text
    assert 'suitcase_gateway_dead_letters_total{reason="not_json"} 1.0' in text
    assert f"suitcase_gateway_sink_up{{{sink}}} 0.0" in text
    assert f"suitcase_gateway_write_failures_total{{{sink}}}" in text
    assert "suitcase_gateway_connected 1.0" in text


def test_dead_letters_command_lists_newest_first_with_reason(tmp_path: Path) -> None:
    """Test that `gateway dead-letters` lists each dead letter's code, topic, reason and payload."""
    with FlakyStore(tmp_path / "s.db") as store:
        store.write_dead_letters(
            [
                DeadLetter(
                    NOW - 5, "suitcase/v1/o/d/telemetry", b"{not json", "not_json", "payload is not JSON"
                ),
                DeadLetter(NOW, "suitcase/v1/o/e/telemetry", b"[]", "bad_shape", "the SenML pack is empty"),
            ]
        )
    result = CliRunner().invoke(app, ["dead-letters", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert result.output.index("bad_shape") < result.output.index("not_json")
    assert "the SenML pack is empty" in result.output and "{not json" in result.output
    bad = CliRunner().invoke(app, ["dead-letters", "--store", "mysql://x"])
    assert bad.exit_code == 2 and "unknown scheme" in bad.output
