"""Headless Debian Chromium driven by Playwright, for tests marked ``browser``.

Playwright's own browser download does not work here; it drives /usr/bin/chromium instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import require_service

__all__ = ["CHROMIUM_ARGS", "browser", "chromium_path", "page", "screenshot_dir"]

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
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


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
