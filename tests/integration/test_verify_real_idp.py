"""The verification core against the real oidc-provider: discovery, JWKS, rotation, outages."""

from __future__ import annotations

import threading
import time

import pytest

from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.provider import Provider, ProviderSettings
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.idp import DEFAULT_RESOURCE, OTHER_RESOURCE

pytestmark = pytest.mark.integration

TIMEOUT_MS = 1500


def verifier_for(idp, **options) -> Verifier:
    # A private Provider (not the process-wide registry) so each test counts its own fetches.
    provider = Provider(ProviderSettings(issuer=idp.issuer, timeout_ms=TIMEOUT_MS, rediscovery_lifetime=30))
    provider.warm_start()
    assert provider.wait_idle(10)
    return Verifier(provider, VerifyOptions(issuer=idp.issuer, audiences=(DEFAULT_RESOURCE,), **options))


def test_client_credentials_token_verifies_with_its_claims(oidc_provider):
    verifier = verifier_for(oidc_provider)
    claims = verifier.verify(oidc_provider.client_credentials_token(scope="read write"))
    assert claims.data["client_id"] == "m2m"
    assert claims.data["scope"] == "read write"
    assert claims.alg == "RS256"


def test_es256_resource_tokens_verify_against_the_same_jwks(oidc_provider):
    provider = Provider(ProviderSettings(issuer=oidc_provider.issuer, timeout_ms=TIMEOUT_MS))
    verifier = Verifier(provider, VerifyOptions(issuer=oidc_provider.issuer, audiences=(OTHER_RESOURCE,)))
    claims = verifier.verify(oidc_provider.client_credentials_token(resource=OTHER_RESOURCE))
    assert claims.alg == "ES256"


def test_discovery_url_and_issuer_url_configure_the_same_issuer(oidc_provider):
    provider = Provider(ProviderSettings(issuer=oidc_provider.discovery_url, timeout_ms=TIMEOUT_MS))
    assert provider.metadata()["issuer"] == oidc_provider.issuer


def test_rotation_new_kid_verifies_after_one_refetch(oidc_provider_factory):
    idp = oidc_provider_factory()
    verifier = verifier_for(idp)
    before = verifier.provider.stats.jwks_fetches
    idp.restart(new_keys=True)
    verifier.verify(idp.client_credentials_token())
    assert verifier.provider.stats.jwks_fetches == before + 1


def test_rotation_removed_key_stops_verifying(oidc_provider_factory):
    idp = oidc_provider_factory()
    verifier = verifier_for(idp)
    old_token = idp.client_credentials_token()  # signed by the key about to be removed, never verified
    idp.restart(new_keys=True)
    verifier.verify(idp.client_credentials_token())  # the new kid makes us refetch the key set
    with pytest.raises(InvalidToken) as err:
        verifier.verify(old_token)
    assert err.value.reason == "unknown_kid"


def test_rotation_removed_key_stops_a_cached_token_within_one_cache_ttl(oidc_provider_factory):
    idp = oidc_provider_factory()
    provider = Provider(ProviderSettings(issuer=idp.issuer, timeout_ms=TIMEOUT_MS, cache_ttl=1))
    provider.warm_start()  # the refresher: one fetch now, then one per cache_ttl
    try:
        assert provider.wait_idle(10)
        verifier = Verifier(provider, VerifyOptions(issuer=idp.issuer, audiences=(DEFAULT_RESOURCE,)))
        old_token = idp.client_credentials_token()
        verifier.verify(old_token)
        assert len(verifier.cache) == 1
        idp.restart(new_keys=True)  # the old signing key is no longer published
        deadline = time.monotonic() + 5
        while len(verifier.cache) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(InvalidToken) as err:
            verifier.verify(old_token)
        assert err.value.reason == "unknown_kid"
        assert verifier.verify(idp.client_credentials_token()).data["client_id"] == "m2m"
    finally:
        provider.close()


def test_provider_down_is_reported_with_its_cause_and_recovery(oidc_provider_factory):
    idp = oidc_provider_factory()
    provider = Provider(ProviderSettings(issuer=idp.issuer, timeout_ms=TIMEOUT_MS, rediscovery_lifetime=0))
    verifier = Verifier(provider, VerifyOptions(issuer=idp.issuer, audiences=(DEFAULT_RESOURCE,)))
    verifier.verify(idp.client_credentials_token())
    idp.stop()
    with pytest.raises(InvalidToken):
        provider.key_for("not-a-kid-of-this-idp", "RS256")
    failure = provider.health.failing("jwks")
    assert failure is not None and failure.cause == "unreachable"
    idp.restart(new_keys=True)  # same port, same issuer
    verifier.verify(idp.client_credentials_token())  # new kid: one refetch, which succeeds
    assert provider.health.last_failure() is None


def test_provider_down_held_keys_keep_verifying(oidc_provider_factory):
    idp = oidc_provider_factory()
    verifier = verifier_for(idp)
    token = idp.client_credentials_token()
    idp.stop()
    assert verifier.verify(token).data["client_id"] == "m2m"


def test_provider_down_unknown_kid_fails_fast_with_a_401_reason(oidc_provider_factory):
    idp = oidc_provider_factory()
    verifier = verifier_for(idp)
    key = idp.signing_key("RS256")
    now = int(time.time())
    forged_kid = key.sign({"iss": idp.issuer, "aud": DEFAULT_RESOURCE, "sub": "x", "exp": now + 60},
                          {"alg": "RS256", "typ": "at+jwt", "kid": "not-a-kid-of-this-idp"})
    idp.stop()
    started = time.monotonic()
    with pytest.raises(InvalidToken) as err:
        verifier.verify(forged_kid)
    # Bounded by the configured IdP timeout, never a hang (a bound, not a performance claim).
    assert time.monotonic() - started < TIMEOUT_MS / 1000 * 3
    assert err.value.reason in ("unknown_kid", "keys_unavailable")
    assert err.value.status == 401


def test_fifty_threads_missing_one_kid_make_one_jwks_fetch(oidc_provider_factory):
    idp = oidc_provider_factory()
    verifier = verifier_for(idp)
    idp.restart(new_keys=True)
    tokens = [idp.client_credentials_token() for _ in range(3)]
    before = verifier.provider.stats.jwks_fetches
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            verifier.verify(tokens[i % len(tokens)])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert verifier.provider.stats.jwks_fetches == before + 1
