"""PolicySet matching and Requirement evaluation (KO OR/AND semantics, real IdP claim layouts)."""

from __future__ import annotations

from typing import Any

import pytest

from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import InsufficientScope
from kong_oidc_py.paths import path_readings
from kong_oidc_py.policy import DEFAULT_POLICY, PolicySet, Requirement, all_of, normalize_path

ISSUER = "https://idp.example.com"


def policies(*items: dict[str, Any], **plugin: Any) -> PolicySet:
    return PolicySet.from_config(parse_config({"issuer": ISSUER, "allow_any_audience": True, "policies": list(items), **plugin}))


def requirement(**plugin: Any) -> Requirement:
    return PolicySet.from_config(parse_config({"issuer": ISSUER, "allow_any_audience": True, **plugin})).match().requirement


def denial(req: Requirement, claims: dict[str, Any]) -> InsufficientScope:
    with pytest.raises(InsufficientScope) as info:
        req.evaluate(claims)
    return info.value


# -- matching --------------------------------------------------------------------------------


def test_no_policies_means_the_default_policy():
    assert policies().match(path="/anything").name == DEFAULT_POLICY


def test_first_matching_policy_wins():
    ps = policies({"name": "health", "paths": ["/api/health"], "public": True},
                  {"name": "api", "paths": ["/api"]})
    assert ps.match(path="/api/health").name == "health"
    assert ps.match(path="/api/orders").name == "api"


def test_unmatched_request_falls_back_to_the_plugin_requirement():
    ps = policies({"name": "api", "paths": ["/api"], "scopes_required": ["api"]}, scopes_required=["base"])
    matched = ps.match(path="/other")
    assert matched.name == DEFAULT_POLICY and matched.requirement.scopes == (frozenset({"base"}),)


def test_matched_policy_requirement_replaces_the_plugin_requirement():
    ps = policies({"name": "api", "paths": ["/api"], "roles_required": ["admin"]}, scopes_required=["base"])
    req = ps.match(path="/api").requirement
    assert (req.scopes, req.roles) == ((), (frozenset({"admin"}),))


@pytest.mark.parametrize(
    "prefix, path, expected",
    [
        ("/api", "/api", True),
        ("/api", "/api/", True),
        ("/api", "/api/orders", True),
        ("/api", "/apix", False),
        ("/api", "/ap", False),
        ("/api/", "/api/orders", True),
        ("/api/", "/api", False),
        ("/api-", "/api-v2", False),  # only a trailing "/" makes a plain prefix
        ("/", "/anything", True),
    ],
)
def test_prefix_paths_match_on_segment_boundaries_unless_ending_in_slash(prefix, path, expected):
    ps = policies({"name": "p", "paths": [prefix]})
    assert (ps.match(path=path).name == "p") is expected


@pytest.mark.parametrize(
    "path, expected",
    [("/v2/items", True), ("/v10/items/7", True), ("/x/v2/items", False), ("/vX/items", False)],
)
def test_regex_paths_are_anchored_at_the_start_like_kong_routes(path, expected):
    ps = policies({"name": "p", "paths": [r"~/v\d+/items"]})
    assert (ps.match(path=path).name == "p") is expected


@pytest.mark.parametrize("path", ["/public/../admin", "/public/./../admin", "//admin/x"])
def test_dot_segments_cannot_move_a_request_into_another_policy(path):
    ps = policies({"name": "public", "paths": ["/public"], "public": True},
                  {"name": "admin", "paths": ["/admin"], "roles_required": ["admin"]})
    assert ps.match(path=path).name == "admin"


def test_normalize_path_keeps_a_trailing_slash():
    assert normalize_path("/a/./b/") == "/a/b/"


@pytest.mark.parametrize("route_id, route_name", [("0b7a-id", None), (None, "orders"), ("other", "orders")])
def test_routes_match_by_name_or_id(route_id, route_name):
    ps = policies({"name": "p", "routes": ["orders", "0b7a-id"]})
    assert ps.match(route_id=route_id, route_name=route_name).name == "p"


def test_route_policy_does_not_match_another_route():
    ps = policies({"name": "p", "routes": ["orders"]})
    assert ps.match(route_id="x", route_name="reports").name == DEFAULT_POLICY


@pytest.mark.parametrize("configured, method", [("get", "GET"), ("GET", "get"), ("Post", "POST")])
def test_methods_compare_case_insensitively(configured, method):
    assert policies({"name": "p", "methods": [configured]}).match(method=method).name == "p"


def test_all_matcher_kinds_of_a_policy_must_match():
    ps = policies({"name": "write", "paths": ["/api"], "methods": ["POST", "PUT"]})
    assert ps.match(path="/api/x", method="PUT").name == "write"
    assert ps.match(path="/api/x", method="GET").name == DEFAULT_POLICY
    assert ps.match(path="/other", method="POST").name == DEFAULT_POLICY


def test_a_matcher_whose_input_was_not_provided_does_not_match():
    assert policies({"name": "p", "paths": ["/"]}).match(path=None).name == DEFAULT_POLICY


@pytest.mark.parametrize(
    "policy, flags",
    [
        ({"routes": ["r"]}, (True, False, False)),
        ({"paths": ["/a"]}, (False, True, False)),
        ({"paths": ["~/a"]}, (False, True, False)),
        ({"methods": ["GET"]}, (False, False, True)),
        ({"routes": ["r"], "methods": ["GET"]}, (True, False, True)),
    ],
)
def test_needs_flags_report_only_the_matchers_in_use(policy, flags):
    ps = policies({"name": "p", **policy})
    assert (ps.needs_route, ps.needs_path, ps.needs_method) == flags


def test_needs_flags_are_false_without_policies():
    ps = policies()
    assert not (ps.needs_route or ps.needs_path or ps.needs_method)


def test_public_policy_is_flagged_public():
    assert policies({"name": "p", "paths": ["/health"], "public": True}).match(path="/health").requirement.public


def test_policy_inherits_the_plugin_claim_locations():
    ps = policies({"name": "p", "paths": ["/"], "roles_required": ["admin"]}, roles_claim=["realm_access", "roles"])
    ps.match(path="/").requirement.evaluate({"realm_access": {"roles": ["admin"]}})


# -- requirement semantics -------------------------------------------------------------------


def test_empty_requirement_accepts_any_token():
    Requirement().evaluate({})


@pytest.mark.parametrize(
    "token_scope, allowed",
    [
        ("read write", True),  # first alternative: both words
        ("write read extra", True),
        ("read", False),  # AND: one word of the first item is not enough
        ("admin", True),  # OR: second alternative
        ("", False),
    ],
)
def test_items_are_alternatives_and_words_are_all_required(token_scope, allowed):
    req = requirement(scopes_required=["read write", "admin"])
    if allowed:
        req.evaluate({"scope": token_scope})
    else:
        denial(req, {"scope": token_scope})


def test_missing_scope_is_insufficient_scope_with_the_first_alternative():
    err = denial(requirement(scopes_required=["orders.read  orders.list", "admin"]), {"scope": "openid"})
    assert (err.reason, err.status, err.error, err.scope) == ("insufficient_scope", 403, "insufficient_scope",
                                                             "orders.read orders.list")


@pytest.mark.parametrize(
    "plugin, claims, reason",
    [
        ({"groups_required": ["ops"]}, {"groups": ["dev"]}, "missing_groups"),
        ({"roles_required": ["admin"]}, {"roles": ["user"]}, "missing_roles"),
        ({"roles_required": ["admin"]}, {}, "missing_roles"),
    ],
)
def test_groups_and_roles_failures_have_their_own_reason(plugin, claims, reason):
    err = denial(requirement(**plugin), claims)
    assert err.reason == reason and err.scope is None


def test_scopes_are_checked_before_roles():
    req = requirement(scopes_required=["a"], roles_required=["b"])
    assert denial(req, {}).reason == "insufficient_scope"


def test_description_does_not_echo_token_claims():
    err = denial(requirement(groups_required=["ops"]), {"groups": ["secret-group-name-xyz"], "sub": "user-123"})
    assert "secret-group-name-xyz" not in err.description and "user-123" not in err.description


@pytest.mark.parametrize(
    "claims, allowed",
    [
        ({"tenant": "acme"}, True),
        ({"tenant": "globex"}, True),
        ({"tenant": "initech"}, False),
        ({}, False),
        ({"tenant": {"name": "acme"}}, False),
    ],
)
def test_policy_claims_need_one_allowed_value(claims, allowed):
    ps = policies({"name": "p", "paths": ["/"], "claims": {"tenant": ["acme", "globex"]}})
    req = ps.match(path="/").requirement
    if allowed:
        req.evaluate(claims)
    else:
        assert denial(req, claims).reason == "claim_mismatch"


def test_every_policy_claim_must_match():
    ps = policies({"name": "p", "paths": ["/"], "claims": {"tenant": ["acme"], "email_verified": ["true"]}})
    req = ps.match(path="/").requirement
    req.evaluate({"tenant": "acme", "email_verified": True})
    assert denial(req, {"tenant": "acme", "email_verified": False}).reason == "claim_mismatch"


def test_evaluate_accepts_the_design_cfg_argument():
    requirement(scopes_required=["a"]).evaluate({"scope": "a"}, object())


# -- IdP claim layouts ----------------------------------------------------------------------

KEYCLOAK = {
    "scope": "openid profile orders.read",
    "realm_access": {"roles": ["offline_access", "reports-viewer"]},
    "resource_access": {"kong-api": {"roles": ["orders-admin"]}, "account": {"roles": ["view-profile"]}},
    "groups": ["/staff", "/staff/ops"],
}
OKTA = {"scp": ["openid", "orders.read", "orders.write"], "groups": ["Everyone", "Ops"]}
AUTH0 = {"scope": "openid", "permissions": ["read:orders", "write:orders"],
         "https://example.com/roles": ["manager"]}
COGNITO = {"scope": "orders/read", "cognito:groups": ["admins"], "client_id": "4abc", "token_use": "access"}
AZURE = {"scp": "User.Read Orders.Read", "roles": ["Orders.Admin"]}


@pytest.mark.parametrize(
    "claims, plugin, allowed",
    [
        (KEYCLOAK, {"roles_claim": ["realm_access", "roles"], "roles_required": ["reports-viewer"]}, True),
        (KEYCLOAK, {"roles_claim": ["realm_access", "roles"], "roles_required": ["orders-admin"]}, False),
        (KEYCLOAK, {"roles_claim": ["resource_access", "kong-api", "roles"], "roles_required": ["orders-admin"]}, True),
        (KEYCLOAK, {"groups_required": ["/staff/ops"]}, True),
        (KEYCLOAK, {"scopes_required": ["orders.read profile"]}, True),
        (KEYCLOAK, {"scopes_required": ["orders.write"]}, False),
        (OKTA, {"scopes_claim": ["scp"], "scopes_required": ["orders.read orders.write"]}, True),
        (OKTA, {"scopes_claim": ["scp"], "scopes_required": ["orders.delete", "orders.write"]}, True),
        (OKTA, {"scopes_required": ["orders.read"]}, False),  # scp not consulted by default
        (AUTH0, {"scopes_claim": ["permissions"], "scopes_required": ["write:orders"]}, True),
        (AUTH0, {"roles_claim": ["https://example.com/roles"], "roles_required": ["manager"]}, True),
        (COGNITO, {"groups_claim": ["cognito:groups"], "groups_required": ["admins"]}, True),
        (COGNITO, {"groups_claim": ["cognito:groups"], "groups_required": ["users"]}, False),
        (AZURE, {"scopes_claim": ["scp"], "scopes_required": ["Orders.Read"]}, True),
        (AZURE, {"roles_required": ["Orders.Admin", "Orders.Reader"]}, True),
        (AZURE, {"roles_required": ["Orders.Reader"]}, False),
    ],
)
def test_idp_claim_layouts(claims, plugin, allowed):
    req = requirement(**plugin)
    if allowed:
        req.evaluate(claims)
    else:
        denial(req, claims)


@pytest.mark.parametrize(
    "claims, key, values, allowed",
    [
        (COGNITO, "client_id", ["4abc"], True),
        (COGNITO, "client_id", ["other"], False),
        (AUTH0, "https://example\\.com/roles", ["manager"], True),
        (KEYCLOAK, "resource_access.kong-api.roles", ["orders-admin"], True),
        (KEYCLOAK, "resource_access.account.roles", ["orders-admin"], False),
    ],
)
def test_idp_claim_layouts_in_policy_claims(claims, key, values, allowed):
    req = policies({"name": "p", "paths": ["/"], "claims": {key: values}}).match(path="/").requirement
    if allowed:
        req.evaluate(claims)
    else:
        assert denial(req, claims).reason == "claim_mismatch"


# -- paths with several readings (allow_ambiguous_paths) ---------------------------------------

PUB_AND_ADMIN = (
    {"name": "pub", "paths": ["/pub"], "public": True},
    {"name": "admin", "paths": ["/admin"], "scopes_required": ["admin"]},
)


def test_public_applies_only_when_every_reading_is_public():
    matched = policies(*PUB_AND_ADMIN).match_readings(readings=path_readings("/pub/..%2Fadmin"))
    assert matched.name == "pub+admin"
    assert not matched.requirement.public
    assert denial(matched.requirement, {"scope": "read"}).reason == "insufficient_scope"
    matched.requirement.evaluate({"scope": "admin"})


def test_readings_that_all_match_one_policy_give_that_policy_unchanged():
    ps = policies(*PUB_AND_ADMIN)
    assert ps.match_readings(readings=path_readings("/pub/a;v=1")) is ps.match(path="/pub/a")


def test_a_reading_that_matches_no_policy_adds_the_default_requirement():
    ps = policies(*PUB_AND_ADMIN, scopes_required=["base"])
    matched = ps.match_readings(readings=path_readings("/pub/..%2Fother"))
    assert matched.name == f"pub+{DEFAULT_POLICY}"
    assert matched.requirement.scopes == (frozenset({"base"}),)


def test_all_of_requires_every_requirement_in_every_kind():
    a = Requirement(scopes=(frozenset({"read"}), frozenset({"admin"})), groups=(frozenset({"staff"}),), scope_hint="read")
    b = Requirement(scopes=(frozenset({"write"}),), roles=(frozenset({"ops"}),), scope_hint="write")
    both = all_of([a, b])
    assert set(both.scopes) == {frozenset({"read", "write"}), frozenset({"admin", "write"})}
    assert both.groups == a.groups and both.roles == b.roles
    assert both.scope_hint == "read write"
    both.evaluate({"scope": "admin write", "groups": ["staff"], "roles": ["ops"]})
    assert denial(both, {"scope": "read", "groups": ["staff"], "roles": ["ops"]}).reason == "insufficient_scope"
    assert denial(both, {"scope": "read write", "roles": ["ops"]}).reason == "missing_groups"


def test_all_of_keeps_every_claim_check():
    a = Requirement(claims=((("tenant",), frozenset({"t1"})),))
    b = Requirement(claims=((("level",), frozenset({"gold"})),))
    assert denial(all_of([a, b]), {"tenant": "t1", "level": "silver"}).reason == "claim_mismatch"


def test_all_of_public_and_token_only_requires_a_token():
    combined = all_of([Requirement(public=True), Requirement()])
    assert not combined.public
    combined.evaluate({})
