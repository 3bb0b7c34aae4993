"""Browser login end to end (issue 5): chromium -> emulated Kong -> real plugin server -> real
oidc-provider, with cookie session storage. The stack (its applications /app, /idle and /post,
each on a port known before start) and the page helpers are in tests/support/browser_stack.py,
shared with the other browser suites.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.browser_stack import (
    IDP_CONFIG,
    SESSION_SECRET,
    SHORT_TTL,
    Stack,
    cookies_named,
    echo_of,
    login,
    page_fetch,
    set_cookie_value,
    sign_in,
    start_browser_stack,
    submit_logout,
    upstream_header,
    visit_through_login,
)
from tests.support.idp import LOGIN_CANCEL, LOGIN_USERNAME, LOGOUT_CONFIRM, OidcProvider

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(IDP_CONFIG) as provider:
        yield provider


@pytest.fixture(scope="module")
def stack(idp, echo, tmp_path_factory) -> Iterator[Stack]:
    with start_browser_stack(idp.issuer, echo, str(tmp_path_factory.mktemp("kong"))) as s:
        yield s


@pytest.fixture(scope="module")
def short_idp() -> Iterator[OidcProvider]:
    with OidcProvider({**IDP_CONFIG, "ttl": {"AccessToken": SHORT_TTL}}) as provider:
        yield provider


@pytest.fixture(scope="module")
def short_stack(short_idp, echo, tmp_path_factory) -> Iterator[Stack]:
    with start_browser_stack(short_idp.issuer, echo, str(tmp_path_factory.mktemp("kong-short"))) as s:
        yield s


def navigation_headers() -> dict[str, str]:
    return {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


# -- who is sent to the provider --------------------------------------------------------------


def test_navigation_redirects_to_authorization_endpoint_with_pkce_state_and_nonce(stack, idp):
    response = httpx.get(stack.url("/app/x?a=1"), headers=navigation_headers())
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == idp.authorization_endpoint
    q = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == "web"
    assert q["redirect_uri"] == stack.url("/app/callback")
    assert q["scope"] == "openid"
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32
    assert q["state"] not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("headers,method", [
    ({"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, "GET"),
    ({"Accept": "application/json"}, "GET"),
    ({"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, "GET"),
    ({"Accept": "text/html", "Authorization": "Bearer not-a-jwt"}, "GET"),
    ({"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, "POST"),
], ids=["xhr", "json-accept", "fetch", "authorization-header", "post"])
def test_non_navigation_gets_the_bearer_401_not_a_redirect(stack, headers, method):
    response = httpx.request(method, stack.url("/app/x"), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer realm=")
    assert "location" not in response.headers


def test_authorization_cookies_stay_bounded_across_many_started_logins(stack):
    jar: dict[str, str] = {}
    for i in range(10):
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        response = httpx.get(stack.url(f"/app/tab{i}"), headers={**navigation_headers(), "Cookie": cookie})
        assert response.status_code == 302
        for c in response.headers.get_list("set-cookie"):
            name, _, rest = c.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in c or not value:
                jar.pop(name, None)
            else:
                jar[name] = value
    auth_cookies = [n for n in jar if n == "authorization" or n.startswith("authorization_")]
    assert len(auth_cookies) == 1
    assert len(jar["authorization"]) < 4000


# -- login ------------------------------------------------------------------------------------


def test_login_lands_on_the_original_url_with_its_query(stack, page):
    echoed = login(page, stack.url("/app/reports?year=2024&q=a%20b"))
    assert echoed["path"] == "/app/reports"
    assert echoed["query"] == "year=2024&q=a%20b"
    assert upstream_header(echoed, "X-User-Id") == ["alice"]


def test_session_cookie_attributes(stack, page, context):
    login(page, stack.url("/app/attrs"))
    (session,) = cookies_named(context, "session")
    assert session["httpOnly"] is True
    assert session["secure"] is False  # session_cookie_secure false for http loopback
    assert session["sameSite"] == "Lax"
    assert session["path"] == "/"
    # The pending login is consumed; what stays (for authorization_rolling_timeout) is only the
    # completed marker that lets a reloaded callback go back to the page.
    from kong_oidc_py.browser.session.authorization import AuthorizationStore
    from kong_oidc_py.browser.session.store import SessionSettings

    store = AuthorizationStore(SessionSettings(secrets=(SESSION_SECRET,)))
    jar = {c["name"]: c["value"] for c in cookies_named(context, "authorization")}
    assert store.pending(jar, time.time())[0] == []


def test_logs_never_contain_tokens_or_session_cookies(stack, page, context):
    echoed = login(page, stack.url("/app/logs"))
    (authorization,) = upstream_header(echoed, "Authorization")
    access_token = authorization.split(" ", 1)[1]
    (session,) = cookies_named(context, "session")
    oidc_fields = json.dumps(stack.oidc_logs())
    error_log = stack.emu.error_log()
    for secret in (access_token, access_token.split(".")[2], session["value"], "web-secret", SESSION_SECRET):
        assert secret not in oidc_fields
        assert secret not in error_log


def test_reload_keeps_the_session_without_visiting_the_provider(stack, page, idp):
    login(page, stack.url("/app/reload"))
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    response = page.reload()
    assert response.status == 200
    assert echo_of(page)["path"] == "/app/reload"
    assert not [u for u in seen if u.startswith(idp.issuer)]


def test_upstream_gets_the_access_token_and_identity_but_never_gateway_cookies(stack, page, context):
    login(page, stack.url("/app/first"))
    set_cookie_value(context, stack.base, "theme", "dark")
    page.goto(stack.url("/app/headers"))
    echoed = echo_of(page)
    (authorization,) = upstream_header(echoed, "Authorization")
    assert authorization.startswith("Bearer ey")
    assert upstream_header(echoed, "X-Groups") == ["admins, staff"]
    (cookie,) = upstream_header(echoed, "Cookie")
    names = [part.split("=", 1)[0].strip() for part in cookie.split(";")]
    assert "theme" in names  # the application's own cookies pass (the provider's too: same host)
    assert not [n for n in names if n.split("_")[0] in ("session", "authorization")]


def test_route_policy_applies_to_the_session_access_token_claims(stack, page):
    login(page, stack.url("/app/admin/panel"))
    denied = page.goto(stack.url("/app/audit/log"))
    assert denied.status == 403


def test_client_secret_post_login(stack, page):
    echoed = login(page, stack.url("/post/home"))
    assert upstream_header(echoed, "X-User-Id") == ["alice"]


def test_parallel_logins_in_two_tabs_both_land_on_their_own_url(stack, context):
    first, second = context.new_page(), context.new_page()
    first.goto(stack.url("/app/tab-one"))
    second.goto(stack.url("/app/tab-two"))
    sign_in(first)
    first.wait_for_url(stack.url("/app/tab-one"))
    sign_in(second)
    second.wait_for_url(stack.url("/app/tab-two"))
    assert echo_of(first)["path"] == "/app/tab-one"
    assert echo_of(second)["path"] == "/app/tab-two"


# -- hostile or stale input -------------------------------------------------------------------


def _tamper(value: str) -> str:
    middle = len(value) // 2
    return value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1:]


@pytest.mark.parametrize("mutate", [_tamper, lambda v: v[: len(v) // 2]], ids=["tampered", "truncated"])
def test_bad_session_cookie_sends_the_browser_back_to_login(stack, idp, page, context, mutate):
    login(page, stack.url("/app/mine"))
    (session,) = cookies_named(context, "session")
    set_cookie_value(context, stack.base, "session", mutate(session["value"]))
    assert len(visit_through_login(page, stack.url("/app/mine"), idp)) == 1
    (fresh,) = cookies_named(context, "session")
    assert fresh["value"] != mutate(session["value"])


def test_provider_error_gives_a_403_page_not_a_loop(stack, page):
    page.goto(stack.url("/app/cancel"))
    page.wait_for_selector(LOGIN_CANCEL)
    with page.expect_response(lambda r: "/app/callback" in r.url) as info:
        page.click(LOGIN_CANCEL)
    assert info.value.status == 403
    assert "access_denied" in page.inner_text("body")
    assert page.url.startswith(stack.url("/app/callback"))


def test_reloaded_callback_after_login_returns_to_the_original_page(stack, page):
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/app/callback?" in r.url else None)
    login(page, stack.url("/app/replay?x=1"))
    response = page.goto(callbacks[0])  # the user reloads the callback URL
    assert response.status == 200
    assert page.url == stack.url("/app/replay?x=1")
    assert echo_of(page)["path"] == "/app/replay"


def test_replayed_callback_without_the_session_is_an_already_used_page(stack, page, context):
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/app/callback?" in r.url else None)
    login(page, stack.url("/app/replay-2"))
    context.clear_cookies(name="session")
    response = page.goto(callbacks[0])
    assert response.status == 401
    assert "already used" in page.inner_text("body")
    assert page.get_attribute("a", "href") == "/app/replay-2"


def test_login_started_on_localhost_explains_the_host_mismatch(stack, page):
    """redirect_uri says 127.0.0.1; the user opened localhost: the login cookie stays with
    localhost, and the callback page says which address to use instead of "stale link"."""
    page.goto(stack.url("/app/host-mismatch").replace("127.0.0.1", "localhost"))
    sign_in(page)
    page.wait_for_url(stack.url("/app/callback") + "**")
    text = page.inner_text("body")
    assert "Sign-in could not be matched" in text and "127.0.0.1" in text
    reasons = [e.get("reason") for e in stack.oidc_logs()]
    assert "no_login_cookie" in reasons


@pytest.mark.parametrize("query", [
    "code=abc&state=unknown",
    "code=abc&state=a&state=b",
    "state=&code=",
    "error=%3Cscript%3E&error_description=x",
    "code=abc",
], ids=["unknown-state", "repeated-state", "empty", "html-in-error", "no-state"])
def test_hostile_callback_gets_a_clean_4xx_page(stack, query):
    response = httpx.get(stack.url("/app/callback?" + query), headers={"Cookie": "authorization=garbage"})
    assert response.status_code in (401, 403)
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text
    assert "location" not in response.headers


# -- session lifetime -------------------------------------------------------------------------


def test_active_session_needs_no_login(stack, idp, page):
    login(page, stack.url("/idle/page"))
    assert visit_through_login(page, stack.url("/idle/page"), idp) == []


def test_idle_session_times_out_and_the_next_visit_logs_in_again(stack, idp, page):
    login(page, stack.url("/idle/page"))
    time.sleep(4)  # session_idling_timeout 3 s
    assert len(visit_through_login(page, stack.url("/idle/page"), idp)) == 1


def test_expired_access_token_is_refreshed_transparently(short_stack, page):
    first = upstream_header(login(page, short_stack.url("/app/r")), "Authorization")
    before = short_stack.refresh_count()
    time.sleep(SHORT_TTL)
    page.goto(short_stack.url("/app/r"))
    second = upstream_header(echo_of(page), "Authorization")
    assert second != first
    assert short_stack.refresh_count() == before + 1


def test_concurrent_requests_at_expiry_make_one_refresh_call(short_stack, page):
    login(page, short_stack.url("/app/c"))
    before = short_stack.refresh_count()
    time.sleep(SHORT_TTL)
    results = page.evaluate(
        """async (url) => Promise.all([...Array(8).keys()].map(async (i) => {
            const r = await fetch(url + i); return {status: r.status, body: await r.json()};
        }))""",
        short_stack.url("/app/c/"),
    )
    assert [r["status"] for r in results] == [200] * 8
    tokens = {upstream_header(r["body"], "Authorization")[0] for r in results}
    assert len(tokens) == 1
    assert short_stack.refresh_count() == before + 1


def _session_refresh_token(context) -> str:
    from kong_oidc_py.browser.session.cookie import parse_cookie_header
    from kong_oidc_py.browser.session.store import CookieStore, SessionSettings

    store = CookieStore(SessionSettings(secrets=(SESSION_SECRET,)))
    jar = parse_cookie_header("; ".join(f"{c['name']}={c['value']}" for c in cookies_named(context, "session")))
    session, reason = store.load(jar, time.time())
    assert session is not None, reason
    return session.refresh_token


def test_failed_refresh_sends_navigation_to_login_and_api_calls_to_401(short_stack, short_idp, page, context):
    login(page, short_stack.url("/app/f"))
    # Revoking the refresh token at the provider makes the coming refresh fail (invalid_grant).
    httpx.post(short_idp.metadata()["revocation_endpoint"],
               data={"token": _session_refresh_token(context), "token_type_hint": "refresh_token"},
               auth=("web", "web-secret"), timeout=10).raise_for_status()
    (session_cookie,) = [c["value"] for c in cookies_named(context, "session")]
    time.sleep(SHORT_TTL)
    api = page_fetch(page, short_stack.url("/app/f"))
    assert api["status"] == 401
    set_cookie_value(context, short_stack.base, "session", session_cookie)  # the 401 cleared it
    assert len(visit_through_login(page, short_stack.url("/app/f"), short_idp)) == 1


# -- logout -----------------------------------------------------------------------------------


def test_logout_ends_the_provider_session_too(stack, page, context):
    login(page, stack.url("/app/bye"))
    submit_logout(page, stack.url("/app/logout"))
    page.wait_for_selector(LOGOUT_CONFIRM)
    page.click(LOGOUT_CONFIRM)
    page.wait_for_url(stack.url("/logged-out") + "**")
    assert not cookies_named(context, "session")
    page.goto(stack.url("/app/bye"))
    page.wait_for_selector(LOGIN_USERNAME)  # no provider session: the form, not a silent login


def test_fetch_from_a_logged_out_page_gets_401_json(stack, page):
    login(page, stack.url("/app/api-after"))
    submit_logout(page, stack.url("/app/logout"))
    page.wait_for_selector(LOGOUT_CONFIRM)
    page.click(LOGOUT_CONFIRM)
    page.wait_for_url(stack.url("/logged-out") + "**")
    result = page_fetch(page, stack.url("/app/data"))
    assert result["status"] == 401
    assert result["type"].startswith("application/json")
    assert "message" in json.loads(result["body"])


class _EvilPage(http.server.BaseHTTPRequestHandler):
    target = ""

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = (f'<!doctype html><form id="f" method="POST" action="{self.target}"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_another_origin_cannot_log_the_user_out(stack, page):
    login(page, stack.url("/app/keep"))
    handler = type("Evil", (_EvilPage,), {"target": stack.url("/app/logout")})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url == stack.url("/app/logout")) as info:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        assert info.value.status == 403
    finally:
        server.shutdown()
        server.server_close()
    response = page.goto(stack.url("/app/keep"))
    assert response.status == 200
    assert echo_of(page)["path"] == "/app/keep"
