"""A real browser for the web tests: Debian's ``chromium`` driven by Playwright (its Python package, no browser
download: ``executable_path`` points at the system's binary).

Contract (``tests/conftest.py`` registers the fixtures once for every test; a module must not import them
itself, or a second Playwright starts in the same thread and fails with "Sync API inside the asyncio loop"):

- ``browser``: a session-wide headless Chromium (:class:`playwright.sync_api.Browser`); the flags keep it off the
  network this machine does not have (background networking, component updates, sync).
- ``page``: a fresh browser context and page per test (own cookies), closed afterwards.
- ``screenshot(page, name)``: saves ``<name>.png`` under ``OAIOD_SCREENSHOTS`` (default ``build/screenshots``,
  not committed) for a person to review; returns the path.

Without a ``chromium`` on PATH (``.ci/run`` installs Debian's), the tests that use a browser are skipped, except
under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    """The system's Chromium, or a skip (a failure under CI) naming what is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    if not found:
        reason = "browser tests need Debian's chromium (apt-get install chromium; .ci/run does it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context (no cookies) and page for one test."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot for review (``OAIOD_SCREENSHOTS``, default ``build/screenshots``)."""
    folder = Path(os.environ.get("OAIOD_SCREENSHOTS", "build/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
