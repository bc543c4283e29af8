"""One host: a network namespace, an address, a working directory, and the processes started there.

Every process of a host runs inside its namespace (``ip netns exec``, which execs the command: the
pid is the program's own), with the host's directory as its working directory and ``HOME`` and
``TMPDIR`` inside it, its output in ``<dir>/<name>.log``, in its own session, and is sent SIGTERM
if the test process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.hosts.network import Link

__all__ = ["Host", "HostProcess"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    # PR_SET_PDEATHSIG follows the forking *thread*: only safe from the main thread.
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


class HostProcess:
    """A program running on a host; :meth:`restart` starts it again with the same command."""

    def __init__(
        self,
        host: Host,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        user: str | None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.host = host
        self.stop_signal = stop_signal
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.user = user
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.host.dir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} on {self.host.name} is not running"
        return self.popen.pid

    def start(self) -> HostProcess:
        prefix = ["ip", "netns", "exec", self.host.ns]
        if self.user is not None:
            prefix += ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups"]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [*prefix, *self.argv],
                cwd=self.host.dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.starts += 1
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL, wait: float = 10.0) -> int | None:
        """Send ``sig`` (kill -9 by default) and wait up to ``wait`` s for the exit; return its code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
        try:
            return self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            if sig == signal.SIGKILL:
                raise
            os.kill(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(wait)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop gracefully (SIGTERM, or the program's own ``stop_signal``), SIGKILL after ``timeout`` s."""
        return self.kill(self.stop_signal, timeout)

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the program to exit; return its exit code.

        Raises:
            subprocess.TimeoutExpired: it still runs.
        """
        assert self.popen is not None
        return self.popen.wait(timeout)

    def restart(self) -> HostProcess:
        if self.running():
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Host:
    """A machine of the test: its namespace (``ns``), address (``address``) and directory (``dir``)."""

    def __init__(self, link: Link, directory: Path) -> None:
        self.link = link
        self.name = link.name
        self.ns = link.ns
        self.address = link.address
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.processes: list[HostProcess] = []

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of this host's programs: the test's, minus SUITCASE_*, HOME/TMPDIR here."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUITCASE_", "PYTEST_"))}
        env.update(HOME=str(self.dir), TMPDIR=str(self.dir / "tmp"), PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        start: bool = True,
    ) -> HostProcess:
        """Run ``argv`` on this host (as ``user`` if given); output goes to ``<dir>/<name>.log``."""
        proc = HostProcess(self, name, argv, self.env(env), user, stop_signal)
        self.processes.append(proc)
        return proc.start() if start else proc

    def python(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> HostProcess:
        """Run ``python ARGS`` with the test's interpreter (its virtualenv) on this host."""
        return self.spawn(name, [sys.executable, *args], env)

    def stop_all(self, timeout: float = 20.0) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop(timeout)

    def describe(self, lines: int = 20) -> str:
        """The tail of every process's log, for a failure report."""
        parts = []
        for proc in self.processes:
            state: Any = proc.popen.poll() if proc.popen else "never started"
            parts.append(f"--- {self.name}/{proc.name} (exit {state}):\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    def can_reach(self, address: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from this host to ``address:port`` is accepted within ``timeout`` s."""
        probe = (
            "import socket,sys\n"
            f"try: socket.create_connection(({address!r}, {port}), timeout={timeout})\n"
            "except OSError: sys.exit(1)\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", probe],
            cwd=self.dir,
            capture_output=True,
            timeout=timeout + 30,
            check=False,
        )
        return done.returncode == 0

    def wait_port(self, port: int, timeout: float = 30.0, proc: HostProcess | None = None) -> None:
        """Wait until this host accepts TCP on ``port`` (from the operator); fail early if ``proc`` died."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and not proc.running():
                raise RuntimeError(f"{proc.name} on {self.name} exited:\n{proc.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.address, port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on {self.name} {self.address}:{port} after {timeout:.0f} s")
