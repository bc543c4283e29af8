"""server/web/static/charts.js in headless Chromium: the time axis of deployment, public and kiosk charts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "server" / "web" / "static"


@pytest.mark.parametrize(("width", "days"), [(520, 3), (520, 4), (300, 3), (400, 3), (460, 7)])
def test_a_time_axis_over_days_names_each_day_once(page: Any, width: int, days: float) -> None:
    """Test that a chart over days labels a day where it starts and the time between, never the same
    label twice in a row: ticks 12 h apart read "Nov 29, Nov 30, Nov 30, Dec 1, Dec 1", and daily
    ticks of a 3-day chart on a narrow card "00:00, 00:00, 00:00"."""
    page.set_viewport_size({"width": 600, "height": 400})
    page.set_content(f'<html lang="en"><body><div id="plot" style="width:{width}px"></div></body></html>')
    page.add_script_tag(path=str(STATIC / "vendor" / "uPlot.iife.min.js"))
    page.add_script_tag(path=str(STATIC / "charts.js"))
    page.evaluate(
        """(days) => { const start = Date.UTC(2026, 10, 28, 10) / 1000, times = [], values = [];
             for (let t = start; t < start + days * 86400; t += 3600) { times.push(t); values.push(10); }
             const chart = new Suitcase.Chart(document.getElementById('plot'),
               {quantity: 'pm2_5', label: 'PM2.5', unit: 'µg/m³', thresholds: [],
                series: [{device: 'd', sensor: 's', times: times, values: values}]},
               {tz: 'Europe/Copenhagen'});
             window.chart = chart; }""",
        days,
    )
    page.wait_for_function("() => window.chart.plot.axes[0]._values")
    labels: list[str] = page.evaluate("() => window.chart.plot.axes[0]._values")
    assert len(labels) >= 2, labels
    repeated = [a for a, b in itertools.pairwise(labels) if a == b]
    assert not repeated, labels
    assert any(label[:1].isalpha() for label in labels), labels  # the dates are there
