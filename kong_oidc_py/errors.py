"""Exception hierarchy, reason codes and RFC 6750 rendering.

`reason` is a stable code for logs and tests; `description` is what a client may see and never
holds any part of a token; `detail` is for our logs only (which check failed, expected vs got
issuer, ...), still never token content beyond kid/alg/iss/aud values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# InvalidToken reasons (docs/DESIGN.md). Other modules may add their own codes (login uses
# e.g. bad_nonce); these are the ones verify.py and provider.py produce.
TOKEN_REASONS = frozenset(
    {
        "malformed",
        "token_too_large",
        "alg_not_allowed",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "iat_in_future",
        "missing_claim",
        "bad_issuer",
        "bad_audience",
        "bad_type",
        "crit_unsupported",
        "keys_unavailable",
    }
)
PROVIDER_REASONS = frozenset({"discovery_failed", "jwks_failed", "provider_unavailable"})
# Why the IdP failed (ProviderError.cause), as logged by idp/health.py and named in the
# keys_unavailable detail. Stable codes: operators and `explain` match on them.
PROVIDER_CAUSES = frozenset(
    {
        "unreachable",  # connection refused, DNS failure, network unreachable, reset
        "timeout",  # no complete answer within `timeout`
        "tls",  # certificate or handshake failure
        "http_status",  # any status but 200 (the code is in the description)
        "too_large",  # body over the 1 MiB limit
        "bad_json",  # not a UTF-8 JSON object
        "issuer_mismatch",  # discovery `issuer` differs from the configured issuer
        "bad_metadata",  # metadata without jwks_uri, or with an endpoint that breaks the https rule
        "bad_url",  # a URL we were to fetch breaks the https rule or is not a plain URL
        "no_usable_key",  # the JWKS has no key this plugin may use
        "error",  # anything else
    }
)
SCOPE_REASONS = frozenset({"insufficient_scope", "missing_groups", "missing_roles", "claim_mismatch"})


class OIDCError(Exception):
    """Base class: `.reason` (stable code), `.description` (client-safe), `.detail` (log-only)."""

    def __init__(self, reason: str, description: str = "", detail: str | None = None) -> None:
        super().__init__(description or reason)
        self.reason = reason
        self.description = description or reason
        self.detail = detail


class ConfigError(OIDCError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__("invalid_config", message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ProviderError(OIDCError):
    """The IdP failed: network, status, size, bad JSON or bad metadata.

    `cause` is one of PROVIDER_CAUSES; `description` says it for humans (URLs, status codes and
    issuer values are not secret; response bodies are never quoted).
    """

    def __init__(self, reason: str, description: str = "", detail: str | None = None, *, cause: str = "error") -> None:
        super().__init__(reason, description, detail)
        self.cause = cause


class AuthError(OIDCError):
    status: int = 401
    error: str | None = None
    # RFC 9449 7.1: answered with a DPoP challenge (set on errors of DPoP requests/routes).
    dpop_challenge: bool = False


class MissingToken(AuthError):
    status = 401
    error = None

    def __init__(
        self,
        reason: str = "missing_token",
        description: str = "No access token was provided",
        detail: str | None = None,
    ) -> None:
        super().__init__(reason, description, detail)


class InvalidRequest(AuthError):
    status = 400
    error = "invalid_request"


class InvalidToken(AuthError):
    status = 401
    error = "invalid_token"


class InsufficientScope(AuthError):
    status = 403
    error = "insufficient_scope"

    def __init__(
        self,
        reason: str = "insufficient_scope",
        description: str = "The access token does not grant access to this resource",
        detail: str | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(reason, description, detail)
        self.scope = scope


class InvalidDpopProof(AuthError):
    """RFC 9449 7.1: the DPoP proof is missing or fails a check (error invalid_dpop_proof)."""

    status = 401
    error = "invalid_dpop_proof"
    dpop_challenge = True

    def __init__(self, reason: str, description: str = "The DPoP proof is invalid", detail: str | None = None,
                 *, error: str | None = None) -> None:
        super().__init__(reason, description, detail)
        if error is not None:
            self.error = error


class UseDpopNonce(AuthError):
    """RFC 9449 9: the proof must carry the server nonce sent in the DPoP-Nonce header."""

    status = 401
    error = "use_dpop_nonce"
    dpop_challenge = True

    def __init__(self, nonce: str) -> None:
        super().__init__("dpop_nonce_required", "Resource server requires nonce in DPoP proof",
                         "proof without the current server nonce")
        self.nonce = nonce


class InsufficientUserAuthentication(AuthError):
    """RFC 9470 3: the token's authentication (acr, amr, auth_time) is too weak or too old."""

    status = 401
    error = "insufficient_user_authentication"

    def __init__(self, reason: str, description: str, detail: str | None = None, *,
                 acr_values: str | None = None, max_age: int | None = None) -> None:
        super().__init__(reason, description, detail)
        self.acr_values = acr_values
        self.max_age = max_age


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict = field(default_factory=dict)


def _quoted_text(value: str) -> str:
    """Map to the RFC 6750 section 3 charset (%x20-21 / %x23-5B / %x5D-7E).

    `"` and `\\` would end or escape the quoted-string, controls could split the header and
    non-ASCII has no defined encoding there, so each becomes a harmless stand-in.
    """
    out = []
    for ch in value:
        if ch == '"':
            out.append("'")
        elif ch == "\\":
            out.append("/")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _scope_text(value: str) -> str:
    """RFC 6750 3: scope-tokens (%x21 / %x23-5B / %x5D-7E) separated by single spaces."""
    tokens = []
    for word in value.split():
        cleaned = "".join(ch for ch in word if "!" <= ch <= "~" and ch not in '"\\')
        if cleaned:
            tokens.append(cleaned)
    return " ".join(tokens)


def render_error(err: AuthError, realm: str, *, dpop_algs: str | None = None) -> HttpResponse:
    """The RFC 6750 response for `err`: status, WWW-Authenticate and a JSON body. A DPoP error
    (or any error on a DPoP request) gets the RFC 9449 `DPoP` challenge with `algs`; a step-up
    error the RFC 9470 `acr_values` / `max_age` parameters."""
    description = _quoted_text(err.description)
    params = [f'realm="{_quoted_text(realm)}"']
    # RFC 6750 3.1: a request without any token gets no error code.
    if err.error is not None:
        params.append(f'error="{err.error}"')
        if description:
            params.append(f'error_description="{description}"')
        scope = getattr(err, "scope", None)
        if isinstance(err, InsufficientScope) and scope:
            cleaned = _scope_text(scope)
            if cleaned:
                params.append(f'scope="{cleaned}"')
        if isinstance(err, InsufficientUserAuthentication):
            if err.acr_values:
                params.append(f'acr_values="{_scope_text(err.acr_values)}"')
            if err.max_age is not None:
                params.append(f"max_age={int(err.max_age)}")
    headers = {}
    if err.dpop_challenge:
        if dpop_algs:
            params.append(f'algs="{_scope_text(dpop_algs)}"')
        header = "DPoP " + ", ".join(params)
        if isinstance(err, UseDpopNonce):
            headers["DPoP-Nonce"] = err.nonce
    else:
        header = "Bearer " + ", ".join(params)
    headers["WWW-Authenticate"] = header
    return HttpResponse(status=err.status, headers=headers, body={"message": description})
