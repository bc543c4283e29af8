"""Tests of server/charts.py's window widths."""

from __future__ import annotations

import math
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from gateway.store import FINE_WIDTHS, ROLLUP_WIDTHS, Reader, SeriesWindows, Window, series_of
from server.charts import bucket_width, downsample
from server.spans import DeviceSpan


@given(
    span=st.floats(min_value=60, max_value=5 * 365 * 86_400), points=st.integers(min_value=10, max_value=5000)
)
def test_a_window_width_keeps_at_least_half_the_points_and_reads_rollups(span: float, points: int) -> None:
    """Test that a chart's window width leaves at most ``points`` windows in its span (aligned or
    not) and at least half of them, in whole seconds, and a multiple of a rollup from half a
    minute up (so the store reads rollups, not readings), of a 5-second one from 2.5 s up (the
    embedded store's)."""
    every = bucket_width(span, points)
    raw = span / (points - 1)
    assert every == math.floor(every) and every >= raw
    assert math.ceil(span / every) + 1 <= points  # the windows an unaligned span touches
    if raw >= 30:
        assert every <= 2 * raw
        assert any(every % w == 0 for w in ROLLUP_WIDTHS)
    if raw >= 2.5:
        assert every <= 2 * raw
        assert any(every % w == 0 for w in (*FINE_WIDTHS, *ROLLUP_WIDTHS))


def test_the_page_ranges_read_a_few_rollup_rows_per_point() -> None:
    """Test the widths of the deployment page's ranges at 1,000 points: a 7-day chart reads one
    15-minute rollup per point, a year one 12-hour rollup, 6 hours one 30-second rollup and an hour
    one 5-second rollup (the embedded store's)."""
    days = 86_400.0
    widths = {r: bucket_width(s, 1000) for r, s in (("24h", days), ("7d", 7 * days), ("30d", 30 * days))}
    assert widths == {"24h": 120.0, "7d": 900.0, "30d": 3600.0}  # 2 minute rollups, 1, 1
    assert bucket_width(365 * days, 1000) == 43_200.0
    assert bucket_width(6 * 3600.0, 1000) == 30.0
    assert bucket_width(3600.0, 1000) == 5.0


class _Windows:
    """A store's read side answering the given windows (what any backend returns, made here)."""

    def __init__(self, windows: list[Window]) -> None:
        self.answer = windows

    def windows(self, *args: object, **kwargs: object) -> list[Window]:
        return self.answer

    def series_windows(self, *args: object, **kwargs: object) -> list[SeriesWindows]:
        return series_of(self.answer)


@given(
    st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True),
    st.lists(st.sampled_from(["co2", "temperature", "passes"]), min_size=1, max_size=3, unique=True),
    st.integers(1, 6),
    st.sets(st.integers(0, 30), max_size=4),
)
def test_downsample_draws_each_series_whole_with_or_without_gaps(
    sensors: list[str], quantities: list[str], starts: int, missing: set[int]
) -> None:
    """Test that each drawn series holds its windows' values oldest first, whether every series has
    every window or some windows are missing."""
    windows = [
        Window("o", "d", s, q, 3600.0 * i, 2, 10.0 + i, 1.0, 20.0 + i)
        for i in range(starts)
        for s in sensors
        for q in quantities
    ]
    windows = [w for n, w in enumerate(windows) if n not in missing]
    drawn = downsample(
        cast(Reader, _Windows(windows)), [DeviceSpan("o", "d", 0.0, math.inf)], 0.0, 3600.0 * 10, points=12
    )
    expected = {
        (s, q): [
            (w.start, w.mean * 2 if q == "passes" else w.mean)
            for w in windows
            if (w.sensor, w.quantity) == (s, q)
        ]
        for s in sensors
        for q in quantities
    }
    assert {(x.sensor, x.quantity): list(zip(x.times, x.values, strict=True)) for x in drawn} == {
        k: v for k, v in expected.items() if v
    }
