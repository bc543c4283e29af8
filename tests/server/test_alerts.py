"""Tests of server/alerts.py's stuck and threshold rules, that a round reads only the devices
whose newest readings leave the rule open (server/alert_changes.py), and that it reads the newest
readings once, bounded to its rules' longest window, on both stores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from kits.wire import Record
from server.alerts import evaluate
from server.resources import Resources, open_resources
from server.settings import ServerSettings
from server.tables import AlertRow, AlertRuleRow, DeviceRow, OrganisationRow
from tests.server.data import NOW


class Counting:
    """The server's store, counting the devices whose readings a round reads."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read: list[str] = []
        self.latest_since: list[float | None] = []

    def readings(self, org: str, device: str, *args: Any, **kwargs: Any) -> Any:
        self.read.append(device)
        return self.inner.readings(org, device, *args, **kwargs)

    def latest(self, devices: Any = None, *, since: float | None = None) -> Any:
        self.latest_since.append(since)
        return self.inner.latest(devices, since=since)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def round_(settings: ServerSettings, store: Any) -> Iterator[tuple[Resources, Counting, list[float]]]:
    """An organisation with devices dev-0..dev-4 and a stuck rule (30 min) and a threshold rule
    (temperature min over 10 min > 30); the clock is ``now[0]``."""
    now = [NOW]
    res = open_resources(settings, clock=lambda: now[0])
    counting = Counting(res.store)
    res = dataclasses.replace(res, store=counting)
    with Session(res.engine) as session:
        org = OrganisationRow(slug="aarhus", name="Aarhus", created_at=NOW)
        session.add(org)
        session.flush()
        session.add_all(DeviceRow(id=f"dev-{i}", org_id=org.id or 0, registered_at=NOW) for i in range(5))
        session.add(AlertRuleRow(org_id=org.id or 0, name="stuck", kind="stuck", params={}, created_at=NOW))
        session.add(
            AlertRuleRow(
                org_id=org.id or 0,
                name="hot",
                kind="threshold",
                params={"quantity": "temperature", "op": ">", "value": 30.0, "window_s": 600},
                created_at=NOW,
            )
        )
        session.commit()
    try:
        yield res, counting, now
    finally:
        res.close()


def _write(store: Any, device: str, start: float, end: float, value: Any) -> None:
    store.write(
        [
            Record("aarhus", device, "bme280", "temperature", value(t) if callable(value) else value, t)
            for t in range(int(start), int(end), 60)
        ]
    )


def _firing(res: Resources) -> set[str]:
    with Session(res.engine) as session:
        return {a.subject for a in session.exec(select(AlertRow).where(AlertRow.state == "firing")).all()}


def test_stuck_and_threshold_fire_for_their_devices_only(
    round_: tuple[Resources, Counting, list[float]], store: Any
) -> None:
    """Test that a series with one value over its window fires "stuck", one above the limit for
    the whole window fires the threshold, and changing or cool devices fire nothing."""
    res, _, _ = round_
    _write(store, "dev-0", NOW - 1800, NOW, 21.0)  # stuck
    _write(store, "dev-1", NOW - 1800, NOW, lambda t: 20 + (t % 7))  # changing
    _write(store, "dev-2", NOW - 1800, NOW, lambda t: 35 + (t // 60) % 3)  # hot all along
    _write(store, "dev-3", NOW - 1800, NOW, lambda t: 35 if t < NOW - 120 else 25)  # cooled down
    evaluate(res)
    assert _firing(res) == {"dev-0:bme280/temperature", "dev-2:bme280/temperature"}


def test_a_round_reads_only_devices_that_may_fire_and_still_sees_a_series_get_stuck(
    round_: tuple[Resources, Counting, list[float]], store: Any
) -> None:
    """Test that once a series' newest readings have differed between rounds, a round does not
    read it for "stuck" while that change is in the window, nor for a threshold its newest reading
    rules out; and that when it then holds one value for the whole window it fires."""
    res, counting, now = round_
    for i in range(5):
        _write(store, f"dev-{i}", NOW - 1800, NOW, lambda t, i=i: 20 + ((t // 60 + i) % 5))
    evaluate(res)
    assert _firing(res) == set()
    assert sorted(set(counting.read)) == [f"dev-{i}" for i in range(5)]  # nothing known yet
    for step in range(1, 4):  # a new reading a minute, each other than the one before
        now[0] = NOW + 60 * step
        for i in range(5):
            _write(store, f"dev-{i}", now[0] - 60, now[0], 10.0 + step + i)
        counting.read.clear()
        evaluate(res)
        assert counting.read == [], step  # every change is known: no window read
        assert _firing(res) == set()
    # dev-4 then reads 42.0 for longer than the window: stuck (and hot), found by reading it.
    _write(store, "dev-4", now[0], now[0] + 1900, 42.0)
    for i in range(4):
        _write(store, f"dev-{i}", now[0], now[0] + 1900, lambda t, i=i: 20 + ((t // 60 + i) % 5))
    now[0] += 1860
    counting.read.clear()
    evaluate(res)
    assert _firing(res) == {"dev-4:bme280/temperature"}
    with Session(res.engine) as session:
        kinds = {
            (a.subject, a.rule_id)
            for a in session.exec(select(AlertRow).where(AlertRow.state == "firing")).all()
        }
    assert len(kinds) == 2  # the stuck rule and the threshold rule, one alert each
    assert "dev-4" in counting.read


def test_a_round_reads_the_newest_readings_once_back_to_its_longest_window(
    round_: tuple[Resources, Counting, list[float]], store: Any
) -> None:
    """Test that a round reads the newest readings of its organisation's devices in one call,
    bounded to the longest window of its rules (stuck: 30 min), so a device silent since before
    then is in no answer and no window read (nor one silent for a shorter rule's window, for that
    rule), and that it still fires where the readings are stuck or hot inside the window; a rule
    with a longer window (an hour) widens the read."""
    res, counting, now = round_
    _write(store, "dev-0", NOW - 7200, NOW - 1900, 21.0)  # one value, but silent for 31 min
    _write(store, "dev-1", NOW - 7200, NOW - 700, lambda t: 45 + (t // 60) % 3)  # hot, silent 12 min
    _write(store, "dev-2", NOW - 1800, NOW, 21.0)  # stuck
    _write(store, "dev-3", NOW - 1800, NOW, lambda t: 35 + (t // 60) % 3)  # hot all along
    evaluate(res)
    assert counting.latest_since == [NOW - 1800]
    assert "dev-0" not in counting.read
    assert counting.read.count("dev-1") == 1  # for "stuck" (30 min), not for the 10 min threshold
    assert _firing(res) == {"dev-2:bme280/temperature", "dev-3:bme280/temperature"}
    with Session(res.engine) as session:
        org = session.exec(select(OrganisationRow)).one()
        session.add(
            AlertRuleRow(
                org_id=org.id or 0,
                name="warm for an hour",
                kind="threshold",
                params={"quantity": "temperature", "op": ">", "value": 40.0, "window_s": 3600},
                created_at=NOW,
            )
        )
        session.commit()
    now[0] = NOW + 60
    counting.latest_since.clear()
    evaluate(res)
    assert counting.latest_since == [NOW + 60 - 3600]
