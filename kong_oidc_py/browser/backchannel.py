"""OIDC Back-Channel Logout 1.0: the IdP POSTs a logout token, we end its sessions everywhere.

The endpoint is the route path ending in `backchannel_logout_uri_suffix`, POST only. The logout
token is verified like an ID token (section 2.6): signature from the issuer's JWKS, `iss`, `aud`
naming our client_id, `iat` and `exp`, plus the logout-token rules: an `events` claim with the
back-channel-logout member holding a JSON object, `sid` or `sub`, no `nonce` (so an ID token
can never pass as a logout token), a `jti` never seen before (kept in Redis until the token
expires). Then every session of that IdP session (`sid`) or, without sid, of that user (`sub`) is
revoked through Redis, so every node refuses it on its next request.

Responses (section 2.8): 200 on success, 400 `{"error": "invalid_request", ...}` when the
request or token is refused, always `Cache-Control: no-store`. When Redis cannot be reached we
answer 503 so the IdP can retry instead of believing the sessions ended.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from kong_oidc_py.browser.session.locks import SessionStoreError
from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.verification.verify import Claims, Verifier, VerifyOptions

if TYPE_CHECKING:
    from kong_oidc_py.browser.session.revocation import Revocations
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.idp.provider import Provider
    from kong_oidc_py.policy import MatchedPolicy

log = logging.getLogger("kong_oidc_py")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_BODY = 64 * 1024
HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A jti is remembered until the token expires (plus leeway), at least a minute; tokens valid
# for more than a day are refused, so a jti is never forgotten while its token still verifies.
MIN_JTI_TTL, MAX_JTI_TTL = 60, 86400


class LogoutTokenError(Exception):
    def __init__(self, reason: str, description: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description


def logout_token_options(config: Any) -> VerifyOptions:
    """ID-token verification with the logout token's media type (section 2.4, `logout+jwt`)."""
    base = VerifyOptions.for_id_token(config)
    return VerifyOptions(**{**base.__dict__, "token_types": frozenset({"logout+jwt", "jwt"})})


class BackchannelLogout:
    def __init__(self, config: Any, provider: "Provider", revocations: "Revocations", *, clock=time.time) -> None:
        self.config = config
        self.revocations = revocations
        self.verifier = Verifier(provider, logout_token_options(config), clock=clock)
        self.clock = clock

    def handle(self, req: "RequestView", gw: "Gateway", policy: "MatchedPolicy") -> "Outcome":
        try:
            claims = self.verify(self._logout_token(req))
            if not self.revocations.first_use_of_jti(str(claims.data["iss"]), claims.data["jti"],
                                                     self._jti_ttl(claims)):
                raise LogoutTokenError("logout_token_replayed", "the logout token was already used")
            sid, sub = claims.data.get("sid"), claims.data.get("sub")
            count = self.revocations.revoke_all(str(claims.data["iss"]), sid=sid, sub=None if sid else sub)
        except LogoutTokenError as err:
            log.warning("oidc: back-channel logout refused: %s", err.reason)
            return self._answer(gw, policy, 400, err.reason,
                                {"error": "invalid_request", "error_description": err.description})
        except SessionStoreError as err:
            log.warning("oidc: back-channel logout could not reach Redis: %s", err.reason)
            return self._answer(gw, policy, 503, err.reason,
                                {"error": "temporarily_unavailable", "error_description": "try again later"})
        outcome = self._answer(gw, policy, 200, "logged_out", "")
        outcome.log["sessions_revoked"] = count
        outcome.log["by"] = "sid" if sid else "sub"
        return outcome

    # -- the request ----------------------------------------------------------------------

    def _logout_token(self, req: "RequestView") -> str:
        ctype = ",".join(req.headers.get("content-type") or []).split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise LogoutTokenError("bad_content_type", "expected application/x-www-form-urlencoded")
        body = req.body()
        if len(body) > MAX_BODY:
            raise LogoutTokenError("body_too_large", "the request body is too large")
        try:
            form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                            max_num_fields=32)
        except (UnicodeDecodeError, ValueError):
            raise LogoutTokenError("bad_form", "the request body is not a valid form") from None
        values = form.get("logout_token") or []
        if len(values) != 1 or not values[0]:
            raise LogoutTokenError("missing_logout_token", "exactly one logout_token is required")
        return values[0]

    # -- the token (section 2.6) ---------------------------------------------------------

    def verify(self, token: str) -> Claims:
        try:
            claims = self.verifier.verify(token)
        except InvalidToken as err:
            raise LogoutTokenError(f"logout_token_{err.reason}", "the logout token did not verify") from None
        data = claims.data
        iat = data.get("iat")
        if not isinstance(iat, (int, float)) or isinstance(iat, bool):
            raise LogoutTokenError("logout_token_missing_iat", "the logout token has no iat")
        events = data.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
            raise LogoutTokenError("logout_token_bad_events", "the logout token has no back-channel logout event")
        if "nonce" in data:
            raise LogoutTokenError("logout_token_has_nonce", "a logout token must not contain a nonce")
        sid, sub = data.get("sid"), data.get("sub")
        if sid is not None and (not isinstance(sid, str) or not sid):
            raise LogoutTokenError("logout_token_bad_sid", "the logout token's sid is not a string")
        if sub is not None and (not isinstance(sub, str) or not sub):
            raise LogoutTokenError("logout_token_bad_sub", "the logout token's sub is not a string")
        if not sid and not sub:
            raise LogoutTokenError("logout_token_no_subject", "the logout token has neither sid nor sub")
        exp = data.get("exp")
        if isinstance(exp, (int, float)) and exp - self.clock() > MAX_JTI_TTL:
            # Its jti could not be remembered for as long as it stays valid: a replay window.
            raise LogoutTokenError("logout_token_lifetime_too_long", "the logout token expires too far in the future")
        jti = data.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise LogoutTokenError("logout_token_missing_jti", "the logout token has no jti")
        return claims

    def _jti_ttl(self, claims: Claims) -> int:
        exp = claims.data.get("exp")
        left = int(exp - self.clock()) + int(getattr(self.config, "leeway", 0) or 0) if isinstance(exp, (int, float)) else MAX_JTI_TTL
        return max(MIN_JTI_TTL, min(MAX_JTI_TTL, left))

    def _answer(self, gw: "Gateway", policy: "MatchedPolicy", status: int, reason: str, body: Any) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        headers = dict(HEADERS)
        if isinstance(body, dict):
            headers["Content-Type"] = "application/json"
        return Outcome(status=status, body=body, response_headers=headers,
                       log=gw._log_fields(None, policy.name, "backchannel_logout", reason=reason))
