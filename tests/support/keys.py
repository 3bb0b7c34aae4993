"""Test keys and token minting, including tokens no honest issuer would produce.

`sign()` takes the header and payload as given (dicts, or raw bytes for malformed cases) and
signs exactly what it is handed, so tests can build any header/claim combination.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as _hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://idp.example.com/realms/test"

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {
    "P-256": (ec.SECP256R1, "ES256", 32),
    "P-384": (ec.SECP384R1, "ES384", 48),
    "P-521": (ec.SECP521R1, "ES512", 66),
}
_RSA_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _uint(n: int, size: int | None = None) -> str:
    size = size or max(1, (n.bit_length() + 7) // 8)
    return b64url(n.to_bytes(size, "big"))


@dataclass
class TestKey:
    kid: str | None
    alg: str
    private: Any
    extra_jwk: dict = field(default_factory=dict)

    __test__ = False  # not a pytest class

    def public_jwk(self, *, include_alg: bool = True, **overrides: Any) -> dict:
        jwk = _public_jwk(self.private)
        if self.kid is not None:
            jwk["kid"] = self.kid
        if include_alg:
            jwk["alg"] = self.alg
        jwk["use"] = "sig"
        jwk.update(self.extra_jwk)
        jwk.update(overrides)
        return {k: v for k, v in jwk.items() if v is not None}

    def private_jwk(self) -> dict:
        """The JWK with its private members: what a JWKS must never publish."""
        jwk = self.public_jwk()
        priv = self.private
        if isinstance(priv, rsa.RSAPrivateKey):
            n = priv.private_numbers()
            jwk.update(d=_uint(n.d), p=_uint(n.p), q=_uint(n.q), dp=_uint(n.dmp1), dq=_uint(n.dmq1), qi=_uint(n.iqmp))
        elif isinstance(priv, ec.EllipticCurvePrivateKey):
            size = (priv.curve.key_size + 7) // 8
            jwk["d"] = _uint(priv.private_numbers().private_value, size)
        else:
            from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

            jwk["d"] = b64url(priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
        return jwk

    def sign(self, payload: dict | bytes, header: dict | bytes | None = None, *, alg: str | None = None) -> str:
        alg = alg or self.alg
        if header is None:
            header = {"alg": alg, "typ": "at+jwt"}
            if self.kid is not None:
                header["kid"] = self.kid
        return sign_raw(self.private, alg, encode_part(header), encode_part(payload))


def _public_jwk(private: Any) -> dict:
    pub = private.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        return {"kty": "RSA", "n": _uint(n.n), "e": _uint(n.e)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        size = (pub.curve.key_size + 7) // 8
        n = pub.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint(n.x, size), "y": _uint(n.y, size)}
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    crv = "Ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "x": b64url(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))}


def encode_part(part: dict | bytes | str) -> str:
    if isinstance(part, dict):
        return b64url(json.dumps(part, separators=(",", ":")).encode())
    if isinstance(part, bytes):
        return b64url(part)
    return part  # already encoded (lets tests break the base64 itself)


def sign_raw(private: Any, alg: str, header_b64: str, payload_b64: str) -> str:
    msg = f"{header_b64}.{payload_b64}".encode("ascii")
    return f"{header_b64}.{payload_b64}.{b64url(signature(private, alg, msg))}"


def signature(private: Any, alg: str, msg: bytes) -> bytes:
    if alg.startswith("HS"):
        return _hmac.new(private, msg, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return private.sign(msg, padding.PKCS1v15(), _HASHES[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASHES[alg[2:]]
        return private.sign(msg, padding.PSS(mgf=padding.MGF1(h()), salt_length=h().digest_size), h())
    if alg.startswith("ES"):
        der = private.sign(msg, ec.ECDSA(_HASHES[alg[2:]]()))
        r, s = decode_dss_signature(der)
        size = (private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return private.sign(msg)
    raise ValueError(f"cannot sign {alg}")


def rsa_key(kid: str | None = "rsa-1", alg: str = "RS256", bits: int = 2048, *, fresh: bool = False) -> TestKey:
    # RSA generation is slow; tests share one private key per size unless they need distinct ones.
    if fresh or bits not in _RSA_CACHE:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        if fresh:
            return TestKey(kid, alg, private)
        _RSA_CACHE[bits] = private
    return TestKey(kid, alg, _RSA_CACHE[bits])


def ec_key(crv: str = "P-256", kid: str | None = None) -> TestKey:
    curve, alg, _ = _CURVES[crv]
    return TestKey(kid if kid is not None else f"ec-{crv}", alg, ec.generate_private_key(curve()))


def ed25519_key(kid: str | None = "ed-1") -> TestKey:
    return TestKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def ed448_key(kid: str | None = "ed448-1") -> TestKey:
    return TestKey(kid, "EdDSA", ed448.Ed448PrivateKey.generate())


def jwks(*keys: TestKey, **overrides: Any) -> dict:
    return {"keys": [k.public_jwk(**overrides) for k in keys]}


def claims(issuer: str = ISSUER, *, lifetime: int = 300, now: float | None = None, **extra: Any) -> dict:
    now = int(time.time() if now is None else now)
    data: dict[str, Any] = {"iss": issuer, "sub": "user-1", "aud": "api", "iat": now, "exp": now + lifetime}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}
