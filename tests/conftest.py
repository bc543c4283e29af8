"""Shared fixtures: every service has one module in tests/services/, loaded here."""

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.services.mosquitto",
    "tests.services.chromium",
    "tests.services.influxdb",
    "tests.services.victoriametrics",
    "tests.services.postgres",
    "tests.services.tls",
    "tests.hosts.fixture",
    "tests.agent_wheels",
    "tests.services.stack",
]

# Property tests check what holds, never how fast: Hypothesis' per-example deadline (200 ms) and
# its "input generation is slow" health check fail on a loaded CI machine (test_mqtt's cut
# publishes did: 1.5 s to draw one example). A test's own @settings inherits this profile.
settings.register_profile("suitcase", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suitcase")
