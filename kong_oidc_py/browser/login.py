"""The browser flow's entry point: route a request to login, callback, logout or back-channel
logout, and serve requests that carry a session (with refresh, single-flight).

The steps live in their own modules: callback.py (authorization request and callback),
logout.py (browser logout), backchannel.py (OIDC Back-Channel Logout), pages.py (error pages),
requests.py (what a navigation is), checks.py (PKCE, at_hash/c_hash, refresh timing).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from kong_oidc_py import metrics
from kong_oidc_py.browser.backchannel import BackchannelLogout
from kong_oidc_py.browser.callback import LoginSteps
from kong_oidc_py.browser.checks import at_hash, pkce_pair, refresh_due
from kong_oidc_py.browser.logout import LogoutSteps
from kong_oidc_py.browser.pages import page
from kong_oidc_py.browser.requests import is_navigation, safe_return_path, single_value
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.browser.session.locks import SessionStoreError
from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.browser.session.cookie import CHUNK_BUDGET, MAX_CHUNKS
from kong_oidc_py.browser.session.store import AuthorizationStore, SessionRevoked, SessionTooLarge, build_session_store
from kong_oidc_py.browser.step_up import authorization_params, session_auth
from kong_oidc_py.browser.token_endpoint import TokenClient, TokenError, TokenResponse
from kong_oidc_py.errors import AuthError, InsufficientUserAuthentication, InvalidToken, MissingToken, ProviderError
from kong_oidc_py.verification.verify import Claims, Verifier, VerifyOptions

if TYPE_CHECKING:
    from kong_oidc_py.config import PluginConfig
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.policy import MatchedPolicy
    from kong_oidc_py.idp.provider import Provider

log = logging.getLogger("kong_oidc_py")

__all__ = ["BrowserFlow", "at_hash", "is_navigation", "pkce_pair", "refresh_due", "safe_return_path", "single_value"]

# _refresh's reason -> the metrics' refresh outcome ("" = another request's refresh was reused).
_REFRESH_OUTCOME = {"refreshed": "refreshed", "": "shared", "refresh_failed": "failed",
                    "session_expired": "no_refresh_token"}
# How long a refresh result is handed to requests that still carry the pre-refresh cookie.
RECENT_REFRESH_TTL = 30


class BrowserFlow(LoginSteps, LogoutSteps):
    def __init__(self, config: "PluginConfig", provider: "Provider", verifier: Verifier) -> None:
        self.config = config
        self.provider = provider
        self.access_verifier = verifier
        self.id_verifier = Verifier(provider, VerifyOptions.for_id_token(config))
        self.sessions = build_session_store(config)
        self.authorizations = AuthorizationStore(config)
        self.tokens = TokenClient(
            client_id=config.client_id or "",
            client_secret=config.client_secret or "",
            auth_method=config.token_endpoint_auth_method,
            timeout_ms=config.timeout,
            ssl_verify=config.ssl_verify,
            issuer=provider.issuer,
        )
        self.login_enabled = "authorization_code" in config.auth_methods
        self.session_enabled = True
        self.redirect_path = urlsplit(config.redirect_uri).path if config.redirect_uri else None
        self.backchannel = (BackchannelLogout(config, provider, self.sessions.revocations)
                            if config.backchannel_logout_uri_suffix and self.sessions.revocations is not None else None)
        if self.sessions.kind == "c" and self.sessions.revocations is None:
            log.warning("oidc: session_storage cookie without session_revocation_redis: logout cannot revoke a "
                        "session, a copied session cookie keeps working until its idle/absolute timeout")
        self._mismatch_warned: set[str] = set()
        self._refresh_guard = threading.Lock()
        # (session id, hash of the spent refresh token) -> (when, refreshed session)
        self._refreshed: dict[tuple[str, str], tuple[float, Session]] = {}

    # -- entry point ----------------------------------------------------------------------

    def handle(self, req: "RequestView", policy: "MatchedPolicy", gw: "Gateway") -> "Outcome | None":
        """An Outcome for browser traffic, or None to fall through to the bearer path."""
        try:
            return self._handle(req, policy, gw)
        except SessionTooLarge as err:
            # Configuration, not weather: retrying cannot help, so say what to change.
            log.error("oidc: the session (%s) does not fit in %d cookies of %d bytes: set session_storage to "
                      "redis, or request fewer scopes/claims so the IdP issues smaller tokens", err.detail,
                      MAX_CHUNKS, CHUNK_BUDGET)
            return self._page_outcome(gw, policy, err.reason, *page(
                500, "Sign-in could not be completed",
                "The sign-in produced a session too large to keep in cookies. The site's administrator has "
                "been told in the gateway log."))
        except SessionStoreError as err:
            # Redis down or a lock wait that ran out: fail closed with a retryable status rather
            # than a fresh login that could not be stored either.
            log.warning("oidc: session store: %s", err.reason)
            return self._page_outcome(gw, policy, err.reason,
                                      *page(503, "Temporarily unavailable", "Sessions are unavailable right now. Try again shortly."))

    def _handle(self, req: "RequestView", policy: "MatchedPolicy", gw: "Gateway") -> "Outcome | None":
        if "authorization" in req.headers:
            # An API client: the bearer path decides. Checked before the path is read (one PDK
            # round trip): the IdP's redirect to the callback never carries Authorization, and
            # a bearer client has no cookie session to log out.
            return None
        if self.backchannel is not None and req.method() == "POST" \
                and req.path().endswith(self.config.backchannel_logout_uri_suffix or "\0"):
            # Server to server from the IdP (Back-Channel Logout 2.5: a form POST with no client
            # authentication): no cookie, no navigation, no bearer token.
            return self.backchannel.handle(req, gw, policy)
        cookie_header = "; ".join(req.headers.get("cookie") or [])
        path = req.path()
        if self.redirect_path and path == self.redirect_path:
            return self._callback(req, cookie_header, gw, policy)
        suffix = self.config.logout_uri_suffix
        if suffix and path.endswith(suffix) and req.method() in self.config.logout_methods:
            return self._logout(req, cookie_header, gw, policy)
        cookies = parse_cookie_header(cookie_header)
        if self.sessions.owns_any(cookies):
            outcome = self._use_session(req, cookies, gw, policy)
            if outcome is not None:
                return outcome
        if self.login_enabled and is_navigation(req):
            return self._start_login(req, cookie_header, gw, policy)
        return None

    # -- sessions -------------------------------------------------------------------------

    def _use_session(self, req: "RequestView", cookies: Mapping[str, str], gw: "Gateway", policy: "MatchedPolicy") -> "Outcome | None":
        try:
            return self._serve_session(req, cookies, gw, policy)
        except SessionRevoked:
            # Logged out (here or by the IdP) while this request was refreshing or touching it.
            return self._session_failed(req, cookies, gw, policy, "session_revoked")

    def _serve_session(self, req: "RequestView", cookies: Mapping[str, str], gw: "Gateway",
                       policy: "MatchedPolicy") -> "Outcome | None":
        now = time.time()
        session, reason = self.sessions.load(cookies, now)
        if session is None:
            return self._session_failed(req, cookies, gw, policy, reason or "no_session")
        set_cookies: list[str] = []
        refreshed = False
        if refresh_due(session.access_token, session.expires_at, now):
            session, refreshed_cookies, reason = self._refresh(session, cookies, now)
            metrics.session_refresh(_REFRESH_OUTCOME.get(reason, "failed"))
            if session is None:
                return self._session_failed(req, cookies, gw, policy, reason)
            refreshed = reason == "refreshed"
            set_cookies += refreshed_cookies
        auth = session_auth(session.id_token)
        try:
            policy.requirement.check_authentication(auth, now, self.config.leeway)
        except InsufficientUserAuthentication as err:
            # Step-up (RFC 9470): a navigation goes back to the IdP asking for the level, an API
            # call gets the challenge.
            if self.login_enabled and is_navigation(req):
                outcome = self._start_login(req, "; ".join(req.headers.get("cookie") or []), gw, policy,
                                            extra_params=authorization_params(err))
                outcome.log["reason"] = err.reason
                return outcome
            return gw.deny(err, policy.name)
        try:
            claims = self._session_claims(session)
            policy.requirement.evaluate(claims.data)
            consumer, credential = gw.consumer_for(req, claims)
        except AuthError as err:
            if err.status == 401:
                return self._session_failed(req, cookies, gw, policy, err.reason)
            return gw._deny_or_anonymous(req, err, policy)
        if not set_cookies and self.sessions.needs_touch(session, now):
            set_cookies += self.sessions.save(session.touched(now), cookies, now)
        extra_set: dict[str, str] = {}
        header = self.config.upstream_access_token_header
        if header:
            name, _, scheme = header.partition(":")
            extra_set[name] = f"{scheme.capitalize()} {session.access_token}" if scheme else session.access_token
        upstream_cookie = self.sessions.strip_own_cookies(req.headers.get("cookie") or [])
        extra_clear: list[str] = []
        if upstream_cookie is None:
            if "cookie" in req.headers:
                extra_clear.append("cookie")
        else:
            extra_set["Cookie"] = upstream_cookie
        outcome = gw._allow(
            req, claims, policy_name=policy.name, decision="allow", auth_method="session",
            extra_set=extra_set, extra_clear=extra_clear,
            response_headers={"Set-Cookie": set_cookies} if set_cookies else None,
            consumer=consumer, credential=credential,
        )
        if refreshed:
            outcome.log["refreshed"] = True  # this request made the token-endpoint call
        if isinstance(auth.get("acr"), str):
            outcome.log["acr"] = auth["acr"][:64]
        return outcome

    def _session_claims(self, session: Session) -> Claims:
        try:
            return self.access_verifier.verify(session.access_token)
        except InvalidToken as err:
            if err.reason != "malformed" or not session.id_token:
                raise
            return self.id_verifier.verify(session.id_token)

    def _session_failed(self, req: "RequestView", cookies: Mapping[str, str], gw: "Gateway",
                        policy: "MatchedPolicy", reason: str) -> "Outcome":
        clear = self.sessions.clear_cookies(cookies)
        if self.login_enabled and is_navigation(req):
            outcome = self._start_login(req, "; ".join(req.headers.get("cookie") or []), gw, policy, clear)
            outcome.log["reason"] = reason
            return outcome
        outcome = gw.deny(MissingToken(description="The session is missing or expired") if reason in ("no_session",) else
                          InvalidToken(reason if reason else "session_invalid", "the session is no longer valid"),
                          policy.name)
        outcome.response_headers["Set-Cookie"] = clear
        return outcome

    def _refresh(self, session: Session, cookies: Mapping[str, str], now: float) -> tuple[Session | None, list[str], str]:
        """Single-flight per session: in this process (a lock per session id, plus the result
        kept briefly for the waiters, since with cookie storage their cookies still hold the old
        tokens) and across processes (the store's refresh lock, then a reload from Redis)."""
        if not self.config.refresh_tokens or not session.refresh_token:
            return None, [], "session_expired"
        key = (session.id, hashlib.sha256(session.refresh_token.encode()).hexdigest())
        with self.sessions.refresh_lock(session):
            done = self._recent_refresh(key, now)
            if done is not None:
                # Cookie storage: this request's cookie still holds the old tokens, re-issue it.
                # Redis storage: the cookie only names the session, which is already updated.
                return done, (self.sessions.save(done, cookies, now) if self.sessions.kind == "c" else []), ""
            # Another process may have refreshed while we waited: reuse its result.
            latest, _ = self.sessions.reload(session, cookies, now)
            if latest is not None and latest.access_token != session.access_token \
                    and not refresh_due(latest.access_token, latest.expires_at, now):
                return latest, [], ""
            try:
                endpoint = self.provider.metadata()["token_endpoint"]
                tokens = self.tokens.refresh(endpoint, refresh_token=session.refresh_token)
                claims = self._access_claims_for_refresh(tokens)
            except (ProviderError, TokenError, InvalidToken, KeyError) as err:
                log.info("oidc: refresh failed: %s", getattr(err, "reason", None) or getattr(err, "error", type(err).__name__))
                return None, [], "refresh_failed"
            refreshed = session.with_tokens(
                access_token=tokens.access_token,
                id_token=tokens.id_token or session.id_token,
                refresh_token=tokens.refresh_token or session.refresh_token,
                expires_at=self._expires_at(tokens, claims, now),
                now=now,
            )
            set_cookies = self.sessions.save(refreshed, cookies, now)
            self._remember_refresh(key, refreshed, now)
            return refreshed, set_cookies, "refreshed"

    def _recent_refresh(self, key: tuple[str, str], now: float) -> Session | None:
        with self._refresh_guard:
            hit = self._refreshed.get(key)
            if hit is None:
                return None
            at, session = hit
            if now - at > RECENT_REFRESH_TTL:
                del self._refreshed[key]
                return None
            return session

    def _remember_refresh(self, key: tuple[str, str], session: Session, now: float) -> None:
        with self._refresh_guard:
            for k in [k for k, (at, _) in self._refreshed.items() if now - at > RECENT_REFRESH_TTL]:
                del self._refreshed[k]
            if len(self._refreshed) >= 10000:
                self._refreshed.clear()
            self._refreshed[key] = (now, session)

    def _access_claims_for_refresh(self, tokens: TokenResponse) -> Claims:
        try:
            return self.access_verifier.verify(tokens.access_token)
        except InvalidToken as err:
            if err.reason != "malformed":
                raise
            return Claims(data={}, token_hash="", kid=None, alg="", expires_at=None)

    def _page_outcome(self, gw: "Gateway", policy: "MatchedPolicy", reason: str, status: int, body: str,
                      headers: dict[str, str], set_cookies: list[str] | None = None) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        response_headers: dict[str, Any] = dict(headers)
        if set_cookies:
            response_headers["Set-Cookie"] = set_cookies
        return Outcome(status=status, body=body, response_headers=response_headers,
                       log=gw._log_fields(None, policy.name, "deny", reason=reason))
