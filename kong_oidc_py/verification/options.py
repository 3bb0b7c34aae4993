"""What a Verifier checks: the options (from a PluginConfig) and the algorithm and type sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ASYMMETRIC_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
DEFAULT_ALGS = ASYMMETRIC_ALGS
DEFAULT_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt", "jwt"})
ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash")


def normalize_type(value: str) -> str:
    """RFC 7515 4.1.9: compare case-insensitively, `application/` optional when no other `/`."""
    value = value.lower()
    if value.startswith("application/") and "/" not in value[12:]:
        return value[12:]
    return value


def _audience_paths(value: Any) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return (("aud",),)
    if isinstance(value, str):
        return (tuple(value.split(".")),)
    items = list(value)
    if items and all(isinstance(i, str) for i in items):
        return (tuple(items),)  # one claim path given as its segments
    return tuple(tuple(p) for p in items) or (("aud",),)


@dataclass(frozen=True)
class VerifyOptions:
    issuer: str
    audiences: tuple[str, ...] = ()
    audience_claims: tuple[tuple[str, ...], ...] = (("aud",),)
    algorithms: frozenset[str] = DEFAULT_ALGS
    leeway: int = 0
    require_exp: bool = True
    max_token_size: int = 8192
    token_types: frozenset[str] = DEFAULT_TOKEN_TYPES
    token_type_required: bool = False
    reject_id_tokens: bool = False
    hmac_secret: bytes | None = None
    cache_ttl: int = 600
    token_cache_size: int = 10000

    @classmethod
    def from_config(cls, config: Any) -> "VerifyOptions":
        """Access-token options from a PluginConfig (option names as in docs/DESIGN.md)."""
        from kong_oidc_py.idp.discovery import split_issuer

        secret = getattr(config, "hmac_secret", None)
        return cls(
            issuer=split_issuer(config.issuer)[0],
            audiences=tuple(getattr(config, "audience_required", ()) or ()),
            audience_claims=_audience_paths(getattr(config, "audience_claim", None)),
            algorithms=frozenset(getattr(config, "signing_algs", None) or DEFAULT_ALGS),
            leeway=int(getattr(config, "leeway", 0) or 0),
            require_exp=bool(getattr(config, "require_exp", True)),
            max_token_size=int(getattr(config, "max_token_size", 8192)),
            token_types=frozenset(getattr(config, "token_types", None) or DEFAULT_TOKEN_TYPES),
            token_type_required=bool(getattr(config, "token_type_required", False)),
            reject_id_tokens=bool(getattr(config, "reject_id_tokens", False)),
            hmac_secret=secret.encode() if isinstance(secret, str) and secret else (secret or None),
            cache_ttl=int(config.cache_ttl) if getattr(config, "cache_tokens", True) else 0,
            token_cache_size=int(getattr(config, "token_cache_size", 10000)),
        )

    @classmethod
    def for_id_token(cls, config: Any) -> "VerifyOptions":
        """ID tokens (OIDC Core 3.1.3.7): audience is our client_id, typ JWT or absent, no cache
        (each is checked once, at the callback)."""
        base = cls.from_config(config)
        client_id = getattr(config, "client_id", None)
        return cls(
            issuer=base.issuer,
            audiences=(client_id,) if client_id else (),
            audience_claims=(("aud",),),
            algorithms=base.algorithms,
            leeway=base.leeway,
            require_exp=True,
            max_token_size=max(base.max_token_size, 16384),
            token_types=frozenset({"jwt"}),
            token_type_required=False,
            reject_id_tokens=False,
            hmac_secret=base.hmac_secret,
            cache_ttl=0,
            token_cache_size=1,
        )
