"""Step-up authentication end to end (RFC 9470): Chromium logs in with a password at the real
oidc-provider, an admin route asking for acr "mfa" sends it back to the IdP with acr_values and
prompt=login, and the new session carries the stronger authentication. Bearer tokens that lack
the level get the RFC 9470 challenge."""

from __future__ import annotations

import time
import uuid
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.browser_stack import IDP_CONFIG, Stack, app_plugin, echo_of, page_fetch, sign_in, start_on_known_port
from tests.support.idp import DEFAULT_RESOURCE, OidcProvider
from tests.support.stack import oidc, route

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ADMIN_POLICY = {"name": "admin-mfa", "paths": ["/app/admin"], "acr_required": ["mfa"]}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(IDP_CONFIG) as provider:
        yield provider


@pytest.fixture(scope="module")
def stack(idp, echo, tmp_path_factory) -> Iterator[Stack]:
    def routes(base: str) -> list[dict]:
        return [
            route("app", "/app", app_plugin(idp.issuer, base, "/app", policies=[ADMIN_POLICY])),
            route("api", "/api", oidc(idp.issuer, audience_required=[DEFAULT_RESOURCE], acr_required=["mfa"],
                                      max_age=600)),
        ]

    with start_on_known_port(routes, echo, str(tmp_path_factory.mktemp("kong"))) as s:
        yield s


def allow_logs(stack: Stack, policy: str) -> list[dict]:
    return [o for o in stack.oidc_logs() if o.get("decision") == "allow" and o.get("policy") == policy]


def test_admin_route_steps_a_password_session_up_to_mfa(stack, idp, context):
    page = context.new_page()
    page.goto(stack.url("/app/home"))
    sign_in(page)
    page.wait_for_url(stack.url("/app/home"))
    assert allow_logs(stack, "default")[-1]["acr"] == "pwd"

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.startswith(idp.authorization_endpoint + "?") else None)
    page.goto(stack.url("/app/admin"))
    # prompt=login: the IdP asks for the credentials again although its own session is alive.
    sign_in(page)
    page.wait_for_url(stack.url("/app/admin"))
    assert echo_of(page)["path"].startswith("/app/admin")

    query = parse_qs(urlsplit(asked[0]).query)
    assert query["acr_values"] == ["mfa"] and query["prompt"] == ["login"]
    assert allow_logs(stack, "admin-mfa")[-1]["acr"] == "mfa"
    # The stronger session serves the rest of the application too, with no further login.
    page.goto(stack.url("/app/home"))
    assert allow_logs(stack, "default")[-1]["acr"] == "mfa"
    page.close()


def test_password_session_fetching_the_admin_api_gets_the_rfc9470_challenge(stack, context):
    page = context.new_page()
    page.goto(stack.url("/app/home"))
    sign_in(page)
    page.wait_for_url(stack.url("/app/home"))
    result = page_fetch(page, stack.url("/app/admin/data"))
    assert result["status"] == 401
    logs = [o for o in stack.oidc_logs() if o.get("policy") == "admin-mfa" and o.get("decision") == "deny"]
    assert logs[-1]["reason"] == "insufficient_acr"
    page.close()


def _token(idp, **claims) -> str:
    now = int(time.time())
    return idp.signing_key("RS256").sign({"iss": idp.issuer, "aud": DEFAULT_RESOURCE, "sub": "alice",
                                          "iat": now, "exp": now + 300, **claims})


def test_bearer_token_without_mfa_gets_insufficient_user_authentication(stack, idp):
    response = httpx.get(stack.url("/api/x"), headers={"Authorization": f"Bearer {_token(idp, acr='pwd', auth_time=int(time.time()))}"})
    challenge = response.headers["www-authenticate"]
    assert response.status_code == 401
    assert 'error="insufficient_user_authentication"' in challenge and 'acr_values="mfa"' in challenge
    assert "max_age=600" in challenge


def test_bearer_token_with_mfa_but_an_old_login_is_refused(stack, idp):
    response = httpx.get(stack.url("/api/x"), headers={"Authorization": f"Bearer {_token(idp, acr='mfa', auth_time=int(time.time()) - 3600)}"})
    assert response.status_code == 401 and "max_age=600" in response.headers["www-authenticate"]


def test_bearer_token_with_fresh_mfa_passes(stack, idp):
    marker = uuid.uuid4().hex
    response = httpx.get(stack.url("/api/x"), headers={
        "Authorization": f"Bearer {_token(idp, acr='mfa', auth_time=int(time.time()) - 5)}", "X-Test-Request": marker})
    assert response.status_code == 200
