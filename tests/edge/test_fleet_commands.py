"""Tests of what the server operates on the agent: a versioned config with sensors turned off or
on (and refusals of one that would break sampling), the ``logs`` command, and the diagnostics in
``meta`` (edge/commands.py, edge/sampler.py, edge/logs.py, edge/diagnostics.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.commands import run_command
from edge.config import load_saved_device_config
from edge.diagnostics import DiagnosticsProbe, read_wifi
from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import Bme280Emulator
from edge.parts.sht4x.emulator import Sht4xEmulator
from kits.models import DeviceConfig, DeviceSensor
from tests.edge.conftest import FakeClock, Targets

SENSORS = [
    DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0),
    DeviceSensor(name="desk", part="sht4x", address=0x44, interval_s=1.0),
]


@pytest.fixture()
def two_sensor_bus(targets: Targets, clock: FakeClock) -> EmulatedI2C:
    return EmulatedI2C(
        {0x77: Bme280Emulator(targets, clock=clock), 0x44: Sht4xEmulator(targets, clock=clock)}
    )


def _agent(bus: EmulatedI2C, clock: FakeClock, state: Path | None = None, **kw: Any) -> Agent:
    config = DeviceConfig(device="pi-1", org="aarhus", sensors=SENSORS, bus="emulated", **kw)
    return Agent(config, bus, clock=clock, state_dir=state, cpu_temperature=lambda: None)


def _cmd(agent: Agent, name: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = run_command(agent, name, json.dumps({"id": "r1", "args": args}).encode())
    assert reply is not None
    return reply.model_dump()


def _sensors(*, desk: bool = True, part: str = "sht4x", interval: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"name": "indoor", "part": "bme280", "address": 0x77, "interval_s": interval},
        {"name": "desk", "part": part, "address": 0x44, "interval_s": interval, "enabled": desk},
    ]


def test_a_config_version_turns_a_sensor_off_and_reports_the_version(
    two_sensor_bus: EmulatedI2C, clock: FakeClock, tmp_path: Path
) -> None:
    """Test that a config version that turns a sensor off stops its readings (kept in the config,
    listed as disabled, not unexpected on the bus), shows its version in meta and the reply, and
    is saved; turning it on again brings its readings back."""
    agent = _agent(two_sensor_bus, clock, tmp_path)
    assert {r.sensor for r in agent.sample_once()} == {"indoor", "desk"}
    reply = _cmd(agent, "config", {"sensors": _sensors(desk=False), "config_version": 2})
    assert reply["ok"] is True and reply["result"]["config_version"] == 2
    clock.now += 2
    assert {r.sensor for r in agent.sample_once()} == {"indoor"}
    agent.scan_unexpected()
    meta = agent.meta()
    assert (meta["config_version"], meta["disabled"], meta["unexpected"]) == (2, ["desk"], [])
    assert set(meta["sensors"]) == {"indoor"}
    assert _cmd(agent, "config", {"sensors": _sensors(), "config_version": 3})["ok"] is True
    clock.now += 2
    assert {r.sensor for r in agent.sample_once()} == {"indoor", "desk"}
    saved = load_saved_device_config(tmp_path)
    assert saved is not None and saved.config_version == 3 and saved.sensors[1].enabled


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"sensors": _sensors(part="bme680")}, "no driver for"),
        (
            {"sensors": [{**s, "enabled": False} for s in _sensors()]},
            "every sensor would be turned off and the device would sample nothing: keep one enabled",
        ),
        ({"sensors": _sensors(interval=0.2)}, "interval_s 0.2 s is below 1 s"),
        ({"config_version": 1}, "config version 1 is older than version 5 in force"),
        ({"sensors": _sensors(), "calibration": [{"sensor": "window", "quantity": "temperature"}]}, "window"),
    ],
)
def test_a_config_that_would_break_sampling_is_refused_and_sampling_goes_on(
    two_sensor_bus: EmulatedI2C, clock: FakeClock, args: dict[str, Any], error: str
) -> None:
    """Test that a config with a part the agent has no driver for, with every sensor off, too fast,
    older than the version in force or calibrating a sensor it lacks, is refused with the reason,
    nothing changes, and both sensors still give readings."""
    agent = _agent(two_sensor_bus, clock, config_version=5)
    before = agent.config
    reply = _cmd(agent, "config", args)
    assert reply["ok"] is False and error in reply["error"], reply
    assert agent.config is before
    assert {r.sensor for r in agent.sample_once()} == {"indoor", "desk"}


def test_logs_returns_the_agents_last_lines(
    two_sensor_bus: EmulatedI2C, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that ``logs`` returns the agent's last lines (its own device's only), oldest first,
    at most as many as asked, and refuses a bad count with the allowed range."""
    caplog.set_level(logging.INFO, logger="edge")
    agent = _agent(two_sensor_bus, clock)
    other = _agent(two_sensor_bus, clock)
    other.log = other.log.__class__(other.log.logger, {"org": "aarhus", "device": "pi-2"})
    logging.getLogger("edge").addHandler(agent.log_tail)
    try:
        for n in range(5):
            agent.log.warning("line %d", n)
        other.log.warning("another device's line")
        lines = _cmd(agent, "logs", {"lines": 3})["result"]["lines"]
    finally:
        logging.getLogger("edge").removeHandler(agent.log_tail)
    assert len(lines) == 3 and all("WARNING edge.agent: [aarhus/pi-1] line" in x for x in lines)
    assert [x[-1] for x in lines] == ["2", "3", "4"]
    assert "from 1 to 200" in _cmd(agent, "logs", {"lines": 10_000})["error"]
    assert "from 1 to 200" in _cmd(agent, "logs", {"lines": 2.5})["error"]
    assert "must be a number" in _cmd(agent, "logs", {"lines": "all"})["error"]
    assert "takes only 'lines'" in _cmd(agent, "logs", {"since": 0})["error"]


WIRELESS = """Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   52.  -58.  -256        0      0      0      3      0        0
"""


def test_meta_carries_disk_outbox_writes_and_wifi(
    two_sensor_bus: EmulatedI2C, clock: FakeClock, tmp_path: Path
) -> None:
    """Test that meta's diagnostics give the state folder's free disk, the outbox file's size, the
    bytes written per hour over the last hour (the SD card's counter on a Pi, else the agent's
    own), and the Wi-Fi signal from the kernel's table; and that without those tables the figures
    are None, not errors."""
    io, wireless = tmp_path / "io", tmp_path / "wireless"
    io.write_text("rchar: 1\nwchar: 2\nwrite_bytes: 1000\n")
    wireless.write_text(WIRELESS)
    mono = FakeClock(100.0)
    none = tmp_path / "none"
    probe = DiagnosticsProbe(
        tmp_path, tmp_path / "outbox.sqlite", io=io, card=none, wireless=wireless, monotonic=mono
    )
    agent = Agent(
        DeviceConfig(device="pi-1", org="aarhus", sensors=SENSORS, bus="emulated"),
        two_sensor_bus,
        clock=clock,
        state_dir=tmp_path,
        diagnostics=probe,
    )
    agent.sample_once()
    first = agent.meta()["diagnostics"]
    assert first["disk_free_bytes"] > 0 and first["disk_total_bytes"] >= first["disk_free_bytes"]
    assert first["outbox_bytes"] > 0 and first["writes_per_h"] is None  # no span yet
    assert (first["wifi_interface"], first["wifi_quality"], first["wifi_dbm"]) == ("wlan0", 52.0, -58.0)
    mono.now += 1800
    io.write_text("write_bytes: 51000\n")
    later = agent.meta()["diagnostics"]
    assert (later["writes_per_h"], later["writes_source"]) == (100_000.0, "agent")
    agent.stop()
    # On a Pi the SD card's own counter (every process's writes) is used: sectors of 512 bytes.
    card = tmp_path / "stat"
    card.write_text("  100 0 800 50  20 0 1000 30 0 40 80\n")
    on_pi = DiagnosticsProbe(tmp_path, None, io=io, card=card, wireless=none, monotonic=mono)
    assert on_pi.snapshot().writes_per_h is None
    mono.now += 3600
    card.write_text("  100 0 800 50  90 0 3000 30 0 40 80\n")
    figures = on_pi.snapshot()
    assert (figures.writes_per_h, figures.writes_source) == (2000 * 512.0, "sd_card")
    bare = DiagnosticsProbe(None, None, io=none, card=none, wireless=none)
    figures = bare.snapshot()
    assert (figures.outbox_bytes, figures.writes_per_h, figures.wifi_dbm) == (None, None, None)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "a\nb\n wlan0: 0000 x y z\n", "a\nb\n wlan0: 0000 70. 196. -256\n"],
)
def test_a_wireless_table_it_cannot_read_gives_no_figure_or_a_fixed_one(tmp_path: Path, text: str) -> None:
    """Test that a wireless table that is empty or garbled gives None, and an unsigned level
    (some drivers report 256 - |dBm|) is read as dBm."""
    path = tmp_path / "wireless"
    path.write_text(text)
    got = read_wifi(path)
    assert got is None if "196" not in text else got == ("wlan0", 70.0, -60.0)
