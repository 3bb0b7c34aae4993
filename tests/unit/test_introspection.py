"""RFC 7662 introspection: what an answer means, what is cached and for how long, one call per
token under concurrency, client authentication, RFC 9701 signed answers, failing closed."""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import unquote_plus

import jwt as pyjwt
import pytest

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.access import AccessTokens
from kong_oidc_py.verification.introspection import JWT_ANSWER, IntrospectionOptions, Introspector
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.clock import Clock
from tests.support.keys import ISSUER, claims, ec_key, jwks, rsa_key

NOW = 1_800_000_000.0
ENDPOINT = "https://idp.example.com/introspect"
SIGNING = rsa_key("as-1")
OPAQUE = "2YotnFZFEjr1zCsicMWpAA"


class FakeFetcher:
    """Records each POST and answers with `answer` (a dict, bytes, or a ProviderError to raise)."""

    def __init__(self, answer=None, *, content_type="application/json", delay=0.0) -> None:
        self.answer = answer if answer is not None else {"active": True}
        self.content_type = content_type
        self.delay = delay
        self.calls: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()

    def post_form(self, url, form, *, headers, reason):
        with self.lock:
            self.calls.append((url, dict(form), dict(headers)))
        if self.delay:
            time.sleep(self.delay)
        if isinstance(self.answer, ProviderError):
            raise self.answer
        body = self.answer if isinstance(self.answer, bytes) else json.dumps(self.answer).encode()
        return self.content_type, body

    def close(self):
        pass


def active(**extra):
    return {"active": True, "iss": ISSUER, "sub": "alice", "client_id": "app", "scope": "read write",
            "aud": "api", "exp": int(NOW) + 300, "iat": int(NOW) - 10, **extra}


def make(answer=None, *, clock=None, content_type="application/json", delay=0.0, verify=None, **options):
    fetcher = FakeFetcher(answer, content_type=content_type, delay=delay)
    provider = Provider.from_jwks(ISSUER, jwks(SIGNING))
    clock = clock or Clock(NOW)
    verifier = Verifier(provider, VerifyOptions(issuer=ISSUER, **(verify or {})), clock=clock)
    opts = {"client_id": "rs", "client_secret": "rs-secret", "endpoint": ENDPOINT, **options}
    return Introspector(provider, verifier, IntrospectionOptions(**opts), clock=clock, fetcher=fetcher), fetcher, clock


def reason_of(fn) -> str:
    with pytest.raises(InvalidToken) as info:
        fn()
    return info.value.reason


# -- what an answer means ------------------------------------------------------------------


def test_active_answer_gives_its_claims_for_policy_and_headers():
    intro, _, _ = make(active())
    result = intro.introspect(OPAQUE)
    assert result.data["sub"] == "alice" and result.data["scope"] == "read write" and result.data["client_id"] == "app"
    assert "active" not in result.data
    assert result.alg == "introspection" and result.expires_at == NOW + 300


def test_inactive_answer_is_invalid_token():
    intro, _, _ = make({"active": False})
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "inactive"


@pytest.mark.parametrize("value", ["true", 1, None, [True]])
def test_active_must_be_the_json_true(value):
    intro, _, _ = make({**active(), "active": value})
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "inactive"


def test_answer_from_another_issuer_is_refused():
    intro, _, _ = make(active(iss="https://evil.example.com"))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "bad_issuer"


def test_answer_without_iss_is_taken_as_the_issuers():
    intro, _, _ = make({k: v for k, v in active().items() if k != "iss"})
    assert intro.introspect(OPAQUE).data["iss"] == ISSUER


def test_answer_for_another_audience_is_refused():
    intro, _, _ = make(active(aud="other-api"), verify={"audiences": ("api",)})
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "bad_audience"


def test_answer_with_the_required_audience_is_accepted():
    intro, _, _ = make(active(aud=["x", "api"]), verify={"audiences": ("api",)})
    assert intro.introspect(OPAQUE).data["sub"] == "alice"


def test_answer_whose_exp_has_passed_is_expired():
    intro, _, _ = make(active(exp=int(NOW) - 1))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "expired"


def test_answer_not_yet_valid_is_refused():
    intro, _, _ = make(active(nbf=int(NOW) + 60))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "not_yet_valid"


def test_answer_without_exp_is_accepted_even_when_jwts_need_exp():
    intro, _, _ = make({k: v for k, v in active().items() if k != "exp"}, verify={"require_exp": True})
    assert intro.introspect(OPAQUE).expires_at is None


@pytest.mark.parametrize("token_type", ["refresh_token", "urn:ietf:params:oauth:token-type:id_token", 7])
def test_answer_for_a_token_that_is_not_an_access_token_is_refused(token_type):
    intro, _, _ = make(active(token_type=token_type))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "bad_type"


def test_keycloak_refresh_typ_is_refused():
    intro, _, _ = make(active(typ="Refresh"))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "bad_type"


@pytest.mark.parametrize("token_type", ["Bearer", "DPoP", "access_token"])
def test_access_token_types_are_accepted(token_type):
    intro, _, _ = make(active(token_type=token_type))
    assert intro.introspect(OPAQUE).data["token_type"] == token_type


def test_oversized_token_is_refused_without_a_call():
    intro, fetcher, _ = make(active(), max_token_size=300)
    assert reason_of(lambda: intro.introspect("a" * 301)) == "token_too_large"
    assert fetcher.calls == []


def test_non_ascii_token_is_malformed_without_a_call():
    intro, fetcher, _ = make(active())
    assert reason_of(lambda: intro.introspect("t\u00f6ken")) == "malformed"
    assert fetcher.calls == []


# -- failing closed ------------------------------------------------------------------------


def test_idp_failure_fails_closed_with_its_cause_in_the_detail():
    intro, _, _ = make(ProviderError("introspection_failed", "https://idp/introspect answered HTTP 503"))
    with pytest.raises(InvalidToken) as info:
        intro.introspect(OPAQUE)
    assert info.value.reason == "introspection_failed" and "HTTP 503" in info.value.detail
    assert OPAQUE not in info.value.description


def test_idp_failure_is_not_cached():
    intro, fetcher, _ = make(ProviderError("introspection_failed", "down"))
    for _ in range(2):
        reason_of(lambda: intro.introspect(OPAQUE))
    assert len(fetcher.calls) == 2
    fetcher.answer = active()
    assert intro.introspect(OPAQUE).data["sub"] == "alice"


def test_answer_that_is_not_json_fails_closed():
    intro, _, _ = make(b"<html>oops</html>")
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "introspection_failed"


def test_missing_endpoint_in_discovery_fails_closed_naming_the_option():
    intro, _, _ = make(active(), endpoint=None)  # Provider.from_jwks metadata has no endpoint
    with pytest.raises(InvalidToken) as info:
        intro.introspect(OPAQUE)
    assert info.value.reason == "introspection_failed" and "introspection_endpoint" in info.value.detail


def test_failure_is_logged_at_warning_once_per_minute(caplog):
    intro, _, _ = make(ProviderError("introspection_failed", "down"))
    with caplog.at_level("WARNING", logger="kong_oidc_py"):
        for _ in range(3):
            reason_of(lambda: intro.introspect(OPAQUE))
    warnings = [r for r in caplog.records if "introspection failed" in r.getMessage()]
    assert len(warnings) == 1 and OPAQUE not in warnings[0].getMessage()


# -- caching -------------------------------------------------------------------------------


def test_positive_answer_is_cached_under_the_token_hash():
    intro, fetcher, _ = make(active())
    intro.introspect(OPAQUE)
    intro.introspect(OPAQUE)
    assert len(fetcher.calls) == 1
    assert all(OPAQUE.encode() not in key for key in intro.cache._data)


def test_positive_cache_ends_at_exp_when_exp_comes_first():
    intro, fetcher, clock = make(active(exp=int(NOW) + 30), cache_ttl=600)
    intro.introspect(OPAQUE)
    clock.now = NOW + 29
    intro.introspect(OPAQUE)
    assert len(fetcher.calls) == 1
    clock.now = NOW + 31
    fetcher.answer = {"active": False}
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "inactive"
    assert len(fetcher.calls) == 2


def test_positive_cache_ends_at_the_ttl_when_it_comes_first():
    intro, fetcher, clock = make(active(exp=int(NOW) + 3000), cache_ttl=60)
    intro.introspect(OPAQUE)
    clock.now = NOW + 61
    intro.introspect(OPAQUE)
    assert len(fetcher.calls) == 2


def test_negative_answer_is_cached_briefly():
    intro, fetcher, clock = make({"active": False}, negative_ttl=5)
    for _ in range(3):
        reason_of(lambda: intro.introspect(OPAQUE))
    assert len(fetcher.calls) == 1
    clock.now = NOW + 6
    reason_of(lambda: intro.introspect(OPAQUE))
    assert len(fetcher.calls) == 2


def test_no_cache_asks_every_time():
    intro, fetcher, _ = make(active(), cache_ttl=0, negative_ttl=0)
    intro.introspect(OPAQUE)
    intro.introspect(OPAQUE)
    assert len(fetcher.calls) == 2


def test_concurrent_misses_for_one_token_make_one_call():
    intro, fetcher, _ = make(active(), delay=0.2)
    results, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(intro.introspect(OPAQUE).data["sub"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["alice"] * 8 and len(fetcher.calls) == 1


def test_a_slow_call_for_one_token_does_not_block_another_token():
    intro, fetcher, _ = make(active(), delay=0.5)
    slow = threading.Thread(target=lambda: intro.introspect("slow-token"))
    slow.start()
    time.sleep(0.05)
    fetcher.delay = 0.0
    started = time.monotonic()
    intro.introspect("fast-token")
    assert time.monotonic() - started < 0.3
    slow.join()


# -- the request ---------------------------------------------------------------------------


def test_client_secret_basic_sends_form_encoded_credentials_in_authorization():
    intro, fetcher, _ = make(active(), client_id="rs:1", client_secret="s p&c")
    intro.introspect(OPAQUE)
    url, form, headers = fetcher.calls[0]
    assert url == ENDPOINT and form == {"token": OPAQUE, "token_type_hint": "access_token"}
    user, _, password = base64.b64decode(headers["Authorization"].split(" ", 1)[1]).decode().partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("rs:1", "s p&c")
    assert headers["Accept"] == "application/json"


def test_client_secret_post_sends_credentials_in_the_form():
    intro, fetcher, _ = make(active(), auth_method="client_secret_post", hint=None)
    intro.introspect(OPAQUE)
    _, form, headers = fetcher.calls[0]
    assert form == {"token": OPAQUE, "client_id": "rs", "client_secret": "rs-secret"}
    assert "Authorization" not in headers


def test_private_key_jwt_sends_a_fresh_signed_assertion():
    key = ec_key(kid="client-1")
    intro, fetcher, _ = make(active(), auth_method="private_key_jwt", client_secret=None, client_jwk=key.private_jwk())
    intro.introspect("token-a")
    intro.introspect("token-b")
    (_, first, _), (_, second, _) = fetcher.calls
    assert first["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = pyjwt.decode(first["client_assertion"], key.private.public_key(), algorithms=["ES256"], audience=ISSUER)
    assert assertion["iss"] == assertion["sub"] == "rs" and assertion["exp"] - assertion["iat"] <= 60
    assert pyjwt.get_unverified_header(first["client_assertion"])["kid"] == "client-1"
    assert first["client_assertion"] != second["client_assertion"]  # unique jti each time


def test_extra_headers_are_sent():
    intro, fetcher, _ = make(active(), headers=(("X-Api-Key", "k1"),))
    intro.introspect(OPAQUE)
    assert fetcher.calls[0][2]["X-Api-Key"] == "k1"


# -- RFC 9701 signed answers ---------------------------------------------------------------


def jwt_answer(inner=None, *, key=SIGNING, typ="token-introspection+jwt", aud="rs", iss=ISSUER, alg="RS256"):
    payload = {"iss": iss, "aud": aud, "iat": int(NOW), "token_introspection": inner or active()}
    return key.sign(payload, {"alg": alg, "kid": key.kid, "typ": typ}).encode()


def make_jwt(body, content_type=JWT_ANSWER):
    return make(body, content_type=content_type, accept=JWT_ANSWER)


def test_signed_answer_is_verified_and_used():
    intro, fetcher, _ = make_jwt(jwt_answer())
    assert intro.introspect(OPAQUE).data["sub"] == "alice"
    assert fetcher.calls[0][2]["Accept"] == JWT_ANSWER


@pytest.mark.parametrize("body", [
    jwt_answer(typ="JWT"),
    jwt_answer(aud="someone-else"),
    jwt_answer(iss="https://evil.example.com"),
    jwt_answer(key=rsa_key("as-1", fresh=True)),  # right kid, wrong key
    b"not.a.jwt",
    json.dumps(active()).encode(),
], ids=["typ", "aud", "iss", "signature", "garbage", "plain-json"])
def test_bad_signed_answer_fails_closed(body):
    intro, _, _ = make_jwt(body)
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "introspection_failed"


def test_plain_json_when_a_signed_answer_was_asked_for_is_refused():
    intro, _, _ = make_jwt(json.dumps(active()).encode(), content_type="application/json")
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "introspection_failed"


def test_signed_answer_saying_inactive_is_inactive():
    intro, _, _ = make_jwt(jwt_answer({"active": False}))
    assert reason_of(lambda: intro.introspect(OPAQUE)) == "inactive"


# -- which tokens are introspected ---------------------------------------------------------


class Recorder:
    def __init__(self, name):
        self.name, self.seen = name, []

    def verify(self, token):
        self.seen.append(token)
        return self.name

    introspect = verify


def test_opaque_tokens_are_introspected_and_jwts_verified_locally():
    verifier, intro = Recorder("local"), Recorder("remote")
    tokens = AccessTokens(verifier, intro, introspect_jwts=False)
    assert tokens.check("opaque-token") == ("remote", "introspection", None)
    assert tokens.check("a.b.c") == ("local", "bearer", None)


def test_introspect_jwt_tokens_sends_jwts_to_the_idp_too():
    verifier, intro = Recorder("local"), Recorder("remote")
    tokens = AccessTokens(verifier, intro, introspect_jwts=True)
    assert tokens.check("a.b.c") == ("remote", "introspection", None)


def test_without_introspection_every_token_is_verified_locally():
    verifier = Recorder("local")
    assert AccessTokens(verifier, None, introspect_jwts=False).check("opaque") == ("local", "bearer", None)
