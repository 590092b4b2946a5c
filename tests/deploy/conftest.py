"""Fixtures of the deployment tests: a test CA, Debian's Chromium (never a downloaded one)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from e2e.browser import CHROMIUM, launch_chromium
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from .tls import Certificates, make_certificates
from .tools import missing


@pytest.fixture(autouse=True)
def _generous_expect() -> None:
    """Generous: CI runs on 2 cores with a Hub, its proxy, three servers, kernels and
    Chromium (set per test: another package's conftest sets its own at import)."""
    expect.set_options(timeout=30_000)


@pytest.fixture(scope="package")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


# Package scope, not session: the sync API keeps an event loop running in the main thread
# while it is open, which would break asyncio tests collected after this package.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = launch_chromium(playwright)
    yield browser
    browser.close()
