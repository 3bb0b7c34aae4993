"""Sessions that really end, in Chromium through the emulator against the real oidc-provider:
OIDC Back-Channel Logout from the provider, and a copied cookie replayed after logout, with
cookie storage + Redis revocation (Redis storage: tests/e2e/test_browser_redis.py)."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

import httpx

from tests.support.browser_stack import IDP_CONFIG, cookies_named, login, start_browser_stack, submit_logout
from tests.support.idp import LOGIN_USERNAME, LOGOUT_CONFIRM, OidcProvider
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.redis]

PORT = free_port()
BACKCHANNEL = "/backchannel-logout"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    config = {**IDP_CONFIG, "backchannel_logout_uri": f"http://127.0.0.1:{PORT}/app{BACKCHANNEL}"}
    with OidcProvider(config) as provider:
        idp_logs.append(provider.logs)
        yield provider


@pytest.fixture(scope="module")
def stack(idp, echo, redis_server, tmp_path_factory):
    extra = {"session_revocation_redis": True, "session_redis_host": redis_server.host,
             "session_redis_port": redis_server.port, "backchannel_logout_uri_suffix": BACKCHANNEL}
    with start_browser_stack(idp.issuer, echo, str(tmp_path_factory.mktemp("kong-bcl")), app_extra=extra,
                             port=PORT) as s:
        yield s


idp_logs: list = []


def wait_for_log(stack, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in stack.oidc_logs():
            if predicate(entry):
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no matching log entry in {stack.oidc_logs()[-5:]}; idp: {idp_logs[0]()[-2000:] if idp_logs else ''}")


def test_provider_ending_the_session_logs_the_user_out_of_the_gateway(stack, idp, page, context):
    assert login(page, stack.url("/app/before-idp-logout"))["path"] == "/app/before-idp-logout"
    # The user ends the session at the provider itself (not through the gateway).
    page.goto(idp.end_session_endpoint)
    page.wait_for_selector(LOGOUT_CONFIRM)
    page.click(LOGOUT_CONFIRM)
    page.wait_for_load_state()
    entry = wait_for_log(stack, lambda e: e.get("decision") == "backchannel_logout")
    assert entry["reason"] == "logged_out" and entry["sessions_revoked"] == 1 and entry["by"] == "sid"
    assert cookies_named(context, "session")  # the browser still holds the cookie...
    page.goto(stack.url("/app/after-idp-logout"))
    page.wait_for_selector(LOGIN_USERNAME)  # ...and is sent to log in again
    assert any(e.get("reason") == "session_revoked" for e in stack.oidc_logs())


def test_garbage_logout_token_gets_400_invalid_request_no_store(stack):
    response = httpx.post(stack.url(f"/app{BACKCHANNEL}"), data={"logout_token": "not.a.token"})
    assert response.status_code == 400
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_request"


def test_cookie_copied_before_logout_is_refused_after_it(stack, page, context):
    login(page, stack.url("/app/copy-me"))
    copied = cookies_named(context, "session")
    assert copied
    submit_logout(page, stack.url("/app/logout"))
    page.wait_for_selector(LOGOUT_CONFIRM)
    page.click(LOGOUT_CONFIRM)
    page.wait_for_url(stack.url("/logged-out") + "**")
    assert not cookies_named(context, "session")
    context.add_cookies(copied)  # the attacker's copy
    page.goto(stack.url("/app/with-copied-cookie"))
    page.wait_for_selector(LOGIN_USERNAME)
    assert any(e.get("reason") == "session_revoked" for e in stack.oidc_logs())
