"""Shared fixtures: every service has one module in tests/services/, loaded here."""

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
