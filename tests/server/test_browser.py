"""The live readings page in headless Chromium: charts draw and values update as readings arrive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gateway.store import SqliteStore
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings
from tests.server.data import climate

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(settings: ServerSettings, store: SqliteStore) -> Iterator[ServerThread]:
    """The app on a free port over a store holding 10 minutes of two devices' readings."""
    now = time.time()
    for i in range(60):
        t = now - 600 + i * 10
        store.write(climate("school7-k3f9", t, temperature=21 + (i % 12) / 10))
        store.write(climate("library-m2x1", t, temperature=19.5 + (i % 7) / 10, org="odense"))
    with ServerThread(create_app(settings), "127.0.0.1", 0) as server:
        yield server


def test_page_draws_charts_and_updates(
    live_server: ServerThread, store: SqliteStore, page: Any, screenshot_dir: Path
) -> None:
    """Test that the page shows each device's values and charts, and a new reading appears by polling."""
    shots = screenshot_dir
    page.set_viewport_size({"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url)
    expect(page).to_have_title("IoT Suitcase — live readings")
    card = page.locator('article[data-device="school7-k3f9"]')
    expect(card.locator('figure[data-quantity="temperature"] canvas')).to_have_count(1)
    expect(card.locator('figure[data-quantity="pressure"] canvas')).to_have_count(1)
    expect(page.locator("article.card")).to_have_count(2)
    expect(page.locator("#device-count")).to_have_text("2 devices")
    expect(page.locator("#empty")).to_be_hidden()
    temperature = card.locator('.metric[data-quantity="temperature"] .value')
    expect(temperature).not_to_have_text("")

    store.write(climate("school7-k3f9", time.time(), temperature=27.5))
    expect(temperature).to_have_text("27.5", timeout=30_000)
    expect(card.locator('.metric[data-quantity="temperature"] .unit')).to_have_text("°C")
    page.wait_for_timeout(300)  # let uPlot redraw before the picture
    page.screenshot(path=str(shots / "server-live-readings.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "server-live-readings-phone.png"), full_page=True)
    assert errors == []


def test_empty_page_then_first_device_appears(
    settings: ServerSettings, store: SqliteStore, page: Any, screenshot_dir: Path
) -> None:
    """Test that the empty state shows until a first device reports, then its card and chart appear."""
    shots = screenshot_dir
    with ServerThread(create_app(settings), "127.0.0.1", 0) as server:
        page.set_viewport_size({"width": 1024, "height": 600})
        page.goto(server.url)
        expect(page.locator("#empty")).to_be_visible()
        expect(page.locator("#empty")).to_contain_text("suitcase demo")
        expect(page.locator("#device-count")).to_have_text("0 devices")
        page.screenshot(path=str(shots / "server-live-readings-empty.png"))

        store.write(climate("first-a1b2", time.time(), temperature=18.25))
        card = page.locator('article[data-device="first-a1b2"]')
        value = card.locator('.metric[data-quantity="temperature"] .value')
        expect(value).to_have_text("18.3", timeout=30_000)
        expect(card.locator('figure[data-quantity="temperature"] canvas')).to_have_count(1)
        expect(page.locator("#empty")).to_be_hidden()
        expect(page.locator("#device-count")).to_have_text("1 device")


# The first series colour of live.js (Okabe-Ito blue), as the canvas holds it.
LINE_RGB = (0, 114, 178)


def test_charts_break_at_a_gap_and_show_every_axis_label_whole(
    settings: ServerSettings, store: SqliteStore, page: Any, screenshot_dir: Path
) -> None:
    """Test that a Pi away for six minutes shows as a gap in its live chart, not as a straight line
    drawn across the time without data, and that the y axis is wide enough for its longest label as
    soon as the chart is drawn ("29.25" was drawn as "!9.25", cut at the canvas's left edge)."""
    now = time.time()
    for i in range(25):  # 14 to 10 minutes ago, then 4 minutes ago to now: a gap of six minutes
        store.write(climate("gap-a1b2", now - 840 + i * 10, temperature=28.55 + (i % 4) * 0.2))
        store.write(climate("gap-a1b2", now - 240 + i * 10, temperature=28.55 + (i % 4) * 0.2))
    # The server's now is the test's: the chart's 15 minutes end where the readings do, however
    # long the page takes to load.
    with ServerThread(create_app(settings, clock=lambda: now), "127.0.0.1", 0) as server:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(server.url)
        plot = page.locator('article[data-device="gap-a1b2"] figure[data-quantity="temperature"] .plot')
        expect(plot.locator("canvas")).to_have_count(1)
        page.wait_for_function("el => el.uplot && el.uplot.data[0].length > 0", arg=plot.element_handle())
        axis = plot.evaluate(
            """el => { const u = el.uplot, a = u.axes[1];
                 u.ctx.save(); u.ctx.font = a.font[0];
                 const widest = Math.max(...a._values.map(v => u.ctx.measureText(v).width));
                 u.ctx.restore();
                 return {size: a._size, needed: a.ticks.size + a.gap + widest / devicePixelRatio,
                         labels: a._values}; }"""
        )
        assert axis["size"] >= axis["needed"], axis
        # the middle of the gap, 7 minutes ago: no pixel of the line in that column
        column = plot.evaluate(
            """(el, t) => { const u = el.uplot, x = Math.round(u.valToPos(t, 'x', true));
                 const px = u.ctx.getImageData(x, 0, 1, u.ctx.canvas.height).data, out = [];
                 for (let i = 0; i < px.length; i += 4) out.push([px[i], px[i + 1], px[i + 2]]);
                 return out; }""",
            now - 420,
        )
        page.screenshot(path=str(screenshot_dir / "server-live-gap.png"), full_page=True)
        line = [p for p in column if sum(abs(a - b) for a, b in zip(p, LINE_RGB, strict=True)) < 60]
        assert not line, "the line is drawn across the six minutes without readings"
        # and the line is there where there are readings, 12 minutes ago
        drawn = plot.evaluate(
            """(el, t) => { const u = el.uplot, x = Math.round(u.valToPos(t, 'x', true));
                 const px = u.ctx.getImageData(x, 0, 1, u.ctx.canvas.height).data;
                 let n = 0; for (let i = 0; i < px.length; i += 4)
                   if (Math.abs(px[i] - 0) + Math.abs(px[i + 1] - 114) + Math.abs(px[i + 2] - 178) < 60) n++;
                 return n; }""",
            now - 720,
        )
        assert drawn > 0
