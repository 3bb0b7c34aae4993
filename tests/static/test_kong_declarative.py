"""Every Kong declarative file: decK's published schema, then what the schema does not check."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import jsonschema
import pytest

from .repo_files import (
    REPO,
    SCHEMAS,
    STACK_KONG_YML,
    all_plugins,
    design_options,
    effective_plugin,
    kong_yml_files,
    load_json,
    load_yaml,
    oidc_configs,
    routes_with_service,
)

FILES = kong_yml_files()
IDS = [str(p.relative_to(REPO)) for p in FILES]
DEFAULT_GUARD_GROUP = "oidc:verified"  # docs/DESIGN.md guard_group default


def test_the_stack_config_is_found():
    assert STACK_KONG_YML in FILES


@pytest.fixture(scope="module")
def deck_validator():
    # ../shared/schemas/README.md: draft-04, validator chosen explicitly.
    return jsonschema.Draft4Validator(load_json(SCHEMAS / "kong-declarative.json"))


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_validates_against_the_deck_schema(path, deck_validator):
    errors = list(deck_validator.iter_errors(load_yaml(path)))
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_format_version_is_3_0(path):
    assert load_yaml(path)["_format_version"] == "3.0"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_names_are_unique_and_references_resolve(path):
    cfg = load_yaml(path)
    service_names = [s.get("name") for s in cfg.get("services") or []]
    service_keys = set(service_names) | {s.get("id") for s in cfg.get("services") or []} - {None}
    assert len(service_names) == len(set(service_names)), "duplicate service names"
    pairs = routes_with_service(cfg)
    route_names = [r.get("name") for r, _ in pairs]
    assert len(route_names) == len(set(route_names)), "duplicate route names"
    route_keys = set(route_names) | {r.get("id") for r, _ in pairs} - {None}
    consumer_keys = {c.get("username") for c in cfg.get("consumers") or []} | {c.get("id") for c in cfg.get("consumers") or []}
    for r, service in pairs:
        assert service is not None, f"route {r.get('name')} names no existing service"
        assert r.get("paths") or r.get("hosts") or r.get("methods"), f"route {r.get('name')} matches nothing"
    for p in all_plugins(cfg):
        for kind, keys in (("service", service_keys), ("route", route_keys), ("consumer", consumer_keys)):
            ref = p.get(kind)
            if ref is None:
                continue
            key = ref.get("name") or ref.get("id") if isinstance(ref, dict) else ref
            assert key in keys, f"plugin {p['name']} references unknown {kind} {key!r}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_oidc_route_has_the_acl_guard(path):
    """DESIGN.md: the bundled acl plugin is the fail-closed guard for every route oidc protects."""
    cfg = load_yaml(path)
    protected = 0
    for r, service in routes_with_service(cfg):
        oidc = effective_plugin(cfg, r, service, "oidc")
        if oidc is None:
            continue
        protected += 1
        acl = effective_plugin(cfg, r, service, "acl")
        assert acl is not None, f"route {r.get('name')}: oidc without the acl guard"
        guard = (oidc.get("config") or {}).get("guard_group", DEFAULT_GUARD_GROUP)
        assert acl["config"].get("allow") == [guard], f"route {r.get('name')}: acl must allow only {guard!r}"
        assert acl["config"].get("always_use_authenticated_groups") is True, r.get("name")
        assert not acl["config"].get("deny")
    assert protected, "no route is protected by oidc"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_oidc_configs_use_the_design_option_names(path):
    options, policy_fields = design_options()
    for cfg in oidc_configs(load_yaml(path)):
        unknown = set(cfg) - options
        assert not unknown, f"options not in docs/DESIGN.md: {sorted(unknown)}"
        assert cfg.get("issuer"), "issuer is required"
        for i, policy in enumerate(cfg.get("policies") or []):
            assert set(policy) <= policy_fields, f"policies[{i}]: {sorted(set(policy) - policy_fields)}"
            assert policy.get("name"), f"policies[{i}].name is required"
            assert policy.get("routes") or policy.get("paths") or policy.get("methods"), f"policies[{i}] matches nothing"
        claims = cfg.get("upstream_headers_claims") or []
        names = cfg.get("upstream_headers_names") or []
        assert len(claims) == len(names)
        assert len({n.lower() for n in names}) == len(names)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_browser_instances_are_complete(path):
    cfg = load_yaml(path)
    for r, service in routes_with_service(cfg):
        oidc = effective_plugin(cfg, r, service, "oidc")
        conf = (oidc or {}).get("config") or {}
        if not {"authorization_code", "session"} & set(conf.get("auth_methods") or []):
            continue
        assert len(conf.get("session_secret") or "") >= 32, r.get("name")
        for key in ("client_id", "client_secret", "redirect_uri"):
            assert conf.get(key), f"{r.get('name')}: {key} missing"
        redirect = urlsplit(conf["redirect_uri"])
        # the callback must be served by this same plugin instance
        assert any(redirect.path == p or redirect.path.startswith(p.rstrip("/") + "/") for p in r.get("paths") or []), (
            f"{r.get('name')}: redirect_uri {conf['redirect_uri']} is not under the route's paths")
        if redirect.scheme == "http":
            assert conf.get("session_cookie_secure") is False, "Secure cookies are never sent over http"
        if conf.get("logout_uri_suffix"):
            assert conf["logout_uri_suffix"].startswith("/")


def test_stack_routes_cover_the_demo_cases():
    cfg = load_yaml(STACK_KONG_YML)
    by_name = {r["name"]: (r, s) for r, s in routes_with_service(cfg)}
    kinds = {"per_route_scopes": False, "roles": False, "service_policies": False, "public": False, "browser": False}
    for name, (r, s) in by_name.items():
        route_oidc = [p for p in r.get("plugins") or [] if p["name"] == "oidc"]
        effective = effective_plugin(cfg, r, s, "oidc")
        conf = (effective or {}).get("config") or {}
        if route_oidc and conf.get("scopes_required"):
            kinds["per_route_scopes"] = True
        if conf.get("roles_required") and conf.get("roles_claim") == ["realm_access", "roles"]:
            kinds["roles"] = True
        if not route_oidc and effective is not None and conf.get("policies"):
            kinds["service_policies"] = True
        if effective is None and effective_plugin(cfg, r, s, "acl") is None:
            kinds["public"] = True
        if "authorization_code" in (conf.get("auth_methods") or []):
            kinds["browser"] = True
    assert all(kinds.values()), kinds


def test_logout_redirect_lands_on_a_public_route():
    cfg = load_yaml(STACK_KONG_YML)
    for r, s in routes_with_service(cfg):
        conf = ((effective_plugin(cfg, r, s, "oidc") or {}).get("config")) or {}
        target = conf.get("logout_redirect_uri")
        if not target:
            continue
        path = urlsplit(target).path
        landing = [x for x, y in routes_with_service(cfg)
                   if any(path.startswith(p) for p in x.get("paths") or [])]
        assert landing and all(effective_plugin(cfg, x, y, "oidc") is None
                               for x, y in routes_with_service(cfg) if x in landing), (
            "logging out must not land on a protected route (it would start a new login)")


# -- the plugin's own parser/schema, once those modules exist ------------------------------------


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_oidc_configs_parse_with_the_plugin(path):
    try:
        from kong_oidc_py.config import parse_config
    except ImportError as exc:
        pytest.skip(f"kong_oidc_py.config not importable yet ({exc})")
    for cfg in oidc_configs(load_yaml(path)):
        parse_config(dict(cfg))


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_oidc_configs_pass_the_dumped_kong_schema(path):
    try:
        from kong_oidc_py.edge.schema import SCHEMA
    except ImportError as exc:
        pytest.skip(f"kong_oidc_py.edge.schema not importable yet ({exc})")
    from tests.kong_host import schema as kong_schema

    record = kong_schema.plugin_config_schema({"name": "oidc", "fields": [{"config": {"type": "record", "fields": SCHEMA}}]})
    for cfg in oidc_configs(load_yaml(path)):
        _, errors = kong_schema.validate_record(record, cfg)
        assert errors is None, kong_schema.render_errors(errors)
