"""Runs the real edge agent in forked children, so a test can kill -9 it a hundred times quickly.

    python -m tests.reliability.agent_zygote STATE_DIR DEVICE PORT T0 SPEED PASSWORD CA_FILE

The zygote imports the agent once, then reads commands on stdin: ``run`` forks a child that runs
an :class:`edge.agent.Agent` on ``STATE_DIR`` (its outbox there, ``synchronous=FULL``), publishing
to the broker on ``PORT`` (TLS, logging in as ``DEVICE``), with a clock ``SPEED`` times faster
than real time from ``T0`` (so every sampling cycle writes to the outbox: the kills land during
outbox writes). The zygote
answers ``pid N``, and ``dead N`` once the child has died. Each child prints ``ok ID ...`` after
each outbox write returned, with the ids written: a returned write must survive the kill.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edge.agent import Agent
from edge.emulated import build_bus
from edge.outbox import Outbox, Row
from tests.reliability.conftest import Credentials, device_config


class ReportingOutbox(Outbox):
    """The agent's outbox, saying on stdout which rows each returned write holds."""

    def add(self, values: Sequence[tuple[str, str, float]], *, time: float | None, mono: float) -> list[Row]:
        rows = super().add(values, time=time, mono=mono)
        os.write(1, ("ok " + " ".join(str(r.id) for r in rows) + "\n").encode())
        return rows


def child(state: Path, login: Credentials, port: int, t0: float, speed: float) -> None:
    def clock() -> float:  # runs on across children: each starts where the last one died
        return t0 + (time.time() - T_ZERO) * speed

    config = device_config(login.username, port, login, publish_interval_s=0.01)
    outbox = ReportingOutbox(state / "outbox.sqlite", config.outbox, clock=clock)
    bus = build_bus(config.sensors, "office-day", clock=clock, seed=11)
    agent = Agent(config, bus, clock=clock, outbox=outbox)
    agent.start()
    while True:  # until killed
        time.sleep(1.0)


T_ZERO = time.time()  # the zygote's start


def warm(device: str) -> None:
    """Import what the agent imports lazily (drivers, the bus scan), once, before any fork."""
    config = device_config(device, 1, None)
    agent = Agent(
        config, build_bus(config.sensors, "office-day", clock=time.time, seed=11), outbox=Outbox(None)
    )
    agent.scan_unexpected()
    agent.sample_once()
    agent.outbox.close()


def main(argv: list[str]) -> None:
    state, device, port, t0, speed = Path(argv[0]), argv[1], int(argv[2]), float(argv[3]), float(argv[4])
    login = Credentials(device, argv[5], Path(argv[6]))
    warm(device)
    for line in sys.stdin:
        if line.strip() != "run":
            continue
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            try:
                child(state, login, port, t0, speed)
            finally:
                os._exit(1)
        os.write(1, f"pid {pid}\n".encode())
        os.waitpid(pid, 0)
        os.write(1, f"dead {pid}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1:])
