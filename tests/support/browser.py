"""A real browser for tests: Debian's chromium driven by Python playwright.

Fixtures: `browser` (session-scoped), `context` and `page` (function-scoped: a new context, so
fresh cookies and storage, per test). Import them into the test module, or list this module in
`pytest_plugins` of the root conftest.

Never run `playwright install`: we use the system chromium at /usr/bin/chromium. A missing
chromium is a test failure, not a skip (CI installs it).

Contexts only talk to loopback: any request to another host is aborted and recorded in
`context.blocked_requests` (a list of URLs), so a page that tries to reach the internet shows up.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("KONG_OIDC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 15_000


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("about", "data", "blob"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session")
def browser() -> Iterator["object"]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("python playwright is not installed: run `make install`", pytrace=False)
    pw = sync_playwright().start()
    try:
        # launch() gives chromium a fresh temporary --user-data-dir of its own (playwright refuses an
        # explicit one outside launch_persistent_context) and removes it on close.
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def context(browser) -> Iterator["object"]:
    ctx = browser.new_context()
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    ctx.blocked_requests = []

    def guard(route) -> None:
        url = route.request.url
        if is_loopback_url(url):
            route.continue_()
        else:
            ctx.blocked_requests.append(url)
            route.abort("blockedbyclient")

    ctx.route("**/*", guard)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context) -> Iterator["object"]:
    p = context.new_page()
    try:
        yield p
    finally:
        p.close()
