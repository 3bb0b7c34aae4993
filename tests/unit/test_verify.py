import dataclasses
import json

import pytest

from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.verify import Claims, Verifier, VerifyOptions
from tests.support.keys import (
    ISSUER,
    b64url,
    claims,
    ec_key,
    ed448_key,
    ed25519_key,
    encode_part,
    jwks,
    rsa_key,
    sign_raw,
)

NOW = 1_700_000_000
RSA = rsa_key("rsa-1")
ES256 = ec_key("P-256", "ec-256")
ES384 = ec_key("P-384", "ec-384")
ES512 = ec_key("P-521", "ec-521")
ED = ed25519_key("ed-1")
ED448 = ed448_key("ed448-1")
ALL_KEYS = (RSA, ES256, ES384, ES512, ED, ED448)
SECRET = b"s" * 32


def provider(*keys, include_alg=True):
    return Provider.from_jwks(ISSUER, {"keys": [k.public_jwk(include_alg=include_alg) for k in keys or ALL_KEYS]})


def verifier(prov=None, clock=lambda: NOW, **options):
    options.setdefault("issuer", ISSUER)
    options.setdefault("audiences", ("api",))
    return Verifier(prov or provider(), VerifyOptions(**options), clock=clock)


def body(**extra):
    return claims(now=NOW, **extra)


def header(key, **extra):
    h = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
    h.update(extra)
    return {k: v for k, v in h.items() if v is not None}


def reason_of(v, token):
    with pytest.raises(InvalidToken) as info:
        v.verify(token)
    return info.value.reason


# -- accepted tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [(RSA, "RS256"), (RSA, "RS384"), (RSA, "RS512"), (RSA, "PS256"), (RSA, "PS384"), (RSA, "PS512"),
     (ES256, "ES256"), (ES384, "ES384"), (ES512, "ES512"), (ED, "EdDSA"), (ED448, "EdDSA")],
)
def test_a_valid_token_verifies_for_every_supported_algorithm(key, alg):
    v = verifier(provider(*ALL_KEYS, include_alg=False))
    result = v.verify(key.sign(body(), header(key, alg=alg), alg=alg))
    assert (result.alg, result.kid, result.data["sub"]) == (alg, key.kid, "user-1")


def test_claims_carry_a_short_token_hash_and_the_expiry():
    token = RSA.sign(body())
    result = verifier().verify(token)
    import hashlib

    assert result.token_hash == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert result.expires_at == NOW + 300


def test_claims_are_frozen():
    result = verifier().verify(RSA.sign(body()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.alg = "none"  # type: ignore[misc]


# -- size and shape -------------------------------------------------------------------------


def test_a_token_over_the_size_limit_is_refused_before_parsing():
    assert reason_of(verifier(max_token_size=100), "x" * 101) == "token_too_large"


@pytest.mark.parametrize(
    "token",
    [
        "", "abc", "a.b", "a.b.c.d", "..", "a..c",
        "eyJ.eyJ.sig=",            # padding
        "eyJhbGciOiJSUzI1NiJ9.e+J.c2ln",  # standard alphabet
        "eyJhbGciOiJSUzI1NiJ9.eyJ/.c2ln",
        "eyJhbGciOiJSUzI1NiJ9 .eyJ.c2ln",
        "a.b.cdefg",               # length 1 mod 4
        "tëst.b.c",                # non-ASCII
    ],
)
def test_a_token_that_is_not_three_strict_base64url_segments_is_malformed(token):
    assert reason_of(verifier(), token) == "malformed"


@pytest.mark.parametrize("value", [None, 42, b"a.b.c", ["a"]])
def test_a_token_that_is_not_a_string_is_malformed(value):
    assert reason_of(verifier(), value) == "malformed"


@pytest.mark.parametrize(
    "raw_header",
    [b"not json", b"[1,2]", b'"alg"', b"\xff\xfe", b'{"alg":"RS256"', b"[" * 100000 + b"]" * 100000],
)
def test_a_header_that_is_not_a_json_object_is_malformed(raw_header):
    token = sign_raw(RSA.private, "RS256", encode_part(raw_header), encode_part(body()))
    assert reason_of(verifier(max_token_size=10**7), token) == "malformed"


@pytest.mark.parametrize(
    "raw_payload",
    [b"not json", b"[1]", b"null", b"\xc3\x28", b'{"exp": NaN}', b"{" * 5000, b'{"exp": 1' + b"0" * 5000 + b"}"],
)
def test_a_payload_that_is_not_a_json_object_is_malformed(raw_payload):
    token = sign_raw(RSA.private, "RS256", encode_part(header(RSA)), encode_part(raw_payload))
    assert reason_of(verifier(max_token_size=10**6), token) == "malformed"


@pytest.mark.parametrize(("name", "value"), [("alg", 256), ("kid", 7), ("typ", ["JWT"]), ("kid", {"x": 1})])
def test_a_header_member_of_the_wrong_type_is_malformed(name, value):
    assert reason_of(verifier(), RSA.sign(body(), header(RSA, **{name: value}))) == "malformed"


# -- algorithms -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "RS1", "ES256K", ""])
def test_algorithms_outside_the_allow_list_are_refused(alg):
    token = sign_raw(RSA.private, "RS256", encode_part(header(RSA, alg=alg)), encode_part(body()))
    assert reason_of(verifier(), token) == "alg_not_allowed"


def test_an_unsigned_token_is_refused_even_when_none_is_configured():
    token = encode_part({"alg": "none"}) + "." + encode_part(body()) + "."
    v = verifier(algorithms=frozenset({"none", "RS256"}))
    assert reason_of(v, token) in {"alg_not_allowed", "malformed"}
    assert reason_of(v, token + "c2ln") == "alg_not_allowed"


def test_an_algorithm_left_out_of_the_configured_list_is_refused():
    v = verifier(algorithms=frozenset({"ES256"}))
    assert reason_of(v, RSA.sign(body())) == "alg_not_allowed"


def test_hmac_tokens_verify_with_the_configured_secret():
    token = sign_raw(SECRET, "HS256", encode_part({"alg": "HS256"}), encode_part(body()))
    v = verifier(algorithms=frozenset({"HS256"}), hmac_secret=SECRET)
    assert v.verify(token).alg == "HS256"


def test_hmac_tokens_are_refused_without_a_secret_even_when_listed():
    token = sign_raw(SECRET, "HS256", encode_part({"alg": "HS256"}), encode_part(body()))
    assert reason_of(verifier(algorithms=frozenset({"HS256", "RS256"})), token) == "alg_not_allowed"


def test_hmac_is_never_checked_against_a_published_public_key():
    # Key confusion (RFC 8725 2.1): the attacker uses the RSA public key bytes as an HMAC secret.
    public_pem = json.dumps(RSA.public_jwk()).encode()
    token = sign_raw(public_pem, "HS256", encode_part({"alg": "HS256", "kid": RSA.kid}), encode_part(body()))
    v = verifier(algorithms=frozenset({"HS256", "RS256"}), hmac_secret=SECRET)
    assert reason_of(v, token) == "bad_signature"


def test_hmac_with_the_wrong_secret_fails_the_signature():
    token = sign_raw(b"x" * 32, "HS256", encode_part({"alg": "HS256"}), encode_part(body()))
    v = verifier(algorithms=frozenset({"HS256"}), hmac_secret=SECRET)
    assert reason_of(v, token) == "bad_signature"


def test_a_token_cannot_pick_a_key_of_another_type_for_its_alg():
    # The EC key's kid with an RSA alg finds nothing: algs are bound to key types.
    token = RSA.sign(body(), header(RSA, kid=ES256.kid))
    assert reason_of(verifier(), token) == "unknown_kid"


def test_a_key_published_with_an_alg_only_verifies_that_alg():
    token = RSA.sign(body(), header(RSA, alg="PS256"))
    assert reason_of(verifier(provider(RSA)), token) == "unknown_kid"


@pytest.mark.parametrize("crit", [["exp"], [], ["b64"]])
def test_any_crit_header_is_refused(crit):
    assert reason_of(verifier(), RSA.sign(body(), {**header(RSA), "crit": crit})) == "crit_unsupported"


def test_embedded_keys_and_key_urls_in_the_header_are_ignored():
    attacker = rsa_key("rsa-1", fresh=True)
    h = header(attacker, jwk=attacker.public_jwk(), jku="https://evil.example/jwks", x5u="https://evil.example/c",
               x5c=["MIIB"])
    assert reason_of(verifier(), attacker.sign(body(), h)) == "bad_signature"


# -- keys and signatures --------------------------------------------------------------------


def test_an_unknown_kid_is_refused():
    assert reason_of(verifier(), RSA.sign(body(), header(RSA, kid="other"))) == "unknown_kid"


def test_a_token_without_kid_uses_the_only_key_of_its_type():
    v = verifier(provider(RSA, ES256))
    assert v.verify(RSA.sign(body(), header(RSA, kid=None))).kid is None


def test_a_token_without_kid_is_refused_when_several_keys_of_its_type_exist():
    second = rsa_key("rsa-2", fresh=True)
    v = verifier(provider(RSA, second))
    assert reason_of(v, RSA.sign(body(), header(RSA, kid=None))) == "unknown_kid"


@pytest.mark.parametrize("key", [RSA, ES256, ED])
def test_a_tampered_payload_fails_the_signature(key):
    token = key.sign(body())
    h, _, s = token.split(".")
    forged = f"{h}.{encode_part(body(sub='admin'))}.{s}"
    assert reason_of(verifier(), forged) == "bad_signature"


def test_a_signature_by_another_key_with_the_same_kid_fails():
    impostor = ec_key("P-256", ES256.kid)
    assert reason_of(verifier(), impostor.sign(body())) == "bad_signature"


@pytest.mark.parametrize("size", [63, 65, 0])
def test_an_ecdsa_signature_of_the_wrong_length_fails(size):
    token = ES256.sign(body())
    h, p, _ = token.split(".")
    assert reason_of(verifier(), f"{h}.{p}.{b64url(bytes(size) or b'x')}") == "bad_signature"


def test_a_der_encoded_ecdsa_signature_is_refused():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    h, p = encode_part(header(ES256)), encode_part(body())
    der = ES256.private.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    assert reason_of(verifier(), f"{h}.{p}.{b64url(der)}") == "bad_signature"


def test_claims_are_not_read_before_the_signature_is_checked():
    # A forged token that is also expired reports the forgery, not the expiry.
    token = RSA.sign(body(exp=NOW - 1000))
    h, _, s = token.split(".")
    forged = f"{h}.{encode_part(body(exp=NOW - 1000, sub='x'))}.{s}"
    assert reason_of(verifier(), forged) == "bad_signature"


# -- typ --------------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT", "JWT", "jwt",
                                 "application/jwt", None])
def test_the_default_type_policy_accepts_access_token_and_jwt_types(typ):
    assert verifier().verify(RSA.sign(body(), header(RSA, typ=typ))).alg == "RS256"


@pytest.mark.parametrize("typ", ["JOSE", "dpop+jwt", "logout+jwt", "application/at+jwt/x", ""])
def test_other_types_are_refused(typ):
    assert reason_of(verifier(), RSA.sign(body(), header(RSA, typ=typ))) == "bad_type"


def test_a_required_type_refuses_tokens_without_typ():
    v = verifier(token_type_required=True)
    assert reason_of(v, RSA.sign(body(), header(RSA, typ=None))) == "bad_type"


def test_configured_types_narrow_the_accepted_set():
    v = verifier(token_types=frozenset({"at+jwt"}))
    assert reason_of(v, RSA.sign(body(), header(RSA, typ="JWT"))) == "bad_type"


@pytest.mark.parametrize("claim", ["nonce", "at_hash", "c_hash"])
def test_id_token_shaped_tokens_are_refused_when_configured(claim):
    v = verifier(reject_id_tokens=True)
    assert reason_of(v, RSA.sign(body(**{claim: "x"}))) == "bad_type"


def test_id_token_shaped_tokens_pass_by_default():
    assert verifier().verify(RSA.sign(body(nonce="n"))).data["nonce"] == "n"


# -- claims -----------------------------------------------------------------------------------


def test_the_payload_must_be_signed_by_the_configured_issuer():
    assert reason_of(verifier(), RSA.sign(body(iss=ISSUER + "/"))) == "bad_issuer"


@pytest.mark.parametrize("iss", [["https://idp.example.com/realms/test"], 1, True, {"x": 1}])
def test_a_non_string_issuer_is_malformed(iss):
    assert reason_of(verifier(), RSA.sign(body(iss=iss))) == "malformed"


def test_a_token_without_issuer_lacks_a_claim():
    assert reason_of(verifier(), RSA.sign(body(iss=None))) == "missing_claim"


def test_the_issuer_detail_names_expected_and_got():
    with pytest.raises(InvalidToken) as info:
        verifier().verify(RSA.sign(body(iss="https://evil.example")))
    assert ISSUER in info.value.detail and "https://evil.example" in info.value.detail


@pytest.mark.parametrize("aud", ["api", ["other", "api"], ["api"]])
def test_any_listed_audience_is_accepted(aud):
    assert verifier(audiences=("api", "spare")).verify(RSA.sign(body(aud=aud))).data["aud"] == aud


@pytest.mark.parametrize("aud", ["other", ["other"], [], "API"])
def test_a_token_for_another_audience_is_refused(aud):
    assert reason_of(verifier(), RSA.sign(body(aud=aud))) == "bad_audience"


def test_a_token_without_audience_lacks_a_claim_when_audiences_are_required():
    assert reason_of(verifier(), RSA.sign(body(aud=None))) == "missing_claim"


def test_audience_is_not_checked_when_none_is_required():
    assert verifier(audiences=()).verify(RSA.sign(body(aud=None))).alg == "RS256"


def test_audience_claims_may_point_elsewhere():
    v = verifier(audience_claims=(("aud",), ("azp",)))
    assert v.verify(RSA.sign(body(aud="account", azp="api"))).data["azp"] == "api"


def test_nested_audience_claim_paths_are_followed():
    v = verifier(audience_claims=(("resource", "aud"),))
    assert v.verify(RSA.sign(body(aud=None, resource={"aud": ["api"]}))).alg == "RS256"


def test_an_expired_token_is_refused():
    assert reason_of(verifier(), RSA.sign(body(exp=NOW))) == "expired"


def test_leeway_extends_expiry():
    assert verifier(leeway=30).verify(RSA.sign(body(exp=NOW - 29))).alg == "RS256"


def test_leeway_has_an_end():
    assert reason_of(verifier(leeway=30), RSA.sign(body(exp=NOW - 30))) == "expired"


def test_exp_is_required_by_default():
    assert reason_of(verifier(), RSA.sign(body(exp=None))) == "missing_claim"


def test_exp_may_be_optional():
    assert verifier(require_exp=False).verify(RSA.sign(body(exp=None))).expires_at is None


@pytest.mark.parametrize("exp", [True, "1800000000", [1800000000], {"t": 1}, 1e400])
def test_a_non_numeric_exp_is_malformed(exp):
    token = sign_raw(RSA.private, "RS256", encode_part(header(RSA)),
                     encode_part(json.dumps({**body(), "exp": exp}).encode()))
    assert reason_of(verifier(), token) == "malformed"


def test_a_fractional_exp_is_accepted():
    assert verifier().verify(RSA.sign(body(exp=NOW + 0.5))).expires_at == NOW + 0.5


def test_a_not_yet_valid_token_is_refused():
    assert reason_of(verifier(), RSA.sign(body(nbf=NOW + 1))) == "not_yet_valid"


def test_leeway_applies_to_nbf():
    assert verifier(leeway=5).verify(RSA.sign(body(nbf=NOW + 5))).alg == "RS256"


def test_a_token_issued_in_the_future_is_refused():
    assert reason_of(verifier(), RSA.sign(body(iat=NOW + 1))) == "iat_in_future"


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_non_numeric_time_claims_are_malformed(name):
    assert reason_of(verifier(), RSA.sign(body(**{name: "soon"}))) == "malformed"


# -- the token cache --------------------------------------------------------------------------


class CountingProvider:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def key_for(self, kid, alg):
        self.calls += 1
        return self.inner.key_for(kid, alg)


def test_a_repeat_token_is_answered_from_the_cache():
    counting = CountingProvider(provider())
    v = verifier(counting)
    token = RSA.sign(body())
    first, second = v.verify(token), v.verify(token)
    assert second is first
    assert counting.calls == 1


def test_a_cached_token_still_expires():
    now = [NOW]
    v = verifier(clock=lambda: now[0])
    token = RSA.sign(body(exp=NOW + 10))
    v.verify(token)
    now[0] = NOW + 10
    assert reason_of(v, token) == "expired"


def test_a_cached_token_honours_leeway_at_expiry():
    now = [NOW]
    v = verifier(clock=lambda: now[0], leeway=5)
    token = RSA.sign(body(exp=NOW + 10))
    v.verify(token)
    now[0] = NOW + 14
    assert v.verify(token).alg == "RS256"


def test_the_cache_ttl_bounds_a_cached_entry():
    now = [NOW]
    counting = CountingProvider(provider())
    v = verifier(counting, clock=lambda: now[0], cache_ttl=60)
    token = RSA.sign(body(exp=NOW + 3600))
    v.verify(token)
    now[0] = NOW + 60
    v.verify(token)
    assert counting.calls == 2


def test_failures_are_not_cached():
    now = [NOW]
    counting = CountingProvider(provider())
    v = verifier(counting, clock=lambda: now[0])
    token = RSA.sign(body(nbf=NOW + 10))
    reason_of(v, token)
    now[0] = NOW + 10
    assert v.verify(token).alg == "RS256"


def test_no_caching_when_the_cache_ttl_is_zero():
    counting = CountingProvider(provider())
    v = verifier(counting, cache_ttl=0)
    token = RSA.sign(body())
    v.verify(token)
    v.verify(token)
    assert counting.calls == 2


# -- failure hygiene --------------------------------------------------------------------------


def test_descriptions_never_contain_the_token():
    token = RSA.sign(body(iss="https://evil.example"))
    with pytest.raises(InvalidToken) as info:
        verifier().verify(token)
    for part in token.split("."):
        assert part not in info.value.description
        assert part not in (info.value.detail or "")


def test_a_provider_bug_surfaces_as_invalid_token():
    class Broken:
        def key_for(self, kid, alg):
            raise KeyError("boom")

    assert reason_of(verifier(Broken()), RSA.sign(body())) == "malformed"


def test_garbage_never_escapes_as_another_exception():
    import random

    rng = random.Random(7)
    alphabet = "ABCxyz019-_.=+/ {}\"'\\é\x00"
    v = verifier()
    valid = RSA.sign(body())
    for _ in range(2000):
        n = rng.randint(0, 80)
        candidate = "".join(rng.choice(alphabet) for _ in range(n))
        if rng.random() < 0.5:
            i = rng.randint(0, len(valid))
            candidate = valid[:i] + candidate + valid[i + n:]
        try:
            v.verify(candidate)
        except InvalidToken:
            pass


def test_claims_construct_with_keyword_fields():
    c = Claims(data={}, token_hash="", kid=None, alg="", expires_at=None)
    assert c.expires_at is None


# -- options from the plugin config -----------------------------------------------------------


def plugin_config(**overrides):
    from types import SimpleNamespace

    values = dict(
        issuer=ISSUER + "/.well-known/openid-configuration", audience_required=["api"], audience_claim=["aud"],
        signing_algs=["RS256"], leeway=5, require_exp=True, max_token_size=4096,
        token_types=["at+jwt"], token_type_required=True, reject_id_tokens=True, hmac_secret=None,
        cache_tokens=True, cache_ttl=300, token_cache_size=50, client_id="web",
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def test_options_from_config_use_the_issuer_without_the_discovery_suffix():
    options = VerifyOptions.from_config(plugin_config())
    assert (options.issuer, options.audiences, options.algorithms) == (ISSUER, ("api",), frozenset({"RS256"}))


def test_a_dotted_audience_claim_becomes_one_path():
    assert VerifyOptions.from_config(plugin_config(audience_claim=["resource", "aud"])).audience_claims == (
        ("resource", "aud"),)


def test_cache_tokens_off_disables_the_token_cache():
    options = VerifyOptions.from_config(plugin_config(cache_tokens=False))
    assert Verifier(provider(), options).cache is None


def test_a_string_hmac_secret_becomes_bytes():
    assert VerifyOptions.from_config(plugin_config(hmac_secret="k" * 32)).hmac_secret == b"k" * 32


def test_id_token_options_expect_the_client_as_audience_and_skip_the_cache():
    options = VerifyOptions.for_id_token(plugin_config())
    assert (options.audiences, options.cache_ttl, options.reject_id_tokens) == (("web",), 0, False)
    token = RSA.sign(body(aud="web", nonce="n"), header(RSA, typ="JWT"))
    assert Verifier(provider(), options, clock=lambda: NOW).verify(token).data["nonce"] == "n"


def test_provider_settings_from_config():
    from types import SimpleNamespace

    from kong_oidc_py.idp.provider import ProviderSettings

    cfg = SimpleNamespace(issuer=ISSUER, timeout=1500, ssl_verify=False, allow_insecure_issuer=True, cache_ttl=60,
                          rediscovery_lifetime=10, jwks_max_stale=120)
    assert ProviderSettings.from_config(cfg) == ProviderSettings(ISSUER, 1500, False, True, 60, 10, 120)


# -- explain: the same checks as a trace --------------------------------------------------------


def test_explain_lists_every_check_of_a_valid_token_in_order():
    trace = verifier().explain(RSA.sign(body()))
    assert trace.error is None and trace.claims.data["sub"] == "user-1"
    assert [s.check for s in trace.steps] == ["size", "header", "key", "signature", "claim_types", "iss", "aud",
                                              "exp", "nbf", "iat"]
    assert all(s.ok for s in trace.steps)


def test_explain_names_the_key_chosen_and_why():
    from kong_oidc_py.idp.keyset import jwk_thumbprint

    key_step = next(s for s in verifier().explain(RSA.sign(body())).steps if s.check == "key")
    assert "kid='rsa-1' alg=RS256" in key_step.detail and "by kid and alg" in key_step.detail
    assert jwk_thumbprint(RSA.public_jwk()) in key_step.detail


def test_explain_ends_with_the_failed_check_as_its_stable_reason():
    trace = verifier().explain(RSA.sign(body(exp=NOW - 1)))
    assert trace.claims is None and trace.error.reason == "expired"
    assert trace.steps[-1].check == "expired" and not trace.steps[-1].ok
    assert trace.steps[-1].detail == f"exp {NOW - 1} <= now {NOW} - leeway 0"


def test_explain_reports_malformed_input_without_raising():
    trace = verifier().explain("not.a.token")
    assert trace.error.reason == "malformed" and trace.steps[-1].check == "malformed"


def test_explain_never_shows_the_token_or_its_signature():
    token = RSA.sign(body(exp=NOW - 1))
    text = repr(verifier().explain(token).steps)
    assert all(part not in text for part in token.split("."))


def test_explain_neither_reads_nor_fills_the_token_cache():
    v = verifier()
    token = RSA.sign(body())
    v.explain(token)
    assert len(v.cache) == 0
    v.verify(token)
    assert [s.check for s in v.explain(token).steps][:3] == ["size", "header", "key"]
