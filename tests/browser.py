"""A real browser for the tests: Playwright for Python driving Debian's
Chromium (the ``chromium`` package; ``make test`` installs it through
``bin/system-deps``).

Playwright never downloads a browser here: it launches the system binary. A
missing Chromium fails the test with the install hint; it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TOLLGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in containers and CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = (
    f"Chromium is not installed at {CHROMIUM}. Install Debian's package (`sudo apt-get install chromium`; "
    "`make test` does, through bin/system-deps) or point TOLLGATE_CHROMIUM at a Chromium binary. "
    "Playwright's own browser download is not used."
)


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile.

    Playwright's sync API runs an event loop in this thread, so Django's ORM
    refuses to run inside the block: do database work before or after it."""
    if not Path(CHROMIUM).is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),  # a fresh user-data dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1100},
        )
        try:
            yield context
        finally:
            context.close()
