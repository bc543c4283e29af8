"""Tests of server/charts.py's window widths."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from gateway.store import ROLLUP_WIDTHS
from server.charts import bucket_width


@given(
    span=st.floats(min_value=60, max_value=5 * 365 * 86_400), points=st.integers(min_value=10, max_value=5000)
)
def test_a_window_width_keeps_at_least_half_the_points_and_reads_rollups(span: float, points: int) -> None:
    """Test that a chart's window width leaves at most ``points`` windows in its span (aligned or
    not) and at least half of them, in whole seconds, and a multiple of a rollup from half a
    minute up (so the store reads rollups, not readings)."""
    every = bucket_width(span, points)
    raw = span / (points - 1)
    assert every == math.floor(every) and every >= raw
    assert math.ceil(span / every) + 1 <= points  # the windows an unaligned span touches
    if raw >= 30:
        assert every <= 2 * raw
        assert any(every % w == 0 for w in ROLLUP_WIDTHS)


def test_the_page_ranges_read_a_few_rollup_rows_per_point() -> None:
    """Test the widths of the deployment page's ranges at 1,000 points: a 7-day chart reads one
    15-minute rollup per point, a year one 12-hour rollup."""
    days = 86_400.0
    widths = {r: bucket_width(s, 1000) for r, s in (("24h", days), ("7d", 7 * days), ("30d", 30 * days))}
    assert widths == {"24h": 120.0, "7d": 900.0, "30d": 3600.0}  # 2 minute rollups, 1, 1
    assert bucket_width(365 * days, 1000) == 43_200.0
    assert bucket_width(3600.0, 1000) == 4.0  # an hour: from the readings
