"""parse_config: the option table, defaults, and every validation rule (each names its field)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kong_oidc_py import config as config_mod
from kong_oidc_py.config import OPTIONS, PluginConfig, options_markdown, parse_config
from kong_oidc_py.errors import ConfigError

ISSUER = "https://idp.example.com/realms/demo"
SESSION_SECRET = "s" * 40
CLIENT_SECRET = "client-secret-value-do-not-echo"
HMAC_SECRET = "h" * 48


def raw(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"issuer": ISSUER, "audience_required": ["api"]}
    out.update(overrides)
    return out


def browser(**overrides: Any) -> dict[str, Any]:
    out = raw(
        auth_methods=["authorization_code", "session"],
        client_id="kong",
        client_secret=CLIENT_SECRET,
        redirect_uri="https://app.example.com/callback",
        session_secret=SESSION_SECRET,
    )
    out.update(overrides)
    return out


def policy(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "p", "paths": ["/api"]}
    out.update(overrides)
    return out


def config_error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


# -- defaults and Kong's envelope ---------------------------------------------------------


def test_minimal_config_takes_every_default():
    cfg = parse_config(raw())
    for opt in OPTIONS:
        if opt.name in ("issuer", "audience_required"):
            continue
        expected = None if opt.default is config_mod.UNSET else opt.default
        assert getattr(cfg, opt.name) == expected, opt.name


def test_null_means_unset():
    assert parse_config(raw(timeout=None, scopes_claim=None)).timeout == 10000


def test_kong_metadata_keys_are_ignored():
    meta = {"__plugin_id": "x", "__key__": "k", "__seq__": 3, "__ws_id": "w", "route_id": "r",
            "service_id": "s", "consumer_id": "c", "plugin_instance_name": "n"}
    assert parse_config(raw(**meta)).issuer == ISSUER


def test_unknown_top_level_key_is_rejected():
    assert config_error(raw(issuer_url="x")).field == "issuer_url"


def test_unknown_policy_key_is_rejected_with_its_path():
    assert config_error(raw(policies=[policy(route="x")])).field == "policies[0].route"


def test_non_mapping_config_is_rejected():
    with pytest.raises(ConfigError):
        parse_config(["issuer"])  # type: ignore[arg-type]


def test_config_is_frozen():
    cfg = parse_config(raw())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.issuer = "https://other.example.com"  # type: ignore[misc]


def test_plugin_config_has_a_field_for_every_option():
    names = {f.name for f in dataclasses.fields(PluginConfig)}
    assert {o.name for o in OPTIONS} <= names


# -- generic type and range rules ------------------------------------------------------------


def test_issuer_is_required():
    err = config_error({})
    assert (err.field, err.message) == ("issuer", "required field missing")


def test_policy_name_is_required():
    assert config_error(raw(policies=[{"paths": ["/a"]}])).field == "policies[0].name"


def test_str_of_config_error_starts_with_the_field_path():
    assert str(config_error(raw(timeout="10"))).startswith("timeout: ")


@pytest.mark.parametrize(
    "name, value",
    [
        ("timeout", True),  # bool is an int subclass in Python, not an integer for Kong
        ("timeout", "10"),
        ("timeout", 1.5),
        ("ssl_verify", 1),
        ("ssl_verify", "true"),
        ("realm", 5),
        ("auth_methods", "bearer"),
        ("policies", {"name": "p"}),
    ],
)
def test_wrong_types_are_rejected(name, value):
    assert config_error(raw(**{name: value})).field == name


def test_integral_float_is_accepted_as_integer():
    assert parse_config(raw(timeout=5000.0)).timeout == 5000


@pytest.mark.parametrize(
    "name, value",
    [("timeout", 0), ("timeout", 300001), ("leeway", -1), ("leeway", 601), ("max_token_size", 100),
     ("session_redis_port", 0), ("session_redis_port", 65536), ("cache_ttl", 0)],
)
def test_integers_out_of_range_are_rejected(name, value):
    err = config_error(raw(**{name: value}))
    assert err.field == name and "between" in err.message


@pytest.mark.parametrize(
    "name, value, path",
    [
        ("auth_methods", ["password"], "auth_methods[0]"),
        ("bearer_token_param_type", ["header", "body"], "bearer_token_param_type[1]"),
        ("session_storage", "memcached", "session_storage"),
        ("session_cookie_samesite", "lax", "session_cookie_samesite"),
        ("token_endpoint_auth_method", "private_key_jwt", "token_endpoint_auth_method"),
        ("consumer_by", ["custom_id"], "consumer_by[0]"),
        ("logout_methods", ["PUT"], "logout_methods[0]"),
    ],
)
def test_values_outside_one_of_are_rejected(name, value, path):
    err = config_error(raw(**{name: value}))
    assert err.field == path and "expected one of" in err.message


def test_empty_string_is_rejected_like_kong():
    assert config_error(raw(realm="")).field == "realm"


@pytest.mark.parametrize(
    "name, value, path",
    [("realm", "kong\r\nX-Injected: 1", "realm"), ("guard_group", "oidc\x00", "guard_group"),
     ("audience_required", ["api\n"], "audience_required[0]")],
)
def test_control_characters_in_strings_are_rejected(name, value, path):
    assert config_error(raw(**{name: value})).field == path


def test_null_array_element_is_rejected():
    assert config_error(raw(audience_required=[None])).field == "audience_required[0]"


@pytest.mark.parametrize("name", ["auth_methods", "bearer_token_param_type", "audience_claim",
                                  "scopes_claim", "signing_algs", "consumer_by", "consumer_claim"])
def test_arrays_that_need_an_item_reject_empty(name):
    assert config_error(raw(**{name: []})).field == name


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "idp.example.com/realms/demo",
        "ftp://idp.example.com/",
        "https://idp.example.com/#frag",
        "https://idp.example.com/?tenant=1",
        "https:///realms/demo",
        "https://user:pw@idp.example.com/",
        "https://idp.example.com/a b",
        "https://idp.example.com:99999/",
    ],
)
def test_issuer_must_be_an_absolute_http_url_without_query_or_fragment(issuer):
    assert config_error(raw(issuer=issuer)).field == "issuer"


def test_plain_http_issuer_on_a_remote_host_needs_allow_insecure_issuer():
    assert config_error(raw(issuer="http://keycloak:8080/realms/x")).field == "issuer"


def test_allow_insecure_issuer_permits_plain_http():
    cfg = parse_config(raw(issuer="http://keycloak:8080/realms/x", allow_insecure_issuer=True))
    assert cfg.issuer == "http://keycloak:8080/realms/x"


@pytest.mark.parametrize("host", ["127.0.0.1:9000", "localhost", "[::1]:8080"])
def test_plain_http_issuer_on_loopback_is_allowed(host):
    assert parse_config(raw(issuer=f"http://{host}/realms/x")).issuer.startswith("http://")


def test_discovery_url_is_accepted_as_issuer():
    url = ISSUER + "/.well-known/openid-configuration"
    assert parse_config(raw(issuer=url)).issuer == url


@pytest.mark.parametrize("name", ["redirect_uri", "logout_redirect_uri"])
def test_redirect_uris_must_be_absolute(name):
    assert config_error(browser(**{name: "/callback"})).field == name


# -- algorithms and secrets ---------------------------------------------------------------


def test_hmac_algorithms_require_hmac_secret():
    err = config_error(raw(signing_algs=["RS256", "HS256"]))
    assert err.field == "hmac_secret" and "HS256" in err.message


def test_hmac_algorithms_with_hmac_secret_are_accepted():
    cfg = parse_config(raw(signing_algs=["HS256"], hmac_secret=HMAC_SECRET))
    assert cfg.signing_algs == ("HS256",)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_never_accepted(alg):
    assert config_error(raw(signing_algs=[alg], hmac_secret=HMAC_SECRET)).field == "signing_algs[0]"


@pytest.mark.parametrize(
    "name, data",
    [
        ("hmac_secret", raw(hmac_secret="short-hmac-secret-value")),
        ("session_secret", browser(session_secret="short-session-secret")),
        ("client_secret", browser(client_secret=12345)),
        ("session_redis_password", raw(session_redis_password=["redis-password-value"])),
    ],
)
def test_secret_errors_name_the_field_but_never_the_value(name, data):
    err = config_error(data)
    assert err.field == name
    secret = str(data[name][0] if isinstance(data[name], list) else data[name])
    assert secret not in str(err) and secret not in err.description


def test_repr_of_config_hides_secrets():
    cfg = parse_config(browser(hmac_secret=HMAC_SECRET, session_redis_password="redis-pw-value"))
    text = repr(cfg)
    for secret in (SESSION_SECRET, CLIENT_SECRET, HMAC_SECRET, "redis-pw-value"):
        assert secret not in text


# -- authorization code and sessions -------------------------------------------------------


def test_complete_browser_config_is_accepted():
    assert parse_config(browser()).client_id == "kong"


@pytest.mark.parametrize("name", ["client_id", "client_secret", "redirect_uri", "session_secret"])
def test_authorization_code_requires(name):
    data = browser()
    del data[name]
    assert config_error(data).field == name


def test_session_method_alone_requires_session_secret():
    assert config_error(raw(auth_methods=["session"])).field == "session_secret"


def test_authorization_code_scopes_must_contain_openid():
    assert config_error(browser(scopes=["profile"])).field == "scopes"


def test_samesite_none_requires_secure_cookies():
    err = config_error(browser(session_cookie_samesite="None", session_cookie_secure=False))
    assert err.field == "session_cookie_samesite"


def test_session_cookie_path_must_be_absolute():
    assert config_error(browser(session_cookie_path="app")).field == "session_cookie_path"


@pytest.mark.parametrize("name", ["session_cookie_name", "authorization_cookie_name"])
def test_cookie_names_must_be_tokens(name):
    assert config_error(browser(**{name: "my cookie"})).field == name


def test_cookie_bearer_location_requires_a_cookie_name():
    err = config_error(raw(bearer_token_param_type=["header", "cookie"]))
    assert err.field == "bearer_token_cookie_name"


def test_bearer_token_cookie_name_must_be_a_token():
    err = config_error(raw(bearer_token_param_type=["cookie"], bearer_token_cookie_name="a;b"))
    assert err.field == "bearer_token_cookie_name"


def test_session_storage_redis_needs_nothing_else():
    cfg = parse_config(browser(session_storage="redis"))
    assert (cfg.session_redis_host, cfg.session_redis_port) == ("127.0.0.1", 6379)


# -- upstream headers ----------------------------------------------------------------------


def test_upstream_header_lists_must_have_the_same_length():
    err = config_error(raw(upstream_headers_claims=["sub", "email"], upstream_headers_names=["X-Sub"]))
    assert err.field == "upstream_headers_names"


@pytest.mark.parametrize("name", ["X Auth", "X:Auth", "X-Ä", "X-Auth\r\nX-Admin"])
def test_upstream_header_names_must_be_tokens(name):
    err = config_error(raw(upstream_headers_claims=["sub", "sub"], upstream_headers_names=["X-Ok", name]))
    assert err.field == "upstream_headers_names[1]"


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection", "TE", "Upgrade"])
def test_upstream_header_names_must_not_be_hop_by_hop_or_framing(name):
    err = config_error(raw(upstream_headers_claims=["sub"], upstream_headers_names=[name]))
    assert err.field == "upstream_headers_names[0]"


def test_upstream_header_names_must_be_unique_ignoring_case():
    err = config_error(raw(upstream_headers_claims=["sub", "email"], upstream_headers_names=["X-Id", "x-id"]))
    assert err.field == "upstream_headers_names[1]"


@pytest.mark.parametrize("claim", ["realm_access..roles", ".sub", "sub.", "a\\b"])
def test_upstream_header_claims_must_be_valid_dotted_paths(claim):
    err = config_error(raw(upstream_headers_claims=[claim], upstream_headers_names=["X-A"]))
    assert err.field == "upstream_headers_claims[0]"


def test_upstream_header_claims_are_parsed_into_paths():
    cfg = parse_config(raw(
        upstream_headers_claims=["realm_access.roles", "https://example\\.com/roles", "sub"],
        upstream_headers_names=["X-Roles", "X-Custom", "X-Sub"],
    ))
    assert cfg.upstream_headers_claim_paths == (("realm_access", "roles"), ("https://example.com/roles",), ("sub",))


@pytest.mark.parametrize("value", ["x auth:bearer", "Host", "authorization:be arer"])
def test_upstream_access_token_header_must_be_a_safe_name_and_scheme(value):
    assert config_error(raw(upstream_access_token_header=value)).field == "upstream_access_token_header"


# -- requirements --------------------------------------------------------------------------


def test_requirement_items_are_or_and_words_inside_an_item_are_and():
    cfg = parse_config(raw(scopes_required=["orders.read  orders.write", "admin"]))
    assert cfg.scopes_any_of == (frozenset({"orders.read", "orders.write"}), frozenset({"admin"}))


def test_scope_hint_is_the_first_alternative_with_single_spaces():
    assert parse_config(raw(scopes_required=["a   b", "c"])).scope_hint == "a b"


@pytest.mark.parametrize("name", ["scopes_required", "groups_required", "roles_required"])
def test_blank_requirement_items_are_rejected(name):
    assert config_error(raw(**{name: ["ok", "   "]})).field == f"{name}[1]"


def test_claim_option_arrays_are_paths():
    cfg = parse_config(raw(roles_claim=["realm_access", "roles"], scopes_claim=["scp"]))
    assert (cfg.roles_claim_paths, cfg.scopes_claim_paths) == ((("realm_access", "roles"),), (("scp",),))


def test_token_types_are_lower_cased():
    assert parse_config(raw(token_types=["AT+JWT"])).token_types == ("at+jwt",)


# -- policies ------------------------------------------------------------------------------


def test_policy_names_must_be_unique():
    err = config_error(raw(policies=[policy(name="a"), policy(name="a", paths=["/b"])]))
    assert err.field == "policies[1].name"


def test_policy_without_any_matcher_is_rejected():
    err = config_error(raw(policies=[policy(paths=[]), ]))
    assert err.field == "policies[0]" and "routes, paths or methods" in err.message


def test_policy_regex_path_must_compile():
    err = config_error(raw(policies=[policy(paths=["/ok", "~/api/(v1"])]))
    assert err.field == "policies[0].paths[1]" and "invalid regex" in err.message


def test_policy_prefix_path_must_start_with_a_slash():
    assert config_error(raw(policies=[policy(paths=["api"])])).field == "policies[0].paths[0]"


def test_policy_methods_must_be_tokens():
    assert config_error(raw(policies=[policy(methods=["GE T"])])).field == "policies[0].methods[0]"


def test_policy_methods_are_upper_cased():
    assert parse_config(raw(policies=[policy(methods=["get"])])).policies[0].methods == ("GET",)


def test_public_policy_cannot_carry_requirements():
    err = config_error(raw(policies=[policy(public=True, scopes_required=["read"])]))
    assert err.field == "policies[0].public"


def test_policy_blank_requirement_item_is_rejected_with_its_path():
    err = config_error(raw(policies=[policy(roles_required=[" "])]))
    assert err.field == "policies[0].roles_required[0]"


def test_policy_claim_key_must_be_a_dotted_path():
    err = config_error(raw(policies=[policy(claims={"a..b": ["x"]})]))
    assert err.field == "policies[0].claims.a..b"


def test_policy_claim_needs_at_least_one_allowed_value():
    err = config_error(raw(policies=[policy(claims={"tenant": []})]))
    assert err.field == "policies[0].claims.tenant"


def test_policy_claims_are_parsed_into_paths_and_value_sets():
    cfg = parse_config(raw(policies=[policy(claims={"resource_access.api.roles": ["a", "b"]})]))
    assert cfg.policies[0].claims == ((("resource_access", "api", "roles"), frozenset({"a", "b"})),)


def test_empty_policy_claims_may_arrive_as_an_empty_array():
    # An empty Lua table is packed as an array (shared doc 2.4).
    assert parse_config(raw(policies=[policy(claims=[])])).policies[0].claims == ()


def test_policy_route_with_surrounding_whitespace_is_rejected():
    assert config_error(raw(policies=[policy(routes=[" orders"])])).field == "policies[0].routes[0]"


# -- documentation ---------------------------------------------------------------------------


def test_markdown_table_has_one_row_per_option():
    text = options_markdown()
    for opt in OPTIONS:
        assert f"| `{opt.name}` |" in text


def test_markdown_shows_ko_equivalents_and_required_marker():
    text = options_markdown()
    assert "| `issuer` | string | required | `issuer` |" in text
    assert "| `guard_group` | string | \"oidc:verified\" | - |" in text


def test_module_main_prints_the_markdown(capsys):
    assert config_mod.main(["--markdown"]) == 0
    assert capsys.readouterr().out == options_markdown()


def test_module_main_without_flag_is_a_usage_error():
    assert config_mod.main([]) == 2


def test_http_issuer_loopback_rule_is_the_fetchers_rule():
    # Config and runtime must agree: a config that validates must be fetchable.
    from kong_oidc_py.errors import ConfigError as _ConfigError

    parse_config(raw(issuer="http://127.0.0.1:9100"))
    parse_config(raw(issuer="http://localhost:9100"))
    with pytest.raises(_ConfigError):
        parse_config(raw(issuer="http://idp.localhost:9100"))
