"""The IdP's signing keys: parsing (PyJWT + cryptography) and lookup.

Parsing refuses anything a verifier must not trust (RFC 8725 3.1, RFC 7517): encryption keys,
keys whose key_ops exclude "verify", symmetric keys, keys carrying private parts, RSA keys
under 2048 bits, curves that do not match their algorithm. Each algorithm is bound to one key
type, so a token can never pick how its own signature is checked.

Every usable key carries its RFC 7638 thumbprint: a verification remembers (kid, thumbprint) of
the key it used, so a cached result can be dropped when a later key set no longer offers that
key for that token (jwks.py, token_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from kong_oidc_py.errors import ProviderError

log = logging.getLogger("kong_oidc_py")

MIN_RSA_BITS = 2048

# alg -> (kty, allowed curves or None). HS* is absent on purpose: HMAC keys never come from a JWKS.
ALG_KEY_TYPE: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

_EC_CURVES = {"P-256": ("ES256", "secp256r1"), "P-384": ("ES384", "secp384r1"), "P-521": ("ES512", "secp521r1")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 3.2: the required members per key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True)
class JwkEntry:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key
    thumbprint: str = ""  # RFC 7638, SHA-256, base64url

    def fits_type(self, alg: str) -> bool:
        kty, curves = ALG_KEY_TYPE[alg]
        return self.kty == kty and (curves is None or self.crv in curves)

    def fits(self, alg: str) -> bool:
        return self.fits_type(alg) and (self.alg is None or self.alg == alg)

    def describe(self) -> str:
        shape = self.kty if self.crv is None else f"{self.kty}/{self.crv}"
        return f"{shape} key kid={_shown(self.kid)} thumbprint={self.thumbprint}"


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK whose required members are strings."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def check_jwk(jwk: Any) -> JwkEntry | str:
    """One usable verification key, or why it must not be used."""
    if not isinstance(jwk, dict):
        return "not a JSON object"
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    crv = jwk.get("crv")
    if kid is not None and not isinstance(kid, str):
        return "kid is not a string"
    if "use" in jwk and jwk["use"] != "sig":
        return "use is not sig"
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            return "key_ops does not allow verify"
    private = _PRIVATE_MEMBERS.intersection(jwk)
    if private:
        # A published key set with private parts is an IdP misconfiguration; using the public
        # half would hide it, so the key is refused.
        return "the key carries private members " + ",".join(sorted(private))
    if kty == "RSA":
        parse_alg = "RS256"
    elif kty == "EC" and crv in _EC_CURVES:
        parse_alg = _EC_CURVES[crv][0]
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        parse_alg = "EdDSA"
    else:
        return f"unsupported key type {str(kty)[:20]!r}/{str(crv)[:20]!r}"
    if alg is not None:
        if not isinstance(alg, str) or alg not in ALG_KEY_TYPE:
            return f"unsupported alg {str(alg)[:20]!r}"
    try:
        key = jwt.PyJWK(jwk, algorithm=parse_alg).key
        thumbprint = jwk_thumbprint(jwk)
    except Exception as exc:  # noqa: BLE001 - PyJWT and cryptography raise several types
        return f"unparseable key ({type(exc).__name__})"
    if kty == "RSA":
        if not isinstance(key, rsa.RSAPublicKey):
            return "not an RSA public key"
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}"
    elif kty == "EC":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _EC_CURVES[crv][1]:
            return "EC key does not match its crv"
    elif crv == "Ed25519" and not isinstance(key, ed25519.Ed25519PublicKey):
        return "not an Ed25519 public key"
    elif crv == "Ed448" and not isinstance(key, ed448.Ed448PublicKey):
        return "not an Ed448 public key"
    entry = JwkEntry(kid=kid, kty=kty, crv=crv if kty != "RSA" else None, alg=alg, key=key, thumbprint=thumbprint)
    if alg is not None and not entry.fits_type(alg):
        return f"alg {alg} does not match the key type"
    return entry


# Keys an IdP publishes on purpose for other uses (Keycloak lists its encryption key): expected.
_EXPECTED = ("use is not sig", "key_ops does not allow verify")


def _ignored(jwk: Any, why: str) -> str:
    kid = jwk.get("kid") if isinstance(jwk, dict) else None
    return f"kid={_shown(kid if isinstance(kid, str) else None)}: {why}"


def log_ignored(ignored: tuple[str, ...], issuer: str) -> None:
    """Say why keys were skipped: at info for keys meant for other uses, at warning otherwise."""
    for item in ignored:
        expected = item.endswith(_EXPECTED)
        log.log(logging.INFO if expected else logging.WARNING, "oidc: ignoring JWKS key of %s %s", issuer, item)


def parse_jwk(jwk: Any) -> JwkEntry | None:
    """One usable verification key, or None (logged) when the key must not be used."""
    result = check_jwk(jwk)
    if isinstance(result, str):
        log.warning("oidc: ignoring JWKS key %s", _ignored(jwk, result))
        return None
    return result


class KeySet:
    """An immutable, indexed set of usable keys: lookups are one dict access."""

    def __init__(self, entries: list[JwkEntry], ignored: tuple[str, ...] = ()) -> None:
        self.entries = tuple(entries)
        self.ignored = ignored  # why each skipped key was skipped (logged by the JWKS cache on change)
        index: dict[tuple[str | None, str], JwkEntry] = {}
        for alg in ALG_KEY_TYPE:
            for entry in self.entries:
                if entry.kid is not None and entry.fits(alg):
                    index.setdefault((entry.kid, alg), entry)
            # Without a kid the choice must be unambiguous: exactly one key of this type.
            same_type = [e for e in self.entries if e.fits_type(alg)]
            if len(same_type) == 1 and same_type[0].fits(alg):
                index[(None, alg)] = same_type[0]
        self._index = index
        # What a verification depends on: which key each (kid, alg) resolves to.
        self.identity = frozenset((k, v.thumbprint) for k, v in index.items())

    @classmethod
    def parse(cls, doc: Any) -> "KeySet":
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ProviderError("jwks_failed", "the JWKS has no keys array", cause="no_usable_key")
        entries: list[JwkEntry] = []
        ignored: list[str] = []
        seen: set[tuple[str | None, str, str | None]] = set()
        for jwk in doc["keys"]:
            result = check_jwk(jwk)
            if isinstance(result, str):
                ignored.append(_ignored(jwk, result))
                continue
            ident = (result.kid, result.kty, result.crv)
            if ident in seen:
                ignored.append(_ignored(jwk, "duplicate kid for this key type"))
                continue
            seen.add(ident)
            entries.append(result)
        if not entries:
            why = "; ".join(ignored[:5]) + ("; ..." if len(ignored) > 5 else "")
            raise ProviderError(
                "jwks_failed",
                f"the JWKS holds no usable signing key ({len(doc['keys'])} listed"
                + (f", ignored: {why})" if why else ")"),
                cause="no_usable_key",
            )
        return cls(entries, tuple(ignored))

    def find(self, kid: str | None, alg: str) -> Any | None:
        entry = self._index.get((kid, alg))
        return entry.key if entry is not None else None

    def find_entry(self, kid: str | None, alg: str) -> JwkEntry | None:
        return self._index.get((kid, alg))

    def __len__(self) -> int:
        return len(self.entries)


def _shown(kid: str | None) -> str:
    # kids are public identifiers, but a hostile token can make them long or unprintable.
    if kid is None:
        return "None"
    return repr(kid[:64])
