"""Every rule across several options is refused twice before traffic: by Kong, through the
entity checks of the dumped schema (here: the emulator's validator, which runs them as
kong/db/schema/init.lua does), and by parse_config at instance start, naming the same field."""

from __future__ import annotations

from typing import Any

import pytest

from kong_oidc_py.config import parse_config
from kong_oidc_py.edge.schema import ENTITY_CHECKS, SCHEMA
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.rules import CONFIG_RULES, ISSUER_PATTERNS, POLICY_RULES, START_ONLY_RULES, config_warnings
from tests.kong_host import declarative
from tests.kong_host.lua_pattern import lua_match

ISSUER = "https://idp.example.com/realms/demo"
SECRET = "s" * 40
DUMPED = {"name": "oidc", "fields": [{"config": {"type": "record", "fields": SCHEMA}}], "entity_checks": ENTITY_CHECKS}


def bearer(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in {"issuer": ISSUER, "audience_required": ["api"], **kw}.items() if v is not None}


def browser(**kw: Any) -> dict[str, Any]:
    base = {"issuer": ISSUER, "auth_methods": ["authorization_code", "session"], "client_id": "kong",
            "client_secret": "client-secret", "redirect_uri": "https://app.example.com/cb", "session_secret": SECRET}
    return {k: v for k, v in {**base, **kw}.items() if v is not None}


def policy(**kw: Any) -> dict[str, Any]:
    return bearer(policies=[{"name": "p", "paths": ["/x"], **kw}])


# rule name -> (config breaking only that rule, field parse_config names)
BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "issuer_https": (bearer(issuer="http://idp.example.com"), "issuer"),
    "audience_for_bearer": (bearer(audience_required=None), "audience_required"),
    "audience_for_introspection": (bearer(auth_methods=["introspection"], audience_required=None, client_id="rs",
                                          client_secret="rs-secret"), "audience_required"),
    "audience_when_not_any": (bearer(audience_required=None, allow_any_audience=False), "audience_required"),
    "hmac_secret_for_HS256": (bearer(signing_algs=["HS256"]), "hmac_secret"),
    "hmac_secret_for_HS384": (bearer(signing_algs=["RS256", "HS384"]), "hmac_secret"),
    "hmac_secret_for_HS512": (bearer(signing_algs=["HS512"]), "hmac_secret"),
    "cookie_name_for_cookie_tokens": (bearer(bearer_token_param_type=["cookie"]), "bearer_token_cookie_name"),
    "upstream_headers_pairs": (bearer(upstream_headers_claims=["sub"]), "upstream_headers_names"),
    "client_id_with_authorization_code": (browser(client_id=None), "client_id"),
    "client_secret_with_authorization_code": (browser(client_secret=None), "client_secret"),
    "redirect_uri_with_authorization_code": (browser(redirect_uri=None), "redirect_uri"),
    "openid_scope_with_authorization_code": (browser(scopes=["profile"]), "scopes"),
    "session_secret_with_authorization_code": (browser(auth_methods=["authorization_code"], session_secret=None),
                                               "session_secret"),
    "session_secret_with_session": (bearer(auth_methods=["bearer", "session"]), "session_secret"),
    "samesite_none_needs_secure": (browser(session_cookie_samesite="None", session_cookie_secure=False),
                                   "session_cookie_samesite"),
    "policy_has_matcher": (bearer(policies=[{"name": "p"}]), "policies[0]"),
    "public_policy_without_scopes_required": (policy(public=True, scopes_required=["a"]), "policies[0].public"),
    "public_policy_without_groups_required": (policy(public=True, groups_required=["a"]), "policies[0].public"),
    "public_policy_without_roles_required": (policy(public=True, roles_required=["a"]), "policies[0].public"),
    "public_policy_without_claims": (policy(public=True, claims={"tier": ["gold"]}), "policies[0].public"),
}


def kong_load(config: dict[str, Any]) -> None:
    """A kong.yml with one oidc instance, validated like a DB-less start (emulator)."""
    doc = {"_format_version": "3.0", "services": [{"name": "s", "url": "http://127.0.0.1:9",
           "routes": [{"name": "r", "paths": ["/"], "plugins": [{"name": "oidc", "config": config}]}]}]}
    declarative.load(doc, {"oidc": DUMPED})


def test_every_rule_has_a_breaking_example():
    assert set(BROKEN) == {r.name for r in CONFIG_RULES + POLICY_RULES}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_kong_refuses_the_rule_at_load_naming_the_field(name):
    config, field = BROKEN[name]
    with pytest.raises(declarative.DeclarativeError) as info:
        kong_load(config)
    text = str(info.value)
    option = field.split(".")[-1] if field.startswith("policies") else field
    if name == "policy_has_matcher":
        option = "paths"
    assert option in text


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_parse_config_refuses_the_rule_naming_the_same_field(name):
    config, field = BROKEN[name]
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert info.value.field == field


@pytest.mark.parametrize("config", [bearer(), browser(), bearer(allow_any_audience=True, audience_required=None),
                                    bearer(signing_algs=["HS256"], hmac_secret="h" * 40), policy(public=True)],
                         ids=["bearer", "browser", "any-audience", "hmac", "public-policy"])
def test_valid_configs_pass_both(config):
    kong_load(config)
    parse_config(config)


def test_browser_only_instance_needs_no_audience():
    cfg = parse_config(browser())
    assert cfg.audience_required == () and not cfg.allow_any_audience


def test_then_err_messages_are_safe_for_lua_string_format():
    # Kong formats then_err with string.format: a stray '%' would break or garble the message.
    for check in ENTITY_CHECKS:
        (arg,) = check.values()
        if isinstance(arg, dict) and "then_err" in arg:
            assert "%" not in arg["then_err"]


# -- what only instance start can refuse --------------------------------------------------


@pytest.mark.parametrize("config, field", [
    (bearer(upstream_headers_claims=["sub", "email"], upstream_headers_names=["X-Sub"]), "upstream_headers_names"),
    (bearer(upstream_headers_claims=["sub"], upstream_headers_names=["Bad Name"]), "upstream_headers_names[0]"),
    (bearer(policies=[{"name": "p", "paths": ["/a"]}, {"name": "p", "paths": ["/b"]}]), "policies[1].name"),
    (bearer(policies=[{"name": "p", "paths": ["~/api/(v1"]}]), "policies[0].paths[0]"),
    (bearer(issuer="http://127.000.0.1:9100"), "issuer"),
], ids=["header-lengths", "header-name", "duplicate-policy", "bad-regex", "loopback-lookalike"])
def test_start_only_rules_pass_kong_and_are_refused_at_instance_start(config, field):
    kong_load(config)  # Kong's schema cannot say it ...
    with pytest.raises(ConfigError) as info:  # ... so the instance refuses it when it starts
        parse_config(config)
    assert info.value.field == field
    assert any(field.split("[")[0] in listed for listed, _ in START_ONLY_RULES)


# -- the Lua issuer patterns are never stricter than parse_config --------------------------


@pytest.mark.parametrize("issuer", [
    "https://idp.example.com", "HTTPS://idp.example.com", "http://127.0.0.1:9100", "http://127.9.8.7/realms/x",
    "http://localhost", "http://LocalHost:8080/x", "http://[::1]:9100", "http://[0:0:0:0:0:0:0:1]/x",
    "http://idp.example.com", "http://10.0.0.1", "http://[::2]", "http://idp.localhost:9100",
    "http://localhost.evil.example", "http://127.0.0.1.evil.example/x",
])
def test_issuer_patterns_refuse_nothing_parse_config_accepts(issuer):
    try:
        parse_config(bearer(issuer=issuer))
        accepted = True
    except ConfigError:
        accepted = False
    kong_ok = any(lua_match(issuer, p) for p in ISSUER_PATTERNS)
    if accepted:
        assert kong_ok
    if not issuer.lower().startswith("https") and "example" in issuer and "127" not in issuer and "localhost" not in issuer:
        assert not kong_ok  # plainly remote http hosts are refused by Kong too


# -- weaker choices are warned about ----------------------------------------------------------


def test_opt_outs_are_warned_about_by_name():
    cfg = parse_config(bearer(audience_required=None, allow_any_audience=True, reject_id_tokens=False,
                              ssl_verify=False, bearer_token_param_type=["header", "query"]))
    assert [name for name, _ in config_warnings(cfg)] == [
        "ssl_verify", "bearer_token_param_type", "allow_any_audience", "reject_id_tokens"]


def test_default_config_has_no_warnings():
    assert config_warnings(parse_config(bearer())) == []


def test_the_dumped_checks_use_only_what_kong_can_read_from_json():
    from tests.kong_host.entity_checks import check_plugin_schema

    check_plugin_schema(DUMPED)  # raises on custom_entity_check, unknown checkers or match keys


def test_insecure_session_cookies_are_warned_about_only_off_loopback():
    local = parse_config(browser(redirect_uri="http://127.0.0.1:8000/cb", session_cookie_secure=False))
    remote = parse_config(browser(session_cookie_secure=False))
    assert config_warnings(local) == []
    assert [name for name, _ in config_warnings(remote)] == ["session_cookie_secure"]
