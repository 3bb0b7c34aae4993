"""OIDC and PKCE computations: PKCE pairs, at_hash/c_hash, when to refresh a token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

# Refresh this long before the access token expires, so a request never carries a token that
# expires on its way upstream.
REFRESH_MARGIN = 10


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    verifier = _b64url(secrets.token_bytes(32))  # 43 chars, RFC 7636 4.1
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def _token_lifetime(token: str) -> int | None:
    """exp - iat of a JWT access token we stored ourselves (sealed in the session), used only to
    pick the refresh margin; None for opaque tokens."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp, iat = data.get("exp"), data.get("iat")
    except (IndexError, ValueError, TypeError, AttributeError):
        return None
    if isinstance(exp, (int, float)) and isinstance(iat, (int, float)) and not isinstance(exp, bool) and not isinstance(iat, bool):
        return int(exp - iat)
    return None


def refresh_due(access_token: str, expires_at: float, now: float) -> bool:
    """Refresh REFRESH_MARGIN seconds before expiry, or a quarter of the token's lifetime for
    short-lived tokens (a 4 s token is not refreshed on every request)."""
    lifetime = _token_lifetime(access_token)
    margin = REFRESH_MARGIN if lifetime is None else max(0, min(REFRESH_MARGIN, lifetime // 4))
    return expires_at - margin <= now


def half_hash(value: str, alg: str) -> str:
    """OIDC Core 3.1.3.6 / 3.3.2.11: left half of the hash of `value` with the hash of the ID
    token's alg, base64url (at_hash of an access token, c_hash of a code)."""
    if alg.startswith("EdDSA"):
        digest = hashlib.sha512(value.encode()).digest()
    else:
        bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(alg[-3:], hashlib.sha256)
        digest = bits(value.encode()).digest()
    return _b64url(digest[: len(digest) // 2])


def at_hash(access_token: str, alg: str) -> str:
    return half_hash(access_token, alg)


def b64url(raw: bytes) -> str:
    return _b64url(raw)
