"""Pure parts of the browser login (kong_oidc_py/browser/login.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from kong_oidc_py.browser.login import at_hash, is_navigation, pkce_pair, refresh_due
from kong_oidc_py.browser.requests import safe_return_path as _safe_return_path, single_value as _single


class Req:
    def __init__(self, headers: dict[str, str], method: str = "GET") -> None:
        self.headers = {k.lower(): [v] for k, v in headers.items()}
        self._method = method

    def method(self) -> str:
        return self._method


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- is_navigation ----------------------------------------------------------------------------


def test_fetch_metadata_navigation_is_a_navigation():
    assert is_navigation(Req({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}))


def test_accept_html_without_fetch_metadata_is_a_navigation():
    assert is_navigation(Req({"Accept": "text/html,application/xhtml+xml"}))


def test_head_navigation_is_a_navigation():
    assert is_navigation(Req({"Sec-Fetch-Mode": "navigate"}, method="HEAD"))


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_non_get_is_never_a_navigation(method):
    assert not is_navigation(Req({"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, method=method))


def test_fetch_mode_cors_is_not_a_navigation_even_with_html_accept():
    assert not is_navigation(Req({"Sec-Fetch-Mode": "cors", "Accept": "text/html"}))


def test_iframe_navigation_is_not_sent_to_login():
    assert not is_navigation(Req({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}))


def test_x_requested_with_is_not_a_navigation():
    assert not is_navigation(Req({"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}))


def test_json_accept_is_not_a_navigation():
    assert not is_navigation(Req({"Accept": "application/json"}))


def test_authorization_header_is_never_a_navigation():
    assert not is_navigation(Req({"Sec-Fetch-Mode": "navigate", "Authorization": "Bearer x"}))


# -- PKCE -------------------------------------------------------------------------------------


def test_pkce_challenge_is_s256_of_the_verifier():
    verifier, challenge = pkce_pair()
    assert challenge == b64url(hashlib.sha256(verifier.encode()).digest())


def test_pkce_verifier_has_rfc7636_length_and_alphabet():
    verifier, _ = pkce_pair()
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)


def test_pkce_verifiers_are_fresh_each_time():
    assert len({pkce_pair()[0] for _ in range(50)}) == 50


# -- at_hash ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg,hash_fn", [("RS256", hashlib.sha256), ("ES384", hashlib.sha384), ("PS512", hashlib.sha512)])
def test_at_hash_is_the_left_half_of_the_algs_hash(alg, hash_fn):
    digest = hash_fn(b"access-token").digest()
    assert at_hash("access-token", alg) == b64url(digest[: len(digest) // 2])


def test_at_hash_matches_the_oidc_core_example():
    # OIDC Core A.3: access_token jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y, RS256
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == "77QmUPtjPfzWtF2AnpK9RQ"


def test_at_hash_for_eddsa_uses_sha512():
    digest = hashlib.sha512(b"t").digest()
    assert at_hash("t", "EdDSA") == b64url(digest[:32])


# -- the return URL ---------------------------------------------------------------------------


def test_return_path_keeps_path_and_query():
    assert _safe_return_path("/app/reports", "year=2024&q=a%20b") == "/app/reports?year=2024&q=a%20b"


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example", "evil.example/x", "https://evil.example/"])
def test_return_path_never_leaves_the_origin(path):
    assert _safe_return_path(path, "") == "/"


def test_return_path_cannot_split_the_location_header():
    out = _safe_return_path("/a\r\nSet-Cookie: x=1", "b=\r\nX: y")
    assert "\r" not in out and "\n" not in out
    assert out.startswith("/a%0D%0ASet-Cookie")


def test_return_path_percent_encodes_non_ascii():
    assert _safe_return_path("/caf\u00e9", "") == "/caf%C3%A9"


# -- callback parameters ----------------------------------------------------------------------


def test_single_query_value_accepts_a_string():
    assert _single("abc") == "abc"


@pytest.mark.parametrize("value", [["a", "b"], True, None, [1]])
def test_single_query_value_refuses_repeats_flags_and_junk(value):
    assert _single(value) is None


# -- refresh timing ---------------------------------------------------------------------------


def jwt_with(payload: dict) -> str:
    return "e30." + b64url(json.dumps(payload).encode()) + ".sig"


def test_long_lived_token_is_refreshed_ten_seconds_before_expiry():
    token = jwt_with({"iat": 1000, "exp": 4600})
    assert not refresh_due(token, 4600, 4589)
    assert refresh_due(token, 4600, 4590)


def test_short_lived_token_is_refreshed_in_its_last_quarter():
    token = jwt_with({"iat": 1000, "exp": 1004})
    assert not refresh_due(token, 1004, 1002)
    assert refresh_due(token, 1004, 1003)


def test_opaque_token_uses_the_default_margin():
    assert refresh_due("opaque-token", 1000, 990)
    assert not refresh_due("opaque-token", 1000, 989)


# -- ID token checks after signature verification (OIDC Core 3.1.3.7) ------------------------

from types import SimpleNamespace  # noqa: E402

from kong_oidc_py.errors import InvalidToken  # noqa: E402
from kong_oidc_py.browser.login import BrowserFlow  # noqa: E402
from kong_oidc_py.browser.token_endpoint import TokenResponse  # noqa: E402
from kong_oidc_py.verification.verify import Claims  # noqa: E402


def flow_with_id_claims(data: dict) -> BrowserFlow:
    flow = object.__new__(BrowserFlow)
    flow.config = SimpleNamespace(client_id="web")
    flow.id_verifier = SimpleNamespace(verify=lambda token: Claims(data=data, token_hash="h", kid="k", alg="RS256"))
    return flow


def tokens(access: str = "at", id_token: str | None = "id.token.sig") -> TokenResponse:
    return TokenResponse(access_token=access, id_token=id_token, refresh_token=None, expires_in=None, scope=None)


def test_id_token_with_matching_nonce_and_at_hash_passes():
    flow = flow_with_id_claims({"aud": "web", "nonce": "n1", "at_hash": at_hash("at", "RS256")})
    assert flow._verify_id_token(tokens(), "n1").data["nonce"] == "n1"


def test_missing_id_token_is_refused():
    with pytest.raises(InvalidToken) as info:
        flow_with_id_claims({"aud": "web", "nonce": "n1"})._verify_id_token(tokens(id_token=None), "n1")
    assert info.value.reason == "missing_id_token"


@pytest.mark.parametrize("nonce", ["other", None, 42])
def test_wrong_or_missing_nonce_is_refused(nonce):
    with pytest.raises(InvalidToken) as info:
        flow_with_id_claims({"aud": "web", "nonce": nonce})._verify_id_token(tokens(), "n1")
    assert info.value.reason == "bad_nonce"


def test_at_hash_of_another_access_token_is_refused():
    flow = flow_with_id_claims({"aud": "web", "nonce": "n1", "at_hash": at_hash("other", "RS256")})
    with pytest.raises(InvalidToken) as info:
        flow._verify_id_token(tokens(), "n1")
    assert info.value.reason == "bad_at_hash"


def test_several_audiences_need_azp_naming_this_client():
    flow = flow_with_id_claims({"aud": ["web", "other"], "azp": "other", "nonce": "n1"})
    with pytest.raises(InvalidToken) as info:
        flow._verify_id_token(tokens(), "n1")
    assert info.value.reason == "bad_audience"


def test_several_audiences_with_our_azp_pass():
    flow = flow_with_id_claims({"aud": ["web", "other"], "azp": "web", "nonce": "n1"})
    assert flow._verify_id_token(tokens(), "n1")
