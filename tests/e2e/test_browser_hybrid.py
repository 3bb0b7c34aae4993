"""Hybrid flow with form_post, and pushed authorization requests, in Chromium through the
emulator against the real oidc-provider."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.browser_stack import IDP_CONFIG, echo_of, login, start_browser_stack
from tests.support.idp import OidcProvider

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider({**IDP_CONFIG, "response_types": ["code", "code id_token"]}) as provider:
        yield provider


@pytest.fixture(scope="module")
def hybrid_stack(idp, echo, tmp_path_factory):
    extra = {"session_cookie_secure": True, "response_type": ["code", "id_token"], "response_mode": "form_post"}
    with start_browser_stack(idp.issuer, echo, str(tmp_path_factory.mktemp("kong-hybrid")), app_extra=extra,
                             workers=1) as s:
        yield s


def record(page) -> list:
    seen: list = []
    page.on("request", lambda r: seen.append((r.method, r.url, r.post_data)))
    return seen


def test_hybrid_form_post_login_lands_on_the_page_with_the_code_never_in_a_url(hybrid_stack, idp, page, context):
    seen = record(page)
    echoed = login(page, hybrid_stack.url("/app/hybrid?x=1"))
    assert echoed["path"] == "/app/hybrid"
    auth = [u for m, u, _ in seen if u.startswith(idp.authorization_endpoint + "?")]
    assert auth and "response_type=code+id_token" in auth[0] and "response_mode=form_post" in auth[0]
    callbacks = [(m, u, body) for m, u, body in seen if u.startswith(hybrid_stack.url("/app/callback"))]
    assert callbacks and all(m == "POST" for m, _, _ in callbacks)
    assert "id_token=" in callbacks[0][2] and "code=" in callbacks[0][2]
    assert not any("code=" in u for _, u, _ in seen if u.startswith(hybrid_stack.url("/")))
    names = {c["name"] for c in context.cookies()}
    assert "__Host-session" in names  # Secure, Path=/, no Domain: the __Host- prefix by default
    assert any(e.get("decision") == "login" for e in hybrid_stack.oidc_logs())


def test_hybrid_session_is_used_on_the_next_request(hybrid_stack, page):
    login(page, hybrid_stack.url("/app/first"))
    page.goto(hybrid_stack.url("/app/second"))
    assert echo_of(page)["path"] == "/app/second"


@pytest.fixture(scope="module")
def par_stack(idp, echo, tmp_path_factory):
    extra = {"require_pushed_authorization_requests": True}
    with start_browser_stack(idp.issuer, echo, str(tmp_path_factory.mktemp("kong-par")), app_extra=extra,
                             workers=1) as s:
        yield s


def test_par_login_sends_only_a_request_uri_through_the_browser(par_stack, idp, page):
    seen = record(page)
    assert login(page, par_stack.url("/app/par"))["path"] == "/app/par"
    auth = [u for _, u, _ in seen if u.startswith(idp.authorization_endpoint + "?")]
    assert auth and "request_uri=" in auth[0]
    assert "code_challenge" not in auth[0] and "state=" not in auth[0] and "nonce=" not in auth[0]
