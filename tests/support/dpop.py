"""DPoP proofs for tests (RFC 9449 4.2), including ones no honest client would send."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from tests.support.keys import TestKey, b64url


def thumbprint(jwk: dict) -> str:
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"
    return b64url(hashlib.sha256(canonical.encode()).digest())


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def proof(key: TestKey, method: str, url: str, token: str | None = None, *, jti: str | None = None,
          iat: float | None = None, nonce: str | None = None, typ: str = "dpop+jwt", alg: str | None = None,
          jwk: dict | None = None, drop: tuple[str, ...] = (), **extra: Any) -> str:
    payload: dict[str, Any] = {"jti": jti or uuid.uuid4().hex, "htm": method, "htu": url,
                               "iat": int(time.time()) if iat is None else iat}
    if token is not None:
        payload["ath"] = ath(token)
    if nonce is not None:
        payload["nonce"] = nonce
    payload.update(extra)
    for name in drop:
        payload.pop(name, None)
    public = jwk if jwk is not None else {k: v for k, v in key.public_jwk().items() if k not in ("kid", "use", "alg")}
    header = {"typ": typ, "alg": alg or key.alg, "jwk": public}
    return key.sign(payload, header, alg=alg or key.alg)
