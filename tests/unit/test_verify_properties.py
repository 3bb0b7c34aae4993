"""Property: for any generated header and claim set, `Verifier.verify` accepts exactly when an
independent reading of the rules (RFC 7519, RFC 8725, RFC 9068, written here without looking
at verify.py's code paths) accepts.

Hypothesis runs derandomized with no example database, so `make test` is deterministic.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.keys import ISSUER, jwks, rsa_key, sign_raw, encode_part

NOW = 1_700_000_000
KEY = rsa_key("prop-rsa")
PROVIDER = Provider.from_jwks(ISSUER, jwks(KEY, include_alg=False))
PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)

ABSENT = object()
numbers = st.one_of(
    st.integers(NOW - 200, NOW + 200),
    st.floats(NOW - 200, NOW + 200, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), True, False, "1700000000", None, [NOW]]),
)
claim_value = st.one_of(st.just(ABSENT), numbers)
audiences = st.one_of(
    st.just(ABSENT), st.sampled_from(["api", "other", "", "API"]),
    st.lists(st.sampled_from(["api", "other", 5, None, ["api"]]), max_size=3), st.integers(),
)
issuers = st.one_of(st.just(ABSENT), st.sampled_from([ISSUER, ISSUER + "/", ISSUER.upper(), "https://evil.example", 7, None]))
types = st.one_of(st.just(ABSENT), st.sampled_from(
    ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT", "jwt", "JWT", "application/jwt", "jose",
     "application/at+jwt/x", "at+jwt ", "", 1, None]))
algs = st.sampled_from(["RS256", "RS384", "PS256", "HS256", "none", "ES256", "rs256", 5])


def reference(header: dict, payload: dict, *, type_required: bool, reject_id: bool, leeway: int,
              require_exp: bool) -> bool:
    """Accept or not, from the rules themselves. The token is signed with an RSA key known to
    the provider (no `alg` on the JWK), so any RSA algorithm's signature checks out."""
    alg = header.get("alg")
    if alg not in ("RS256", "RS384", "PS256"):  # RSA algorithms; the signature is made for alg
        return False
    if "crit" in header:
        return False
    if "typ" in header:
        typ = header["typ"]
        if not isinstance(typ, str):
            return False
        t = typ.lower()
        if t.startswith("application/") and "/" not in t[len("application/"):]:
            t = t[len("application/"):]
        if t not in ("at+jwt", "jwt"):
            return False
    elif type_required:
        return False
    if reject_id and any(k in payload for k in ("nonce", "at_hash", "c_hash")):
        return False
    if payload.get("iss") != ISSUER or not isinstance(payload.get("iss"), str):
        return False
    aud = payload.get("aud")
    if not (aud == "api" or (isinstance(aud, list) and "api" in aud)):
        return False

    def number(v: Any) -> bool:
        return type(v) in (int, float) and math.isfinite(v)

    if "exp" in payload and payload["exp"] is not None:
        if not number(payload["exp"]) or payload["exp"] <= NOW - leeway:
            return False
    elif require_exp:
        return False
    for name in ("nbf", "iat"):
        if name in payload and payload[name] is not None:
            if not number(payload[name]) or payload[name] > NOW + leeway:
                return False
    return True


def _signature_alg(alg: Any) -> str:
    return alg if alg in ("RS256", "RS384", "PS256") else "RS256"


@PROPERTY
@given(
    alg=algs, typ=types, crit=st.booleans(), iss=issuers, aud=audiences, exp=claim_value, nbf=claim_value,
    iat=claim_value, nonce=st.booleans(), type_required=st.booleans(), reject_id=st.booleans(),
    leeway=st.sampled_from([0, 30]), require_exp=st.booleans(),
)
def test_verify_accepts_exactly_what_the_reference_accepts(alg, typ, crit, iss, aud, exp, nbf, iat, nonce,
                                                           type_required, reject_id, leeway, require_exp):
    header: dict[str, Any] = {"alg": alg, "kid": KEY.kid}
    if typ is not ABSENT:
        header["typ"] = typ
    if crit:
        header["crit"] = ["exp"]
    payload: dict[str, Any] = {"sub": "user-1"}
    for name, value in (("iss", iss), ("aud", aud), ("exp", exp), ("nbf", nbf), ("iat", iat)):
        if value is not ABSENT:
            payload[name] = value
    if nonce:
        payload["nonce"] = "n-1"
    token = sign_raw(KEY.private, _signature_alg(alg), encode_part(header), encode_part(_json(payload)))
    verifier = Verifier(PROVIDER, VerifyOptions(
        issuer=ISSUER, audiences=("api",), token_type_required=type_required, reject_id_tokens=reject_id,
        leeway=leeway, require_exp=require_exp, cache_ttl=0,
    ), clock=lambda: NOW)
    try:
        verifier.verify(token)
        accepted = True
    except InvalidToken:
        accepted = False
    assert accepted == reference(header, payload, type_required=type_required, reject_id=reject_id,
                                 leeway=leeway, require_exp=require_exp)


def _json(payload: dict) -> bytes:
    import json

    # NaN and Infinity are written as JSON's non-standard constants: a hostile issuer could.
    return json.dumps(payload, separators=(",", ":")).encode()


@PROPERTY
@given(st.text(max_size=60), st.sampled_from(["cached", "uncached"]))
def test_a_verdict_is_the_same_with_the_token_cache_on_and_off(suffix, mode):
    token = KEY.sign({"iss": ISSUER, "aud": "api", "exp": NOW + 60, "sub": suffix})
    cached = Verifier(PROVIDER, VerifyOptions(issuer=ISSUER, audiences=("api",)), clock=lambda: NOW)
    plain = Verifier(PROVIDER, VerifyOptions(issuer=ISSUER, audiences=("api",), cache_ttl=0), clock=lambda: NOW)
    if mode == "cached":
        cached.verify(token)  # warm the cache: the second answer comes from it
    assert cached.verify(token).data == plain.verify(token).data
