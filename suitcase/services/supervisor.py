"""Run and watch the stack's processes where systemd does not (a container, this machine).

``suitcase services up`` starts ``python -m suitcase.services.supervisor CONFIG_DIR`` in its own
session; it starts Mosquitto, InfluxDB and PostgreSQL, restarts one that exits (waiting 1 s, then
doubling up to 30 s), and on SIGTERM stops them all cleanly and exits. Its pid is in
``run/supervisor.pid``; each process logs to ``log/<service>.log``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from suitcase.broker import _die_with_parent_hook
from suitcase.services.layout import Layout, load_layout
from suitcase.services.processes import ProcessSpec, find_binaries, process_specs
from suitcase.services.settings_files import parse_env

__all__ = ["PIDFILE", "Supervisor", "main", "supervisor_pid"]

log = logging.getLogger(__name__)
PIDFILE = "supervisor.pid"
_MAX_BACKOFF = 30.0


def supervisor_pid(layout: Layout) -> int | None:
    """The pid of the stack's running supervisor, or None."""
    path = layout.run_dir / PIDFILE
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"suitcase.services.supervisor" not in cmdline.read_bytes():
        return None  # a pid reused by another program
    return pid


class Supervisor:
    """Keeps each :class:`ProcessSpec` running until :meth:`stop`."""

    def __init__(self, specs: list[ProcessSpec], log_dir: Path) -> None:
        self.specs = specs
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {spec.name: 0 for spec in specs}
        self._stopping = threading.Event()

    def _start(self, spec: ProcessSpec) -> None:
        env = None
        if spec.env_file is not None:
            try:
                env = {**os.environ, **parse_env(spec.env_file.read_text())}
            except OSError as exc:
                log.error("%s not started: cannot read %s (%s)", spec.name, spec.env_file, exc)
                return
        out = (self.log_dir / f"{spec.name}.log").open("ab")
        try:
            self.processes[spec.name] = subprocess.Popen(
                spec.argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=spec.user,
                group=None,
                preexec_fn=_die_with_parent_hook(),
            )
        except OSError as exc:  # one service that cannot start must not stop the others
            log.error("%s could not start (%s); trying again", spec.name, exc)
            return
        finally:
            out.close()
        log.info("started %s (pid %d)", spec.name, self.processes[spec.name].pid)

    def run(self) -> None:
        """Start every process and restart those that exit, until :meth:`stop`."""
        backoff = {spec.name: 1.0 for spec in self.specs}
        next_start = {spec.name: 0.0 for spec in self.specs}
        for spec in self.specs:
            self._start(spec)
        while not self._stopping.wait(0.5):
            now = time.monotonic()
            for spec in self.specs:
                process = self.processes.get(spec.name)
                if process is not None and process.poll() is None:
                    if now - next_start[spec.name] > 60:
                        backoff[spec.name] = 1.0  # ran a minute: the next failure is a new one
                    continue
                if process is not None:
                    log.warning("%s exited with %s; restarting in %.0f s", spec.name, process.returncode,
                                backoff[spec.name])  # fmt: skip
                    self.processes.pop(spec.name)
                    next_start[spec.name] = now + backoff[spec.name]
                    backoff[spec.name] = min(backoff[spec.name] * 2, _MAX_BACKOFF)
                elif now >= next_start[spec.name]:
                    self.restarts[spec.name] += 1
                    self._start(spec)
                    next_start[spec.name] = time.monotonic()
        self._stop_all()

    def stop(self) -> None:
        self._stopping.set()

    def _stop_all(self) -> None:
        for spec in reversed(self.specs):
            process = self.processes.get(spec.name)
            if process is not None and process.poll() is None:
                process.send_signal(spec.stop_signal)
        for spec in reversed(self.specs):
            process = self.processes.get(spec.name)
            if process is None:
                continue
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within 30 s; killed", spec.name)
                process.kill()
                process.wait(5)


def main(argv: list[str] | None = None) -> int:
    """``python -m suitcase.services.supervisor CONFIG_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    layout = load_layout(Path(args[0]))
    if layout is None:
        print(f"no stack in {args[0]}: run `suitcase services up` first", file=sys.stderr)
        return 2
    logging.basicConfig(
        filename=layout.log_dir / "supervisor.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    binaries, missing = find_binaries()
    if binaries is None:
        log.error("missing programs: %s", ", ".join(missing))
        return 2
    supervisor = Supervisor(process_specs(layout, binaries), layout.log_dir)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
    pidfile = layout.run_dir / PIDFILE
    pidfile.write_text(f"{os.getpid()}\n")
    try:
        supervisor.run()
    finally:
        with contextlib.suppress(OSError):
            pidfile.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
