"""Signature checks per JWS algorithm (RFC 7518) on `cryptography` keys.

`VERIFY[alg](key, signature, signing_input)` raises InvalidSignature unless the signature is
valid. Called directly, without PyJWT, because this is the hot part of a first-sight token.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


# alg -> verify(key, signature, signing_input); raises InvalidSignature.
def _rsa_pkcs1(hash_cls: type) -> Callable[[Any, bytes, bytes], None]:
    pad, digest = padding.PKCS1v15(), hash_cls()

    def check(key: Any, sig: bytes, msg: bytes) -> None:
        key.verify(sig, msg, pad, digest)

    return check


def _rsa_pss(hash_cls: type) -> Callable[[Any, bytes, bytes], None]:
    # RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash output.
    digest = hash_cls()
    pad = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=digest.digest_size)

    def check(key: Any, sig: bytes, msg: bytes) -> None:
        key.verify(sig, msg, pad, digest)

    return check


def _ecdsa(hash_cls: type, size: int) -> Callable[[Any, bytes, bytes], None]:
    algorithm = ECDSA(hash_cls())

    def check(key: Any, sig: bytes, msg: bytes) -> None:
        # RFC 7518 3.4: r || s, each exactly the coordinate size; DER would be a different token.
        if len(sig) != 2 * size:
            raise InvalidSignature()
        der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
        key.verify(der, msg, algorithm)

    return check


def _eddsa(key: Any, sig: bytes, msg: bytes) -> None:
    key.verify(sig, msg)


def _hmac(name: str) -> Callable[[Any, bytes, bytes], None]:
    def check(secret: bytes, sig: bytes, msg: bytes) -> None:
        if not hmac.compare_digest(hmac.digest(secret, msg, name), sig):
            raise InvalidSignature()

    return check


VERIFY: dict[str, Callable[[Any, bytes, bytes], None]] = {
    "RS256": _rsa_pkcs1(hashes.SHA256),
    "RS384": _rsa_pkcs1(hashes.SHA384),
    "RS512": _rsa_pkcs1(hashes.SHA512),
    "PS256": _rsa_pss(hashes.SHA256),
    "PS384": _rsa_pss(hashes.SHA384),
    "PS512": _rsa_pss(hashes.SHA512),
    "ES256": _ecdsa(hashes.SHA256, 32),
    "ES384": _ecdsa(hashes.SHA384, 48),
    "ES512": _ecdsa(hashes.SHA512, 66),
    "EdDSA": _eddsa,
    "HS256": _hmac("sha256"),
    "HS384": _hmac("sha384"),
    "HS512": _hmac("sha512"),
}
