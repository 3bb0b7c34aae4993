"""Secure by default: a bearer API checks the audience, and ID tokens are not access tokens."""

from __future__ import annotations

import logging

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from tests.support.keys import ISSUER, claims, jwks, rsa_key
from tests.unit.test_gateway import FakeRequest

KEY = rsa_key()


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(KEY)))


def call(gateway: Gateway, **token_claims) -> int | None:
    tok = KEY.sign(claims(**token_claims))
    return gateway.handle(FakeRequest({"Authorization": f"Bearer {tok}"})).status


def test_bearer_instance_without_audience_is_a_config_error_that_says_how_to_fix_it():
    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": ISSUER})
    assert info.value.field == "audience_required"
    assert "allow_any_audience" in info.value.message


def test_allow_any_audience_false_does_not_opt_out():
    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": ISSUER, "allow_any_audience": False})
    assert info.value.field == "audience_required"


def test_token_for_another_audience_is_refused_by_default():
    gateway = Gateway(parse_config({"issuer": ISSUER, "audience_required": ["orders"]}))
    assert call(gateway, aud="orders") is None
    assert call(gateway, aud="billing") == 401


def test_allow_any_audience_accepts_any_audience_and_warns_once_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        gateway = Gateway(parse_config({"issuer": ISSUER, "allow_any_audience": True}))
        assert call(gateway, aud="billing") is None
        assert call(gateway, aud="orders") is None
    warned = [r for r in caplog.records if "allow_any_audience" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING


def test_reject_id_tokens_is_on_by_default():
    assert parse_config({"issuer": ISSUER, "audience_required": ["api"]}).reject_id_tokens is True


@pytest.mark.parametrize("marker", [{"nonce": "n-0S6_WzA2Mj"}, {"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"},
                                    {"c_hash": "LDktKdoQak3Pk0cnXxCltA"}])
def test_an_id_token_for_an_accepted_audience_is_refused_by_default(marker):
    # The ID token of a client whose id is also an accepted audience: the audience check alone
    # would let it through.
    gateway = Gateway(parse_config({"issuer": ISSUER, "audience_required": ["web"]}))
    assert call(gateway, aud="web", **marker) == 401


def test_reject_id_tokens_false_accepts_them_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        gateway = Gateway(parse_config({"issuer": ISSUER, "audience_required": ["web"], "reject_id_tokens": False}))
    assert call(gateway, aud="web", nonce="n") is None
    assert any("reject_id_tokens" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
