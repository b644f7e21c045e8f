"""A headless Chromium page for the browser tests (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs the Debian chromium package: apt-get install -y chromium"
)


@contextmanager
def chromium_page(*, height: int, args: tuple[str, ...] = ()) -> Iterator[Any]:
    """A 1440 px wide page of a fresh headless Chromium (extra command-line `args`), closed on exit."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", *args],
        )  # fmt: skip
        try:
            yield browser.new_page(viewport={"width": 1440, "height": height})
        finally:
            browser.close()
