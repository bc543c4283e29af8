"""Mosquitto faults: a graceful restart with a backlog queued for the gateway, and a kill -9.

Real agents (six readings a second each, outbox on disk, ``synchronous=FULL``) publish through a
real Mosquitto (deploy/mosquitto/suitcase.conf) to a real gateway writing to a real influxd; the
store is read back through the server's read interface and compared with every reading sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.device_commands import queue_command
from server.tables import DeviceCommandRow, DeviceRow
from tests.reliability.conftest import (
    Stack,
    drained,
    ledger_of,
    make_agent,
    running,
)
from tests.reliability.faults import SCALE, stored_rows, tally
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.influxdb]

AGENTS = 3


def test_graceful_restart_with_a_backlog_for_the_gateway_loses_and_doubles_nothing(
    ready: Stack, tmp_path: Path
) -> None:
    """Test that a Mosquitto restart (SIGTERM: it saves its sessions) while a backlog waits for the
    absent gateway loses nothing and doubles nothing: the backlog survives the restart, the agents
    reconnect and go on, and the returning gateway drains it all once."""
    stack = ready
    begin = time.time() - 5
    agents = [make_agent(stack, f"restart-{i}", tmp_path / f"a{i}") for i in range(AGENTS)]
    with running(agents):
        time.sleep(1.0)
        stack.pause_gateway()
        time.sleep(2.0 * SCALE)  # a backlog queues in the broker for the gateway's session
        stack.broker.stop()
        stack.broker.start()  # same port, its persistence file read back
        for agent in agents:
            assert agent.wait_connected(30)
        time.sleep(1.0 * SCALE)
        back = time.monotonic()
        stack.resume_gateway()
        drained(agents)
    result = stack.outcome(
        "Mosquitto restarted (graceful) with a backlog for the gateway",
        ledger_of(agents),
        begin=begin,
        back=back,
        conditions=f"{AGENTS} agents at 6 readings/s; gateway away {3 * SCALE:.0f} s, broker "
        "restarted in between",
        order=20,
    )
    assert result.sent >= AGENTS * 6 * 4, result.summary()
    assert (result.lost, result.doubled) == (0, 0), result.summary()


def test_kill_9_loses_what_the_broker_had_not_saved_and_resend_recovers_it(
    ready: Stack, tmp_path: Path
) -> None:
    """Test that a kill -9 of Mosquitto loses the backlog it held for the gateway since its last save
    (measured, > 0), and that the ``resend`` command to each agent, given to the server (queued in
    its registry, sent by its listener once the device is back online, the reply recorded there),
    recovers every reading: nothing lost, nothing doubled in the end."""
    stack = ready
    # Mosquitto saves every 30 s from its start: restarted now, no save falls in the window below.
    stack.broker.stop()
    stack.broker.start()
    stack.gateway.wait_subscribed(30)
    backlog_s = min(2.0 * SCALE, 20.0)
    begin = time.time() - 5
    agents = [make_agent(stack, f"crash-{i}", tmp_path / f"a{i}") for i in range(AGENTS)]
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    devices = [a.config.device for a in agents]
    with stack.server(registry, devices, command_sweep_s=0.5) as server, running(agents):
        engine = server.app.state.resources.engine  # type: ignore[attr-defined]
        time.sleep(1.0)
        stack.pause_gateway()
        started = time.time()
        time.sleep(backlog_s)
        drained(agents)  # every reading acknowledged by the broker (and marked sent in the outbox)
        stack.kill_broker()  # within its 30 s autosave: the queued backlog is gone
        stack.broker.start()
        back = time.monotonic()
        stack.resume_gateway()
        for agent in agents:
            assert agent.wait_connected(30)
        ledger = ledger_of(agents)
        time.sleep(1.0)  # what the broker still had (if anything) reaches the store
        before = tally(
            "before resend", ledger, stored_rows(stack.reader, ledger.devices(), begin, time.time() + 5)
        )
        assert before.lost > 0, f"the kill should have lost the unsaved backlog: {before.summary()}"
        with Session(engine) as session:
            commands = []
            for agent in agents:
                device = session.get(DeviceRow, agent.config.device)
                assert device is not None
                args = {"from": started - 2, "to": time.time()}
                commands.append(queue_command(session, device, "resend", args, time.time()).command_id)
            session.commit()
        replies = wait_until(lambda: _answered(engine, commands), 60, "the agents' replies to resend")
        assert all(state == "answered" for state, _ in replies), replies
        result = stack.outcome(
            "Mosquitto killed (-9), then `resend` to the agents",
            ledger,
            begin=begin,
            back=back,
            conditions=f"{AGENTS} agents; {backlog_s:.0f} s of backlog queued for the gateway, "
            "killed before its 30 s autosave; `resend` queued in the server, sent by its listener",
            admitted=f"{before.lost} readings lost in the broker until the resend",
            order=30,
            lost_before_resend=before.lost,
            resent=sum(reply["readings"] for _, reply in replies),
        )
    assert (result.lost, result.doubled) == (0, 0), result.summary()


def _answered(engine: Engine, commands: list[str]) -> list[tuple[str, Any]] | None:
    """Each command's state and the reply the server recorded, once all are answered or failed."""
    query = select(DeviceCommandRow).where(col(DeviceCommandRow.command_id).in_(commands))
    with Session(engine) as session:
        rows = session.exec(query).all()
        if len(rows) < len(commands) or any(r.state not in ("answered", "failed") for r in rows):
            return None
        return [(r.state, r.reply if r.state == "answered" else r.error) for r in rows]
