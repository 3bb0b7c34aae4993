"""Several trusted issuers per instance: which issuer's keys and rules a JWT is checked with.

The token's `iss` is read before anything is verified, so it is attacker-chosen: it only
selects among issuers the configuration already trusts (the plugin-level `issuer` plus each
`issuers[]` entry, tenant templates expanded over their allow-list at config time). An `iss`
on no list is refused at once, with no network call: a token can never make the plugin fetch
from a URL it names. The chosen issuer's Verifier then checks everything, `iss` included.

Each extra issuer gets its own Provider (discovery + keys, shared process-wide like the main
one), created on the first token that names it, and its own audience and claim-path settings
where configured (null inherits the plugin-level value).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

from kong_oidc_py.config import ClaimPath
from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.discovery import split_issuer
from kong_oidc_py.idp.fetch import _DECODER
from kong_oidc_py.verification.verify import Verifier, VerifyOptions, _b64decode


@dataclass(frozen=True)
class ClaimPaths:
    """Where one issuer puts scopes, groups and roles (requirements and logs read these)."""

    scopes: tuple[ClaimPath, ...]
    groups: tuple[ClaimPath, ...]
    roles: tuple[ClaimPath, ...]


class _Entry:
    __slots__ = ("issuer", "settings", "options", "paths", "verifier")

    def __init__(self, issuer: str, settings: Any, options: VerifyOptions, paths: ClaimPaths | None) -> None:
        self.issuer = issuer
        self.settings = settings  # ProviderSettings for this issuer
        self.options = options
        self.paths = paths
        self.verifier: Verifier | None = None


def peek_issuer(token: str, max_size: int) -> str | None:
    """The unverified `iss` of a JWS-shaped token, or None when it has none we can read (the
    main verifier then refuses the token for what it is: malformed, too large...)."""
    if len(token) > max_size:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = _DECODER.decode(_b64decode(parts[1].encode("ascii")).decode("utf-8"))
    except Exception:  # noqa: BLE001 - hostile input: the verifier will name the problem
        return None
    iss = payload.get("iss") if type(payload) is dict else None
    return iss if type(iss) is str else None


class IssuerSet:
    def __init__(self, main: Verifier, entries: list[_Entry], provider_factory: Callable[[str, Any], Any]) -> None:
        self.main = main
        self._entries = {e.issuer: e for e in entries}
        self._factory = provider_factory
        self._lock = threading.Lock()
        self.multi = bool(entries)

    @classmethod
    def from_config(cls, config: Any, main: Verifier, provider_factory: Callable[[str, Any], Any]) -> "IssuerSet":
        from kong_oidc_py.idp.provider import ProviderSettings
        from kong_oidc_py.verification.options import _audience_paths

        base_settings = ProviderSettings.from_config(config)
        entries = []
        for item in getattr(config, "issuers", ()):
            exact = split_issuer(item.issuer)[0]
            options = replace(
                main.options,
                issuer=exact,
                audiences=main.options.audiences if item.audience_required is None else tuple(item.audience_required),
                audience_claims=main.options.audience_claims if item.audience_claim is None
                else _audience_paths(item.audience_claim),
            )
            paths = None
            if item.scopes_claim or item.groups_claim or item.roles_claim:
                paths = ClaimPaths(
                    scopes=(item.scopes_claim,) if item.scopes_claim else config.scopes_claim_paths,
                    groups=(item.groups_claim,) if item.groups_claim else config.groups_claim_paths,
                    roles=(item.roles_claim,) if item.roles_claim else config.roles_claim_paths,
                )
            entries.append(_Entry(exact, replace(base_settings, issuer=item.issuer), options, paths))
        return cls(main, entries, provider_factory)

    @property
    def issuers(self) -> tuple[str, ...]:
        return (self.main.options.issuer, *self._entries)

    def select(self, token: str) -> tuple[Verifier, ClaimPaths | None]:
        """The Verifier (and claim paths, None = plugin-level) for this token's issuer."""
        if not self.multi:
            return self.main, None
        iss = peek_issuer(token, self.main.options.max_token_size)
        if iss is None or iss == self.main.options.issuer:
            return self.main, None
        entry = self._entries.get(iss)
        if entry is None:
            raise InvalidToken("bad_issuer", "The token was issued by an untrusted issuer",
                               f"iss {iss[:200]!r} is not a trusted issuer (no keys fetched)")
        verifier = entry.verifier
        if verifier is None:
            with self._lock:
                verifier = entry.verifier
                if verifier is None:
                    provider = self._factory(entry.settings.issuer, entry.settings)
                    verifier = entry.verifier = Verifier(provider, entry.options)
        return verifier, entry.paths
