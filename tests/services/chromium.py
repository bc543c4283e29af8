"""Headless Debian Chromium driven by Playwright, for tests marked ``browser``.

Playwright's own browser download does not work here; it drives /usr/bin/chromium instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import require_service

__all__ = ["CHROMIUM_ARGS", "browser", "chromium_path", "page", "playwright_loop_parked", "screenshot_dir"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium browser (playwright ``Browser``) for the session."""
    path = chromium_path()
    if path is None:
        require_service("chromium", "apt-get install chromium chromium-driver")
    from playwright.sync_api import expect, sync_playwright

    # A page's assertions wait up to 30 s, as its actions do (Playwright's default for `expect` is
    # 5 s: a loaded CI machine, Chromium and the server on two cores, exceeded it). They pass as
    # soon as they hold: a bound, no cost.
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def playwright_loop_parked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hide the session's Playwright event loop from the tests that do not use the browser.

    Playwright's sync API leaves its event loop marked as running in the main thread between its
    calls, for as long as it runs (here: the session, from the first browser test on). Any later
    test that calls ``asyncio.run()`` would fail with "asyncio.run() cannot be called from a running
    event loop". Playwright's code does not run during such a test, so its loop is unmarked for the
    test and marked again after it.
    """
    loop = asyncio.events._get_running_loop()
    if loop is None or "browser" in request.fixturenames:
        yield
        return
    asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(loop)


@pytest.fixture()
def screenshot_dir(tmp_path: Path) -> Path:
    """Where page screenshots go: $SUITCASE_SCREENSHOT_DIR, else the test's tmp dir."""
    folder = Path(os.environ.get("SUITCASE_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (playwright ``Page``) in its own browser context, closed after the test."""
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()
