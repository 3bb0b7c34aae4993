"""OIDC Back-Channel Logout 1.0: what the endpoint accepts, refuses, and answers (sections 2.4-2.8)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest

from kong_oidc_py.browser.backchannel import EVENT, BackchannelLogout
from kong_oidc_py.browser.session.locks import StoreUnavailable
from kong_oidc_py.config import parse_config
from kong_oidc_py.idp.provider import Provider
from tests.support.keys import rsa_key
from tests.unit.test_config import ISSUER, browser

NOW = 1_700_000_000
KEY = rsa_key("rsa-1")
OTHER_KEY = rsa_key("rsa-other", fresh=True)
CLIENT = "kong"


class MemoryRevocations:
    """In-memory stand-in for the Redis-backed Revocations (tested against Redis in
    tests/integration/test_session_revocation.py): records what the endpoint asked for."""

    def __init__(self, down: bool = False) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.revoked: list[tuple[str, str | None, str | None]] = []
        self.down = down

    def first_use_of_jti(self, issuer: str, jti: str, ttl: int) -> bool:
        if self.down:
            raise StoreUnavailable("down", "redis_unreachable")
        first = (issuer, jti) not in self.seen
        self.seen.add((issuer, jti))
        return first

    def revoke_all(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        self.revoked.append((issuer, sid, sub))
        return 1


class Req:
    def __init__(self, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> None:
        self.headers = {"content-type": [content_type]} if content_type else {}
        self._body = body

    def body(self) -> bytes:
        return self._body

    def method(self) -> str:
        return "POST"


GW = SimpleNamespace(_log_fields=lambda claims, policy, decision, **kw: {"decision": decision, **kw})
POLICY = SimpleNamespace(name="-")


def endpoint(revocations=None) -> tuple[BackchannelLogout, MemoryRevocations]:
    config = parse_config(browser(session_storage="redis", backchannel_logout_uri_suffix="/bcl"))
    revocations = revocations or MemoryRevocations()
    provider = Provider.from_jwks(ISSUER, {"keys": [KEY.public_jwk()]})
    return BackchannelLogout(config, provider, revocations, clock=lambda: NOW), revocations


def logout_token(key=KEY, typ: str | None = "logout+jwt", drop: tuple[str, ...] = (), **overrides) -> str:
    payload = {"iss": ISSUER, "aud": CLIENT, "iat": NOW, "exp": NOW + 120, "jti": "jti-1",
               "sub": "alice", "sid": "idp-sid-1", "events": {EVENT: {}}}
    payload.update(overrides)
    for name in drop:
        payload.pop(name, None)
    header = {"alg": "RS256", "kid": key.kid}
    if typ:
        header["typ"] = typ
    return key.sign(payload, header)


def post(flow: BackchannelLogout, token: str | None = None, *, body: bytes | None = None, **kw):
    if body is None:
        body = urlencode({"logout_token": token}).encode()
    return flow.handle(Req(body, **kw), GW, POLICY)


def refusal(outcome) -> str:
    assert outcome.status == 400
    assert outcome.response_headers["Cache-Control"] == "no-store"
    assert outcome.body["error"] == "invalid_request"
    return outcome.log["reason"]


# -- accepted -------------------------------------------------------------------------------------


def test_valid_logout_token_with_sid_revokes_that_idp_session_and_answers_200_no_store():
    flow, revocations = endpoint()
    outcome = post(flow, logout_token())
    assert outcome.status == 200 and outcome.response_headers["Cache-Control"] == "no-store"
    assert revocations.revoked == [(ISSUER, "idp-sid-1", None)]


def test_logout_token_with_only_sub_revokes_the_users_sessions():
    flow, revocations = endpoint()
    assert post(flow, logout_token(drop=("sid",))).status == 200
    assert revocations.revoked == [(ISSUER, None, "alice")]


def test_logout_token_without_typ_is_accepted_like_an_id_token():
    flow, _ = endpoint()
    assert post(flow, logout_token(typ=None)).status == 200


def test_audience_list_containing_our_client_is_accepted():
    flow, _ = endpoint()
    assert post(flow, logout_token(aud=["other", CLIENT])).status == 200


# -- refused --------------------------------------------------------------------------------------


def test_replayed_jti_is_refused():
    flow, revocations = endpoint()
    token = logout_token()
    assert post(flow, token).status == 200
    assert refusal(post(flow, token)) == "logout_token_replayed"
    assert len(revocations.revoked) == 1


@pytest.mark.parametrize("overrides,reason", [
    ({"iss": "https://evil.example"}, "logout_token_bad_issuer"),
    ({"aud": "another-client"}, "logout_token_bad_audience"),
    ({"exp": NOW - 60}, "logout_token_expired"),
    ({"iat": NOW + 3600}, "logout_token_iat_in_future"),
    ({"events": {}}, "logout_token_bad_events"),
    ({"events": {EVENT: "yes"}}, "logout_token_bad_events"),
    ({"events": [EVENT]}, "logout_token_bad_events"),
    ({"nonce": "n-1"}, "logout_token_has_nonce"),
    ({"sid": 42}, "logout_token_malformed"),  # a registered claim of the wrong JSON type (jose.py)
    ({"sid": ""}, "logout_token_bad_sid"),
    ({"sub": ""}, "logout_token_bad_sub"),
    ({"jti": 7}, "logout_token_malformed"),
    ({"jti": ""}, "logout_token_missing_jti"),
    ({"exp": NOW + 2 * 86400}, "logout_token_lifetime_too_long"),
])
def test_claims_that_break_the_logout_token_rules_are_refused(overrides, reason):
    flow, revocations = endpoint()
    assert refusal(post(flow, logout_token(**overrides))) == reason
    assert revocations.revoked == []


@pytest.mark.parametrize("dropped,reason", [
    (("iat",), "logout_token_missing_iat"),
    (("jti",), "logout_token_missing_jti"),
    (("sid", "sub"), "logout_token_no_subject"),
    (("events",), "logout_token_bad_events"),
    (("exp",), "logout_token_missing_claim"),
])
def test_missing_required_claims_are_refused(dropped, reason):
    flow, _ = endpoint()
    assert refusal(post(flow, logout_token(drop=dropped))) == reason


def test_token_signed_by_a_key_the_issuer_does_not_publish_is_refused():
    flow, _ = endpoint()
    assert refusal(post(flow, logout_token(key=OTHER_KEY))) == "logout_token_unknown_kid"


def test_forged_signature_is_refused():
    flow, _ = endpoint()
    token = logout_token()
    head, payload, _ = token.split(".")
    forged = logout_token(key=OTHER_KEY).split(".")[2]
    assert refusal(post(flow, f"{head}.{payload}.{forged}")) == "logout_token_bad_signature"


def test_access_token_type_is_refused():
    flow, _ = endpoint()
    assert refusal(post(flow, logout_token(typ="at+jwt"))) == "logout_token_bad_type"


def test_an_id_token_cannot_be_used_as_a_logout_token():
    flow, _ = endpoint()
    id_token = logout_token(typ="JWT", drop=("events",), nonce="n-1")
    assert refusal(post(flow, id_token)) in ("logout_token_bad_events", "logout_token_has_nonce")


def test_json_body_is_refused():
    flow, _ = endpoint()
    body = json.dumps({"logout_token": logout_token()}).encode()
    assert refusal(post(flow, body=body, content_type="application/json")) == "bad_content_type"


def test_missing_logout_token_is_refused():
    flow, _ = endpoint()
    assert refusal(post(flow, body=b"other=1")) == "missing_logout_token"


def test_two_logout_tokens_are_refused():
    flow, _ = endpoint()
    token = logout_token()
    assert refusal(post(flow, body=urlencode([("logout_token", token), ("logout_token", token)]).encode())) \
        == "missing_logout_token"


def test_oversized_body_is_refused():
    flow, _ = endpoint()
    assert refusal(post(flow, body=b"logout_token=" + b"a" * 70000)) == "body_too_large"


def test_error_description_never_contains_the_token():
    flow, _ = endpoint()
    token = logout_token(aud="another-client")
    outcome = post(flow, token)
    assert token not in json.dumps(outcome.body) and token not in json.dumps(outcome.log)


def test_redis_down_answers_503_so_the_idp_retries():
    flow, _ = endpoint(MemoryRevocations(down=True))
    outcome = post(flow, logout_token())
    assert outcome.status == 503 and outcome.response_headers["Cache-Control"] == "no-store"
    assert outcome.log["reason"] == "redis_unreachable"


# -- configuration --------------------------------------------------------------------------------


def test_backchannel_logout_needs_redis():
    from kong_oidc_py.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(browser(backchannel_logout_uri_suffix="/bcl"))
    assert caught.value.field == "backchannel_logout_uri_suffix"


def test_backchannel_logout_with_cookie_storage_and_redis_revocation_is_accepted():
    cfg = parse_config(browser(backchannel_logout_uri_suffix="/bcl", session_revocation_redis=True))
    assert cfg.backchannel_logout_uri_suffix == "/bcl"
