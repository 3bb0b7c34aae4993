"""deploy/keycloak/realm-export.json holds everything kong.yml and tests/compose rely on.

The lists come from deploy/kong/kong.yml and tests/compose/stack.py, not from this file.
Keycloak's import is forgiving in ways that break tokens silently (a client scope that does
not exist is skipped with a warning; declaring clientScopes drops all built-in scopes), so
those are checked here.
"""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

import pytest

from tests.compose import stack

from .repo_files import STACK_KONG_YML, effective_plugin, load_yaml, oidc_configs, realm, routes_with_service


def kong_cfg() -> dict:
    return load_yaml(STACK_KONG_YML)


def clients() -> dict[str, dict]:
    return {c["clientId"]: c for c in realm().get("clients") or []}


def scopes() -> dict[str, dict]:
    return {s["name"]: s for s in realm().get("clientScopes") or []}


def realm_roles() -> set[str]:
    return {r["name"] for r in (realm().get("roles") or {}).get("realm") or []}


def client_roles(client_id: str) -> set[str]:
    return {r["name"] for r in ((realm().get("roles") or {}).get("client") or {}).get(client_id) or []}


def groups() -> dict[str, dict]:
    out = {}

    def walk(items, parent=""):
        for g in items or []:
            path = f"{parent}/{g['name']}"
            out[path] = g
            walk(g.get("subGroups"), path)

    walk(realm().get("groups"))
    return out


def users() -> dict[str, dict]:
    return {u["username"]: u for u in realm().get("users") or []}


def mappers(kind: str) -> list[tuple[str, dict]]:
    out = []
    for s in scopes().values():
        out += [(s["name"], m) for m in s.get("protocolMappers") or [] if m["protocolMapper"] == kind]
    for c in clients().values():
        out += [(None, m) for m in c.get("protocolMappers") or [] if m["protocolMapper"] == kind]
    return out


def collect(key: str) -> set[str]:
    """Values of `key` in every oidc instance and every policy of the stack's kong.yml."""
    out: set[str] = set()
    for cfg in oidc_configs(kong_cfg()):
        out.update(cfg.get(key) or [])
        for policy in cfg.get("policies") or []:
            out.update(policy.get(key) or [])
    return out


def words(values: set[str]) -> set[str]:
    # KO semantics: items are OR, space-separated words inside one item are AND.
    return {w for v in values for w in v.split()}


def test_realm_name_matches_the_issuer():
    assert realm()["realm"] == stack.realm_name()
    assert realm()["enabled"] is True


def test_every_client_scope_a_client_references_exists():
    defined = set(scopes())
    for cid, c in clients().items():
        for key in ("defaultClientScopes", "optionalClientScopes"):
            missing = set(c.get(key) or []) - defined
            assert not missing, f"{cid}.{key}: {sorted(missing)} (Keycloak would skip them silently)"
    for key in ("defaultDefaultClientScopes", "defaultOptionalClientScopes"):
        assert set(realm().get(key) or []) <= defined, key


def test_tokens_carry_sub_and_roles_despite_declared_client_scopes():
    # Declaring clientScopes suppresses Keycloak's built-ins (basic, roles, ...): the mappers the
    # plugin relies on must be declared here and be default scopes of every client used.
    sub_scopes = {name for name, _ in mappers("oidc-sub-mapper")}
    realm_role_scopes = {name for name, m in mappers("oidc-usermodel-realm-role-mapper")
                         if m["config"].get("claim.name") == "realm_access.roles"}
    assert sub_scopes and realm_role_scopes
    for cid in {c.client_id for c in stack.M2M_CLIENTS} | {cfg["client_id"] for cfg in oidc_configs(kong_cfg()) if cfg.get("client_id")}:
        defaults = set(clients()[cid].get("defaultClientScopes") or [])
        assert defaults & sub_scopes, f"{cid}: tokens would have no sub"
        assert defaults & realm_role_scopes, f"{cid}: tokens would have no realm_access.roles"


def test_required_scopes_exist_and_appear_in_the_scope_claim():
    needed = words(collect("scopes_required")) | (words(collect("scopes")) - {"openid"})
    for c in stack.M2M_CLIENTS:
        needed |= set(c.scopes) | set(c.optional_scopes)
    assert needed
    for name in needed:
        assert name in scopes(), f"client scope {name} missing"
        assert scopes()[name]["attributes"].get("include.in.token.scope") == "true", name


def test_m2m_clients_are_service_accounts_with_the_scopes_the_tests_expect():
    for c in stack.M2M_CLIENTS:
        rep = clients()[c.client_id]
        assert rep["enabled"] and rep["serviceAccountsEnabled"] and not rep.get("publicClient")
        assert rep["secret"] == c.secret
        assert set(c.scopes) <= set(rep.get("defaultClientScopes") or [])
        assert set(c.optional_scopes) <= set(rep.get("optionalClientScopes") or [])
        sa = [u for u in users().values() if u.get("serviceAccountClientId") == c.client_id]
        assert len(sa) <= 1
        roles = set(sa[0].get("realmRoles") or []) if sa else set()
        assert set(c.realm_roles) <= roles, f"{c.client_id}'s service account lacks {set(c.realm_roles) - roles}"


def test_negative_client_has_none_of_what_the_routes_require():
    rep = clients()[stack.INVENTORY_SERVICE.client_id]
    granted = set(rep.get("defaultClientScopes") or []) | set(rep.get("optionalClientScopes") or [])
    assert not granted & words(stack.route_plugin_config("orders")["scopes_required"])
    sa = [u for u in users().values() if u.get("serviceAccountClientId") == rep["clientId"]]
    roles = set(sa[0].get("realmRoles") or []) if sa else set()
    assert not roles & words(stack.route_plugin_config("reports")["roles_required"])


def test_audiences_are_mapped_for_every_client_that_calls_kong():
    required = collect("audience_required")
    assert required
    by_scope: dict[str, set[str]] = {}
    for scope_name, m in mappers("oidc-audience-mapper"):
        aud = m["config"].get("included.client.audience") or m["config"].get("included.custom.audience")
        assert m["config"].get("access.token.claim") == "true"
        if m["config"].get("included.client.audience"):
            assert aud in clients(), f"audience mapper names unknown client {aud}"
        by_scope.setdefault(scope_name, set()).add(aud)
    callers = {c.client_id for c in stack.M2M_CLIENTS} | {cfg["client_id"] for cfg in oidc_configs(kong_cfg()) if cfg.get("client_id")}
    for cid in callers:
        defaults = set(clients()[cid].get("defaultClientScopes") or [])
        auds = set().union(*(by_scope.get(s, set()) for s in defaults))
        assert required <= auds, f"{cid}: access tokens would lack audience {required - auds}"


def test_required_roles_exist():
    for r, s in routes_with_service(kong_cfg()):
        conf = ((effective_plugin(kong_cfg(), r, s, "oidc") or {}).get("config")) or {}
        roles = words(set(conf.get("roles_required") or []))
        for policy in conf.get("policies") or []:
            roles |= words(set(policy.get("roles_required") or []))
        if not roles:
            continue
        claim = conf.get("roles_claim") or ["roles"]
        if claim == ["realm_access", "roles"]:
            assert roles <= realm_roles(), roles - realm_roles()
        elif len(claim) == 3 and claim[0] == "resource_access":
            assert roles <= client_roles(claim[1])
        else:
            pytest.fail(f"route {r['name']}: roles_claim {claim} is not a claim Keycloak issues")


def test_required_groups_exist_and_are_mapped_without_full_path():
    required = words(collect("groups_required")) | {g for u in stack.USERS for g in u.groups}
    names = {g["name"] for g in groups().values()}
    assert required <= names, required - names
    claims = {tuple(cfg.get("groups_claim") or ["groups"]) for cfg in oidc_configs(kong_cfg()) if cfg.get("groups_required")}
    group_mappers = mappers("oidc-group-membership-mapper")
    assert group_mappers
    for scope_name, m in group_mappers:
        assert m["config"].get("full.path") == "false"
        assert (m["config"].get("claim.name"),) in claims | {("groups",)}
    browser = {cfg["client_id"] for cfg in oidc_configs(kong_cfg()) if cfg.get("client_id")}
    for cid in browser:
        assert set(clients()[cid].get("defaultClientScopes") or []) & {s for s, _ in group_mappers}


def test_groups_carry_roles_that_exist():
    for path, g in groups().items():
        assert set(g.get("realmRoles") or []) <= realm_roles(), path
        for cid, roles in (g.get("clientRoles") or {}).items():
            assert cid in clients() and set(roles) <= client_roles(cid), path


def test_realm_and_client_roles_are_both_used():
    assert realm_roles() and any(client_roles(cid) for cid in clients())


def test_browser_client_matches_kong_yml():
    for cfg in oidc_configs(kong_cfg()):
        if "authorization_code" not in (cfg.get("auth_methods") or []):
            continue
        rep = clients()[cfg["client_id"]]
        assert rep["secret"] == cfg["client_secret"]
        assert rep["enabled"] and rep["standardFlowEnabled"] and not rep.get("publicClient")
        assert not rep.get("implicitFlowEnabled") and not rep.get("directAccessGrantsEnabled")
        assert rep["attributes"]["pkce.code.challenge.method"] == "S256"
        assert any(fnmatch.fnmatchcase(cfg["redirect_uri"], p) for p in rep["redirectUris"])
        assert urlsplit(cfg["redirect_uri"]).netloc == urlsplit(stack.BROWSER_KONG_URL).netloc
        post_logout = rep["attributes"]["post.logout.redirect.uris"].split("##")
        if cfg.get("logout_redirect_uri"):
            assert any(fnmatch.fnmatchcase(cfg["logout_redirect_uri"], p) for p in post_logout)
        scope_names = set(rep.get("defaultClientScopes") or []) | set(rep.get("optionalClientScopes") or [])
        assert set(cfg.get("scopes") or []) - {"openid"} <= scope_names


def test_test_users_can_log_in_without_extra_steps():
    for u in stack.USERS:
        rep = users()[u.username]
        assert rep["enabled"] and rep["emailVerified"] and rep.get("email")
        # Keycloak's user profile (24+) asks for first and last name on login when they are missing.
        assert rep.get("firstName") and rep.get("lastName")
        assert not rep.get("requiredActions")
        passwords = [c for c in rep.get("credentials") or [] if c["type"] == "password"]
        assert passwords and passwords[0]["value"] == u.password and not passwords[0].get("temporary")
        member_of = {p.rsplit("/", 1)[1] for p in rep.get("groups") or []}
        assert set(u.groups) <= member_of
        assert all(p in groups() for p in rep.get("groups") or []), "group paths must start with /"
        assert set(u.realm_roles) <= set(rep.get("realmRoles") or []) <= realm_roles()
        for cid, roles in (rep.get("clientRoles") or {}).items():
            assert set(roles) <= client_roles(cid)


def test_service_account_users_belong_to_service_account_clients():
    for name, u in users().items():
        cid = u.get("serviceAccountClientId")
        if cid is None:
            continue
        assert clients()[cid]["serviceAccountsEnabled"], name
        assert name == f"service-account-{cid}"
        assert set(u.get("realmRoles") or []) <= realm_roles()


def test_secrets_are_obviously_dev_only():
    for cid, c in clients().items():
        if "secret" in c:
            assert c["secret"].startswith("dev-only-"), cid
    for u in users().values():
        for cred in u.get("credentials") or []:
            assert cred["value"].startswith("dev-only-")
