"""The fault suite's tally: what counts as landed, lost and doubled."""

from __future__ import annotations

from kits.wire import Record
from tests.reliability.faults import Ledger, tally

T = 1_796_238_878.6895  # within a fraction of a microsecond of a half millisecond


def _r(t: float, value: float = 1.0, quantity: str = "temperature") -> Record:
    return Record("city", "pi-1", "indoor", quantity, value, t)


def test_a_reading_stored_once_landed_twice_doubled_missing_lost() -> None:
    """Test that the tally counts each reading sent as landed or lost, and every extra row as doubled."""
    sent = Ledger()
    sent.add([_r(T), _r(T + 1), _r(T + 2)])
    stored = [_r(T), _r(T + 1), _r(T + 1), _r(T + 5)]  # T+1 twice, T+2 missing, T+5 never sent
    t = tally("case", sent, stored)
    assert (t.sent, t.landed, t.lost, t.doubled) == (3, 2, 1, 2)


def test_a_time_that_comes_back_across_a_half_millisecond_is_the_same_reading() -> None:
    """Test that a reading the store returns a hair across the millisecond boundary (nanoseconds back
    to float seconds) is matched, not counted lost once and doubled once."""
    t = tally("case", [_r(T)], [_r(T - 2e-7)])
    assert (t.landed, t.lost, t.doubled) == (1, 0, 0)


def test_a_wrong_value_is_reported() -> None:
    """Test that a stored row with another value than the one sent is named in the detail."""
    t = tally("case", [_r(T, 1.0)], [_r(T, 2.0)])
    assert t.detail.get("wrong_value") == 1
