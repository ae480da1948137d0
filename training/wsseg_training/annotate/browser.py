"""A headless Chromium for the annotation tool's tests, benchmark and screenshots: Debian's ``chromium``
package (``scripts/setup.sh`` installs it) driven by Playwright, with a fresh profile and no network use
besides the page it is sent to (Playwright's own browser download is not used)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@contextmanager
def headless_chromium(width_px: int = 1100, height_px: int = 700) -> Iterator[Any]:
    """A Playwright browser context of ``CHROMIUM`` with a new temporary ``--user-data-dir``; removed after."""
    from playwright.sync_api import sync_playwright  # a development dependency (requirements.txt)

    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is not installed (Debian package 'chromium'; scripts/setup.sh installs it)")
    profile = tempfile.mkdtemp(prefix="wsseg-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS), headless=True,
                viewport={"width": width_px, "height": height_px})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
