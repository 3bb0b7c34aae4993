"""Gateway rules that keep what the plugin checks equal to what the upstream acts on: ambiguous
paths, identity headers in every spelling, truncated header lists (paths.py, headers.py)."""

from __future__ import annotations

import logging

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
PUB_AND_ADMIN = [
    {"name": "pub", "paths": ["/pub"], "public": True},
    {"name": "admin", "paths": ["/admin"], "scopes_required": ["admin"]},
]
PREFLIGHT = {"Origin": "https://app", "Access-Control-Request-Method": "POST"}


class Req:
    """RequestView with headers already lower-cased by nginx, `_` kept (headers.py)."""

    def __init__(self, headers=None, *, path="/api", method="GET", truncated=False, consumers=None, credential=None):
        self.headers = {k.lower(): (v if isinstance(v, list) else [v]) for k, v in (headers or {}).items()}
        self.headers_truncated = truncated
        self._path, self._method, self._credential = path, method, credential
        self.consumers = consumers or {}
        self.path_reads = 0

    def path(self):
        self.path_reads += 1
        return self._path

    def method(self): return self._method
    def route(self): return None
    def query(self): return {}
    def raw_query(self): return ""
    def credential(self): return self._credential

    def load_consumer(self, value, by_username):
        return next((c for c in self.consumers.values() if c.get("username" if by_username else "id") == value), None)


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(KEY)))


def gw(**config) -> Gateway:
    return Gateway(parse_config({"issuer": ISSUER, "audience_required": ["api"], **config}))


def bearer(**extra) -> dict:
    return {"Authorization": "Bearer " + KEY.sign(claims(**extra))}


# -- paths -------------------------------------------------------------------------------

AMBIGUOUS = {
    "/pub/..%2Fadmin": "path_encoded_separator",
    "/pub/..%2fadmin": "path_encoded_separator",
    "/pub/..%252Fadmin": "path_encoded_separator",
    "/pub/x;jsessionid=1": "path_parameter",
    "/pub/x%3Bv=1": "path_parameter",
    "/pub\\..\\admin": "path_backslash",
    "/pub/%252E%252E/admin": "path_encoded_dot",
    "/pub/\x00/admin": "path_control_character",
}


@pytest.mark.parametrize("path,reason", sorted(AMBIGUOUS.items()))
def test_ambiguous_path_under_a_public_policy_is_400_invalid_request(path, reason):
    out = gw(policies=PUB_AND_ADMIN).handle(Req(path=path))
    assert out.status == 400
    assert 'error="invalid_request"' in out.response_headers["WWW-Authenticate"]
    assert out.log["decision"] == "deny" and out.log["reason"] == reason
    assert out.authenticated_groups is None and not out.upstream_set


def test_ambiguous_path_on_a_strict_route_is_400_even_with_a_good_token():
    out = gw(scopes_required=["read"]).handle(Req(bearer(scope="read"), path="/api/a%2Fb"))
    assert out.status == 400 and out.log["reason"] == "path_encoded_separator"


def test_ambiguous_path_is_refused_before_the_token_is_looked_at():
    out = gw().handle(Req(path="/api;x"))
    assert out.status == 400 and out.log["reason"] == "path_parameter"


def test_the_400_names_the_class_never_the_path():
    out = gw().handle(Req(path="/api/secret-name%2F..%2Fx"))
    assert "secret-name" not in out.response_headers["WWW-Authenticate"] + str(out.body)
    assert out.log["detail"] == "path checks failed: path_encoded_separator"


def test_preflight_on_an_ambiguous_path_is_refused_too():
    out = gw(run_on_preflight=False).handle(Req(PREFLIGHT, path="/x%2Fy", method="OPTIONS"))
    assert out.status == 400


def test_a_plain_path_costs_one_path_read():
    req = Req(bearer(), path="/api/x")
    assert gw(policies=PUB_AND_ADMIN).handle(req).allowed
    assert req.path_reads == 1


def test_allowed_ambiguous_path_reading_a_protected_resource_needs_its_requirement():
    g = gw(allow_ambiguous_paths=True, policies=PUB_AND_ADMIN)
    assert g.handle(Req(path="/pub/..%2Fadmin")).status == 401
    denied = g.handle(Req(bearer(scope="read"), path="/pub/..%2Fadmin"))
    assert denied.status == 403 and denied.log["policy"] == "pub+admin"
    assert g.handle(Req(bearer(scope="admin"), path="/pub/..%2Fadmin")).allowed


@pytest.mark.parametrize("path", ["/pub/x;v=1", "/pub/a%2Fb", "/pub/a\\b"])
def test_allowed_ambiguous_path_stays_public_when_every_reading_is_public(path):
    out = gw(allow_ambiguous_paths=True, policies=PUB_AND_ADMIN).handle(Req(path=path))
    assert out.allowed and out.log["decision"] == "public" and out.log["policy"] == "pub"


def test_a_parameter_cannot_make_a_strict_policy_stop_matching():
    g = gw(allow_ambiguous_paths=True, policies=[{"name": "admin", "paths": ["~/admin$"], "scopes_required": ["admin"]}])
    out = g.handle(Req(bearer(scope="read"), path="/admin;x=1"))
    assert out.status == 403 and "admin" in out.log["policy"]


def test_allowed_ambiguous_paths_still_refuse_control_characters():
    assert gw(allow_ambiguous_paths=True).handle(Req(path="/a\x00b")).status == 400


def test_options_that_weaken_the_defaults_warn_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        gw(allow_ambiguous_paths=True, keep_kong_identity_headers=True, allow_truncated_headers=True)
    for option in ("allow_ambiguous_paths", "keep_kong_identity_headers", "allow_truncated_headers"):
        assert option in caplog.text


# -- identity headers in every spelling -----------------------------------------------------

SPOOFS = {"X_User_Id": "admin", "x-user_id": "admin", "X_Groups": "root", "X-Groups": "root"}


def test_accepted_request_strips_every_spelling_of_owned_headers():
    out = gw(**IDENTITY).handle(Req({**bearer(), **SPOOFS}))
    assert out.upstream_set == {"X-User-Id": "user-1"}
    # x-user-id is replaced by set_headers; every other spelling is removed by its own name
    assert out.upstream_clear == ["x-groups", "x-user_id", "x_groups", "x_user_id"]


def test_public_request_strips_every_spelling_of_owned_headers():
    out = gw(policies=PUB_AND_ADMIN, **IDENTITY).handle(Req(SPOOFS, path="/pub/x"))
    assert out.allowed and out.upstream_clear == ["x-groups", "x-user_id", "x_groups", "x_user_id"]


def test_anonymous_request_strips_every_spelling_and_sets_kong_consumer_headers():
    anon = {"id": CONSUMER_ID, "username": "anon"}
    req = Req({**SPOOFS, "X_Consumer_Username": "admin", "X_Anonymous_Consumer": "false"}, consumers={"a": anon})
    out = gw(anonymous="anon", **IDENTITY).handle(req)
    assert out.log["decision"] == "anonymous"
    assert out.upstream_set["X-Consumer-Username"] == "anon"
    assert {"x_consumer_username", "x_anonymous_consumer", "x_user_id", "x-groups"} <= set(out.upstream_clear)


def test_preflight_strips_every_spelling_of_owned_headers():
    out = gw(run_on_preflight=False, **IDENTITY).handle(Req({**PREFLIGHT, **SPOOFS}, method="OPTIONS"))
    assert out.log["decision"] == "preflight" and "x_user_id" in out.upstream_clear


def test_rejected_request_carries_no_upstream_changes():
    out = gw(**IDENTITY).handle(Req({"Authorization": "Bearer nope", **SPOOFS}))
    assert out.status in (400, 401) and not out.upstream_clear and not out.upstream_set


KONG_SPOOFS = {
    "X-Consumer-ID": "c", "X_Consumer_Custom_ID": "c", "x-consumer_username": "c", "X-Credential-Identifier": "c",
    "X_Anonymous_Consumer": "c", "X-Consumer-Groups": "c", "X_Authenticated_Groups": "c",
    "X-Authenticated-Scope": "c", "X_Authenticated_Userid": "c", "X-Credential-Username": "c",
}


def test_kong_identity_headers_are_stripped_by_default_even_when_this_instance_sets_none():
    out = gw().handle(Req({**bearer(), **KONG_SPOOFS}))
    assert out.allowed and out.upstream_clear == sorted(k.lower() for k in KONG_SPOOFS)


def test_keep_kong_identity_headers_keeps_them_but_not_the_instance_s_own():
    out = gw(keep_kong_identity_headers=True, **IDENTITY).handle(Req({**bearer(), **KONG_SPOOFS, "X_Groups": "root"}))
    assert out.upstream_clear == ["x_groups"]


def test_after_another_auth_plugin_its_consumer_headers_stand_but_other_spellings_go():
    # Every bundled auth plugin's set_consumer has just set or cleared the dash spellings.
    req = Req({**KONG_SPOOFS, "X_Consumer_ID": "evil"}, credential={"id": "key-1", "consumer_id": CONSUMER_ID})
    out = gw(anonymous="anon").handle(req)
    assert out.log["decision"] == "already_authenticated"
    assert {"x-consumer-id", "x-credential-identifier"}.isdisjoint(out.upstream_clear)
    assert {"x_consumer_id", "x_consumer_custom_id", "x-consumer_username", "x_anonymous_consumer",
            "x-authenticated-scope", "x_authenticated_userid"} <= set(out.upstream_clear)


# -- truncated header lists ---------------------------------------------------------------


def test_truncated_header_list_is_400_invalid_request():
    out = gw(**IDENTITY).handle(Req(bearer(), truncated=True))
    assert out.status == 400 and out.log["reason"] == "headers_truncated"
    assert 'error="invalid_request"' in out.response_headers["WWW-Authenticate"]


def test_truncated_header_list_is_refused_before_the_path_is_read():
    req = Req(bearer(), truncated=True)
    gw().handle(req)
    assert req.path_reads == 0


def test_allowed_truncated_list_clears_every_spelling_of_every_owned_header_not_set():
    out = gw(allow_truncated_headers=True, keep_kong_identity_headers=True, **IDENTITY).handle(Req(bearer(), truncated=True))
    assert out.allowed
    assert out.upstream_clear == ["x-groups", "x-user_id", "x_groups", "x_user-id", "x_user_id"]


def test_allowed_truncated_list_clears_the_kong_family_too():
    out = gw(allow_truncated_headers=True).handle(Req(bearer(), truncated=True))
    assert {"x-consumer-id", "x_consumer_id", "x-consumer_custom-id", "x_authenticated_userid"} <= set(out.upstream_clear)


def test_session_request_strips_every_spelling_of_owned_headers():
    import time

    from kong_oidc_py.browser.session.model import Session

    g = gw(auth_methods=["session", "bearer"], session_secret="s" * 40, session_cookie_secure=False,
           upstream_access_token_header="X-Access-Token", **IDENTITY)
    now = time.time()
    access = KEY.sign(claims(lifetime=3600))
    session = Session.new(subject="user-1", issuer=ISSUER, access_token=access, id_token=None,
                          refresh_token=None, expires_at=now + 3600, now=now)
    cookie = "; ".join(c.split(";", 1)[0] for c in g.browser.sessions.save(session, {}, now))
    spoofs = {**SPOOFS, "X_Access_Token": "forged", "X-Consumer-ID": "c"}
    out = g.handle(Req({"Cookie": cookie, **spoofs}, path="/app"))
    assert out.allowed and out.log["auth_method"] == "session"
    assert out.upstream_set["X-Access-Token"] == access
    assert {"x_user_id", "x-user_id", "x_groups", "x-groups", "x_access_token", "x-consumer-id"} <= set(out.upstream_clear)
