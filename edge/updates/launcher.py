"""The launcher: runs the agent version ``current`` points at, and rolls back one that fails.

systemd starts ``python -m edge.updates.launcher --home DIR -- edge run --config ...`` from the
base install; the launcher is never updated by an ``update`` command, so a broken version cannot
break the part that undoes it. It starts ``python -m suitcase ARGS`` with the version's folder
first on ``PYTHONPATH`` and forwards SIGTERM/SIGINT to it.

When the agent exits with :data:`~edge.updates.home.RESTART_EXIT_CODE` after switching ``current``
(``update.json`` in phase ``trial``), the launcher starts the new version and watches it: healthy
(``health.json`` written by that version's process) within the deadline -> phase ``healthy``;
exited, or silent past the deadline -> it is stopped, ``current`` goes back to the previous version,
phase ``rolled_back`` with the reason (the exit code and the last line it wrote to stderr), and the
previous version starts again. The agent that runs afterwards sends the outcome as the command's
reply. Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from edge.updates.home import HOME_ENV, RESTART_EXIT_CODE, AgentHome

__all__ = ["Launcher", "main"]

_STOP_GRACE_S = 20.0


class Launcher:
    """Runs the agent under ``home`` with ``args`` (the ``suitcase`` command line) until stopped."""

    def __init__(
        self, home: AgentHome, args: list[str], *, python: str = sys.executable, poll_s: float = 0.1
    ) -> None:
        self.home = home
        self.args = args
        self.python = python
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=20)

    # ------------------------------------------------------------------ the child

    def _start(self, version: str | None) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        site = self.home.site(version)
        if site is not None:
            env["PYTHONPATH"] = str(site)
        env[HOME_ENV] = str(self.home.root)
        self._tail.clear()
        # -P: the working folder is never put before the version's folder on sys.path.
        proc = subprocess.Popen(
            [self.python, "-P", "-m", "suitcase", *self.args],
            cwd=self.home.root,
            env=env,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        threading.Thread(target=self._forward, args=(proc.stderr,), daemon=True).start()
        self._proc = proc
        return proc

    def _forward(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._tail.append(line)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def _last_error(self) -> str:
        lines = list(self._tail)
        return lines[-1][:500] if lines else "it wrote nothing to stderr"

    def _terminate(self, proc: subprocess.Popen[bytes]) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    # ------------------------------------------------------------------ the trial

    def _trial(self, proc: subprocess.Popen[bytes], state: dict[str, Any]) -> str | None:
        """Watch the version on trial; return why it failed, None when it reported healthy."""
        version, deadline_s = str(state["to"]), float(state["deadline_s"])
        started = time.monotonic()
        while True:
            health = self.home.read_health()
            if health is not None and health.get("version") == version and health.get("pid") == proc.pid:
                return None
            code = proc.poll()
            elapsed = time.monotonic() - started
            if code is not None:
                time.sleep(0.2)  # let the stderr reader take the last lines
                return (
                    f"agent {version} exited with code {code} {elapsed:.1f} s after it started: "
                    f"{self._last_error()}"
                )
            if elapsed > deadline_s:
                return (
                    f"agent {version} did not report healthy (connected to the broker and sampled) "
                    f"within {deadline_s:g} s"
                )
            if self._stop.wait(self.poll_s):
                return "stopped"

    def _judge(self, proc: subprocess.Popen[bytes], state: dict[str, Any]) -> subprocess.Popen[bytes]:
        """Run the trial of ``state``; on failure roll back and return the previous version's process."""
        began = time.monotonic()
        failure = self._trial(proc, state)
        if self._stop.is_set():  # shut down during the trial: the next start tries it again
            self._terminate(proc)
            return proc
        if failure is None:
            state.update(phase="healthy", healthy_after_s=round(time.monotonic() - began, 3))
            self.home.write_state(state)
            self.home.prune({state["to"], state.get("from")})
            return proc
        rollback_began = time.monotonic()
        self._terminate(proc)
        previous = state.get("from")
        self.home.switch(previous)
        self.home.clear_health()
        state.update(phase="rolled_back", reason=failure)
        restarted = self._start(previous)
        state["rollback_s"] = round(time.monotonic() - rollback_began, 3)
        self.home.write_state(state)
        self.home.prune({previous})
        sys.stderr.write(f"launcher: rolled back to agent {previous or 'base'}: {failure}\n")
        return restarted

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Run the agent until it exits for good (its exit code) or the launcher is stopped."""
        self.home.root.mkdir(parents=True, exist_ok=True)
        while True:
            state = self.home.read_state()
            version = self.home.current_version()
            if state is not None and state.get("phase") == "switching":
                # Stopped between install and switch: the old version runs on; nothing was switched.
                state.update(phase="failed", reason="the agent stopped before it switched to the new version")
                self.home.write_state(state)
            proc = self._start(version)
            if state is not None and state.get("phase") == "trial" and state.get("to") == version:
                proc = self._judge(proc, state)
            code = proc.wait()
            if self._stop.is_set():
                return 0
            if code != RESTART_EXIT_CODE:
                return code

    def stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL after a grace period) and return from :meth:`run`."""
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge.updates.launcher",
        description="Run the IoT Suitcase agent version in --home and roll back one that fails.",
    )
    parser.add_argument(
        "--home", type=Path, required=True, help="the agent home, e.g. /var/lib/suitcase/agent"
    )
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="the suitcase command line, e.g. edge run -c FILE"
    )
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    if not args:
        parser.error(
            "give the suitcase command line to run, e.g. -- edge run --config /etc/suitcase/edge.toml"
        )
    launcher = Launcher(AgentHome(options.home), args)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        launcher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
