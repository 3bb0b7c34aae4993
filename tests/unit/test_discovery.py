import threading

import pytest

from kong_oidc_py.idp.discovery import Discovery, split_issuer
from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import Fetcher
from tests.support.clock import Clock
from tests.support.fake_idp import FakeIdP


@pytest.fixture
def idp():
    with FakeIdP() as server:
        yield server


def discovery(configured, clock=None, **kw):
    kw.setdefault("cache_ttl", 600)
    kw.setdefault("max_stale", 3600)
    kw.setdefault("retry_interval", 5)
    kw.setdefault("allow_insecure", False)
    return Discovery(configured, Fetcher(timeout_ms=2000), clock=clock or Clock(), **kw)


@pytest.mark.parametrize(
    ("configured", "issuer", "url"),
    [
        ("https://a.example/realms/x", "https://a.example/realms/x",
         "https://a.example/realms/x/.well-known/openid-configuration"),
        ("https://a.example/", "https://a.example/", "https://a.example/.well-known/openid-configuration"),
        ("https://a.example/t/.well-known/openid-configuration", "https://a.example/t",
         "https://a.example/t/.well-known/openid-configuration"),
    ],
)
def test_the_issuer_and_discovery_url_derive_from_either_form(configured, issuer, url):
    assert split_issuer(configured) == (issuer, url)


def test_metadata_is_fetched_from_the_issuer_url(idp):
    assert discovery(idp.issuer).metadata()["jwks_uri"] == idp.jwks_uri


def test_metadata_is_fetched_from_the_discovery_url(idp):
    assert discovery(idp.discovery_url).metadata()["issuer"] == idp.issuer


def test_metadata_is_cached_for_the_ttl(idp):
    clock = Clock()
    d = discovery(idp.issuer, clock)
    d.metadata()
    clock.now += 599
    d.metadata()
    assert idp.discovery_hits == 1


def test_an_issuer_mismatch_is_refused(idp):
    idp.metadata_overrides["issuer"] = idp.issuer + "/"
    with pytest.raises(ProviderError) as info:
        discovery(idp.issuer).metadata()
    assert info.value.reason == "discovery_failed"


def test_a_missing_jwks_uri_is_refused(idp):
    idp.metadata_overrides["jwks_uri"] = None
    with pytest.raises(ProviderError):
        discovery(idp.issuer).metadata()


def test_an_http_jwks_uri_on_a_public_host_is_refused(idp):
    idp.metadata_overrides["jwks_uri"] = "http://keys.example.com/jwks"
    with pytest.raises(ProviderError):
        discovery(idp.issuer).metadata()


def test_an_http_token_endpoint_on_a_public_host_is_refused(idp):
    idp.metadata_overrides["token_endpoint"] = "http://idp.example.com/token"
    with pytest.raises(ProviderError):
        discovery(idp.issuer).metadata()


def test_an_http_issuer_on_a_public_host_is_never_contacted():
    with pytest.raises(ProviderError):
        discovery("http://idp.example.com/realms/x").metadata()


def test_stale_metadata_keeps_serving_while_a_background_refresh_runs(idp):
    clock = Clock()
    d = discovery(idp.issuer, clock)
    first = d.metadata()
    idp.metadata_overrides["token_endpoint"] = idp.issuer + "/token2"
    clock.now += 600
    assert d.metadata() is first
    assert d.wait_idle()
    assert d.metadata()["token_endpoint"] == idp.issuer + "/token2"


def test_a_failed_refresh_keeps_the_cached_metadata(idp):
    clock = Clock()
    d = discovery(idp.issuer, clock)
    first = d.metadata()
    idp.fail[idp.discovery_path] = 500
    clock.now += 600
    d.metadata()
    assert d.wait_idle()
    assert d.metadata() is first


def test_metadata_beyond_max_stale_is_not_served(idp):
    clock = Clock()
    d = discovery(idp.issuer, clock)
    d.metadata()
    idp.fail[idp.discovery_path] = 500
    clock.now += 3601
    with pytest.raises(ProviderError):
        d.metadata()


def test_after_a_failure_callers_fail_fast_until_the_retry_interval(idp):
    clock = Clock()
    d = discovery(idp.issuer, clock)
    idp.fail[idp.discovery_path] = 500
    for _ in range(10):
        with pytest.raises(ProviderError):
            d.metadata()
    assert idp.discovery_hits == 1
    clock.now += 5
    idp.fail.clear()
    assert d.metadata()["issuer"] == idp.issuer


def test_concurrent_first_callers_share_one_fetch(idp):
    idp.hang[idp.discovery_path] = 0.3  # holds the first fetch open while the others arrive
    d = discovery(idp.issuer)
    results = []
    threads = [threading.Thread(target=lambda: results.append(d.metadata()["issuer"])) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [idp.issuer] * 20
    assert idp.discovery_hits == 1
