"""DPoP (RFC 9449): every proof check, the replay stores, nonces, and the binding rules as the
gateway applies them (challenges, modes, PDK reads only on DPoP requests)."""

from __future__ import annotations

import json
import time

import pytest

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import InvalidDpopProof, UseDpopNonce, render_error
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.dpop import (
    DpopOptions, MemoryReplayStore, NonceSource, ProofChecker, RedisReplayStore, jwk_thumbprint, normalize_htu,
)
from tests.support.dpop import proof, thumbprint
from tests.support.keys import ISSUER, claims, ec_key, ed25519_key, jwks, rsa_key
from tests.unit.test_gateway import FakeRequest

AS_KEY = rsa_key("as-dpop")
CLIENT = ec_key(kid=None)
OTHER_CLIENT = ec_key("P-256", kid=None)
URL = "https://api.example.com/api"
TOKEN = "opaque-or-jwt-access-token"


def checker(**options) -> ProofChecker:
    return ProofChecker(DpopOptions(mode="optional", **options), MemoryReplayStore(1000))


def check(c: ProofChecker, p: str, *, method="GET", url=URL, token=TOKEN) -> str:
    return c.check(p, method=method, htu=lambda: normalize_htu(url), access_token=token)


def reason(fn) -> str:
    with pytest.raises((InvalidDpopProof, UseDpopNonce)) as info:
        fn()
    return info.value.reason


# -- a good proof ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [CLIENT, rsa_key("c-rsa", fresh=True), rsa_key("c-ps", alg="PS256"), ed25519_key()],
                         ids=["ES256", "RS256", "PS256", "EdDSA"])
def test_valid_proof_gives_the_rfc7638_thumbprint_of_its_key(key):
    p = proof(key, "GET", URL, TOKEN)
    jwk = json.loads(__import__("base64").urlsafe_b64decode(p.split(".")[0] + "==="))["jwk"]
    assert check(checker(), p) == thumbprint(jwk) == jwk_thumbprint(jwk)


def test_htu_query_and_fragment_are_ignored_and_default_port_and_case_normalized():
    c = checker()
    assert check(c, proof(CLIENT, "GET", "HTTPS://API.example.com:443/api?x=1#f", TOKEN))


# -- header checks --------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "dpop"])
def test_wrong_typ_is_refused(typ):
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, typ=typ))) == "dpop_bad_type"


def test_alg_off_the_allow_list_is_refused():
    c = checker(algs=frozenset({"RS256"}))
    assert reason(lambda: check(c, proof(CLIENT, "GET", URL, TOKEN))) == "dpop_alg_not_allowed"


def test_symmetric_alg_is_never_accepted():
    c = checker(algs=frozenset({"HS256", "ES256"}))
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    import hmac, hashlib  # noqa: E401
    from tests.support.keys import encode_part, b64url

    h, pl = encode_part(header), encode_part({"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())})
    forged = f"{h}.{pl}." + b64url(hmac.digest(b"secret", f"{h}.{pl}".encode(), hashlib.sha256))
    assert reason(lambda: check(c, forged)) == "dpop_alg_not_allowed"


def test_proof_without_jwk_is_refused():
    p = CLIENT.sign({"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())}, {"typ": "dpop+jwt", "alg": "ES256"})
    assert reason(lambda: check(checker(), p)) == "dpop_bad_key"


def test_jwk_with_private_members_is_refused():
    jwk = {k: v for k, v in CLIENT.private_jwk().items() if k not in ("kid", "use", "alg")}
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, jwk=jwk))) == "dpop_bad_key"


def test_jwk_of_another_key_type_than_the_alg_is_refused():
    rsa_jwk = {k: v for k, v in rsa_key().public_jwk().items() if k in ("kty", "n", "e")}
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, jwk=rsa_jwk))) == "dpop_bad_key"


def test_ec_key_on_another_curve_than_the_alg_is_refused():
    p384 = ec_key("P-384", kid=None)
    jwk = {k: v for k, v in p384.public_jwk().items() if k in ("kty", "crv", "x", "y")}
    assert reason(lambda: check(checker(), proof(p384, "GET", URL, TOKEN, alg="ES256", jwk=jwk))) in (
        "dpop_bad_key", "dpop_bad_signature")


def test_short_rsa_key_is_refused():
    small = rsa_key("small", bits=1024, fresh=True)
    assert reason(lambda: check(checker(), proof(small, "GET", URL, TOKEN))) == "dpop_bad_key"


def test_signature_by_another_key_than_the_jwk_is_refused():
    jwk = {k: v for k, v in OTHER_CLIENT.public_jwk().items() if k in ("kty", "crv", "x", "y")}
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, jwk=jwk))) == "dpop_bad_signature"


def test_header_with_a_duplicate_member_is_refused():
    # Two parsers could pick different keys: the proof has no single reading.
    from tests.support.keys import encode_part

    jwk = json.dumps({k: v for k, v in CLIENT.public_jwk().items() if k not in ("kid", "use", "alg")})
    header = '{"typ":"dpop+jwt","alg":"ES256","jwk":%s,"typ":"dpop+jwt"}' % jwk
    p = CLIENT.sign({"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())}, encode_part(header.encode()))
    assert reason(lambda: check(checker(), p)) == "dpop_malformed"


def test_payload_with_a_duplicate_member_is_refused_with_a_token_free_detail():
    from tests.support.dpop import ath
    from tests.support.keys import encode_part

    payload = '{"jti":"j","htm":"GET","htu":"%s","iat":%d,"ath":"%s","htm":"POST"}' % (URL, time.time(), ath(TOKEN))
    jwk = {k: v for k, v in CLIENT.public_jwk().items() if k not in ("kid", "use", "alg")}
    p = CLIENT.sign(encode_part(payload.encode()), {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})
    with pytest.raises(InvalidDpopProof) as info:
        check(checker(), p)
    assert info.value.reason == "dpop_malformed" and info.value.detail == "payload: duplicate JSON member name"


def test_the_token_digest_from_the_verifier_gives_the_same_ath_check():
    import hashlib

    c, digest = checker(), hashlib.sha256(TOKEN.encode()).digest()
    assert c.check(proof(CLIENT, "GET", URL, TOKEN), method="GET", htu=lambda: URL, access_token=TOKEN,
                   token_digest=digest)
    other = proof(CLIENT, "GET", URL, "another-token")
    assert reason(lambda: c.check(other, method="GET", htu=lambda: URL, access_token=TOKEN,
                                  token_digest=digest)) == "dpop_bad_ath"


def test_the_ath_table_is_keyed_by_token_digests_never_by_tokens():
    c = checker()
    c.check(proof(CLIENT, "GET", URL, TOKEN), method="GET", htu=lambda: URL, access_token=TOKEN)
    assert c._aths and all(type(key) is bytes and len(key) == 32 for key in c._aths)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 9000, "e30.e30.e30"])
def test_malformed_proofs_are_refused(garbage):
    assert reason(lambda: check(checker(), garbage)).startswith("dpop_")


def test_request_url_is_not_read_when_the_signature_fails():
    reads = []
    jwk = {k: v for k, v in OTHER_CLIENT.public_jwk().items() if k in ("kty", "crv", "x", "y")}
    bad = proof(CLIENT, "GET", URL, TOKEN, jwk=jwk)
    with pytest.raises(InvalidDpopProof):
        checker().check(bad, method="GET", htu=lambda: reads.append(1) or URL, access_token=TOKEN)
    assert reads == []


# -- claim checks ---------------------------------------------------------------------------


def test_other_method_is_refused():
    assert reason(lambda: check(checker(), proof(CLIENT, "POST", URL, TOKEN))) == "dpop_bad_htm"


@pytest.mark.parametrize("url", [
    "https://api.example.com/other", "https://evil.example.com/api", "http://api.example.com/api",
    "https://api.example.com:8443/api", "https://api.example.com/api/../admin", "not a url",
])
def test_other_url_is_refused(url):
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", url, TOKEN))) == "dpop_bad_htu"


def test_old_proof_is_refused():
    p = proof(CLIENT, "GET", URL, TOKEN, iat=time.time() - 301)
    assert reason(lambda: check(checker(proof_lifetime=300), p)) == "dpop_expired"


def test_proof_from_the_future_is_refused():
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, iat=time.time() + 60))) == "dpop_iat_in_future"


@pytest.mark.parametrize("iat", ["now", None, float("nan"), True])
def test_proof_without_a_numeric_iat_is_refused(iat):
    p = proof(CLIENT, "GET", URL, TOKEN, iat=iat) if iat is not None else proof(CLIENT, "GET", URL, TOKEN, drop=("iat",))
    assert reason(lambda: check(checker(), p)) in ("dpop_missing_claim", "dpop_malformed")


def test_proof_for_another_access_token_is_refused():
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, "another-token"))) == "dpop_bad_ath"


def test_proof_without_ath_is_refused():
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL))) == "dpop_bad_ath"


def test_proof_without_jti_is_refused():
    assert reason(lambda: check(checker(), proof(CLIENT, "GET", URL, TOKEN, drop=("jti",)))) == "dpop_missing_claim"


def test_replayed_proof_is_refused():
    c, p = checker(), proof(CLIENT, "GET", URL, TOKEN)
    check(c, p)
    assert reason(lambda: check(c, p)) == "dpop_replayed"


def test_a_refused_proof_does_not_use_up_its_jti():
    c = checker()
    reason(lambda: check(c, proof(CLIENT, "POST", URL, TOKEN, jti="same")))
    assert check(c, proof(CLIENT, "GET", URL, TOKEN, jti="same"))


# -- nonces ---------------------------------------------------------------------------------


def test_nonce_required_proof_without_it_gets_use_dpop_nonce_with_a_nonce():
    c = checker(use_nonce=True, nonce_secret=b"n" * 32)
    with pytest.raises(UseDpopNonce) as info:
        check(c, proof(CLIENT, "GET", URL, TOKEN))
    assert info.value.nonce == c.nonces.current()
    assert check(c, proof(CLIENT, "GET", URL, TOKEN, nonce=info.value.nonce))


def test_nonce_from_two_windows_ago_is_refused():
    clock = [1_000_000.0]
    source = NonceSource(b"s" * 32, 300, clock=lambda: clock[0])
    old = source.current()
    clock[0] += 300
    assert source.valid(old)
    clock[0] += 300
    assert not source.valid(old)


def test_nodes_with_the_same_secret_accept_each_others_nonces():
    a, b = NonceSource(b"s" * 32, 300), NonceSource(b"s" * 32, 300)
    assert b.valid(a.current()) and not NonceSource(b"t" * 32, 300).valid(a.current())


# -- replay stores --------------------------------------------------------------------------


def test_memory_replay_store_forgets_after_the_ttl_and_stays_bounded():
    now = [0.0]
    store = MemoryReplayStore(3, clock=lambda: now[0])
    assert store.first_use("a", 10) and not store.first_use("a", 10)
    now[0] = 11
    assert store.first_use("a", 10)
    for k in "bcdef":
        store.first_use(k, 10)
    assert len(store) == 3


class FakeRedis:
    def __init__(self, fail=False):
        self.keys, self.fail = {}, fail

    def set(self, key, value, nx, px):
        if self.fail:
            raise ConnectionError("down")
        if nx and key in self.keys:
            return None
        self.keys[key] = px
        return True


def test_redis_replay_store_uses_set_nx_with_a_ttl():
    client = FakeRedis()
    store = RedisReplayStore(client, "oidc")
    assert store.first_use("k", 310) and not store.first_use("k", 310)
    (key, px), = client.keys.items()
    assert key.startswith("oidc:dpop:") and len(key) == len("oidc:dpop:") + 32 and px == 310000


def test_redis_failure_refuses_the_proof():
    with pytest.raises(InvalidDpopProof) as info:
        RedisReplayStore(FakeRedis(fail=True)).first_use("k", 10)
    assert info.value.reason == "dpop_replay_store_failed"


# -- the gateway: binding rules, modes, challenges ------------------------------------------


class CountingRequest(FakeRequest):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reads: list[str] = []

    def scheme(self): self.reads.append("scheme"); return "https"
    def host(self): self.reads.append("host"); return "api.example.com"
    def port(self): self.reads.append("port"); return 443


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(AS_KEY)))


def gw(**config) -> Gateway:
    return Gateway(parse_config({"issuer": ISSUER, "allow_any_audience": True, "proof_of_possession_dpop": "optional", **config}))


def bound_token(key=CLIENT, **extra) -> str:
    jwk = {k: v for k, v in key.public_jwk().items() if k not in ("kid", "use", "alg")}
    return AS_KEY.sign(claims(cnf={"jkt": thumbprint(jwk)}, **extra))


def dpop_request(token, p=None, *, method="GET", **kw):
    headers = {"Authorization": f"DPoP {token}"}
    if p is not False:
        headers["DPoP"] = p if p is not None else proof(CLIENT, method, URL, token)
    return CountingRequest(headers, method=method, **kw)


def test_bound_token_with_its_proof_is_allowed():
    out = gw().handle(dpop_request(bound_token()))
    assert out.allowed and out.log["token_binding"] == "dpop"


def test_bound_token_as_bearer_is_refused_even_with_dpop_off():
    out = gw(proof_of_possession_dpop="off").handle(CountingRequest({"Authorization": f"Bearer {bound_token()}"}))
    assert out.status == 401 and out.log["reason"] == "dpop_bound_as_bearer"


def test_unbound_bearer_token_passes_in_optional_mode_without_reading_the_url():
    req = CountingRequest({"Authorization": f"Bearer {AS_KEY.sign(claims())}"})
    out = gw().handle(req)
    assert out.allowed and req.reads == []


def test_unbound_bearer_token_is_refused_in_required_mode_with_a_dpop_challenge():
    out = gw(proof_of_possession_dpop="required").handle(CountingRequest({"Authorization": f"Bearer {AS_KEY.sign(claims())}"}))
    challenge = out.response_headers["WWW-Authenticate"]
    assert out.status == 401 and challenge.startswith('DPoP realm="kong"') and 'algs="ES256' in challenge


def test_missing_token_in_required_mode_gets_a_dpop_challenge_without_error():
    out = gw(proof_of_possession_dpop="strict").handle(CountingRequest({}))
    assert out.response_headers["WWW-Authenticate"].startswith("DPoP ") and "error=" not in out.response_headers["WWW-Authenticate"]


def test_policy_can_require_dpop_on_one_path():
    g = gw(proof_of_possession_dpop="off", policies=[{"name": "pay", "paths": ["/pay"], "dpop": "required"}])
    plain = AS_KEY.sign(claims())
    assert g.handle(CountingRequest({"Authorization": f"Bearer {plain}"}, path="/api")).allowed
    assert g.handle(CountingRequest({"Authorization": f"Bearer {plain}"}, path="/pay")).status == 401


def test_unbound_token_with_the_dpop_scheme_is_refused():
    out = gw().handle(dpop_request(AS_KEY.sign(claims())))
    assert out.status == 401 and out.log["reason"] == "dpop_unbound_token"


def test_proof_by_another_key_than_the_binding_is_refused():
    token = bound_token()
    out = gw().handle(dpop_request(token, proof(OTHER_CLIENT, "GET", URL, token)))
    assert out.log["reason"] == "dpop_key_mismatch" and 'error="invalid_token"' in out.response_headers["WWW-Authenticate"]


def test_missing_proof_is_invalid_dpop_proof_with_algs():
    out = gw().handle(dpop_request(bound_token(), False))
    challenge = out.response_headers["WWW-Authenticate"]
    assert out.log["reason"] == "dpop_missing_proof"
    assert challenge.startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge and "algs=" in challenge


def test_gateway_checks_ath_against_the_verified_token_digest():
    token = bound_token()
    out = gw().handle(dpop_request(token, proof(CLIENT, "GET", URL, bound_token(jti="another"))))
    assert out.status == 401 and out.log["reason"] == "dpop_bad_ath"


def test_two_proofs_are_refused():
    token = bound_token()
    req = dpop_request(token)
    req.headers["dpop"] = [proof(CLIENT, "GET", URL, token), proof(CLIENT, "GET", URL, token)]
    assert gw().handle(req).log["reason"] == "dpop_several_proofs"


def test_dpop_scheme_where_dpop_is_off_is_invalid_request():
    out = gw(proof_of_possession_dpop="off").handle(dpop_request(bound_token()))
    assert out.status == 400


def test_dpop_scheme_with_a_token_cookie_too_is_invalid_request():
    g = gw(bearer_token_param_type=["header", "cookie"], bearer_token_cookie_name="at")
    req = dpop_request(bound_token())
    req.headers["cookie"] = ["at=abc"]
    assert g.handle(req).status == 400


def test_malformed_dpop_authorization_is_invalid_request():
    req = CountingRequest({"Authorization": "DPoP  two spaces"})
    assert gw().handle(req).status == 400


def test_nonce_challenge_carries_the_dpop_nonce_header():
    out = gw(dpop_use_nonce=True, dpop_nonce_secret="n" * 32).handle(dpop_request(bound_token()))
    assert out.status == 401 and 'error="use_dpop_nonce"' in out.response_headers["WWW-Authenticate"]
    assert out.response_headers["DPoP-Nonce"]


def test_dpop_use_nonce_needs_a_shared_secret():
    from kong_oidc_py.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": ISSUER, "allow_any_audience": True, "dpop_use_nonce": True})
    assert info.value.field == "dpop_nonce_secret"


def test_hide_credentials_removes_the_dpop_token_and_proof():
    out = gw(hide_credentials=True).handle(dpop_request(bound_token()))
    assert out.allowed and {"authorization", "dpop"} <= set(out.upstream_clear)


def test_certificate_bound_token_is_refused():
    token = AS_KEY.sign(claims(cnf={"x5t#S256": "abc"}))
    out = gw().handle(CountingRequest({"Authorization": f"Bearer {token}"}))
    assert out.status == 401 and out.log["reason"] == "mtls_bound_token"


def test_dpop_request_reads_scheme_host_and_port_once_each():
    req = dpop_request(bound_token())
    assert gw().handle(req).allowed
    assert sorted(req.reads) == ["host", "port", "scheme"]


def test_render_use_dpop_nonce():
    response = render_error(UseDpopNonce("n0nce"), "kong", dpop_algs="ES256")
    assert response.headers == {"DPoP-Nonce": "n0nce", "WWW-Authenticate":
                                'DPoP realm="kong", error="use_dpop_nonce", error_description='
                                '"Resource server requires nonce in DPoP proof", algs="ES256"'}


def test_the_redis_replay_store_uses_every_session_redis_setting(monkeypatch):
    # Replay entries must reach the same Redis as sessions do: TLS and Cluster included.
    from kong_oidc_py.shared_state import redis_client
    from kong_oidc_py.verification.dpop import build_binding

    made = []
    monkeypatch.setattr(redis_client, "make_redis_client", lambda settings: made.append(settings) or object())
    cfg = parse_config({"issuer": ISSUER, "allow_any_audience": True, "proof_of_possession_dpop": "optional",
                        "dpop_replay_storage": "redis", "session_redis_ssl": True, "session_redis_prefix": "edge",
                        "session_redis_cluster_nodes": [{"ip": "10.0.0.1", "port": 7000}]})
    build_binding(cfg)
    (settings,) = made
    assert settings.ssl and settings.prefix == "edge"
    assert [(n.host, n.port) for n in settings.cluster_nodes] == [("10.0.0.1", 7000)]
