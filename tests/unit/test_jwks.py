import random
import threading

import pytest

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.idp.jwks import KeySet, parse_jwk
from kong_oidc_py.idp.provider import Provider, ProviderSettings, clear_registry, get_provider
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.clock import Clock
from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, ec_key, ed448_key, ed25519_key, rsa_key

RSA = rsa_key("rsa-1")
EC = ec_key("P-256", "ec-1")
ED = ed25519_key("ed-1")


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [RSA, EC, ec_key("P-384"), ec_key("P-521"), ED, ed448_key()], ids=["RSA", "P-256", "P-384", "P-521",
                                                                              "Ed25519", "Ed448"]
)
def test_every_supported_key_type_parses(key):
    entry = parse_jwk(key.public_jwk())
    assert entry is not None and entry.kid == key.kid


@pytest.mark.parametrize(
    "overrides",
    [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}, {"alg": "RSA-OAEP"}, {"alg": "ES256"},
     {"kid": 5}, {"kty": "oct"}, {"kty": "RSA", "n": "AQAB"}],
    ids=["use-enc", "key_ops-no-verify", "key_ops-not-list", "alg-encryption", "alg-other-type", "kid-not-str",
         "oct", "garbage-modulus"],
)
def test_keys_not_meant_for_verification_are_ignored(overrides):
    assert parse_jwk(RSA.public_jwk(**overrides)) is None


def test_key_ops_with_verify_is_accepted():
    assert parse_jwk(RSA.public_jwk(key_ops=["verify"])) is not None


@pytest.mark.parametrize("key", [RSA, EC, ED])
def test_a_key_carrying_private_members_is_refused(key):
    assert parse_jwk(key.private_jwk()) is None


def test_rsa_keys_under_2048_bits_are_refused():
    assert parse_jwk(rsa_key("small", bits=1024).public_jwk()) is None


@pytest.mark.parametrize("jwk", [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
                                 {"kty": "OKP", "crv": "X25519", "x": "AA"}, {"kty": "RSA"}, {}, "key", None])
def test_unsupported_or_broken_keys_are_ignored(jwk):
    assert parse_jwk(jwk) is None


def test_an_ec_point_off_its_curve_is_refused():
    jwk = EC.public_jwk()
    jwk["y"] = jwk["x"]
    assert parse_jwk(jwk) is None


def test_an_ec_key_whose_coordinates_belong_to_another_curve_is_refused():
    jwk = ec_key("P-384").public_jwk(crv="P-256", alg=None)
    assert parse_jwk(jwk) is None


def test_a_duplicate_kid_keeps_the_first_key():
    other = rsa_key("rsa-1", fresh=True)
    keys = KeySet.parse({"keys": [RSA.public_jwk(), other.public_jwk()]})
    assert len(keys) == 1
    assert keys.find("rsa-1", "RS256").public_numbers() == RSA.private.public_key().public_numbers()


@pytest.mark.parametrize("doc", [{}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "oct", "k": "AA"}]}])
def test_a_jwks_without_usable_keys_is_a_provider_error(doc):
    with pytest.raises(ProviderError):
        KeySet.parse(doc)


def test_lookup_binds_each_alg_to_its_key_type():
    keys = KeySet.parse({"keys": [RSA.public_jwk(include_alg=False), EC.public_jwk(include_alg=False)]})
    assert keys.find("rsa-1", "PS256") is not None
    assert keys.find("rsa-1", "ES256") is None
    assert keys.find("ec-1", "ES384") is None
    assert keys.find("ec-1", "RS256") is None


# -- provider against the fake IdP ------------------------------------------------------------


@pytest.fixture
def idp():
    with FakeIdP() as server:
        server.set_keys(RSA, EC)
        yield server


def make_provider(idp, clock=None, **kw):
    kw.setdefault("timeout_ms", 2000)
    return Provider(ProviderSettings(issuer=idp.issuer, **kw), clock=clock or Clock())


def reason(fn):
    with pytest.raises(InvalidToken) as info:
        fn()
    return info.value.reason


def test_warm_start_fetches_when_the_shared_provider_is_created(idp):
    clear_registry()
    try:
        provider = get_provider(idp.issuer, ProviderSettings(issuer=idp.issuer))
        assert provider.wait_idle()
        assert (idp.discovery_hits, idp.jwks_hits) == (1, 1)
    finally:
        clear_registry()


def test_the_registry_shares_one_provider_per_issuer_and_settings(idp):
    clear_registry()
    try:
        settings = ProviderSettings(issuer=idp.issuer)
        assert get_provider(idp.issuer, settings) is get_provider(idp.issuer, ProviderSettings(issuer=idp.issuer))
        assert get_provider(idp.issuer, settings) is not get_provider(
            idp.issuer, ProviderSettings(issuer=idp.issuer, cache_ttl=5))
    finally:
        clear_registry()


def test_warm_start_never_raises_when_the_idp_is_down(idp):
    idp.fail[idp.discovery_path] = 500
    provider = make_provider(idp)
    provider.warm_start()
    assert provider.wait_idle()
    assert provider.stats.jwks_fetches == 0


def test_keys_are_fetched_on_first_use_without_warm_start(idp):
    provider = make_provider(idp)
    assert provider.key_for("rsa-1", "RS256") is not None
    assert provider.stats.jwks_fetches == 1


def test_a_rotated_in_key_verifies_after_one_refetch(idp):
    provider = make_provider(idp)
    provider.key_for("rsa-1", "RS256")
    new = ec_key("P-256", "ec-2")
    idp.set_keys(RSA, new)
    assert provider.key_for("ec-2", "ES256") is not None
    assert idp.jwks_hits == 2


def test_a_removed_key_stops_verifying_after_the_refetch(idp):
    clock = Clock()
    provider = make_provider(idp, clock, cache_ttl=60)
    provider.key_for("rsa-1", "RS256")
    idp.set_keys(EC)
    clock.now += 60
    provider.key_for("ec-1", "ES256")  # stale: triggers the background refresh
    assert provider.wait_idle()
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "unknown_kid"


def test_stale_keys_serve_without_waiting_for_the_refresh(idp):
    clock = Clock()
    provider = make_provider(idp, clock, cache_ttl=60)
    key = provider.key_for("rsa-1", "RS256")
    idp.hang[idp.jwks_path] = 2
    clock.now += 61
    assert provider.key_for("rsa-1", "RS256") is key
    idp.hang.clear()
    assert provider.wait_idle()


def test_held_keys_keep_verifying_while_the_idp_is_down(idp):
    clock = Clock()
    provider = make_provider(idp, clock, cache_ttl=60, jwks_max_stale=3600)
    provider.key_for("rsa-1", "RS256")
    idp.fail[idp.jwks_path] = 500
    idp.fail[idp.discovery_path] = 500
    clock.now += 3000
    provider.key_for("rsa-1", "RS256")
    assert provider.wait_idle()
    assert provider.key_for("rsa-1", "RS256") is not None


def test_unknown_kids_fail_while_the_idp_is_down(idp):
    provider = make_provider(idp)
    provider.key_for("rsa-1", "RS256")
    idp.fail[idp.jwks_path] = 500
    assert reason(lambda: provider.key_for("new", "RS256")) == "unknown_kid"


def test_keys_past_max_stale_stop_serving(idp):
    clock = Clock()
    provider = make_provider(idp, clock, cache_ttl=60, jwks_max_stale=600)
    provider.key_for("rsa-1", "RS256")
    idp.fail[idp.jwks_path] = 500
    clock.now += 601
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"


def test_without_any_keys_a_down_idp_means_keys_unavailable(idp):
    idp.fail[idp.jwks_path] = 500
    provider = make_provider(idp)
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"


def test_a_hanging_idp_fails_the_lookup_after_the_timeout(idp):
    idp.hang[idp.jwks_path] = 30
    provider = make_provider(idp, timeout_ms=200)
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"


def test_random_unknown_kids_cause_at_most_one_fetch_per_window(idp):
    clock = Clock()
    provider = make_provider(idp, clock, rediscovery_lifetime=30)
    provider.key_for("rsa-1", "RS256")
    rng = random.Random(1)
    for _ in range(10_000):
        with pytest.raises(InvalidToken):
            provider.key_for(f"{rng.getrandbits(64):x}", "RS256")
    assert idp.jwks_hits == 2
    assert provider.stats.refresh_rate_limited == 9_999


def test_the_next_window_allows_one_more_refresh(idp):
    clock = Clock()
    provider = make_provider(idp, clock, rediscovery_lifetime=30)
    provider.key_for("rsa-1", "RS256")
    for _ in range(3):
        reason(lambda: provider.key_for("nope", "RS256"))
    clock.now += 30
    for _ in range(3):
        reason(lambda: provider.key_for("nope", "RS256"))
    assert idp.jwks_hits == 3


def test_fifty_threads_missing_one_kid_share_one_fetch(idp):
    provider = make_provider(idp)
    provider.key_for("rsa-1", "RS256")
    idp.set_keys(RSA, EC, ED)
    idp.hang[idp.jwks_path] = 0.3  # keeps the refresh open while the other threads arrive
    barrier = threading.Barrier(50)
    found = []

    def miss():
        barrier.wait(10)
        found.append(provider.key_for("ed-1", "EdDSA") is not None)

    threads = [threading.Thread(target=miss) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert found == [True] * 50
    assert idp.jwks_hits == 2


def test_an_oversized_jwks_is_rejected(idp):
    idp.oversize[idp.jwks_path] = 2 * 1024 * 1024
    provider = make_provider(idp)
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"
    assert provider.stats.jwks_failures == 1


def test_an_http_issuer_on_a_public_host_is_refused():
    provider = Provider(ProviderSettings(issuer="http://idp.example.com/realms/x", timeout_ms=200))
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"
    with pytest.raises(ProviderError):
        provider.metadata()


def test_an_issuer_mismatch_yields_no_keys(idp):
    idp.metadata_overrides["issuer"] = "https://other.example"
    provider = make_provider(idp)
    assert reason(lambda: provider.key_for("rsa-1", "RS256")) == "keys_unavailable"
    assert idp.jwks_hits == 0


def test_tokens_verify_end_to_end_through_the_fake_idp(idp):
    provider = make_provider(idp)
    verifier = Verifier(provider, VerifyOptions(issuer=idp.issuer, audiences=("api",)))
    assert verifier.verify(EC.sign(claims(idp.issuer))).kid == "ec-1"


def test_preloaded_providers_never_fetch():
    provider = Provider.from_jwks("https://idp.example", {"keys": [RSA.public_jwk()]})
    assert reason(lambda: provider.key_for("x", "RS256")) == "unknown_kid"
    assert provider.stats.jwks_fetches == 0


def test_without_keys_a_failed_fetch_makes_callers_fail_fast_until_the_retry(idp):
    clock = Clock()
    idp.fail[idp.jwks_path] = 500
    provider = make_provider(idp, clock, rediscovery_lifetime=30)
    for _ in range(5):
        reason(lambda: provider.key_for("rsa-1", "RS256"))
    assert idp.jwks_hits == 1
    idp.fail.clear()
    clock.now += 5
    assert provider.key_for("rsa-1", "RS256") is not None
