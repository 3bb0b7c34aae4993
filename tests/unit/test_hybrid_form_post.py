"""Hybrid flow (`code id_token`), response_mode=form_post and pushed authorization requests:
what the login sends, what the callback accepts, and every refusal before the code is used."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from kong_oidc_py.browser.checks import half_hash
from kong_oidc_py.browser.token_endpoint import TokenResponse
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.gateway import Gateway
from tests.unit.test_callback_pages import (  # noqa: F401 - the provider fixture
    ISSUER,
    KEY,
    METADATA,
    NAV,
    Req,
    cookie_header,
    gateway,
    static_provider,
)
from kong_oidc_py.browser.session.cookie import parse_cookie_header

HYBRID = {"response_type": ["code", "id_token"], "response_mode": "form_post"}


def id_token(nonce: str, *, code: str | None = None, state: str | None = None, sub: str = "alice", **extra) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "web", "sub": sub, "iat": now, "exp": now + 300, "nonce": nonce, **extra}
    if code is not None:
        claims["c_hash"] = half_hash(code, "RS256")
    if state is not None:
        claims["s_hash"] = half_hash(state, "RS256")
    return KEY.sign(claims, {"alg": "RS256", "kid": KEY.kid, "typ": "JWT"})


def start(gw: Gateway) -> tuple[dict, str, object]:
    """(authorization request params, login cookie header, the pending state)."""
    out = gw.handle(Req(NAV, path="/app/page"))
    assert out.status == 302
    params = {k: v[0] for k, v in parse_qs(urlsplit(out.response_headers["Location"]).query).items()}
    cookie = cookie_header(out.response_headers["Set-Cookie"])
    (pending,), _ = gw.browser.authorizations.pending(parse_cookie_header(cookie), time.time())
    return params, cookie, pending


class Exchanges:
    def __init__(self, gw: Gateway, sub: str = "alice") -> None:
        self.codes: list[str] = []
        self.sub = sub
        gw.browser.tokens.exchange_code = self.exchange  # the token endpoint, answering like an IdP

    def exchange(self, endpoint, *, code, redirect_uri, code_verifier):
        self.codes.append(code)
        self.nonce = self.nonce_for_next
        return TokenResponse(access_token="opaque-access", id_token=id_token(self.nonce, sub=self.sub),
                             refresh_token=None, expires_in=300, scope=None)


def post_callback(gw: Gateway, cookie: str, form: dict, content_type: str = "application/x-www-form-urlencoded"):
    req = Req({"Cookie": cookie, "Content-Type": content_type, "Origin": "https://idp.example.com"},
              path="/app/callback", method="POST")
    body = urlencode(form).encode()
    req.body = lambda: body
    return gw.handle(req)


# -- the authorization request -------------------------------------------------------------------


def test_hybrid_login_asks_for_code_id_token_with_form_post():
    params, _, _ = start(gateway(session_cookie_secure=True, **HYBRID))
    assert params["response_type"] == "code id_token" and params["response_mode"] == "form_post"
    assert params["nonce"] and params["code_challenge_method"] == "S256"


def test_form_post_login_cookie_is_samesite_none_and_secure():
    gw = gateway(session_cookie_secure=True, response_mode="form_post")
    out = gw.handle(Req(NAV, path="/app/page"))
    (login_cookie,) = [h for h in out.response_headers["Set-Cookie"] if "authorization" in h]
    assert "SameSite=None" in login_cookie and "Secure" in login_cookie


def test_default_login_stays_code_with_query_response():
    params, _, _ = start(gateway())
    assert params["response_type"] == "code" and "response_mode" not in params


@pytest.mark.parametrize("options,field", [
    ({"response_type": ["code", "id_token"]}, "response_mode"),
    ({"response_type": ["id_token"], "response_mode": "form_post", "session_cookie_secure": True}, "response_type"),
    ({"response_type": ["code", "code"]}, "response_type"),
    ({"response_mode": "form_post", "session_cookie_secure": False}, "response_mode"),
])
def test_unsupported_combinations_are_refused_at_load(options, field):
    with pytest.raises(ConfigError) as caught:
        gateway(**options)
    assert caught.value.field == field


# -- the hybrid callback -------------------------------------------------------------------------


def hybrid_gateway() -> tuple[Gateway, Exchanges]:
    gw = gateway(session_cookie_secure=True, **HYBRID)
    return gw, Exchanges(gw)


def test_hybrid_callback_with_matching_c_hash_and_nonce_logs_in():
    gw, ex = hybrid_gateway()
    _, cookie, pending = start(gw)
    ex.nonce_for_next = pending.nonce
    out = post_callback(gw, cookie, {"code": "the-code", "state": pending.state,
                                     "id_token": id_token(pending.nonce, code="the-code", state=pending.state)})
    assert out.status == 303 and out.response_headers["Location"] == "/app/page"
    assert ex.codes == ["the-code"]


@pytest.mark.parametrize("front,reason", [
    (lambda p: id_token(p.nonce, code="another-code"), "front_id_token_bad_c_hash"),
    (lambda p: id_token(p.nonce), "front_id_token_bad_c_hash"),
    (lambda p: id_token("other-nonce", code="the-code"), "front_id_token_bad_nonce"),
    (lambda p: id_token(p.nonce, code="the-code", state="other-state"), "front_id_token_bad_s_hash"),
    (lambda p: id_token(p.nonce, code="the-code", iss="https://evil.example"), "front_id_token_bad_issuer"),
    (lambda p: None, "front_id_token_missing_id_token"),
])
def test_hybrid_front_channel_id_token_is_refused_before_the_code_is_used(front, reason):
    gw, ex = hybrid_gateway()
    _, cookie, pending = start(gw)
    form = {"code": "the-code", "state": pending.state}
    token = front(pending)
    if token:
        form["id_token"] = token
    out = post_callback(gw, cookie, form)
    assert out.status == 401 and out.log["reason"] == reason
    assert ex.codes == []  # the code was never exchanged


def test_hybrid_token_endpoint_id_token_for_another_user_is_refused():
    gw = gateway(session_cookie_secure=True, **HYBRID)
    ex = Exchanges(gw, sub="mallory")
    _, cookie, pending = start(gw)
    ex.nonce_for_next = pending.nonce
    out = post_callback(gw, cookie, {"code": "the-code", "state": pending.state,
                                     "id_token": id_token(pending.nonce, code="the-code")})
    assert out.status == 401 and out.log["reason"] == "id_token_subject_mismatch"


# -- form_post -----------------------------------------------------------------------------------


def test_form_post_mode_ignores_a_code_in_the_query():
    gw = gateway(session_cookie_secure=True, response_mode="form_post")
    ex = Exchanges(gw)
    _, cookie, pending = start(gw)
    out = gw.handle(Req(dict(NAV, Cookie=cookie), path="/app/callback",
                        query={"code": "the-code", "state": pending.state}))
    assert out.status == 401 and ex.codes == []


def test_form_post_callback_needs_a_form_body():
    gw = gateway(session_cookie_secure=True, response_mode="form_post")
    ex = Exchanges(gw)
    _, cookie, pending = start(gw)
    out = post_callback(gw, cookie, {"code": "the-code", "state": pending.state}, content_type="application/json")
    assert out.status == 401 and ex.codes == []


def test_form_post_code_callback_logs_in_with_a_303():
    gw = gateway(session_cookie_secure=True, response_mode="form_post")
    ex = Exchanges(gw)
    _, cookie, pending = start(gw)
    ex.nonce_for_next = pending.nonce
    out = post_callback(gw, cookie, {"code": "the-code", "state": pending.state})
    assert out.status == 303 and ex.codes == ["the-code"]


def test_form_post_without_the_login_cookie_is_refused_like_any_callback():
    """CSRF: a POST forged by another site carries no sealed login state."""
    gw = gateway(session_cookie_secure=True, response_mode="form_post")
    ex = Exchanges(gw)
    out = post_callback(gw, "", {"code": "attacker-code", "state": "attacker-state"})
    assert out.status == 401 and out.log["reason"] == "no_login_cookie" and ex.codes == []


def test_query_mode_ignores_a_posted_body():
    gw = gateway()
    ex = Exchanges(gw)
    _, cookie, pending = start(gw)
    out = post_callback(gw, cookie, {"code": "the-code", "state": pending.state})
    assert out.status == 401 and ex.codes == []


# -- PAR (RFC 9126) ------------------------------------------------------------------------------


def test_par_sends_only_client_id_and_request_uri_through_the_browser(monkeypatch):
    gw = gateway(require_pushed_authorization_requests=True)
    pushed: list[dict] = []
    metadata = dict(METADATA, pushed_authorization_request_endpoint=ISSUER + "/par")
    gw.browser.provider.metadata = lambda: metadata
    gw.browser.tokens.push_authorization_request = lambda endpoint, params: pushed.append(params) or "urn:req:1"
    out = gw.handle(Req(NAV, path="/app/page"))
    query = parse_qs(urlsplit(out.response_headers["Location"]).query)
    assert query == {"client_id": ["web"], "request_uri": ["urn:req:1"]}
    assert pushed[0]["code_challenge_method"] == "S256" and pushed[0]["state"]


def test_par_required_but_not_advertised_fails_closed_with_a_clear_log(caplog):
    gw = gateway(require_pushed_authorization_requests=True)
    out = gw.handle(Req(NAV, path="/app/page"))
    assert out.status == 503 and out.log["reason"] == "par_failed"
    assert "advertises no pushed_authorization_request_endpoint" in caplog.text
