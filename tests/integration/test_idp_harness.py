"""The test harness itself: the real oidc-provider on loopback and the real browser."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import tempfile

import jwt
import pytest

from tests.support import idp as idp_module
from tests.support.idp import (
    ALICE,
    DEFAULT_RESOURCE,
    LOGIN_ERROR,
    LOGIN_PASSWORD,
    LOGIN_SUBMIT,
    LOGIN_USERNAME,
    LOGOUT_CONFIRM,
    M2M,
    OTHER_RESOURCE,
    WEB,
    WEB_POST,
    OidcProvider,
    ProviderStartError,
)

pytestmark = pytest.mark.integration


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def verify_with_jwks(token: str, jwks: dict, issuer: str, audience: str) -> dict:
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(
        token,
        key.key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud"]},
    )


# ---------------------------------------------------------------------- provider basics


def test_discovery_issuer_is_the_loopback_issuer(oidc_provider):
    assert oidc_provider.issuer.startswith("http://127.0.0.1:")
    assert oidc_provider.metadata()["issuer"] == oidc_provider.issuer


def test_discovery_advertises_end_session_endpoint(oidc_provider):
    assert oidc_provider.metadata()["end_session_endpoint"] == f"{oidc_provider.issuer}/session/end"


def test_served_jwks_holds_exactly_the_public_parts_of_the_private_keys(oidc_provider):
    served = {k["kid"]: k for k in oidc_provider.jwks()["keys"]}
    mine = {k.kid: k.public_jwk() for k in oidc_provider.private_keys()}
    assert set(served) == set(mine)
    for kid, jwk in served.items():
        assert "d" not in jwk
        assert {m: jwk[m] for m in ("kty", "n", "e", "crv", "x", "y") if m in jwk} == {
            m: mine[kid][m] for m in ("kty", "n", "e", "crv", "x", "y") if m in mine[kid]
        }


def test_client_credentials_token_is_an_rfc9068_jwt(oidc_provider):
    header, claims = unverified(oidc_provider.client_credentials_token(scope="read write"))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] == oidc_provider.signing_key("RS256").kid
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == DEFAULT_RESOURCE
    assert claims["client_id"] == M2M.client_id
    assert claims["sub"] == M2M.client_id
    assert claims["scope"] == "read write"
    assert claims["exp"] > claims["iat"]


def test_client_credentials_token_verifies_against_the_provider_jwks(oidc_provider):
    token = oidc_provider.client_credentials_token(scope="admin")
    claims = verify_with_jwks(token, oidc_provider.jwks(), oidc_provider.issuer, DEFAULT_RESOURCE)
    assert claims["scope"] == "admin"


def test_m2m_access_token_carries_per_client_extra_claims(oidc_provider):
    _, claims = unverified(oidc_provider.client_credentials_token())
    assert claims["groups"] == ["machines"]
    assert claims["roles"] == ["service"]


def test_other_resource_gives_es256_token_for_that_audience(oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read", resource=OTHER_RESOURCE)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = verify_with_jwks(token, oidc_provider.jwks(), oidc_provider.issuer, OTHER_RESOURCE)
    assert claims["aud"] == OTHER_RESOURCE


def test_client_secret_post_is_accepted_for_m2m(oidc_provider):
    post = idp_module.Client(M2M.client_id, M2M.client_secret, "client_secret_post")
    _, claims = unverified(oidc_provider.client_credentials_token(client=post))
    assert claims["client_id"] == M2M.client_id


def test_wrong_client_secret_is_rejected(oidc_provider):
    bad = idp_module.Client(M2M.client_id, "wrong", "client_secret_basic")
    resp = oidc_provider.token_request({"grant_type": "client_credentials", "scope": "read"}, bad)
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


def test_unknown_resource_is_invalid_target(oidc_provider):
    resp = oidc_provider.token_request({"grant_type": "client_credentials", "resource": "urn:nope"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_target"


def test_access_token_ttl_is_configurable(oidc_provider_factory):
    provider = oidc_provider_factory({"ttl": {"ClientCredentials": 5}})
    body = provider.client_credentials()
    _, claims = unverified(body["access_token"])
    assert body["expires_in"] == 5
    assert claims["exp"] - claims["iat"] == 5


def test_restart_with_new_keys_keeps_issuer_and_changes_kid(oidc_provider_factory):
    provider = oidc_provider_factory()
    issuer = provider.issuer
    old_kid = jwt.get_unverified_header(provider.client_credentials_token())["kid"]
    provider.restart(new_keys=True)
    new_kid = jwt.get_unverified_header(provider.client_credentials_token())["kid"]
    assert provider.issuer == issuer
    assert new_kid != old_kid
    assert old_kid not in {k["kid"] for k in provider.jwks()["keys"]}


def test_stop_ends_the_process_cleanly(oidc_provider_factory):
    provider = oidc_provider_factory()
    provider.stop()
    assert provider.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(provider.discovery_url, timeout=2)


def test_bad_config_fails_start_with_the_provider_error():
    provider = OidcProvider({"default_resource": "urn:not-configured"})
    try:
        with pytest.raises(ProviderStartError, match="default_resource urn:not-configured is not in resources"):
            provider.start()
        assert not provider.running
    finally:
        provider.close()


def test_missing_node_modules_fails_with_make_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(idp_module, "NODE_MODULES", tmp_path / "node_modules")
    with pytest.raises(ProviderStartError, match="make install"):
        OidcProvider().start()


# ---------------------------------------------------------------------- browser flow


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.requests: list[str] = []
        self.hit = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        self.server.hit.set()
        body = b"<html><body id='callback'>ok</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def callback_server() -> Iterator[_CallbackServer]:
    server = _CallbackServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(provider: OidcProvider, client_id: str, redirect_uri: str, state: str, challenge: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email read",
        "state": state,
        "nonce": "n-" + state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{provider.authorization_endpoint}?{urlencode(params)}"


def browser_login(page, provider, callback_server, client=WEB, user=ALICE) -> dict:
    """Drive the login form in chromium; return the callback's query plus the PKCE verifier."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    redirect_uri = f"{callback_server.base}/callback"
    page.goto(authorization_url(provider, client.client_id, redirect_uri, state, challenge))
    page.fill(LOGIN_USERNAME, user.username)
    page.fill(LOGIN_PASSWORD, user.password)
    page.click(LOGIN_SUBMIT)
    page.wait_for_url(f"{callback_server.base}/callback?*")
    query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    return {"query": query, "state": state, "verifier": verifier, "redirect_uri": redirect_uri}


def exchange_code(provider, login, client=WEB) -> httpx.Response:
    return provider.token_request(
        {
            "grant_type": "authorization_code",
            "code": login["query"]["code"],
            "redirect_uri": login["redirect_uri"],
            "code_verifier": login["verifier"],
        },
        client,
    )


@pytest.mark.browser
def test_browser_login_redirects_to_callback_with_code_and_state(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server)
    assert login["query"]["code"]
    assert login["query"]["state"] == login["state"]
    assert login["query"]["iss"] == oidc_provider.issuer
    assert page.context.blocked_requests == []


@pytest.mark.browser
def test_wrong_password_shows_error_on_login_form(oidc_provider, page, callback_server):
    _, challenge = pkce_pair()
    page.goto(authorization_url(oidc_provider, WEB.client_id, f"{callback_server.base}/callback", "s", challenge))
    page.fill(LOGIN_USERNAME, ALICE.username)
    page.fill(LOGIN_PASSWORD, "not-her-password")
    page.click(LOGIN_SUBMIT)
    assert "Invalid username or password" in page.text_content(LOGIN_ERROR)
    assert callback_server.requests == []


@pytest.mark.browser
def test_code_exchange_returns_id_token_jwt_access_token_and_refresh_token(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server)
    resp = exchange_code(oidc_provider, login)
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["refresh_token"]
    at = verify_with_jwks(tokens["access_token"], oidc_provider.jwks(), oidc_provider.issuer, DEFAULT_RESOURCE)
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    assert at["sub"] == ALICE.username
    assert at["client_id"] == WEB.client_id
    assert at["scope"] == "read"
    assert at["groups"] == ["admins", "staff"]
    assert at["roles"] == ["admin", "user"]
    assert at["realm_access"] == {"roles": ["realm-admin", "offline_access"]}
    idt = verify_with_jwks(tokens["id_token"], oidc_provider.jwks(), oidc_provider.issuer, WEB.client_id)
    assert idt["nonce"] == "n-" + login["state"]
    assert idt["email"] == "alice@example.com"


@pytest.mark.browser
def test_code_exchange_with_wrong_verifier_fails(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server)
    login["verifier"] = pkce_pair()[0]
    resp = exchange_code(oidc_provider, login)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


@pytest.mark.browser
def test_client_secret_post_web_client_completes_the_flow(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server, client=WEB_POST)
    resp = exchange_code(oidc_provider, login, client=WEB_POST)
    assert resp.status_code == 200, resp.text
    assert unverified(resp.json()["access_token"])[1]["client_id"] == WEB_POST.client_id


@pytest.mark.browser
def test_refresh_token_grant_returns_new_jwt_access_token(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server)
    first = exchange_code(oidc_provider, login).json()
    resp = oidc_provider.token_request({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, WEB)
    assert resp.status_code == 200, resp.text
    refreshed = resp.json()
    claims = verify_with_jwks(refreshed["access_token"], oidc_provider.jwks(), oidc_provider.issuer, DEFAULT_RESOURCE)
    assert claims["sub"] == ALICE.username
    assert claims["scope"] == "read"
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]  # rotated (rotate_refresh_token default true)


@pytest.mark.browser
def test_end_session_redirects_to_post_logout_redirect_uri(oidc_provider, page, callback_server):
    login = browser_login(page, oidc_provider, callback_server)
    tokens = exchange_code(oidc_provider, login).json()
    params = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": f"{callback_server.base}/logged-out",
        "state": "bye",
    }
    page.goto(f"{oidc_provider.end_session_endpoint}?{urlencode(params)}")
    page.click(LOGOUT_CONFIRM)
    page.wait_for_url(f"{callback_server.base}/logged-out?*")
    assert parse_qs(urlsplit(page.url).query)["state"] == ["bye"]


@pytest.mark.browser
def test_user_access_token_ttl_is_configurable(oidc_provider_factory, page, callback_server):
    provider = oidc_provider_factory({"ttl": {"AccessToken": 5}})
    tokens = exchange_code(provider, browser_login(page, provider, callback_server)).json()
    _, claims = unverified(tokens["access_token"])
    assert tokens["expires_in"] == 5
    assert claims["exp"] - claims["iat"] == 5


def test_a_provider_that_fails_to_start_under_with_leaves_no_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ProviderStartError):
        # oidc-provider refuses this config at start (default_resource not among resources).
        with OidcProvider({"default_resource": "urn:not-configured"}):
            pass
    assert list(tmp_path.iterdir()) == []
