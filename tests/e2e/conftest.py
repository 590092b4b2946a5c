"""Browser end-to-end fixtures: one real ``jupyter lab`` for the session and Debian's Chromium."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from .browser import CHROMIUM, SCREENSHOTS, launch_chromium, screenshot
from .lab import LabServer, start_lab

FAILED = pytest.StashKey[bool]()

# Generous: CI runs on 2 cores with a kernel, a Jupyter server and Chromium competing.
expect.set_options(timeout=20_000)


# Package scope, not session: the sync API keeps an event loop running in the main thread
# while it is open, which would break every asyncio test collected after this package.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session", autouse=True)
def _no_stale_failure_screenshots() -> None:
    """Screenshots of failures are from this run only."""
    for old in SCREENSHOTS.glob("FAILED-*.png"):
        old.unlink()


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """``jupyter lab`` with a token, temp runtime/config/data dirs and an empty root; the server
    pings after 1 s of silence, so heartbeats show up in the FrameInspector."""
    server = start_lab(
        tmp_path_factory.mktemp("lab"),
        token=secrets.token_hex(16),
        args=("--Nbws.heartbeat_interval=1",),
    )
    yield server
    server.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    yield context
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture
def page(request: pytest.FixtureRequest, context: BrowserContext) -> Iterator[Page]:
    """A page; if the test fails, its screenshot is saved as FAILED-<test>.png."""
    page = context.new_page()
    yield page
    if request.node.stash.get(FAILED, False):
        screenshot(page, f"FAILED-{request.node.name}")
