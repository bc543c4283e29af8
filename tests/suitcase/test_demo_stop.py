"""``suitcase demo`` stops cleanly: on SIGINT, SIGTERM and SIGHUP, in order, and its Mosquitto never
outlives it (a second signal forces; kill -9 of the demo takes Mosquitto along).

Each wait is on the event (a line, the exit, the broker's pid gone) with a generous bound for a
loaded machine; how long the stop takes is not asserted (the demo prints "stopped in N s").

The demo runs as a person runs it, as a subprocess with its output piped (no terminal): the
URLs, the login and the progress must then arrive as plain lines, flushed as they happen.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from suitcase.broker import find_mosquitto
from tests.services import require_service

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


@dataclass
class _Demo:
    process: subprocess.Popen[str]
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (each line arrives as printed: flushed)."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if found := re.search(pattern, line):
                return found
        while time.monotonic() < deadline:
            try:
                got = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got is None:
                break
            self.lines.append(got)
            if found := re.search(pattern, got):
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines))

    def rest(self, timeout: float) -> str:
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        while True:
            try:
                line = self._queue.get(timeout=10)  # the rest, until the pipe closes (None)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo workdir for the module: only the first start writes the simulated history."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    return tmp_path_factory.mktemp("demo")


@pytest.fixture
def demo(workdir: Path, tmp_path: Path) -> Iterator[_Demo]:
    args = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "suitcase",
        "demo",
        "--devices",
        "2",
        "--broker",
        "mosquitto",
    ]
    args += ["--workdir", str(workdir), "--interval", "1", "--no-faults"]
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, cwd=workdir
        )
    running = _Demo(process, stderr_path)
    running.start_reading()
    yield running
    if process.poll() is None:
        process.kill()
        process.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it holds no port
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _started(demo: _Demo) -> int:
    """Wait for the plain start lines; return Mosquitto's pid."""
    demo.wait_line(r"^page: http://127\.0\.0\.1:\d+/$", 120)
    demo.wait_line(r"^fleet: http://127\.0\.0\.1:\d+/fleet  \(log in as demo@open-lab\.example / \S+\)$", 60)
    pid = int(demo.wait_line(r"^broker: mosquitto on 127\.0\.0\.1:\d+ \(pid (\d+)\)$", 60).group(1))
    demo.wait_line(r"^running \(Ctrl-C or SIGTERM to stop\)$", 60)
    demo.wait_line(r"^running \d+ s: \d+ readings landed, 0 dead letters$", 90)  # progress, flushed
    return pid


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_everything_in_order(demo: _Demo, signum: signal.Signals) -> None:
    """Test that SIGINT, SIGTERM and SIGHUP stop the Pis, the gateway, the server and the broker in
    that order, without warnings, exiting 0, and Mosquitto is gone."""
    broker = _started(demo)
    # Mosquitto runs in a session of its own: a Ctrl-C sent to the terminal's foreground process
    # group does not reach it before the ordered shutdown does.
    assert os.getsid(broker) != os.getsid(demo.process.pid)
    assert os.getpgid(broker) != os.getpgid(demo.process.pid)
    demo.process.send_signal(signum)
    try:
        demo.process.wait(120)  # a bound for a hang, not a speed figure
    except subprocess.TimeoutExpired:
        demo.process.send_signal(signal.SIGABRT)
        demo.process.wait(5)
        raise AssertionError("hung:\n" + "\n".join(demo.lines) + demo.stderr_path.read_text()) from None
    out = demo.rest(5)
    stderr = demo.stderr_path.read_text()
    assert demo.process.returncode == 0, out + stderr
    assert _wait_dead(broker, 30), "mosquitto outlived the demo"
    order = [m.group(1) for m in re.finditer(r"^stopped the ([A-Za-z ]+) \(", out, re.MULTILINE)]
    assert order == ["emulated Pis", "gateway", "store", "server", "broker"], out
    assert re.search(r"\d+ readings landed from 2 devices", out), out
    assert f"{signum.name}: stopping in order (again to force)" in out
    assert "WARNING" not in stderr and "Traceback" not in stderr, stderr


def test_a_second_signal_forces_the_stop_and_takes_mosquitto_along(demo: _Demo) -> None:
    """Test that SIGINT twice in a row ends the demo at once, Mosquitto with it."""
    broker = _started(demo)
    demo.process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    demo.process.send_signal(signal.SIGINT)  # as a person would: a moment after the first
    demo.process.wait(60)
    assert demo.process.returncode in (0, 130)  # 0: the ordered stop was quicker than the second
    assert _wait_dead(broker, 30), "mosquitto outlived a forced stop"


def test_mosquitto_dies_with_a_killed_demo(demo: _Demo) -> None:
    """Test that kill -9 of the demo (no handler runs) still ends its Mosquitto: it is never left
    orphaned holding its port."""
    broker = _started(demo)
    demo.process.kill()
    demo.process.wait(60)
    assert _wait_dead(broker, 30), "mosquitto was orphaned by a killed demo"


_TWICE = """
import os, signal, sys, threading, time
from suitcase.demo import _Signals
stop = threading.Event()
with _Signals(stop) as signals:
    signals.force.append(lambda: print("force hook ran", flush=True))
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.3)
    print("stop set" if stop.is_set() else "stop NOT set", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
print("not forced", flush=True)
"""


def test_the_second_signal_runs_the_force_hooks_and_exits_130() -> None:
    """Test that the first Ctrl-C asks for the ordered stop and the second, while it runs, kills
    the broker (the force hooks) and exits at once with 130."""
    result = subprocess.run(
        [sys.executable, "-c", _TWICE], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 130, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "stop set",
        "SIGINT again: forcing the demo to stop",
        "force hook ran",
    ]
