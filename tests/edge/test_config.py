"""Tests of edge/config.py: the saved device config (``device.json``) keeps its secret."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import (
    effective_device_config,
    load_edge_settings,
    load_saved_device_config,
    save_device_config,
)
from kits.models import DeviceConfig, DeviceSensor, MqttSettings

CONFIG = DeviceConfig(
    device="pi-1",
    org="aarhus",
    mqtt=MqttSettings(username="pi-1", password="broker-s3cret"),
    sensors=[DeviceSensor(name="indoor", part="bme280", address=0x77)],
    bus="emulated",
)


@pytest.fixture()
def usual_umask() -> Iterator[None]:
    """The umask of most services (022): files are world-readable unless created otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_device_json_is_never_readable_by_others(
    tmp_path: Path, usual_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the file holding the broker password is 0600 from its creation, not chmodded later:
    when its content is synced to disk, nobody but the owner can read it."""
    modes: list[int] = []
    real_fsync = os.fsync

    def watching_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            modes.append(stat.S_IMODE(info.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watching_fsync)
    path = save_device_config(tmp_path / "state", CONFIG)
    assert modes and all(mode == 0o600 for mode in modes), [oct(m) for m in modes]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = load_saved_device_config(tmp_path / "state")
    assert saved is not None and saved.mqtt.password == "broker-s3cret"
    assert [p.name for p in path.parent.iterdir()] == ["device.json"]  # no temporary file left


def test_a_planted_temporary_file_does_not_catch_the_secret(tmp_path: Path, usual_umask: None) -> None:
    """Test that a symlink planted where a fixed temporary name would be does not receive the
    password: the temporary file is always new (O_EXCL, no symlink followed)."""
    state = tmp_path / "state"
    state.mkdir()
    stolen = tmp_path / "stolen"
    for name in ("device.tmp", "device.json.tmp", ".device.json.tmp"):
        (state / name).symlink_to(stolen)
    save_device_config(state, CONFIG)
    assert not stolen.exists()
    assert stat.S_IMODE((state / "device.json").stat().st_mode) == 0o600


def test_saving_again_replaces_the_config(tmp_path: Path) -> None:
    """Test that a second save replaces the first whole (the config command persists this way)."""
    save_device_config(tmp_path, CONFIG)
    save_device_config(tmp_path, CONFIG.model_copy(update={"publish_interval_s": 30.0}))
    saved = load_saved_device_config(tmp_path)
    assert saved is not None and saved.publish_interval_s == 30.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json"]


def test_the_config_file_s_bus_replaces_the_claimed_config_s(tmp_path: Path) -> None:
    """Test that `bus = "emulated"` in edge.toml (what the README says for trying it on a laptop) makes
    the agent read emulated sensors although the config the server sent at the claim names the board."""
    save_device_config(tmp_path / "state", CONFIG.model_copy(update={"bus": "board"}))
    path = tmp_path / "edge.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\nbus = "emulated"\n')
    device = effective_device_config(load_edge_settings(path))
    assert device is not None and device.bus == "emulated"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    device = effective_device_config(load_edge_settings(path))
    assert device is not None and device.bus == "board"
