"""Login: the authorization request (code + PKCE) and the callback (code exchange, ID token).

Security notes (RFC 9700, RFC 7636, OIDC Core 3.1.3.7):
* state, nonce and the PKCE verifier live only in the encrypted authorization cookie;
  `state` is compared in constant time and is single-use (the entry is removed on callback);
* the ID token is verified with the same JWKS core, then iss/aud/azp/nonce/at_hash;
* after login we redirect only to a same-origin path (stored as path+query, never a URL);
* callback errors give a page, never a redirect: no loops.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from kong_oidc_py.browser.checks import at_hash, b64url as _b64url, pkce_pair
from kong_oidc_py.browser.pages import NO_STORE, page
from kong_oidc_py.browser.requests import safe_return_path, single_value
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.token_endpoint import TokenError, TokenResponse
from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.verification.verify import Claims

if TYPE_CHECKING:
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.policy import MatchedPolicy

log = logging.getLogger("kong_oidc_py")


class LoginSteps:
    """Mixed into BrowserFlow (login.py), which provides config, provider, verifiers, stores."""

    def _start_login(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy",
                     extra_cookies: list[str] | None = None) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        try:
            endpoint = self.provider.metadata()["authorization_endpoint"]
        except (ProviderError, KeyError):
            return self._page_outcome(gw, policy, "login_unavailable",
                                      *page(503, "Sign-in unavailable", "The identity provider cannot be reached. Try again later."))
        verifier, challenge = pkce_pair()
        state = AuthorizationState(
            state=_b64url(secrets.token_bytes(24)),
            nonce=_b64url(secrets.token_bytes(24)),
            code_verifier=verifier,
            original_url=safe_return_path(req.path(), req.raw_query()),
            created_at=time.time(),
        )
        set_cookies = list(extra_cookies or [])
        set_cookies += self.authorizations.push(state, parse_cookie_header(cookie_header), time.time())
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state.state,
            "nonce": state.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        sep = "&" if "?" in endpoint else "?"
        fields = gw._log_fields(None, policy.name, "redirect", reason="login_required")
        return Outcome(
            status=302, body="",
            response_headers={"Location": endpoint + sep + urlencode(params), "Set-Cookie": set_cookies, **NO_STORE},
            log=fields,
        )

    def _callback(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy") -> "Outcome":
        query = req.query()
        q = {k: single_value(v) for k, v in query.items() if isinstance(k, str)}
        cookies = parse_cookie_header(cookie_header)
        state_value = q.get("state")
        pending, clear_cookies = self.authorizations.pop(state_value, cookies, time.time()) if state_value else (None, [])
        if q.get("error"):
            error = q["error"] or "error"
            return self._page_outcome(gw, policy, "idp_error",
                                      *page(403 if error == "access_denied" else 401, "Sign-in failed",
                                             f"The identity provider answered: {error[:64]}.", "/"),
                                      set_cookies=clear_cookies)
        if pending is None:
            return self._page_outcome(gw, policy, "bad_state",
                                      *page(401, "Sign-in expired",
                                             "This sign-in link is stale or was already used. Start again.", "/"),
                                      set_cookies=clear_cookies)
        code = q.get("code")
        if not code:
            return self._page_outcome(gw, policy, "missing_code",
                                      *page(401, "Sign-in failed", "The identity provider sent no authorization code.", "/"),
                                      set_cookies=clear_cookies)
        try:
            endpoint = self.provider.metadata()["token_endpoint"]
            tokens = self.tokens.exchange_code(endpoint, code=code, redirect_uri=self.config.redirect_uri,
                                               code_verifier=pending.code_verifier)
            failing = "id_token"
            id_claims = self._verify_id_token(tokens, pending.nonce)
            failing = "access_token"
            access_claims = self._access_claims(tokens, id_claims)
        except (ProviderError, KeyError):
            return self._page_outcome(gw, policy, "token_endpoint_failed",
                                      *page(502, "Sign-in failed", "The identity provider could not complete the sign-in.", "/"),
                                      set_cookies=clear_cookies)
        except TokenError as err:
            log.info("oidc: code exchange refused: %s", err.error)
            return self._page_outcome(gw, policy, "code_exchange_refused",
                                      *page(401, "Sign-in failed", "The sign-in could not be completed. Start again.", "/"),
                                      set_cookies=clear_cookies)
        except InvalidToken as err:
            log.info("oidc: %s refused at the callback: %s %s", failing, err.reason, getattr(err, "detail", ""))
            return self._page_outcome(gw, policy, f"{failing}_{err.reason}",
                                      *page(401, "Sign-in failed", "The identity provider's answer did not verify.", "/"),
                                      set_cookies=clear_cookies)
        now = time.time()
        session = Session.new(
            subject=str(id_claims.data.get("sub", "")),
            issuer=str(id_claims.data.get("iss", "")),
            access_token=tokens.access_token,
            id_token=tokens.id_token,
            refresh_token=tokens.refresh_token,
            expires_at=self._expires_at(tokens, access_claims, now),
            now=now,
            sid=sid if isinstance(sid := id_claims.data.get("sid"), str) and sid else None,
        )
        set_cookies = clear_cookies + self.sessions.save(session, cookies, now)
        if self.sessions.revocations is not None:
            # Indexed by IdP session and user, for back-channel logout.
            self.sessions.revocations.register(session, now)
        from kong_oidc_py.gateway import Outcome

        fields = gw._log_fields(access_claims, policy.name, "login", auth_method="authorization_code")
        return Outcome(status=302, body="",
                       response_headers={"Location": pending.original_url, "Set-Cookie": set_cookies, **NO_STORE},
                       log=fields)

    def _verify_id_token(self, tokens: TokenResponse, nonce: str) -> Claims:
        if not tokens.id_token:
            raise InvalidToken("missing_id_token", "no ID token in the token response")
        claims = self.id_verifier.verify(tokens.id_token)
        data = claims.data
        aud = data.get("aud")
        audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
        if len(audiences) > 1 and data.get("azp") != self.config.client_id:
            raise InvalidToken("bad_audience", "the ID token's azp is not this client")
        got_nonce = data.get("nonce")
        if not isinstance(got_nonce, str) or not hmac.compare_digest(got_nonce.encode(), nonce.encode()):
            raise InvalidToken("bad_nonce", "the ID token's nonce does not match this login")
        expected_at_hash = data.get("at_hash")
        if expected_at_hash is not None:
            if not isinstance(expected_at_hash, str) or not hmac.compare_digest(
                    expected_at_hash.encode(), at_hash(tokens.access_token, claims.alg).encode()):
                raise InvalidToken("bad_at_hash", "the ID token's at_hash does not match the access token")
        return claims

    def _access_claims(self, tokens: TokenResponse, id_claims: Claims) -> Claims:
        """Policies apply to the access token's claims when it is a JWT we can verify."""
        try:
            return self.access_verifier.verify(tokens.access_token)
        except InvalidToken as err:
            if err.reason != "malformed":
                raise
            # An opaque access token: identity comes from the verified ID token.
            return id_claims

    @staticmethod
    def _expires_at(tokens: TokenResponse, access_claims: Claims, now: float) -> float:
        exp = access_claims.data.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            return float(exp)
        if tokens.expires_in:
            return now + tokens.expires_in
        return now + 300
