"""Target: the IdP's key set (idp/jwks.py) as its HTTP answer.

Input: the JWKS response body, through the fetch path (httpx.MockTransport answers in-process)
and `KeySet.parse`; then every usable key is looked up the way a token would ask for it.

Contract: a KeySet, or ProviderError("jwks_failed"); every held key is a public key of the
type its algorithm demands (RSA >= 2048 bits, the right curve), never one with private
members; lookups answer a key, or InvalidToken (unknown_kid) and nothing else; every log line
(skipped keys are logged) bounded and free of control characters; bounded time.
"""

from __future__ import annotations

import json
from typing import Iterator

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fuzz import contract
from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.fetch import Fetcher
from kong_oidc_py.idp.jwks import ALG_KEY_TYPE, MIN_RSA_BITS, JwksCache, KeySet

NAME = "jwks"
ANSWER = contract.CannedAnswer("application/jwk-set+json")
FETCHER = Fetcher(timeout_ms=2000)
FETCHER._client = ANSWER.client()
_PUBLIC = {"RSA": rsa.RSAPublicKey, "EC": ec.EllipticCurvePublicKey}


def _load() -> KeySet:
    return KeySet.parse(FETCHER.get_json("https://idp.example/jwks", reason="jwks_failed"))


def _named_values(body: str) -> list[str]:
    """What messages may name of a key: its kid, alg, kty, crv and use (public identifiers)."""
    try:
        doc = json.loads(body)
    except Exception:  # noqa: BLE001 - only widens what a message may name
        return []
    keys = doc.get("keys") if isinstance(doc, dict) else None
    values: list[str] = []
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, dict):
            for name in ("kid", "alg", "kty", "crv", "use"):
                value = jwk.get(name)
                values += [str(value), repr(value)]
    return values


def one_input(data: bytes) -> None:
    ANSWER.body = data
    body = contract.text(data)
    keys = contract.fetched_or_refused(_load, body, "jwks_failed", _named_values(body))
    if keys is None:
        return
    for entry in keys.entries:
        if entry.kty == "RSA":
            if not isinstance(entry.key, rsa.RSAPublicKey) or entry.key.key_size < MIN_RSA_BITS:
                raise contract.Violation("held an RSA key that is not public or too small")
        elif entry.kty == "EC":
            if not isinstance(entry.key, ec.EllipticCurvePublicKey):
                raise contract.Violation("held an EC key that is not public")
        elif not isinstance(entry.key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            raise contract.Violation("held an OKP key that is not public")
    cache = JwksCache(lambda: "", None, cache_ttl=float("inf"), max_stale=float("inf"),
                      rediscovery_lifetime=float("inf"), preloaded=keys)
    for entry in keys.entries:
        for alg in ALG_KEY_TYPE:
            try:
                key = cache.key_for(entry.kid, alg)
            except InvalidToken as err:
                if err.reason != "unknown_kid":
                    raise contract.Violation(f"lookup reason {err.reason!r}") from None
                continue
            if not any(e.key is key and e.fits(alg) for e in keys.entries):
                raise contract.Violation(f"lookup for {alg} answered a key that does not fit it")


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
