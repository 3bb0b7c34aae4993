"""gateway.py's decision logic with a fake RequestView and a static Provider (no PDK, no network)."""

from __future__ import annotations

import json
import time

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from tests.support.keys import ISSUER, claims, jwks, rsa_key

KEY = rsa_key()
GUARD = "oidc:verified"
CONSUMER_ID = "5f1b1c1e-0000-4000-8000-00000000abcd"
IDENTITY = {"upstream_headers_claims": ["sub", "groups"], "upstream_headers_names": ["X-User-Id", "X-Groups"]}


class FakeRequest:
    def __init__(self, headers=None, *, path="/api", method="GET", route=None, query=None,
                 truncated=False, consumers=None, credential=None):
        self.headers = {k.lower(): (v if isinstance(v, list) else [v]) for k, v in (headers or {}).items()}
        self.headers_truncated = truncated
        self._path, self._method, self._route, self._query = path, method, route, query or {}
        self.consumers = consumers or {}
        self.lookups: list[tuple[str, bool]] = []
        self._credential = credential
        self.credential_reads = 0

    def path(self): return self._path
    def method(self): return self._method
    def route(self): return self._route
    def query(self): return self._query
    def raw_query(self): return ""
    def scheme(self): return "https"
    def host(self): return "api.example.com"
    def port(self): return 443
    def body(self): return b""

    def credential(self):
        self.credential_reads += 1
        return self._credential

    def load_consumer(self, value, by_username):
        self.lookups.append((value, by_username))
        for c in self.consumers.values():
            if (by_username and c.get("username") == value) or (not by_username and c.get("id") == value):
                return c
        return None


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(KEY)))


def gw(**config) -> Gateway:
    return Gateway(parse_config({"issuer": ISSUER, "audience_required": ["api"], **config}))


def token(**extra) -> str:
    return KEY.sign(claims(**extra))


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


# -- every outcome kind ------------------------------------------------------------------

def test_valid_token_is_allowed_with_identity_headers_and_the_guard_marker():
    out = gw(**IDENTITY).handle(FakeRequest(bearer(token(groups=["a", "b"]))))
    assert out.allowed
    assert out.upstream_set == {"X-User-Id": "user-1", "X-Groups": "a, b"}
    assert out.authenticated_groups == [GUARD]
    assert out.log["decision"] == "allow"


def test_public_policy_is_allowed_without_a_token():
    out = gw(policies=[{"name": "docs", "paths": ["/docs"], "public": True}]).handle(FakeRequest(path="/docs/x"))
    assert out.allowed and out.log["decision"] == "public" and out.log["policy"] == "docs"
    assert out.authenticated_groups == [GUARD]


def test_preflight_passes_without_a_token_when_run_on_preflight_is_off():
    req = FakeRequest({"Origin": "https://app", "Access-Control-Request-Method": "POST"}, method="OPTIONS")
    out = gw(run_on_preflight=False).handle(req)
    assert out.allowed and out.log["decision"] == "preflight"


def test_preflight_needs_a_token_by_default():
    req = FakeRequest({"Origin": "https://app", "Access-Control-Request-Method": "POST"}, method="OPTIONS")
    assert gw().handle(req).status == 401


def test_anonymous_consumer_is_used_when_the_token_is_missing():
    anon = {"id": CONSUMER_ID, "username": "anon"}
    out = gw(anonymous="anon").handle(FakeRequest(consumers={"anon": anon}))
    assert out.allowed and out.log["decision"] == "anonymous"
    assert out.consumer == anon and out.credential is None
    assert out.log["reason"] == "missing_token"


def test_anonymous_consumer_that_does_not_exist_is_a_500():
    out = gw(anonymous="ghost").handle(FakeRequest())
    assert out.status == 500 and out.log["reason"] == "anonymous_not_found"


def test_anonymous_is_not_used_for_insufficient_scope():
    anon = {"id": CONSUMER_ID, "username": "anon"}
    out = gw(anonymous="anon", scopes_required=["write"]).handle(FakeRequest(bearer(token(scope="read")), consumers={"a": anon}))
    assert out.status == 403


def test_missing_token_is_401_without_error_attribute():
    out = gw().handle(FakeRequest())
    assert out.status == 401
    assert "error=" not in out.response_headers["WWW-Authenticate"]
    assert out.log["reason"] == "missing_token"


def test_malformed_authorization_header_is_400_invalid_request():
    out = gw().handle(FakeRequest({"Authorization": "Bearer a b"}))
    assert out.status == 400 and 'error="invalid_request"' in out.response_headers["WWW-Authenticate"]


def test_non_utf8_token_is_400_invalid_request():
    out = gw().handle(FakeRequest({"Authorization": "Bearer \udcff\udcfe"}))
    assert out.status == 400


def test_bad_signature_is_401_invalid_token():
    other = rsa_key("rsa-1", fresh=True)
    out = gw().handle(FakeRequest(bearer(other.sign(claims()))))
    assert out.status == 401 and 'error="invalid_token"' in out.response_headers["WWW-Authenticate"]
    assert out.log["reason"] == "bad_signature"


def test_expired_token_is_401_expired():
    now = time.time()
    out = gw().handle(FakeRequest(bearer(token(iat=int(now) - 600, exp=int(now) - 300))))
    assert out.status == 401 and out.log["reason"] == "expired"


def test_missing_scope_is_403_naming_the_scope():
    out = gw(scopes_required=["write"]).handle(FakeRequest(bearer(token(scope="read"))))
    assert out.status == 403
    assert 'scope="write"' in out.response_headers["WWW-Authenticate"]


def test_denials_carry_no_upstream_changes_and_no_marker():
    out = gw(**IDENTITY).handle(FakeRequest({"X-User-Id": "admin"}))
    assert out.status == 401
    assert out.authenticated_groups is None and not out.upstream_set and not out.upstream_clear


# -- spoofed identity headers -------------------------------------------------------------

def test_spoofed_identity_header_without_a_claim_is_cleared():
    out = gw(**IDENTITY).handle(FakeRequest({**bearer(token()), "X-Groups": "root"}))
    assert out.upstream_clear == ["x-groups"]
    assert "X-Groups" not in out.upstream_set


def test_spoofed_identity_header_with_a_claim_is_overwritten_not_cleared():
    out = gw(**IDENTITY).handle(FakeRequest({**bearer(token()), "X-User-Id": "admin"}))
    assert out.upstream_set["X-User-Id"] == "user-1"
    assert "x-user-id" not in out.upstream_clear


def test_identity_headers_the_client_did_not_send_are_not_cleared():
    out = gw(**IDENTITY).handle(FakeRequest(bearer(token())))
    assert out.upstream_clear == []


def test_spoofed_identity_headers_among_many_header_names_are_cleared_on_every_request():
    # Past the names the alias table remembers per set, the scan still runs on every request.
    many = {f"X-Extra-{i}": "v" for i in range(100)}
    g = gw(**IDENTITY)
    for _ in range(2):
        out = g.handle(FakeRequest({**bearer(token()), **many, "X_Groups": "root"}))
        assert out.upstream_clear == ["x_groups"]


def test_truncated_header_table_is_refused_by_default():
    out = gw(**IDENTITY).handle(FakeRequest(bearer(token()), truncated=True))
    assert out.status == 400 and out.log["reason"] == "headers_truncated"


def test_allowed_truncated_header_table_clears_every_spelling_of_every_owned_header_not_set():
    cfg = dict(IDENTITY, allow_truncated_headers=True, keep_kong_identity_headers=True)
    out = gw(**cfg).handle(FakeRequest(bearer(token()), truncated=True))
    assert out.upstream_clear == ["x-groups", "x-user_id", "x_groups", "x_user-id", "x_user_id"]


def test_public_route_clears_spoofed_identity_headers():
    cfg = dict(IDENTITY, policies=[{"name": "docs", "paths": ["/docs"], "public": True}])
    out = gw(**cfg).handle(FakeRequest({"X-User-Id": "admin"}, path="/docs"))
    assert out.upstream_clear == ["x-user-id"] and out.upstream_set == {}


# -- hide_credentials, groups, consumers --------------------------------------------------

def test_hide_credentials_clears_the_authorization_header():
    out = gw(hide_credentials=True).handle(FakeRequest(bearer(token())))
    assert "authorization" in out.upstream_clear


def test_credentials_are_kept_by_default():
    out = gw().handle(FakeRequest(bearer(token())))
    assert "authorization" not in out.upstream_clear


def test_authenticated_groups_claim_follows_the_guard_marker():
    out = gw(authenticated_groups_claim=["groups"]).handle(FakeRequest(bearer(token(groups=["dev", GUARD, "ops"]))))
    assert out.authenticated_groups == [GUARD, "dev", "ops"]


def test_consumer_by_username_maps_the_claim_to_a_consumer_and_credential():
    alice = {"id": CONSUMER_ID, "username": "user-1"}
    req = FakeRequest(bearer(token()), consumers={"alice": alice})
    out = gw(consumer_claim=["sub"]).handle(req)
    assert out.allowed and out.consumer == alice
    assert out.credential == {"id": "user-1", "consumer_id": CONSUMER_ID}
    assert req.lookups == [("user-1", True)]
    assert out.log["consumer"] == "user-1"


def test_consumer_by_id_skips_the_lookup_for_a_non_uuid_value():
    req = FakeRequest(bearer(token()))
    out = gw(consumer_claim=["sub"], consumer_by=["id"]).handle(req)
    assert req.lookups == []
    assert out.status == 401 and out.log["reason"] == "consumer_not_found"


def test_consumer_by_id_then_username_tries_both_in_order():
    alice = {"id": CONSUMER_ID, "username": "user-1"}
    req = FakeRequest(bearer(token(sub=CONSUMER_ID)), consumers={"a": alice})
    out = gw(consumer_claim=["sub"], consumer_by=["id", "username"]).handle(req)
    assert out.consumer == alice and req.lookups == [(CONSUMER_ID, False)]


def test_unknown_consumer_is_401():
    out = gw(consumer_claim=["sub"]).handle(FakeRequest(bearer(token())))
    assert out.status == 401 and out.log["reason"] == "consumer_not_found"


def test_unknown_consumer_is_allowed_without_consumer_when_optional():
    out = gw(consumer_claim=["sub"], consumer_optional=True).handle(FakeRequest(bearer(token())))
    assert out.allowed and out.consumer is None and out.credential is None


# -- log fields --------------------------------------------------------------------------

@pytest.mark.parametrize("config,extra,expect", [
    ({}, {}, None),
    ({"scopes_required": ["write"]}, {"scope": "read"}, 403),
    ({"audience_required": ["other"]}, {}, 401),
])
def test_log_fields_never_contain_the_token(config, extra, expect):
    tok = token(**extra)
    out = gw(**config).handle(FakeRequest(bearer(tok)))
    assert out.status == expect
    text = json.dumps(out.log) + json.dumps(out.body) + json.dumps(out.response_headers)
    for part in tok.split("."):
        assert part not in text


def test_allowed_log_fields_name_the_token_by_hash():
    out = gw().handle(FakeRequest(bearer(token())))
    assert len(out.log["token_hash"]) == 12 and out.log["subject"] == "user-1"


# -- Kong's consumer headers, as its own auth plugins set them -----------------------------


def test_mapped_consumer_sets_kong_consumer_headers_and_clears_a_spoofed_anonymous_flag():
    alice = {"id": CONSUMER_ID, "username": "user-1"}
    req = FakeRequest({**bearer(token()), "X-Anonymous-Consumer": "true", "X-Consumer-Custom-ID": "evil"},
                      consumers={"alice": alice})
    out = gw(consumer_claim=["sub"]).handle(req)
    assert out.upstream_set["X-Consumer-ID"] == CONSUMER_ID
    assert out.upstream_set["X-Consumer-Username"] == "user-1"
    assert out.upstream_set["X-Credential-Identifier"] == "user-1"
    assert "x-anonymous-consumer" in out.upstream_clear
    assert "x-consumer-custom-id" in out.upstream_clear


def test_anonymous_access_sets_the_anonymous_consumer_headers():
    anon = {"id": CONSUMER_ID, "username": "anon"}
    out = gw(anonymous="anon").handle(FakeRequest({"X-Credential-Identifier": "spoofed"}, consumers={"a": anon}))
    assert out.upstream_set["X-Anonymous-Consumer"] == "true"
    assert out.upstream_set["X-Consumer-Username"] == "anon"
    assert "x-credential-identifier" in out.upstream_clear


def test_without_consumer_mapping_kong_consumer_headers_are_stripped_by_default():
    # A client can send them as well as an earlier auth plugin can: Kong's family is stripped.
    out = gw().handle(FakeRequest({**bearer(token()), "X-Consumer-ID": "spoofed"}))
    assert "x-consumer-id" in out.upstream_clear
    assert "X-Consumer-ID" not in out.upstream_set


def test_keep_kong_identity_headers_leaves_them_to_an_auth_plugin_chained_before():
    out = gw(keep_kong_identity_headers=True).handle(FakeRequest({**bearer(token()), "X-Consumer-ID": "from-key-auth"}))
    assert "x-consumer-id" not in out.upstream_clear
    assert "X-Consumer-ID" not in out.upstream_set


# -- anonymous: a logical OR with Kong's other auth plugins ------------------------------


def test_with_anonymous_a_credential_from_another_auth_plugin_stands():
    req = FakeRequest(credential={"id": "key-1", "consumer_id": CONSUMER_ID})
    out = gw(anonymous="anon", scopes_required=["admin"]).handle(req)
    assert out.allowed and out.log["decision"] == "already_authenticated"
    assert out.consumer is None and req.lookups == []


def test_with_anonymous_and_no_prior_credential_the_token_is_verified():
    req = FakeRequest(bearer(token(scope="read")))
    out = gw(anonymous="anon", scopes_required=["write"]).handle(req)
    assert out.status == 403


def test_without_anonymous_a_prior_credential_is_not_even_read():
    req = FakeRequest(credential={"id": "key-1"})
    out = gw().handle(req)
    assert out.status == 401 and req.credential_reads == 0


# -- opaque tokens (introspection) ---------------------------------------------------------


class FakeIntrospector:
    def __init__(self, answers):
        self.answers, self.seen = answers, []

    def introspect(self, tok):
        from kong_oidc_py.verification.verify import Claims

        self.seen.append(tok)
        answer = self.answers[tok]
        if isinstance(answer, Exception):
            raise answer
        return Claims(data=answer, token_hash="abc123", kid=None, alg="introspection")


def introspecting(answers, **config):
    g = gw(auth_methods=["bearer", "introspection"], client_id="rs", client_secret="rs-secret-value", **config)
    g.tokens.introspector = FakeIntrospector(answers)
    return g


def test_opaque_token_is_introspected_and_feeds_policy_and_identity_headers():
    g = introspecting({"opaque": {"iss": ISSUER, "sub": "alice", "scope": "read", "groups": ["a"]}},
                      scopes_required=["read"], **IDENTITY)
    out = g.handle(FakeRequest(bearer("opaque")))
    assert out.allowed and out.upstream_set == {"X-User-Id": "alice", "X-Groups": "a"}
    assert out.log["auth_method"] == "introspection" and out.log["scopes"] == "read"


def test_introspected_token_without_the_scope_is_403():
    g = introspecting({"opaque": {"iss": ISSUER, "sub": "alice", "scope": "read"}}, scopes_required=["admin"])
    out = g.handle(FakeRequest(bearer("opaque")))
    assert out.status == 403 and 'scope="admin"' in out.response_headers["WWW-Authenticate"]


def test_inactive_token_is_401_invalid_token():
    from kong_oidc_py.errors import InvalidToken

    g = introspecting({"opaque": InvalidToken("inactive", "The token is not active", "active=false")})
    out = g.handle(FakeRequest(bearer("opaque")))
    assert out.status == 401 and 'error="invalid_token"' in out.response_headers["WWW-Authenticate"]
    assert out.log["reason"] == "inactive"


def test_jwt_is_still_verified_locally_when_introspection_is_on():
    g = introspecting({})
    out = g.handle(FakeRequest(bearer(token())))
    assert out.allowed and out.log["auth_method"] == "bearer" and g.tokens.introspector.seen == []
