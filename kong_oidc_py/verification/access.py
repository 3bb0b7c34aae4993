"""Which check an access token gets: local JWT verification or RFC 7662 introspection.

A token that is not shaped like a JWS (three dot-separated segments) cannot be verified
locally, so with `introspection` enabled it goes to the IdP; a JWT goes to the IdP too when
`introspect_jwt_tokens` is set or `bearer` (local verification) is not enabled. Without
introspection every token is verified locally (an opaque one fails as `malformed`).
"""

from __future__ import annotations

from typing import Any

from kong_oidc_py.verification.introspection import Introspector
from kong_oidc_py.verification.issuers import ClaimPaths, IssuerSet
from kong_oidc_py.verification.verify import Claims, Verifier


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class AccessTokens:
    def __init__(self, verifier: Verifier, introspector: Introspector | None, *, introspect_jwts: bool,
                 issuers: IssuerSet | None = None) -> None:
        self.verifier = verifier
        self.introspector = introspector
        self.introspect_jwts = introspect_jwts
        self.issuers = issuers if issuers is not None and issuers.multi else None

    @classmethod
    def from_config(cls, config: Any, provider: Any, verifier: Verifier,
                    provider_factory: Any = None) -> "AccessTokens":
        introspector = None
        if "introspection" in config.auth_methods:
            from kong_oidc_py.verification.introspection import IntrospectionOptions

            introspector = Introspector(provider, verifier, IntrospectionOptions.from_config(config))
        introspect_jwts = bool(config.introspect_jwt_tokens) or "bearer" not in config.auth_methods
        issuers = None
        if config.issuers:
            if provider_factory is None:
                from kong_oidc_py.idp.provider import get_provider as provider_factory
            issuers = IssuerSet.from_config(config, verifier, provider_factory)
        return cls(verifier, introspector, introspect_jwts=introspect_jwts, issuers=issuers)

    def route(self, token: str) -> tuple[str, Verifier | None, ClaimPaths | None]:
        """Which check `token` gets: ("introspection", None, None) or ("bearer", the verifier of
        its issuer, claim paths or None for the plugin-level ones); InvalidToken for an issuer
        not on the list."""
        if self.introspector is not None and (self.introspect_jwts or not looks_like_jwt(token)):
            return "introspection", None, None
        if self.issuers is not None:
            verifier, paths = self.issuers.select(token)
            return "bearer", verifier, paths
        return "bearer", self.verifier, None

    def check(self, token: str) -> tuple[Claims, str, ClaimPaths | None]:
        """(claims, how, claim paths) with how = "bearer" or "introspection" and claim paths
        None for the plugin-level ones; InvalidToken otherwise."""
        how, verifier, paths = self.route(token)
        if verifier is None:
            assert self.introspector is not None
            return self.introspector.introspect(token), how, None
        return verifier.verify(token), how, paths
