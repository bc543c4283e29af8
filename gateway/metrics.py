"""Prometheus metrics of a gateway (prometheus-client), in a registry of its own.

Counters move once per batch, not per message, so they cost nothing measurable at full rate.
``serve()`` exposes them on ``/metrics``.

| metric | labels | meaning |
|---|---|---|
| ``suitcase_gateway_messages_total`` | | MQTT messages received (redeliveries included) |
| ``suitcase_gateway_acked_total`` | | messages acknowledged to the broker |
| ``suitcase_gateway_points_written_total`` | sink | readings written (a rewrite counts again) |
| ``suitcase_gateway_batches_total`` | sink | batches written |
| ``suitcase_gateway_write_seconds`` | sink | write latency of one batch (histogram) |
| ``suitcase_gateway_write_failures_total`` | sink | failed writes (each retry counts) |
| ``suitcase_gateway_dropped_points_total`` | sink | readings an optional sink's full backlog dropped |
| ``suitcase_gateway_dead_letters_total`` | reason | messages dead-lettered, by code (docs/architecture.md) |
| ``suitcase_gateway_dead_letters_unstored_total`` | reason | counted, not stored: over the device's rate |
| ``suitcase_gateway_refused_writes_total`` | sink | writes refused for their content (then split) |
| ``suitcase_gateway_inflight_messages`` | | received, not yet acknowledged |
| ``suitcase_gateway_sink_up`` | sink | 1 if the sink's last write succeeded |
| ``suitcase_gateway_connected`` | | 1 while subscribed to the broker |
| ``suitcase_gateway_adoptions_total`` | outcome | dead members' sessions adopted: drained, or ended first |
| ``suitcase_gateway_adopted_messages_total`` | | messages received through adopted sessions |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The gateway's metrics; one instance per gateway (no global registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("suitcase_gateway_messages", "MQTT messages received", registry=r)
        self.acked = Counter("suitcase_gateway_acked", "messages acknowledged to the broker", registry=r)
        self.points = Counter(
            "suitcase_gateway_points_written", "readings written per sink", ["sink"], registry=r
        )
        self.batches = Counter("suitcase_gateway_batches", "batches written per sink", ["sink"], registry=r)
        self.latency = Histogram(
            "suitcase_gateway_write_seconds",
            "write latency of one batch per sink",
            ["sink"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "suitcase_gateway_write_failures", "failed writes per sink", ["sink"], registry=r
        )
        self.dropped = Counter(
            "suitcase_gateway_dropped_points",
            "readings dropped by an optional sink's full backlog",
            ["sink"],
            registry=r,
        )
        self.dead_letters = Counter(
            "suitcase_gateway_dead_letters", "messages dead-lettered by reason", ["reason"], registry=r
        )
        self.unstored_letters = Counter(
            "suitcase_gateway_dead_letters_unstored",
            "dead letters counted but not stored: their device was over its dead-letter rate limit",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            "suitcase_gateway_refused_writes",
            "writes a sink refused for their content, per sink (the batch is split to find the culprits)",
            ["sink"],
            registry=r,
        )
        self.inflight = Gauge(
            "suitcase_gateway_inflight_messages", "messages received, not yet acknowledged", registry=r
        )
        self.sink_up = Gauge(
            "suitcase_gateway_sink_up", "1 if the sink's last write succeeded", ["sink"], registry=r
        )
        self.connected = Gauge("suitcase_gateway_connected", "1 while subscribed to the broker", registry=r)
        self.adoptions = Counter(
            "suitcase_gateway_adoptions",
            "sessions of dead group members adopted, by outcome (drained, or ended first)",
            ["outcome"],
            registry=r,
        )
        self.adopted_messages = Counter(
            "suitcase_gateway_adopted_messages", "messages received through adopted sessions", registry=r
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)
