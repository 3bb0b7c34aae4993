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
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode, urlsplit

from kong_oidc_py.browser.authz_response import (
    check_front_channel_id_token,
    check_id_claims,
    response_params,
    same_subject,
)
from kong_oidc_py.browser.checks import at_hash, b64url as _b64url, pkce_pair
from kong_oidc_py.browser.pages import NO_STORE, page
from kong_oidc_py.browser.requests import safe_return_path
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.step_up import acr_delivered
from kong_oidc_py.browser.token_endpoint import TokenError, TokenResponse
from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.verification.verify import Claims

if TYPE_CHECKING:
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.policy import MatchedPolicy

log = logging.getLogger("kong_oidc_py")

# RFC 6749 A.11: code = 1*VSCHAR
_VSCHARS = re.compile(r"[\x20-\x7e]+")
# The error codes an authorization response may carry: RFC 6749 4.1.2.1, OIDC Core 3.1.2.6, RFC 9126.
AUTHORIZATION_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
    "server_error", "temporarily_unavailable", "interaction_required", "login_required",
    "account_selection_required", "consent_required", "invalid_request_uri", "invalid_request_object",
    "request_not_supported", "request_uri_not_supported", "registration_not_supported",
})
_WARNED_ERRORS: set[str] = set()  # bounded by AUTHORIZATION_ERRORS + 1


class LoginSteps:
    """Mixed into BrowserFlow (login.py), which provides config, provider, verifiers, stores."""

    def _start_login(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy",
                     extra_cookies: list[str] | None = None, extra_params: dict[str, str] | None = None) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        try:
            endpoint = self.provider.metadata()["authorization_endpoint"]
        except (ProviderError, KeyError):
            return self._page_outcome(gw, policy, "login_unavailable",
                                      *page(503, "Sign-in unavailable", "The identity provider cannot be reached. Try again later."))
        verifier, challenge = pkce_pair()
        if extra_params is None and policy.requirement.acr:
            # First login on a step-up route: ask for the level at once, not after a round trip.
            extra_params = {"acr_values": " ".join(policy.requirement.acr)}
        state = AuthorizationState(
            state=_b64url(secrets.token_bytes(24)),
            nonce=_b64url(secrets.token_bytes(24)),
            code_verifier=verifier,
            original_url=safe_return_path(req.path(), req.raw_query()),
            created_at=time.time(),
            acr_values=(extra_params or {}).get("acr_values", ""),
        )
        self._warn_host_mismatch(req)
        set_cookies = list(extra_cookies or [])
        set_cookies += self.authorizations.push(state, parse_cookie_header(cookie_header), time.time())
        params = {
            "response_type": " ".join(self.config.response_type),
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state.state,
            "nonce": state.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **(extra_params or {}),
        }
        if self.config.response_mode != "query":
            params["response_mode"] = self.config.response_mode
        if self.config.require_pushed_authorization_requests:
            pushed = self._push_request(params)
            if pushed is None:
                return self._page_outcome(gw, policy, "par_failed",
                                          *page(503, "Sign-in unavailable", "The sign-in cannot be started right now. Try again later."))
            params = pushed
        sep = "&" if "?" in endpoint else "?"
        fields = gw._log_fields(None, policy.name, "redirect", reason="login_required")
        return Outcome(
            status=302, body="",
            response_headers={"Location": endpoint + sep + urlencode(params), "Set-Cookie": set_cookies, **NO_STORE},
            log=fields,
        )

    def _push_request(self, params: dict[str, str]) -> dict[str, str] | None:
        """RFC 9126: the parameters go to the IdP directly; the browser carries only client_id and
        request_uri. None (logged) when the IdP has no PAR endpoint or refuses."""
        endpoint = self.provider.metadata().get("pushed_authorization_request_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            log.error("oidc: require_pushed_authorization_requests is on but the IdP advertises no "
                      "pushed_authorization_request_endpoint: logins fail until it does or the option is off")
            return None
        try:
            request_uri = self.tokens.push_authorization_request(endpoint, params)
        except (ProviderError, TokenError) as err:
            log.warning("oidc: pushed authorization request failed: %s", getattr(err, "error", None) or err.reason)
            return None
        return {"client_id": self.config.client_id or "", "request_uri": request_uri}

    def _callback(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy") -> "Outcome":
        q = self._callback_params(req)
        cookies = parse_cookie_header(cookie_header)
        taken = self.authorizations.take(q.get("state"), cookies, time.time())
        pending, clear_cookies = taken.state, taken.set_cookies
        retry = pending.original_url if pending is not None else (taken.return_url or self._app_root())
        if q.get("error"):
            return self._idp_error(gw, policy, q, retry, clear_cookies)
        if pending is None:
            return self._no_pending_login(req, cookies, gw, policy, taken, retry)
        code = q.get("code")
        if not code:
            return self._page_outcome(gw, policy, "missing_code",
                                      *page(401, "Sign-in failed", "The identity provider sent no authorization code.", retry),
                                      set_cookies=clear_cookies)
        if not _VSCHARS.fullmatch(code):
            # RFC 6749 A.11: a code is VSCHARs. Anything else (controls, non-ASCII, bytes that are
            # not UTF-8) was not issued by an IdP and cannot even be form-encoded for it.
            return self._page_outcome(gw, policy, "bad_code",
                                      *page(401, "Sign-in failed", "The authorization code is malformed.", retry),
                                      set_cookies=clear_cookies)
        try:
            front = None
            if "id_token" in self.config.response_type:
                # Hybrid flow: the front-channel ID token is checked before the code is used.
                failing = "front_id_token"
                front = check_front_channel_id_token(self.id_verifier, q.get("id_token"), client_id=self.config.client_id,
                                                     nonce=pending.nonce, code=code, state=pending.state)
            endpoint = self.provider.metadata()["token_endpoint"]
            tokens = self.tokens.exchange_code(endpoint, code=code, redirect_uri=self.config.redirect_uri,
                                               code_verifier=pending.code_verifier)
            failing = "id_token"
            id_claims = self._verify_id_token(tokens, pending.nonce)
            if front is not None:
                same_subject(front, id_claims)
            failing = "access_token"
            access_claims = self._access_claims(tokens, id_claims)
        except (ProviderError, KeyError):
            return self._page_outcome(gw, policy, "token_endpoint_failed",
                                      *page(502, "Sign-in failed", "The identity provider could not complete the sign-in.", retry),
                                      set_cookies=clear_cookies)
        except TokenError as err:
            log.info("oidc: code exchange refused: %s", err.error)
            return self._page_outcome(gw, policy, "code_exchange_refused",
                                      *page(401, "Sign-in failed", "The sign-in could not be completed. Start again.", retry),
                                      set_cookies=clear_cookies)
        except InvalidToken as err:
            log.info("oidc: %s refused at the callback: %s %s", failing, err.reason, getattr(err, "detail", ""))
            return self._page_outcome(gw, policy, f"{failing}_{err.reason}",
                                      *page(401, "Sign-in failed", "The identity provider's answer did not verify.", retry),
                                      set_cookies=clear_cookies)
        if not acr_delivered(pending.acr_values, id_claims.data):
            # The IdP did not authenticate at the level this login asked for: a session from it
            # would only be sent back again, so the browser gets a page instead of a loop.
            return self._page_outcome(gw, policy, "step_up_not_met",
                                      *page(401, "Stronger sign-in required",
                                            "The identity provider did not confirm the required sign-in method.", retry),
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
        # 303 after the IdP's form_post: the browser follows with a GET.
        return Outcome(status=303 if self.config.response_mode == "form_post" else 302, body="",
                       response_headers={"Location": pending.original_url, "Set-Cookie": set_cookies, **NO_STORE},
                       log=fields)

    def _verify_id_token(self, tokens: TokenResponse, nonce: str) -> Claims:
        if not tokens.id_token:
            raise InvalidToken("missing_id_token", "no ID token in the token response")
        claims = self.id_verifier.verify(tokens.id_token)
        check_id_claims(claims, client_id=self.config.client_id, nonce=nonce)
        expected_at_hash = claims.data.get("at_hash")
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

    # -- callback failures: say which one, and where to start again ------------------------

    def _callback_params(self, req: "RequestView") -> dict[str, str | None]:
        return response_params(req, self.config.response_mode)

    def _app_root(self) -> str:
        """Where "Try again" goes when the page the user asked for is unknown: the directory of
        the redirect_uri (an app mounted at /app has its callback under /app/)."""
        path = self.redirect_path or "/"
        return path.rsplit("/", 1)[0] + "/" if "/" in path.strip("/") else "/"

    def _redirect_host(self) -> str:
        return (urlsplit(self.config.redirect_uri or "").hostname or "").lower()

    def _idp_error(self, gw: "Gateway", policy: "MatchedPolicy", q: dict[str, str | None], retry: str,
                   clear_cookies: list[str]) -> "Outcome":
        raw_error = q.get("error") or "error"
        # Anyone can craft a callback link: the code is named only when it is a registered one,
        # and the log line (which Kong shows at warn) says only that; the description is shown
        # escaped on the page, as the IdP's words, and logged at info.
        error = raw_error if raw_error in AUTHORIZATION_ERRORS else "unrecognized_error"
        description = printable(q.get("error_description") or "", 256)
        if error not in _WARNED_ERRORS:
            _WARNED_ERRORS.add(error)
            log.warning("oidc: the identity provider answered a login with error %s (logged once per code; "
                        "each occurrence is in the decision log as idp_error)", error)
        log.info("oidc: the identity provider answered the login with error %s%s", error,
                 f" ({description})" if description else "")
        message = f"The identity provider answered: {error}" + (f": {description}" if description else ".")
        outcome = self._page_outcome(gw, policy, "idp_error",
                                     *page(403 if error == "access_denied" else 401, "Sign-in failed", message, retry),
                                     set_cookies=clear_cookies)
        outcome.log["idp_error"] = error
        return outcome

    def _no_pending_login(self, req: "RequestView", cookies: Mapping[str, str], gw: "Gateway",
                          policy: "MatchedPolicy", taken: Any, retry: str) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        reason = taken.reason
        session, _ = self.sessions.load(cookies, time.time()) if self.sessions.owns_any(cookies) else (None, "")
        if session is not None and reason in ("state_already_used", "state_not_pending", "no_login_cookie"):
            # A reloaded (or replayed) callback from someone already signed in: back to the page,
            # the code is never used.
            return Outcome(status=302, body="", response_headers={"Location": retry, **NO_STORE},
                           log=gw._log_fields(None, policy.name, "redirect", reason=f"callback_{reason}"))
        host = self._redirect_host()
        if reason == "no_login_cookie":
            log.warning("oidc: callback without the login cookie %s: the login was probably started on another "
                        "host than redirect_uri's %s (cookies are per host), or the browser blocks cookies",
                        self.authorizations.name, host)
            title, text = "Sign-in could not be matched", (
                f"Your browser did not bring back the sign-in cookie. Open the site at {host} (the address "
                "the sign-in returns to) rather than another name for it, allow cookies, and try again.")
        elif reason == "state_expired":
            minutes = max(1, self.config.authorization_rolling_timeout // 60)
            title, text = "Sign-in expired", f"This sign-in took longer than {minutes} minutes. Start again."
        elif reason == "state_already_used":
            title, text = "Sign-in already completed", "This sign-in link was already used. Start again."
        elif reason == "state_not_pending":
            title, text = "Sign-in not recognised", (
                "This sign-in was not started in this browser, or a newer sign-in replaced it. Start again.")
        else:  # a cookie that did not open: another secret, tampering
            title, text = "Sign-in could not be matched", "The sign-in cookie could not be read. Start again."
        log.info("oidc: callback refused: %s", reason)
        return self._page_outcome(gw, policy, reason, *page(401, title, text, retry), set_cookies=taken.set_cookies)

    def _warn_host_mismatch(self, req: "RequestView") -> None:
        """At redirect time: a login started on another host than redirect_uri's cannot finish,
        the authorization cookie stays with the first host. Logged once per host."""
        host, expected = (req.host() or "").lower(), self._redirect_host()
        if not expected or host == expected or host in self._mismatch_warned:
            return
        if len(self._mismatch_warned) < 64:
            self._mismatch_warned.add(host)
        log.warning("oidc: login started on host %s but redirect_uri is on %s: the browser will not send the login "
                    "cookie back and the callback fails; serve the app on %s or fix redirect_uri", host, expected,
                    expected)


def printable(text: str, limit: int) -> str:
    """An IdP-supplied string made safe to log and show (escaping happens in the page)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
