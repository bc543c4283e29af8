"""Updates the agent refuses, each with its reason in the reply, while it goes on sampling.

A running agent on a real Mosquitto gets ``update`` commands: a wheel whose SHA-256 is not the
offered one, a full disk (a small tmpfs) during the install, bad arguments, an owner's opt-out,
an agent not started by the launcher. None of them changes the running version or stops sampling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.emulated import build_bus
from edge.updates.home import AgentHome
from kits.models import DeviceConfig, DeviceSensor, MqttSettings
from tests.agent_wheels import AgentWheel, WheelServer
from tests.edge.updates.launching import offer
from tests.edge.updates.mqtt_peer import Peer
from tests.services import require_service

pytestmark = [pytest.mark.mosquitto]

ORG = "aarhus"


def _agent(mosquitto: Any, home: AgentHome | None, *, allowed: bool = True) -> tuple[Agent, Peer]:
    device = f"upd-{uuid.uuid4().hex[:8]}"
    config = DeviceConfig(
        device=device,
        org=ORG,
        bus="emulated",
        publish_interval_s=0.2,
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port),
        sensors=[DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=0.2)],
    )
    peer = Peer(mosquitto.host, mosquitto.port, ORG, device)
    agent = Agent(
        config,
        build_bus(config.sensors, "office-day", clock=time.time, seed=1),
        home=home,
        updates_allowed=allowed,
    )
    agent.start()
    peer.ready(20)
    return agent, peer


@pytest.fixture()
def running(mosquitto: Any, tmp_path: Path) -> Iterator[tuple[Agent, Peer, AgentHome]]:
    home = AgentHome(tmp_path / "agent")
    agent, peer = _agent(mosquitto, home)
    yield agent, peer, home
    agent.stop()
    peer.close()


def _still_sampling(peer: Peer) -> None:
    assert peer.sampling_since(time.monotonic(), 15), "the agent stopped publishing"


def test_a_wheel_whose_hash_does_not_match_is_refused(
    running: tuple[Agent, Peer, AgentHome], agent_wheels: dict[str, AgentWheel], wheel_server: WheelServer
) -> None:
    """Test that a wheel whose SHA-256 differs from the offer's is refused, nothing installed."""
    agent, peer, home = running
    wrong = "0" * 64
    reply = peer.reply(peer.send("update", offer(agent_wheels["good"], wheel_server, 30, sha256=wrong)), 60)
    assert reply["ok"] is False
    assert "SHA-256 mismatch for iot_suitcase-0.2.0-py3-none-any.whl" in reply["error"]
    assert f"offered {wrong}, downloaded {agent_wheels['good'].sha256}" in reply["error"]
    assert "agent 0.1.0 runs on" in reply["error"]
    assert home.installed() == [] and home.current_version() is None and not agent.restart_requested
    assert not any(home.downloads.glob("*")) if home.downloads.exists() else True
    _still_sampling(peer)


def test_bad_update_arguments_are_refused_with_each_reason(
    running: tuple[Agent, Peer, AgentHome], agent_wheels: dict[str, AgentWheel], wheel_server: WheelServer
) -> None:
    """Test that wrong arguments and unreachable wheels are refused with what to fix, and that the
    running version offered again is answered as done without any install."""
    agent, peer, home = running
    good = offer(agent_wheels["good"], wheel_server, 30)
    cases = {
        "version must be": {**good, "version": "../../etc"},
        "sha256 must be": {**good, "sha256": "ABC"},
        "url must be": {**good, "url": "file:///etc/passwd"},
        "deadline_s must be 5..3600": {**good, "deadline_s": 10**400},
        "filename iot_suitcase-0.2.0-py3-none-any.whl is not version 0.2.1": {**good, "version": "0.2.1"},
        "unknown arguments 'force'": {**good, "force": True},
        "could not fetch": {**good, "url": f"{wheel_server.url}/missing.whl"},
    }
    for expected, args in cases.items():
        reply = peer.reply(peer.send("update", args), 30)
        assert reply["ok"] is False and expected in reply["error"], (expected, reply)
    same = peer.reply(
        peer.send("update", {**good, "version": "0.1.0", "filename": "iot_suitcase-0.1.0-py3-none-any.whl"}),
        30,
    )
    assert same == {**same, "ok": True, "result": {"version": "0.1.0", "already": True}}
    assert home.installed() == [] and not agent.restart_requested
    _still_sampling(peer)


def test_an_owner_opt_out_and_an_agent_without_launcher_refuse_updates(
    mosquitto: Any, agent_wheels: dict[str, AgentWheel], wheel_server: WheelServer, tmp_path: Path
) -> None:
    """Test that a Pi whose owner set ``updates = false``, and an agent not started by the launcher
    (it could not roll back), refuse an update and say how to change that."""
    for home, allowed, expected in (
        (AgentHome(tmp_path / "agent"), False, "opted out of updates (updates = false"),
        (None, True, "not started by the launcher"),
    ):
        agent, peer = _agent(mosquitto, home, allowed=allowed)
        try:
            reply = peer.reply(peer.send("update", offer(agent_wheels["good"], wheel_server, 30)), 30)
            assert reply["ok"] is False and expected in reply["error"], reply
            _still_sampling(peer)
        finally:
            agent.stop()
            peer.close()


@pytest.fixture()
def small_disk(tmp_path: Path, agent_wheels: dict[str, AgentWheel]) -> Iterator[Path]:
    """A tmpfs with room for the wheel but not for its install."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        require_service("a tmpfs mount (root)", "run the tests as root (CI does)")
    mount = tmp_path / "small"
    mount.mkdir()
    size_kib = agent_wheels["good"].size // 1024 + 256
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_the_install_is_refused_and_cleaned_up(
    mosquitto: Any, agent_wheels: dict[str, AgentWheel], wheel_server: WheelServer, small_disk: Path
) -> None:
    """Test that an install that fills the disk is refused with "disk full" and how much is free,
    that the partial install and the download are removed (the space is back), and that the agent
    samples on."""
    home = AgentHome(small_disk / "agent")
    agent, peer = _agent(mosquitto, home)
    try:
        free_before = shutil.disk_usage(small_disk).free
        reply = peer.reply(peer.send("update", offer(agent_wheels["good"], wheel_server, 30)), 120)
        assert reply["ok"] is False
        assert "disk full while installing iot_suitcase-0.2.0-py3-none-any.whl" in reply["error"], reply
        assert "KiB free under" in reply["error"] and "agent 0.1.0 runs on" in reply["error"]
        assert home.installed() == [] and home.current_version() is None and not agent.restart_requested
        assert shutil.disk_usage(small_disk).free >= free_before - 64 * 1024  # nothing left behind
        _still_sampling(peer)
    finally:
        agent.stop()
        peer.close()
