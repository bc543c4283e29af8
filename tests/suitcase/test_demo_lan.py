"""``suitcase demo --lan``: a real Pi on the same network joins the demo.

The "real Pi" is the real agent (``suitcase edge run``) in a network namespace this test creates,
joined to the host by a veth pair with addresses the test assigns and removes at the end; its I2C
sensors are the emulated chips (the stand-in for Raspberry Pi hardware). A machine with no network
address is a fresh namespace with only loopback.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kits.errors import ConfigError
from suitcase.broker import find_mosquitto
from suitcase.lan import lan_address
from tests.services import require_service
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_lan_address_prefers_the_default_route_and_refuses_loopback_only() -> None:
    """Test that --lan picks the default route's interface, skips loopback and link-local, checks a
    wanted address is this machine's, and refuses a machine with no network address with the reason."""
    addresses = {"lo": "127.0.0.1", "docker0": "172.17.0.1", "wlan0": "192.168.1.20", "eth1": "169.254.3.4"}
    assert lan_address(addresses=addresses, default_interfaces=["wlan0"]) == "192.168.1.20"
    assert lan_address(addresses=addresses, default_interfaces=[]) == "172.17.0.1"
    assert lan_address("192.168.1.20", addresses=addresses, default_interfaces=[]) == "192.168.1.20"
    with pytest.raises(
        ConfigError, match=r"not an address of this machine \(it has: 172\.17\.0\.1 \(docker0\)"
    ):
        lan_address("10.9.9.9", addresses=addresses, default_interfaces=[])
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        lan_address("pi.local", addresses=addresses, default_interfaces=[])
    with pytest.raises(
        ConfigError, match=r"no network address \(only loopback\).*connect it to the Open Lab"
    ):
        lan_address(addresses={"lo": "127.0.0.1", "eth0": "169.254.1.1"}, default_interfaces=["eth0"])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _require_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        require_service("network namespaces (root and iproute2)", "run the tests as root with iproute2")


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace with only loopback up; deleted at the end."""
    _require_netns()
    name = f"scdemo-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _in(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def test_lan_on_a_machine_with_no_network_address_is_refused(namespace: str, tmp_path: Path) -> None:
    """Test that `suitcase demo --lan` where only loopback exists exits 1 saying why and what to do."""
    result = subprocess.run(
        _in(namespace, sys.executable, "-m", "suitcase", "demo", "--lan", "--workdir", str(tmp_path / "d")),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no network address (only loopback)" in result.stdout and "without --lan" in result.stdout
    assert not (tmp_path / "d").exists()  # nothing started, nothing written


@pytest.fixture
def veth(namespace: str) -> Iterator[tuple[str, str, str]]:
    """A veth pair: the host end (the laptop) and the namespace end (the Pi), /30 addresses."""
    suffix = secrets.token_hex(2)
    host_if, ns_if = f"vsd{suffix}h", f"vsd{suffix}p"
    third = 200 + secrets.randbelow(50)
    host_ip, pi_ip = f"10.231.{third}.1", f"10.231.{third}.2"
    _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    try:
        _ip("link", "set", ns_if, "netns", namespace)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{pi_ip}/30", "dev", ns_if)
        _ip("netns", "exec", namespace, "ip", "link", "set", ns_if, "up")
        yield namespace, host_ip, pi_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)


@pytest.mark.mosquitto
@pytest.mark.slow
def test_a_pi_on_the_network_joins_a_lan_demo(veth: tuple[str, str, str], tmp_path: Path) -> None:
    """Test that with --lan the demo listens on the laptop's address, shows a QR code and a join
    command with a short code, and a Pi in another network namespace enrolls with that code, runs
    the agent and appears beside the emulated Pi: online, with meta, its readings landed."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    namespace, host_ip, _ = veth
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "suitcase",
            "demo",
            "--lan",
            "--lan-address",
            host_ip,
            "--devices",
            "1",
            "--no-faults",
            "--broker",
            "mosquitto",
            "--workdir",
            str(tmp_path / "demo"),
            "--interval",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    agent: subprocess.Popen[bytes] | None = None
    try:

        def out() -> str:
            return (tmp_path / "demo.log").read_text()

        wait_until(
            lambda: "running (Ctrl-C" in out() or demo.poll() is not None, timeout=120, what="the demo"
        )
        text = out()
        url = f"http://{host_ip}:"
        assert re.search(rf"^page: {re.escape(url)}\d+/$", text, re.MULTILINE), text
        assert "▀" in text or "█" in text  # the QR code of the page, for phones
        join = re.search(
            r"^join Pi 1: suitcase edge enroll --server (\S+) --code (EN-\S+) && suitcase edge run$",
            text,
            re.MULTILINE,
        )
        assert join, text
        server, code = join.group(1), join.group(2)
        assert server.startswith(url)

        state = tmp_path / "pi-state"
        enrolled = subprocess.run(
            [
                *_in(namespace, sys.executable, "-m", "suitcase", "edge", "enroll", "--server", server),
                "--code",
                code,
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        saved = json.loads((state / "device.json").read_text())
        assert saved["mqtt"]["host"] == host_ip  # the Pi is sent to the laptop's broker on the LAN
        saved["bus"] = "emulated"  # this "Pi" has no I2C hardware: the chips' emulators stand in
        (state / "device.json").write_text(json.dumps(saved))
        config = tmp_path / "edge.toml"
        config.write_text(f'state_dir = "{state}"\n')
        agent = subprocess.Popen(
            _in(namespace, sys.executable, "-m", "suitcase", "edge", "run", "--config", str(config)),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.log").open("w"),
            cwd=ROOT,
        )
        device = saved["device"]

        def joined() -> bool:
            rows = httpx.get(f"{server}/api/v1/devices", timeout=30).json()["data"]
            by_id = {d["device"]: d for d in rows}
            pi = by_id.get(device)
            return "demo-pi-1" in by_id and pi is not None and bool(pi.get("online")) and pi["readings"] > 0

        wait_until(joined, timeout=60, every=0.5, what="the Pi in the namespace online beside demo-pi-1")
        readings = httpx.get(f"{server}/api/v1/devices/{device}/readings", timeout=30).json()
        assert readings["count"] > 0 and {r["quantity"] for r in readings["readings"]} >= {"temperature"}
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(5)
        log.close()
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()
