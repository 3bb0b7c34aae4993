"""A key the IdP stops publishing stops verifying within one cache_ttl, cached tokens included.

Cached verifications remember the key they were verified with (kid + RFC 7638 thumbprint); the
key set refresh that no longer offers that key for that kid drops them. The refresh itself runs
in one background thread per provider, every cache_ttl, whatever the traffic.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest

from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.keyset import KeySet, jwk_thumbprint
from kong_oidc_py.idp.provider import Provider, ProviderSettings
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.clock import Clock
from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, ec_key, rsa_key

OLD = rsa_key("old")
NEW = rsa_key("new", fresh=True)
EC = ec_key("P-256", "ec-1")


@pytest.fixture
def idp():
    with FakeIdP() as server:
        server.set_keys(OLD, EC)
        yield server


@pytest.fixture
def providers():
    made: list[Provider] = []
    yield made
    for p in made:
        p.close()


def make(idp, providers, *, clock=None, **kw):
    kw.setdefault("timeout_ms", 2000)
    provider = Provider(ProviderSettings(issuer=idp.issuer, **kw), clock=clock or time.monotonic)
    providers.append(provider)
    return provider


def verifier(provider):
    return Verifier(provider, VerifyOptions(issuer=provider.issuer, audiences=("api",)))


def reason(v, token):
    with pytest.raises(InvalidToken) as info:
        v.verify(token)
    return info.value


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# -- thumbprints ------------------------------------------------------------------------------


def test_key_thumbprints_follow_rfc_7638():
    # RFC 7638 3.1 example key and its thumbprint.
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZC"
                "iFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZ"
                "gnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBni"
                "Iqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_verification_remembers_the_kid_and_thumbprint_of_its_key(idp, providers):
    claims_ = verifier(make(idp, providers)).verify(OLD.sign(claims(idp.issuer), {"alg": "RS256", "kid": "old"}))
    assert (claims_.kid, claims_.key_thumbprint) == ("old", jwk_thumbprint(OLD.public_jwk()))


# -- eviction at the refresh ------------------------------------------------------------------


def sign_old(idp):
    return OLD.sign(claims(idp.issuer), {"alg": "RS256", "kid": "old"})


def test_a_cached_token_of_a_removed_key_fails_after_the_refresh_that_drops_the_key(idp, providers):
    clock = Clock()
    provider = make(idp, providers, clock=clock, rediscovery_lifetime=0)
    v = verifier(provider)
    token = sign_old(idp)
    v.verify(token)
    idp.set_keys(NEW, EC)
    assert v.verify(token).kid == "old"  # still cached: no refresh has happened yet
    v.verify(NEW.sign(claims(idp.issuer), {"alg": "RS256", "kid": "new"}))  # unknown kid -> refresh
    err = reason(v, token)
    assert (err.reason, err.detail) == ("unknown_kid", "kid='old' alg=RS256")


def test_cached_tokens_of_keys_still_listed_survive_the_refresh(idp, providers):
    provider = make(idp, providers, rediscovery_lifetime=0)
    v = verifier(provider)
    kept = EC.sign(claims(idp.issuer))
    first = v.verify(kept)
    idp.set_keys(NEW, EC)
    provider.key_for("new", "RS256")  # refresh
    assert v.verify(kept) is first


def test_a_kid_republished_with_other_key_material_drops_its_cached_tokens(idp, providers):
    provider = make(idp, providers, rediscovery_lifetime=0)
    v = verifier(provider)
    token = sign_old(idp)
    v.verify(token)
    impostor = rsa_key("old", fresh=True)
    idp.set_keys(impostor, EC, NEW)
    provider.key_for("new", "RS256")  # refresh
    assert reason(v, token).reason == "bad_signature"


def test_a_refresh_that_changes_nothing_keeps_the_cache(idp, providers):
    provider = make(idp, providers, rediscovery_lifetime=0)
    v = verifier(provider)
    v.verify(sign_old(idp))
    with pytest.raises(InvalidToken):
        provider.key_for("absent", "RS256")  # a refresh with the same keys
    assert len(v.cache) == 1


def test_a_verification_racing_a_key_change_is_not_cached():
    keys = KeySet.parse({"keys": [OLD.public_jwk()]})

    class RacingProvider:
        def entry_for(self, kid, alg):
            return keys.find_entry(kid, alg)

        def key_is_current(self, kid, alg, thumbprint):
            return False  # a fetch without this key was installed meanwhile

    v = Verifier(RacingProvider(), VerifyOptions(issuer="https://idp.example.com/realms/test", audiences=("api",)))
    assert v.verify(OLD.sign(claims(), {"alg": "RS256", "kid": "old"})).kid == "old"
    assert len(v.cache) == 0


def test_a_verifier_that_is_gone_is_not_kept_alive_by_the_provider(idp, providers):
    provider = make(idp, providers)
    v = verifier(provider)
    import weakref

    ref = weakref.ref(v)
    del v
    gc.collect()
    assert ref() is None


# -- the background refresher ---------------------------------------------------------------------


def test_a_removed_key_stops_verifying_within_one_cache_ttl_without_any_other_request(idp, providers):
    provider = make(idp, providers, cache_ttl=0.5)
    provider.warm_start()
    assert provider.wait_idle()
    v = verifier(provider)
    token = sign_old(idp)
    v.verify(token)
    idp.set_keys(NEW, EC)
    assert wait_for(lambda: len(v.cache) == 0, timeout=3)
    assert reason(v, token).reason == "unknown_kid"


def test_the_refresher_fetches_once_per_cache_ttl_whatever_the_traffic(idp, providers):
    provider = make(idp, providers, cache_ttl=0.3)
    provider.warm_start()
    assert provider.wait_idle()
    v = verifier(provider)
    start, began, verified = idp.jwks_hits, time.monotonic(), 0
    while time.monotonic() - began < 1.0:
        v.verify(EC.sign(claims(idp.issuer)))  # fresh tokens: every one looks its key up
        verified += 1
    hits = idp.jwks_hits - start
    periods = (time.monotonic() - began) / 0.3
    assert verified > 10  # traffic there was
    assert 1 <= hits <= periods + 1  # one fetch per period at most, none per request


def test_a_failing_refresh_keeps_the_held_keys_and_reports_the_cause(idp, providers):
    provider = make(idp, providers, cache_ttl=0.3, rediscovery_lifetime=0)
    provider.warm_start()
    assert provider.wait_idle()
    idp.fail[idp.jwks_path] = 503
    assert wait_for(lambda: provider.health.failing("jwks") is not None, timeout=3)
    assert provider.health.failing("jwks").cause == "http_status"
    assert verifier(provider).verify(EC.sign(claims(idp.issuer))).kid == "ec-1"


def test_the_refresher_also_refreshes_discovery(idp, providers):
    provider = make(idp, providers, cache_ttl=0.3)
    provider.warm_start()
    assert provider.wait_idle()
    start = idp.discovery_hits
    assert wait_for(lambda: idp.discovery_hits >= start + 2, timeout=3)


def test_closing_the_provider_stops_its_refresher(idp, providers):
    provider = make(idp, providers, cache_ttl=0.2)
    provider.warm_start()
    assert provider.wait_idle()
    provider.close()
    names = [t for t in threading.enumerate() if t.name == "oidc-jwks-refresher" and t is provider._jwks._refresher]
    assert not any(t.is_alive() for t in names)
    hits = idp.jwks_hits
    time.sleep(0.5)
    assert idp.jwks_hits == hits


def test_one_refresher_thread_per_provider_however_often_warm_start_is_called(idp, providers):
    provider = make(idp, providers)
    before = {t.ident for t in threading.enumerate() if t.name == "oidc-jwks-refresher"}
    for _ in range(5):
        provider.warm_start()
    after = {t.ident for t in threading.enumerate() if t.name == "oidc-jwks-refresher"}
    assert len(after - before) == 1


def test_a_forked_child_refreshes_lazily_instead_of_relying_on_the_parents_thread(idp, providers):
    import os

    provider = make(idp, providers, cache_ttl=600)
    provider.warm_start()
    assert provider.wait_idle()
    pid = os.fork()
    if pid == 0:  # the child: no refresher thread survived the fork
        ok = provider._jwks._refresher is None and provider.key_for("ec-1", "ES256") is not None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert provider._jwks._refresher is not None
