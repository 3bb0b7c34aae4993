"""Step-up authentication (RFC 9470): acr, amr and max_age requirements, the 401 challenge, policy
inheritance, and the browser helpers."""

from __future__ import annotations

import time

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.browser.step_up import acr_delivered, authorization_params, session_auth
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError, InsufficientUserAuthentication, render_error
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.policy import Requirement
from tests.support.keys import ISSUER, claims, jwks, rsa_key
from tests.unit.test_gateway import FakeRequest, bearer

KEY = rsa_key("step-up")
NOW = 1_800_000_000.0


def reason(req: Requirement, auth: dict, now: float = NOW, leeway: int = 0) -> str | None:
    try:
        req.check_authentication(auth, now, leeway)
    except InsufficientUserAuthentication as err:
        return err.reason
    return None


# -- the rules -----------------------------------------------------------------------------


def test_acr_must_be_one_of_the_accepted_values():
    req = Requirement(acr=("mfa", "phr"))
    assert reason(req, {"acr": "phr"}) is None
    assert reason(req, {"acr": "pwd"}) == "insufficient_acr"
    assert reason(req, {}) == "insufficient_acr"
    assert reason(req, {"acr": ["mfa"]}) == "insufficient_acr"


def test_amr_items_are_alternatives_and_words_are_all_required():
    req = Requirement(amr=(frozenset({"pwd", "otp"}), frozenset({"hwk"})))
    assert reason(req, {"amr": ["pwd", "otp"]}) is None
    assert reason(req, {"amr": ["hwk"]}) is None
    assert reason(req, {"amr": ["pwd"]}) == "insufficient_amr"
    assert reason(req, {"amr": "pwd otp"}) == "insufficient_amr"


def test_max_age_compares_auth_time_with_leeway():
    req = Requirement(max_age=300)
    assert reason(req, {"auth_time": NOW - 300}) is None
    assert reason(req, {"auth_time": NOW - 301}) == "auth_too_old"
    assert reason(req, {"auth_time": NOW - 305}, leeway=5) is None
    assert reason(req, {}) == "missing_auth_time"
    assert reason(req, {"auth_time": "yesterday"}) == "missing_auth_time"
    assert reason(req, {"auth_time": float("nan")}) == "missing_auth_time"


def test_no_step_up_requirement_checks_nothing():
    assert reason(Requirement(), {}) is None


def test_challenge_carries_acr_values_and_max_age():
    err = InsufficientUserAuthentication("insufficient_acr", "A different authentication level is required",
                                         acr_values="mfa phr", max_age=300)
    header = render_error(err, "kong").headers["WWW-Authenticate"]
    assert header == ('Bearer realm="kong", error="insufficient_user_authentication", '
                      'error_description="A different authentication level is required", '
                      'acr_values="mfa phr", max_age=300')
    assert render_error(err, "kong").status == 401


# -- through the gateway (bearer) ----------------------------------------------------------


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(KEY)))


def gw(**config) -> Gateway:
    return Gateway(parse_config({"issuer": ISSUER, "allow_any_audience": True, **config}))


def call(g, path="/api", **claim):
    return g.handle(FakeRequest(bearer(KEY.sign(claims(**claim))), path=path))


def test_bearer_token_without_the_acr_gets_401_insufficient_user_authentication():
    out = call(gw(acr_required=["mfa"], max_age=600), acr="pwd", auth_time=int(time.time()))
    challenge = out.response_headers["WWW-Authenticate"]
    assert out.status == 401 and out.log["reason"] == "insufficient_acr"
    assert 'error="insufficient_user_authentication"' in challenge and 'acr_values="mfa"' in challenge
    assert "max_age=600" in challenge


def test_bearer_token_with_the_acr_and_a_fresh_auth_time_is_allowed():
    assert call(gw(acr_required=["mfa"], max_age=600), acr="mfa", auth_time=int(time.time()) - 10).allowed


def test_old_authentication_is_refused_on_a_max_age_route():
    out = call(gw(max_age=60), auth_time=int(time.time()) - 3600)
    assert out.status == 401 and out.log["reason"] == "auth_too_old"


def test_step_up_is_checked_before_scopes():
    out = call(gw(acr_required=["mfa"], scopes_required=["admin"]), acr="pwd", scope="read")
    assert out.status == 401 and out.log["reason"] == "insufficient_acr"


def test_policy_can_require_mfa_on_an_admin_path_only():
    g = gw(policies=[{"name": "admin", "paths": ["/admin"], "acr_required": ["mfa"]}])
    assert call(g, "/api", acr="pwd").allowed
    assert call(g, "/admin", acr="pwd").status == 401
    assert call(g, "/admin", acr="mfa").allowed


def test_policy_without_step_up_fields_keeps_the_plugin_level_step_up():
    g = gw(acr_required=["mfa"], policies=[{"name": "reports", "paths": ["/reports"], "scopes_required": ["read"]}])
    assert call(g, "/reports", acr="pwd", scope="read").log["reason"] == "insufficient_acr"


def test_a_policy_setting_max_age_keeps_the_plugin_level_acr():
    g = gw(acr_required=["mfa"], policies=[{"name": "fresh", "paths": ["/fresh"], "max_age": 600}])
    out = call(g, "/fresh", acr="pwd", auth_time=int(time.time()))
    assert out.log["reason"] == "insufficient_acr"


def test_a_policy_setting_max_age_adds_it_to_the_plugin_level_acr():
    g = gw(acr_required=["mfa"], policies=[{"name": "fresh", "paths": ["/fresh"], "max_age": 600}])
    assert call(g, "/fresh", acr="mfa", auth_time=int(time.time()) - 3600).log["reason"] == "auth_too_old"
    assert call(g, "/fresh", acr="mfa", auth_time=int(time.time())).allowed


def test_a_policy_acr_replaces_the_plugin_level_acr():
    g = gw(acr_required=["mfa"], policies=[{"name": "kiosk", "paths": ["/kiosk"], "acr_required": ["pwd", "mfa"]}])
    assert call(g, "/kiosk", acr="pwd").allowed
    assert call(g, "/other", acr="pwd").log["reason"] == "insufficient_acr"


def _warned(**cfg):
    from kong_oidc_py.rules import config_warnings

    warnings = config_warnings(parse_config({"issuer": ISSUER, "audience_required": ["api"], **cfg}))
    return {option: text for option, text in warnings if option.startswith("policies[")}


def test_a_policy_accepting_an_acr_the_plugin_refuses_is_warned_at_start():
    warned = _warned(acr_required=["mfa"], policies=[{"name": "kiosk", "paths": ["/k"], "acr_required": ["pwd"]}])
    assert "pwd" in warned["policies[0].acr_required"] and "mfa" in warned["policies[0].acr_required"]


def test_a_policy_narrowing_the_plugin_acr_is_not_warned():
    assert _warned(acr_required=["mfa", "hwk"], policies=[{"name": "a", "paths": ["/a"], "acr_required": ["hwk"]}]) == {}


def test_a_policy_with_a_longer_max_age_is_warned_and_a_shorter_one_is_not():
    assert "policies[0].max_age" in _warned(max_age=300, policies=[{"name": "a", "paths": ["/a"], "max_age": 3600}])
    assert _warned(max_age=300, policies=[{"name": "a", "paths": ["/a"], "max_age": 60}]) == {}


def test_a_policy_replacing_the_plugin_amr_is_warned():
    assert "policies[0].amr_required" in _warned(amr_required=["otp"], policies=[{"name": "a", "paths": ["/a"], "amr_required": ["pwd"]}])


def test_a_policy_amr_that_drops_the_requirement_or_adds_a_weaker_alternative_is_warned():
    for amr in ([], ["otp pwd", "pwd"]):
        assert "policies[0].amr_required" in _warned(amr_required=["otp"],
                                                      policies=[{"name": "a", "paths": ["/a"], "amr_required": amr}])


def test_a_policy_amr_at_least_as_strict_as_the_plugin_amr_is_not_warned():
    assert _warned(amr_required=["otp", "hwk"], policies=[{"name": "a", "paths": ["/a"], "amr_required": ["otp pwd"]}]) == {}


@pytest.mark.parametrize("value", ["two words", 'qu"ote', ""])
def test_acr_values_must_be_single_words(value):
    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": ISSUER, "allow_any_audience": True, "acr_required": [value]})
    assert info.value.field == "acr_required[0]" or info.value.field == "acr_required"


def test_policy_acr_values_must_be_single_words():
    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": ISSUER, "allow_any_audience": True, "policies": [{"name": "a", "paths": ["/a"], "acr_required": ["a b"]}]})
    assert info.value.field == "policies[0].acr_required[0]"


# -- browser helpers -----------------------------------------------------------------------


def test_session_auth_reads_acr_amr_and_auth_time_from_the_sealed_id_token():
    id_token = KEY.sign(claims(acr="mfa", amr=["pwd", "otp"], auth_time=123, nonce="n"))
    assert session_auth(id_token) == {"acr": "mfa", "amr": ["pwd", "otp"], "auth_time": 123}
    assert session_auth(None) == {} and session_auth("garbage") == {}


def test_step_up_login_asks_the_idp_for_the_level_and_a_fresh_login():
    err = InsufficientUserAuthentication("insufficient_acr", "x", acr_values="mfa", max_age=300)
    assert authorization_params(err) == {"prompt": "login", "acr_values": "mfa", "max_age": "300"}


def test_callback_accepts_only_the_acr_the_login_asked_for():
    assert acr_delivered("", {})
    assert acr_delivered("mfa phr", {"acr": "phr"})
    assert not acr_delivered("mfa", {"acr": "pwd"}) and not acr_delivered("mfa", {})


def test_pending_login_remembers_the_acr_it_asked_for():
    from kong_oidc_py.browser.session.model import AuthorizationState

    state = AuthorizationState("s", "n", "v", "/admin", NOW, acr_values="mfa")
    assert AuthorizationState.from_dict(state.to_dict()).acr_values == "mfa"
    plain = AuthorizationState("s", "n", "v", "/", NOW)
    assert "a" not in plain.to_dict() and AuthorizationState.from_dict(plain.to_dict()).acr_values == ""
