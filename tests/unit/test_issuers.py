"""Several issuers per instance: the unverified iss only chooses among trusted issuers, each
with its own keys, audience and claim paths; anything else is refused before any network call."""

from __future__ import annotations

import threading

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError, InvalidToken
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.issuers import peek_issuer
from tests.support.keys import claims, jwks, rsa_key
from tests.unit.test_gateway import FakeRequest, bearer

MAIN = "https://workforce.example.com"
CUSTOMER = "https://customers.example.com"
AZURE = "https://login.microsoftonline.com/{tenant}/v2.0"
TENANT_A = "11111111-1111-4111-8111-111111111111"
TENANT_B = "22222222-2222-4222-8222-222222222222"
KEYS = {
    MAIN: rsa_key("main-1"),
    CUSTOMER: rsa_key("cust-1", fresh=True),
    AZURE.replace("{tenant}", TENANT_A): rsa_key("tenant-a", fresh=True),
}


class Factory:
    """get_provider stand-in: static keys per issuer, and a record of every provider asked for."""

    def __init__(self):
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, issuer, settings):
        with self.lock:
            self.asked.append(issuer)
        return Provider.from_jwks(issuer, jwks(KEYS[issuer]) if issuer in KEYS else {"keys": []})


@pytest.fixture
def factory(monkeypatch):
    f = Factory()
    monkeypatch.setattr(gateway_mod, "get_provider", f)
    return f


def gw(**config) -> Gateway:
    return Gateway(parse_config({"issuer": MAIN, "allow_any_audience": True, **config}))


def token(issuer, key=None, **extra):
    return (key or KEYS[issuer]).sign(claims(issuer, **extra))


def two(**customer):
    return gw(audience_required=["workforce-api"], issuers=[{"issuer": CUSTOMER, **customer}],
              scopes_required=["read"], upstream_headers_claims=["sub"], upstream_headers_names=["X-User"])


# -- selection ---------------------------------------------------------------------------


def test_token_of_the_main_issuer_uses_the_main_keys(factory):
    out = two().handle(FakeRequest(bearer(token(MAIN, aud="workforce-api", scope="read"))))
    assert out.allowed and out.log["issuer"] == MAIN


def test_token_of_a_listed_issuer_is_verified_with_that_issuers_keys(factory):
    out = two().handle(FakeRequest(bearer(token(CUSTOMER, aud="workforce-api", scope="read", sub="c1"))))
    assert out.allowed and out.upstream_set["X-User"] == "c1" and out.log["issuer"] == CUSTOMER


def test_unknown_issuer_is_refused_without_fetching_anything(factory):
    g = two()
    asked = list(factory.asked)
    out = g.handle(FakeRequest(bearer(token("https://evil.example.com", key=KEYS[MAIN], aud="workforce-api"))))
    assert out.status == 401 and out.log["reason"] == "bad_issuer"
    assert "not a trusted issuer" in out.log["detail"] and factory.asked == asked


def test_listed_issuer_cannot_vouch_with_another_issuers_key(factory):
    forged = token(CUSTOMER, key=KEYS[MAIN], aud="workforce-api", scope="read")
    out = two().handle(FakeRequest(bearer(forged)))
    assert out.status == 401 and out.log["reason"] in ("unknown_kid", "bad_signature")


def test_extra_issuer_provider_is_made_once_on_first_use(factory):
    g = two()
    assert CUSTOMER not in factory.asked
    for _ in range(3):
        g.handle(FakeRequest(bearer(token(CUSTOMER, aud="workforce-api", scope="read"))))
    assert factory.asked.count(CUSTOMER) == 1


def test_token_without_iss_goes_to_the_main_rules_and_fails_there(factory):
    no_iss = KEYS[MAIN].sign({k: v for k, v in claims(MAIN, aud="workforce-api").items() if k != "iss"})
    out = two().handle(FakeRequest(bearer(no_iss)))
    assert out.status == 401 and out.log["reason"] == "missing_claim"


@pytest.mark.parametrize("raw", ["a.b", "x" * 20000, "a.%%%.c", "a.bnVsbA.c"])
def test_peek_issuer_gives_none_for_unreadable_tokens(raw):
    assert peek_issuer(raw, 8192) is None


# -- per-issuer settings -------------------------------------------------------------------


def test_issuer_audience_replaces_the_plugin_level_one(factory):
    g = two(audience_required=["customer-api"])
    ok = g.handle(FakeRequest(bearer(token(CUSTOMER, aud="customer-api", scope="read"))))
    wrong = g.handle(FakeRequest(bearer(token(CUSTOMER, aud="workforce-api", scope="read"))))
    main = g.handle(FakeRequest(bearer(token(MAIN, aud="customer-api", scope="read"))))
    assert ok.allowed and wrong.log["reason"] == "bad_audience" and main.log["reason"] == "bad_audience"


def test_issuer_scopes_claim_is_used_for_its_tokens_only(factory):
    g = two(scopes_claim=["scp"])
    cust = g.handle(FakeRequest(bearer(token(CUSTOMER, aud="workforce-api", scp=["read"]))))
    main_scp = g.handle(FakeRequest(bearer(token(MAIN, aud="workforce-api", scp=["read"]))))
    assert cust.allowed and cust.log["scopes"] == "read"
    assert main_scp.status == 403


# -- tenant templates ----------------------------------------------------------------------


def test_allowed_tenant_of_a_template_is_trusted(factory):
    g = gw(issuers=[{"issuer": AZURE, "tenants": [TENANT_A, TENANT_B]}])
    out = g.handle(FakeRequest(bearer(token(AZURE.replace("{tenant}", TENANT_A)))))
    assert out.allowed


def test_tenant_not_on_the_allow_list_is_refused_without_fetching(factory):
    g = gw(issuers=[{"issuer": AZURE, "tenants": [TENANT_A]}])
    other = AZURE.replace("{tenant}", TENANT_B)
    out = g.handle(FakeRequest(bearer(token(other, key=KEYS[MAIN]))))
    assert out.log["reason"] == "bad_issuer" and other not in factory.asked


# -- configuration -------------------------------------------------------------------------


def refused(**config) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": MAIN, "allow_any_audience": True, **config})
    return info.value


def test_template_without_tenants_is_refused():
    assert refused(issuers=[{"issuer": AZURE}]).field == "issuers[0].tenants"


def test_tenants_without_a_template_are_refused():
    assert refused(issuers=[{"issuer": CUSTOMER, "tenants": ["a"]}]).field == "issuers[0].tenants"


@pytest.mark.parametrize("tenant", ["a/b", "..", "a..b", "x?y", "x#y", "user@host", "", "-a"])
def test_tenant_that_is_not_one_path_segment_is_refused(tenant):
    assert refused(issuers=[{"issuer": AZURE, "tenants": [tenant]}]).field.startswith("issuers[0].tenants")


def test_same_issuer_twice_is_refused():
    assert refused(issuers=[{"issuer": MAIN}]).field == "issuers[0].issuer"


def test_other_placeholders_are_refused():
    assert refused(issuers=[{"issuer": "https://idp.example.com/{realm}"}]).field == "issuers[0].issuer"


def test_http_issuer_off_loopback_is_refused():
    assert refused(issuers=[{"issuer": "http://idp.example.com"}]).field == "issuers[0].issuer"


def test_templates_expand_to_one_issuer_per_tenant_inheriting_unset_settings():
    cfg = parse_config({"issuer": MAIN, "allow_any_audience": True, "issuers": [{"issuer": AZURE, "tenants": [TENANT_A, TENANT_B],
                                                        "scopes_claim": ["scp"]}]})
    assert [i.issuer for i in cfg.issuers] == [AZURE.replace("{tenant}", t) for t in (TENANT_A, TENANT_B)]
    assert cfg.issuers[0].scopes_claim == ("scp",) and cfg.issuers[0].audience_required is None


def test_invalid_token_from_select_is_an_invalid_token(factory):
    g = two()
    with pytest.raises(InvalidToken):
        g.tokens.check(token("https://evil.example.com", key=KEYS[MAIN]))
