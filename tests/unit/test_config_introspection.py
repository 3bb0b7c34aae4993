"""Introspection options: what a config must hold before an instance may introspect tokens."""

from __future__ import annotations

import json

import pytest

from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError
from tests.support.keys import ec_key

ISSUER = "https://idp.example.com/realms/demo"
SECRET = "introspection-secret-do-not-echo"


def intro(**overrides):
    return {"issuer": ISSUER, "allow_any_audience": True, "auth_methods": ["bearer", "introspection"], "client_id": "rs",
            "client_secret": SECRET, **overrides}


def refused(raw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value


def test_defaults_ask_for_json_with_basic_auth_and_cache():
    cfg = parse_config(intro())
    assert (cfg.introspection_endpoint_auth_method, cfg.introspection_accept, cfg.introspection_hint) == (
        "client_secret_basic", "application/json", "access_token")
    assert cfg.cache_introspection is True and cfg.introspect_jwt_tokens is False
    assert cfg.introspection_negative_cache_ttl == 5


def test_introspection_needs_a_client_id():
    assert refused(intro(client_id=None)).field == "client_id"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_secret_methods_need_a_client_secret(method):
    assert refused(intro(client_secret=None, introspection_endpoint_auth_method=method)).field == "client_secret"


def test_private_key_jwt_needs_client_jwk():
    assert refused(intro(introspection_endpoint_auth_method="private_key_jwt")).field == "client_jwk"


def test_private_key_jwt_accepts_a_private_ec_key():
    jwk = json.dumps(ec_key(kid="c1").private_jwk())
    cfg = parse_config(intro(introspection_endpoint_auth_method="private_key_jwt", client_jwk=jwk, client_secret=None))
    assert cfg.client_jwk == jwk and jwk not in repr(cfg)


def test_client_jwk_without_private_part_is_refused_without_echoing_it():
    public = json.dumps(ec_key(kid="c1").public_jwk())
    err = refused(intro(introspection_endpoint_auth_method="private_key_jwt", client_jwk=public))
    assert err.field == "client_jwk" and "private" in err.message and public not in str(err)


def test_client_jwk_that_is_not_json_is_refused():
    err = refused(intro(introspection_endpoint_auth_method="private_key_jwt", client_jwk="{not json"))
    assert err.field == "client_jwk"


def test_http_endpoint_on_a_public_host_is_refused():
    assert refused(intro(introspection_endpoint="http://idp.example.com/introspect")).field == "introspection_endpoint"


def test_http_endpoint_on_loopback_is_accepted():
    assert parse_config(intro(introspection_endpoint="http://127.0.0.1:9/introspect")).introspection_endpoint


def test_endpoint_with_credentials_in_the_url_is_refused():
    assert refused(intro(introspection_endpoint="https://u:p@idp.example.com/i")).field == "introspection_endpoint"


def test_extra_headers_need_one_value_each():
    err = refused(intro(introspection_headers_names=["X-A", "X-B"], introspection_headers_values=["1"]))
    assert err.field == "introspection_headers_values"


@pytest.mark.parametrize("name", ["Content-Type", "bad name", "Host"])
def test_extra_headers_cannot_be_framing_or_invalid(name):
    err = refused(intro(introspection_headers_names=[name], introspection_headers_values=["v"]))
    assert err.field == "introspection_headers_names[0]"


def test_unknown_accept_is_refused():
    assert refused(intro(introspection_accept="text/html")).field == "introspection_accept"


def test_options_are_not_checked_when_introspection_is_off():
    assert parse_config({"issuer": ISSUER, "allow_any_audience": True, "introspection_endpoint_auth_method": "private_key_jwt"})
