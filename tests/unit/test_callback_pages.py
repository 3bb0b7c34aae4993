"""Browser error pages that help (issue: "stale or already used" for every callback problem):
each failure has its own log reason and text, "Try again" returns to the page first asked for,
a reloaded callback after login goes back to that page, and nothing is cached or unescaped."""

from __future__ import annotations

import logging
import time

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.session.store import SessionTooLarge
from kong_oidc_py.config import parse_config
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from tests.support.keys import ISSUER, jwks, rsa_key
from tests.unit.test_gateway import FakeRequest

KEY = rsa_key()
REDIRECT = "https://app.example.com/app/callback"
METADATA = {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/auth", "token_endpoint": ISSUER + "/token"}


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    provider = Provider.from_jwks(ISSUER, jwks(KEY))
    monkeypatch.setattr(provider, "metadata", lambda: METADATA)
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: provider)


def gateway(**extra) -> Gateway:
    return Gateway(parse_config({
        "issuer": ISSUER, "auth_methods": ["authorization_code", "session"], "client_id": "web",
        "client_secret": "web-secret", "redirect_uri": REDIRECT, "session_secret": "s" * 40,
        "audience_required": ["api"], **extra}))


class Req(FakeRequest):
    def __init__(self, *a, host: str = "app.example.com", **kw) -> None:
        super().__init__(*a, **kw)
        self._host = host

    def host(self):
        return self._host


NAV = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


def cookie_header(set_cookies: list[str]) -> str:
    return "; ".join(h.split(";", 1)[0] for h in set_cookies if "Max-Age=0" not in h)


def pending_login(gw: Gateway, url: str = "/app/reports?y=2024", created: float | None = None) -> tuple[str, str]:
    """(state, Cookie header) of a login started for `url`."""
    state = AuthorizationState(state="state-" + str(time.time_ns()), nonce="n", code_verifier="v" * 43,
                               original_url=url, created_at=time.time() if created is None else created)
    return state.state, cookie_header(gw.browser.authorizations.push(state, {}, time.time()))


def callback(gw: Gateway, query: dict, cookie: str = "") -> object:
    headers = dict(NAV, Cookie=cookie) if cookie else dict(NAV)
    return gw.handle(Req(headers, path="/app/callback", query=query))


def assert_page(out, status: int) -> str:
    assert out.status == status
    assert out.response_headers["Cache-Control"] == "no-store"
    assert out.response_headers["Content-Type"].startswith("text/html")
    return out.body


def test_callback_without_the_login_cookie_names_the_host_to_use(caplog):
    gw = gateway()
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        out = callback(gw, {"code": "c", "state": "s"})
    body = assert_page(out, 401)
    assert out.log["reason"] == "no_login_cookie"
    assert "app.example.com" in body and 'href="/app/"' in body
    assert "another host than redirect_uri's app.example.com" in caplog.text


def test_login_started_on_another_host_warns_once_at_redirect_time(caplog):
    gw = gateway()
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        for _ in range(3):
            out = gw.handle(Req(NAV, path="/app/x", host="localhost"))
            assert out.status == 302
    warnings = [r.getMessage() for r in caplog.records if "login started on host" in r.getMessage()]
    assert len(warnings) == 1 and "localhost" in warnings[0] and "app.example.com" in warnings[0]


def test_login_on_the_redirect_host_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        assert gateway().handle(Req(NAV, path="/app/x")).status == 302
    assert "login started on host" not in caplog.text


def test_state_not_pending_has_its_own_reason_and_text():
    gw = gateway()
    _, cookie = pending_login(gw)
    out = callback(gw, {"code": "c", "state": "someone-elses-state"}, cookie)
    body = assert_page(out, 401)
    assert out.log["reason"] == "state_not_pending" and "newer sign-in" in body


def test_expired_state_says_so_and_offers_the_original_page():
    gw = gateway(authorization_rolling_timeout=600)
    state, cookie = pending_login(gw, created=time.time() - 601)
    out = callback(gw, {"code": "c", "state": state}, cookie)
    body = assert_page(out, 401)
    assert out.log["reason"] == "state_expired" and "10 minutes" in body
    assert 'href="/app/reports?y=2024"' in body


def test_idp_error_shows_error_and_description_escaped_with_a_way_back():
    gw = gateway()
    state, cookie = pending_login(gw)
    out = callback(gw, {"state": state, "error": "access_denied", "error_description": "<b>User said no</b>"}, cookie)
    body = assert_page(out, 403)
    assert out.log["reason"] == "idp_error" and out.log["idp_error"] == "access_denied"
    assert "&lt;b&gt;User said no&lt;/b&gt;" in body and "<b>" not in body
    assert 'href="/app/reports?y=2024"' in body


def test_idp_error_strips_control_characters_from_what_it_logs(caplog):
    gw = gateway()
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        callback(gw, {"error": "bad\r\nInjected: 1", "error_description": "x\x00y"})
    assert "\r" not in caplog.text and "\x00" not in caplog.text


def logged_in(gw: Gateway) -> str:
    now = time.time()
    session = Session.new(subject="alice", issuer=ISSUER, access_token=KEY.sign({"iss": ISSUER, "aud": "api",
                          "sub": "alice", "iat": int(now), "exp": int(now) + 300}), id_token=None,
                          refresh_token=None, expires_at=now + 300, now=now)
    return cookie_header(gw.browser.sessions.save(session, {}, now))


def test_reloading_the_callback_after_login_returns_to_the_original_page():
    gw = gateway()
    state, auth_cookie = pending_login(gw)
    taken = gw.browser.authorizations.take(state, parse_cookie_header(auth_cookie), time.time())
    assert taken.state is not None  # the first callback used it
    cookie = cookie_header(taken.set_cookies) + "; " + logged_in(gw)
    out = callback(gw, {"code": "c", "state": state}, cookie)
    assert out.status == 302 and out.response_headers["Location"] == "/app/reports?y=2024"
    assert out.log["reason"] == "callback_state_already_used"


def test_replayed_callback_without_a_session_is_an_error_not_a_login():
    gw = gateway()
    state, auth_cookie = pending_login(gw)
    taken = gw.browser.authorizations.take(state, parse_cookie_header(auth_cookie), time.time())
    out = callback(gw, {"code": "c", "state": state}, cookie_header(taken.set_cookies))
    body = assert_page(out, 401)
    assert out.log["reason"] == "state_already_used" and "already used" in body


def test_completed_marker_never_matches_as_a_pending_state():
    gw = gateway()
    state, auth_cookie = pending_login(gw)
    taken = gw.browser.authorizations.take(state, parse_cookie_header(auth_cookie), time.time())
    again = gw.browser.authorizations.take(state, parse_cookie_header(cookie_header(taken.set_cookies)), time.time())
    assert again.state is None and again.reason == "state_already_used"


def test_session_too_large_gives_a_500_page_and_logs_the_option_to_change(monkeypatch, caplog):
    gw = gateway()
    cookie = logged_in(gw)

    def too_large(*a, **k):
        raise SessionTooLarge("41000 characters")

    monkeypatch.setattr(gw.browser.sessions, "load", too_large)
    with caplog.at_level(logging.ERROR, logger="kong_oidc_py"):
        out = gw.handle(Req(dict(NAV, Cookie=cookie), path="/app/x"))
    body = assert_page(out, 500)
    assert out.log["reason"] == "session_too_large" and "too large" in body
    assert "set session_storage to redis" in caplog.text and "41000 characters" in caplog.text


# -- the logout redirect (item 6: what ends up in URLs and logs) ---------------------------------


def logout(gw: Gateway, session_cookie: str):
    metadata = dict(METADATA, end_session_endpoint=ISSUER + "/session/end")
    gw.browser.provider.metadata = lambda: metadata
    headers = {"Cookie": session_cookie, "Sec-Fetch-Site": "same-origin"}
    return gw.handle(Req(headers, path="/app/logout", method="POST"))


def session_with_id_token(gw: Gateway, sid: str | None = "idp-sid") -> tuple[str, str]:
    now = time.time()
    id_token = KEY.sign({"iss": ISSUER, "aud": "web", "sub": "alice", "iat": int(now), "exp": int(now) + 300})
    session = Session.new(subject="alice", issuer=ISSUER, access_token="opaque", id_token=id_token,
                          refresh_token=None, expires_at=now + 300, now=now, sid=sid)
    return id_token, cookie_header(gw.browser.sessions.save(session, {}, now))


def test_logout_redirect_carries_the_id_token_hint_by_default():
    gw = gateway(logout_uri_suffix="/logout")
    id_token, cookie = session_with_id_token(gw)
    out = logout(gw, cookie)
    assert out.status == 302 and "id_token_hint=" + id_token in out.response_headers["Location"]


def test_logout_without_id_token_hint_sends_client_id_and_logout_hint_only():
    gw = gateway(logout_uri_suffix="/logout", logout_id_token_hint=False)
    id_token, cookie = session_with_id_token(gw)
    location = logout(gw, cookie).response_headers["Location"]
    assert id_token not in location and "id_token_hint" not in location
    assert "client_id=web" in location and "logout_hint=idp-sid" in location


# -- start-time warnings -------------------------------------------------------------------------


def test_cookie_sessions_without_revocation_warn_that_logout_cannot_revoke(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        gateway()
    assert "a copied session cookie keeps working" in caplog.text


def test_cookie_sessions_with_redis_revocation_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        gateway(session_revocation_redis=True)
    assert "a copied session cookie keeps working" not in caplog.text
