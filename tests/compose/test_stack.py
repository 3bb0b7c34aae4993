"""End to end through the compose stack: host -> Kong (oidc + acl) -> echo upstream, tokens from Keycloak."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import fetch_token
from .stack import (
    ALICE,
    BROWSER_KONG_URL,
    GUARD_GROUP,
    INVENTORY_SERVICE,
    KEYCLOAK_HOST,
    KONG_URL,
    ORDERS_SERVICE,
    issuer,
    jwt_claims,
    route_plugin_config,
)


def echoed(response) -> dict:
    assert response.status_code == 200, (response.status_code, response.headers, response.text[:500])
    return response.json()


def challenge(response) -> str:
    return response.headers.get("www-authenticate", "")


# -- M2M ---------------------------------------------------------------------------------


def test_m2m_token_is_issued_for_the_issuer_kong_trusts(http):
    claims = jwt_claims(fetch_token(http, ORDERS_SERVICE))
    assert claims["iss"] == issuer()
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    for required in route_plugin_config("orders").get("audience_required", []):
        assert required in aud
    assert set(ORDERS_SERVICE.scopes) <= set(claims.get("scope", "").split())


def test_m2m_token_reaches_upstream_with_identity_headers(http):
    token = fetch_token(http, ORDERS_SERVICE)
    body = echoed(http.get(f"{KONG_URL}/api/orders/42", headers={"Authorization": f"Bearer {token}"}))
    headers = body["headers"]
    assert body["path"] == "/api/orders/42"
    assert headers["x-auth-client"] == ORDERS_SERVICE.client_id
    assert headers["x-auth-subject"] == jwt_claims(token)["sub"]
    assert "orders.read" in headers["x-auth-scope"].split()
    # the acl guard saw the plugin's marker group
    assert GUARD_GROUP in [g.strip() for g in headers["x-authenticated-groups"].split(",")]
    # hide_credentials on this route: the token does not reach the upstream
    assert "authorization" not in headers


def test_spoofed_identity_headers_are_replaced(http):
    token = fetch_token(http, ORDERS_SERVICE)
    body = echoed(http.get(
        f"{KONG_URL}/api/orders",
        headers={"Authorization": f"Bearer {token}", "X-Auth-Client": "evil", "X-Auth-Subject": "root"},
    ))
    assert body["headers"]["x-auth-client"] == ORDERS_SERVICE.client_id
    assert body["headers"]["x-auth-subject"] != "root"


def test_token_without_the_route_scope_is_403_insufficient_scope(http):
    token = fetch_token(http, INVENTORY_SERVICE)
    response = http.get(f"{KONG_URL}/api/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in challenge(response)


def test_no_token_is_401_with_a_bearer_challenge(http):
    response = http.get(f"{KONG_URL}/api/orders")
    assert response.status_code == 401
    assert challenge(response).startswith("Bearer ")
    assert "error=" not in challenge(response)  # RFC 6750 3.1: no error code without credentials


def test_garbage_token_is_401_invalid_token(http):
    response = http.get(f"{KONG_URL}/api/orders", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in challenge(response)


# -- roles ---------------------------------------------------------------------------------


def test_role_protected_route_admits_the_role(http):
    token = fetch_token(http, ORDERS_SERVICE)
    body = echoed(http.get(f"{KONG_URL}/api/reports", headers={"Authorization": f"Bearer {token}"}))
    roles = [r.strip() for r in body["headers"]["x-auth-roles"].split(",")]
    for role in route_plugin_config("reports")["roles_required"]:
        assert role in roles


def test_role_protected_route_refuses_without_the_role(http):
    token = fetch_token(http, INVENTORY_SERVICE)
    response = http.get(f"{KONG_URL}/api/reports", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in challenge(response)


# -- service-level policies ----------------------------------------------------------------


def test_policy_read_needs_read_scope(http):
    token = fetch_token(http, ORDERS_SERVICE)
    echoed(http.get(f"{KONG_URL}/api/catalog/items", headers={"Authorization": f"Bearer {token}"}))


def test_policy_write_needs_write_scope(http):
    without = fetch_token(http, ORDERS_SERVICE)
    response = http.post(f"{KONG_URL}/api/catalog/items", headers={"Authorization": f"Bearer {without}"}, json={})
    assert response.status_code == 403
    assert "orders.write" in challenge(response)

    with_write = fetch_token(http, ORDERS_SERVICE, scope=" ".join(ORDERS_SERVICE.optional_scopes))
    assert "orders.write" in jwt_claims(with_write)["scope"].split()
    body = echoed(http.post(f"{KONG_URL}/api/catalog/items", headers={"Authorization": f"Bearer {with_write}"}, json={"a": 1}))
    assert body["method"] == "POST"


def test_public_policy_needs_no_token(http):
    body = echoed(http.get(f"{KONG_URL}/api/catalog/health"))
    assert "x-auth-subject" not in body["headers"]


def test_public_route_needs_no_token(http):
    body = echoed(http.get(f"{KONG_URL}/public/hello"))
    assert body["path"] == "/public/hello"


# -- browser ---------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Keycloak's KC_HOSTNAME is http://keycloak:8080 (docker-compose.yml); send that name to the
    # published port on loopback, for this browser only.
    f"--host-resolver-rules=MAP {KEYCLOAK_HOST} 127.0.0.1",
]


@pytest.fixture()
def browser_page(stack):
    import os

    if not os.path.exists(CHROMIUM):
        # as in tests/support/browser.py: a missing browser is a failure, not a skip
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(20000)
            yield page
        finally:
            browser.close()


def _on_keycloak_login(page) -> None:
    page.wait_for_url(re.compile(rf"^http://{KEYCLOAK_HOST}:8080/realms/[^/]+/protocol/openid-connect/auth\?"))
    page.locator("input[name=username]").wait_for()


def test_browser_login_and_logout(browser_page):
    page = browser_page
    app = route_plugin_config("app")
    target = f"{BROWSER_KONG_URL}/app/profile?x=1"

    # 1. Unauthenticated navigation -> Keycloak's real login page (PKCE S256 in the request).
    page.goto(target)
    _on_keycloak_login(page)
    assert "code_challenge_method=S256" in page.url
    assert f"client_id={app['client_id']}" in page.url

    # 2. Log in; Keycloak redirects to the callback, the plugin sets its session and sends the
    #    browser back to where it started.
    page.locator("input[name=username]").fill(ALICE.username)
    page.locator("input[name=password]").fill(ALICE.password)
    page.locator("#kc-login, button[type=submit], input[type=submit]").first.click()
    page.wait_for_url(lambda url: url == target)

    # 3. The session cookie now admits requests; the upstream sees who logged in.
    response = page.context.request.get(target, max_redirects=0)
    assert response.status == 200, response.text()[:500]
    body = json.loads(response.text())
    headers = body["headers"]
    assert headers["x-auth-username"] == ALICE.username
    assert set(ALICE.groups) <= {g.strip() for g in headers["x-auth-groups"].split(",")}
    assert headers["authorization"].startswith("Bearer ")  # upstream_access_token_header default
    assert GUARD_GROUP in headers["x-authenticated-groups"]

    # 4. Logout is a same-origin POST to <route>/logout; it ends the Kong session and the
    #    Keycloak session (RP-initiated logout) and lands on logout_redirect_uri.
    logout_url = f"{BROWSER_KONG_URL}/app{app['logout_uri_suffix']}"
    page.evaluate(
        """(url) => { const f = document.createElement('form'); f.method = 'POST'; f.action = url;
                      document.body.appendChild(f); f.submit(); }""",
        logout_url,
    )
    page.wait_for_url(lambda url: url.startswith(app["logout_redirect_uri"]))

    # 5. Both sessions are gone: the protected page asks for a login again.
    response = page.context.request.get(target, max_redirects=0)
    assert response.status in (302, 401), response.status
    page.goto(target)
    _on_keycloak_login(page)


# -- metrics -----------------------------------------------------------------------------


def test_prometheus_scrapes_the_plugin_servers_decisions(http):
    import time

    http.get(f"{KONG_URL}/api/orders")  # one 401 to count
    deadline = time.monotonic() + 60   # scrape_interval is 15 s
    while True:
        targets = http.get("http://127.0.0.1:9090/api/v1/targets").json()["data"]["activeTargets"]
        up = [t for t in targets if t["labels"]["job"] == "kong-oidc-py" and t["health"] == "up"]
        query = http.get("http://127.0.0.1:9090/api/v1/query",
                         params={"query": 'sum(kong_oidc_decisions_total{reason="missing_token"})'}).json()
        if up and query["data"]["result"]:
            break
        assert time.monotonic() < deadline, (targets, query)
        time.sleep(2)
    assert float(query["data"]["result"][0]["value"][1]) >= 1


def test_grafana_serves_the_provisioned_dashboard(http):
    response = http.get("http://127.0.0.1:3000/api/dashboards/uid/kong-oidc-py")
    assert response.status_code == 200
    assert response.json()["dashboard"]["title"] == "kong-oidc-py"
