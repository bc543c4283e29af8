"""Tests of gateway/cli.py: ``suitcase gateway run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.store import SqliteStore
from suitcase.broker import EmbeddedBroker, free_port
from tests.gateway.gwtools import Publisher
from tests.gateway.test_consumer import pack
from tests.waiting import wait_until


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    """Test that a bad store URL, a bad group or an unreachable broker exit with code 2 and say why."""
    runner = CliRunner()
    cases = [
        (["run", "--store", "mysql://x"], "unknown scheme"),
        (["run", "--store", str(tmp_path / "s.db"), "--group", "Not A Group"], "SUITCASE_GATEWAY_GROUP"),
        (
            ["run", "--store", str(tmp_path / "s.db"), "--mqtt-port", str(free_port())],
            "cannot reach the MQTT broker",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_run_without_a_broker_exits_instead_of_hanging(tmp_path: Path) -> None:
    """Test that `suitcase gateway run` with no broker to reach exits with code 2 and the reason: it
    printed the reason and then hung at exit, waiting for its store writer's child process."""
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            "from suitcase.cli import main; main()",
            "gateway",
            "run",
            "--sink",
            f"sqlite:///{tmp_path / 's.db'}",
            "--mqtt-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert process.returncode == 2, process.stderr
    assert "cannot reach the MQTT broker" in process.stderr
    assert "Traceback" not in process.stderr


def test_run_writes_readings_and_stops_on_sigterm(tmp_path: Path, embedded_broker: EmbeddedBroker) -> None:
    """Test that `gateway run` (configured by environment) writes readings and exits 0 on SIGTERM,
    printing plain lines when its output is not a terminal."""
    store_path = tmp_path / "store.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=f"sqlite:///{store_path}",
        SUITCASE_GATEWAY_MQTT_PORT=str(embedded_broker.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-cli-{tmp_path.name}"[:60],
    )
    code = "from gateway.cli import app; app(['run'])"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    pub = Publisher(embedded_broker.host, embedded_broker.port)
    try:
        wait_until(store_path.exists, what="the store file")
        reader = SqliteStore(store_path)
        i = 0

        def landed() -> bool:
            nonlocal i
            i += 1
            pub.publish(*pack("dev-cli", i))  # keep publishing until the gateway is subscribed
            return reader.count_readings() > 0

        wait_until(landed, timeout=60, what="a reading written by the CLI gateway")
        reader.close()
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "stopping the gateway" in err
    # stderr is a pipe, not a terminal: plain lines, no live panel's escape codes
    assert f"gateway 127.0.0.1:{embedded_broker.port} -> " in err and ": running" in err, err
    assert "\x1b[" not in err, err


def test_run_exits_non_zero_with_the_reason_when_a_worker_thread_dies(
    tmp_path: Path, embedded_broker: EmbeddedBroker
) -> None:
    """Test that `gateway run` whose flusher thread dies exits 70 saying which thread died and why.

    The sink registry gains a ``dying://`` sink (tests/gateway/dying_sink.py) whose write kills the
    thread; the rest is the real command. Its supervisor (systemd, --workers) then restarts it.
    """
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=f"sqlite:///{tmp_path / 'store.db'}",
        SUITCASE_GATEWAY_MQTT_PORT=str(embedded_broker.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-die-{tmp_path.name}"[:60],
    )
    code = (
        "from gateway.sinks import SINKS; SINKS['dying'] = 'tests.gateway.dying_sink:from_url'; "
        "from gateway.cli import app; app(['run', '--quiet', '--sink', 'dying://x'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    pub = Publisher(embedded_broker.host, embedded_broker.port)
    try:
        i = 0

        def ended() -> bool:
            nonlocal i
            i += 1
            pub.publish(*pack("dev-die", i))  # keep publishing until the gateway is subscribed
            return proc.poll() is not None

        wait_until(ended, timeout=30, what="the gateway process to exit")
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 70, err
    assert "error: gateway" in err and "flusher thread died (SinkCrash: the dying sink was given" in err
