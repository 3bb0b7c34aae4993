"""Browser login: authorization code + PKCE, the callback, sessions, refresh and logout.

Who is sent to the IdP: only top-level navigations (GET/HEAD, `Sec-Fetch-Mode: navigate`, or
`Accept: text/html` without `X-Requested-With`) that carry no Authorization header. Everyone
else gets the bearer path's 401, so an API client never follows a redirect to a login page.

Security notes (RFC 9700, RFC 7636, OIDC Core 3.1.3.7):
* state, nonce and the PKCE verifier live only in the encrypted authorization cookie;
  `state` is compared in constant time and is single-use (the entry is removed on callback);
* the ID token is verified with the same JWKS core, then iss/aud/azp/nonce/at_hash;
* after login we redirect only to a same-origin path (stored as path+query, never a URL);
* callback errors give a page, never a redirect: no loops.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

from kong_oidc_py import metrics
from kong_oidc_py.errors import AuthError, InvalidToken, MissingToken, ProviderError
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.browser.session.locks import SessionStoreError
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.session.store import AuthorizationStore, build_session_store
from kong_oidc_py.browser.token_endpoint import TokenClient, TokenError, TokenResponse
from kong_oidc_py.verification.verify import Claims, Verifier, VerifyOptions

if TYPE_CHECKING:
    from kong_oidc_py.config import PluginConfig
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.policy import MatchedPolicy
    from kong_oidc_py.idp.provider import Provider

log = logging.getLogger("kong_oidc_py")

# Refresh this long before the access token expires, so a request never carries a token that
# expires on its way upstream.
REFRESH_MARGIN = 10
# _refresh's reason -> the metrics' refresh outcome ("" = another request's refresh was reused).
_REFRESH_OUTCOME = {"refreshed": "refreshed", "": "shared", "refresh_failed": "failed",
                    "session_expired": "no_refresh_token"}

# How long a refresh result is handed to requests that still carry the pre-refresh cookie.
RECENT_REFRESH_TTL = 30
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6749 A.11: code = 1*VSCHAR
_VSCHARS = re.compile(r"[\x20-\x7e]+")
# The error codes an authorization response may carry: RFC 6749 4.1.2.1, OIDC Core 3.1.2.6.
AUTHORIZATION_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
    "server_error", "temporarily_unavailable", "interaction_required", "login_required",
    "account_selection_required", "consent_required", "invalid_request_uri", "invalid_request_object",
    "request_not_supported", "request_uri_not_supported", "registration_not_supported",
})


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    verifier = _b64url(secrets.token_bytes(32))  # 43 chars, RFC 7636 4.1
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def is_navigation(req: "RequestView") -> bool:
    h = req.headers
    if "authorization" in h:
        return False
    mode = _first(h, "sec-fetch-mode")
    if mode is not None:
        if mode.lower() != "navigate":
            return False
        dest = _first(h, "sec-fetch-dest")
        if dest is not None and dest.lower() not in ("document", ""):
            return False
    else:
        accept = ",".join(h.get("accept") or [])
        if "text/html" not in accept.lower() or "x-requested-with" in h:
            return False
    return req.method() in ("GET", "HEAD")


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


# Characters kept as they are in the return URL; everything else (controls, CR/LF, spaces,
# backslashes, non-ASCII) is percent-encoded, so the Location header can never be split and a
# browser can never read the path as another origin.
_PATH_SAFE = "/-._~!$&'()*+,;=:@%"
_QUERY_SAFE = _PATH_SAFE + "?"


def _safe_return_path(path: str, raw_query: str) -> str:
    # Only a same-origin path may come back out of the cookie: "//evil" and "\\evil" are
    # scheme-relative URLs to a browser.
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "\\" in path:
        path = "/"
    path = quote(path, safe=_PATH_SAFE)
    query = quote(raw_query, safe=_QUERY_SAFE) if isinstance(raw_query, str) and raw_query else ""
    return path + ("?" + query if query else "")


def _single(value: Any) -> str | None:
    """One query parameter value as kong.request.get_query gives it: a string, a list when the
    name repeats (refused: an ambiguous callback), True for a bare name (refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None


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


def _page(status: int, title: str, message: str, retry: str | None = None) -> tuple[int, str, dict[str, str]]:
    link = f'<p><a href="{html.escape(retry, quote=True)}">Try again</a></p>' if retry else ""
    body = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>"
        + html.escape(title)
        + "</title></head><body><h1>"
        + html.escape(title)
        + "</h1><p>"
        + html.escape(message)
        + "</p>"
        + link
        + "</body></html>"
    )
    return status, body, {"Content-Type": "text/html; charset=utf-8", **NO_STORE}


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6: left half of the hash of the access token, for the ID token's alg."""
    if alg.startswith("EdDSA"):
        digest = hashlib.sha512(access_token.encode()).digest()
    else:
        bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(alg[-3:], hashlib.sha256)
        digest = bits(access_token.encode()).digest()
    return _b64url(digest[: len(digest) // 2])


class BrowserFlow:
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
        self._refresh_guard = threading.Lock()
        # (session id, hash of the spent refresh token) -> (when, refreshed session)
        self._refreshed: dict[tuple[str, str], tuple[float, Session]] = {}

    # -- entry point ----------------------------------------------------------------------

    def handle(self, req: "RequestView", policy: "MatchedPolicy", gw: "Gateway") -> "Outcome | None":
        """An Outcome for browser traffic, or None to fall through to the bearer path."""
        try:
            return self._handle(req, policy, gw)
        except SessionStoreError as err:
            # Redis down, a lock wait that ran out, a session too big: fail closed with a
            # retryable status rather than a fresh login that could not be stored either.
            log.warning("oidc: session store: %s", err.reason)
            return self._page_outcome(gw, policy, err.reason,
                                      *_page(503, "Temporarily unavailable", "Sessions are unavailable right now. Try again shortly."))

    def _handle(self, req: "RequestView", policy: "MatchedPolicy", gw: "Gateway") -> "Outcome | None":
        if "authorization" in req.headers:
            # An API client: the bearer path decides. Checked before the path is read (one PDK
            # round trip): the IdP's redirect to the callback never carries Authorization, and
            # a bearer client has no cookie session to log out.
            return None
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

    # -- login ----------------------------------------------------------------------------

    def _start_login(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy",
                     extra_cookies: list[str] | None = None) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        try:
            endpoint = self.provider.metadata()["authorization_endpoint"]
        except (ProviderError, KeyError):
            return self._page_outcome(gw, policy, "login_unavailable",
                                      *_page(503, "Sign-in unavailable", "The identity provider cannot be reached. Try again later."))
        verifier, challenge = pkce_pair()
        state = AuthorizationState(
            state=_b64url(secrets.token_bytes(24)),
            nonce=_b64url(secrets.token_bytes(24)),
            code_verifier=verifier,
            original_url=_safe_return_path(req.path(), req.raw_query()),
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
        q = {k: _single(v) for k, v in query.items() if isinstance(k, str)}
        cookies = parse_cookie_header(cookie_header)
        state_value = q.get("state")
        pending, clear_cookies = self.authorizations.pop(state_value, cookies, time.time()) if state_value else (None, [])
        if q.get("error"):
            error = q["error"] or "error"
            # Anyone can craft a callback link: only a registered error code is named on the
            # page, never the text the link carries (content injection on our origin).
            shown = error if error in AUTHORIZATION_ERRORS else "an unrecognized error"
            return self._page_outcome(gw, policy, "idp_error",
                                      *_page(403 if error == "access_denied" else 401, "Sign-in failed",
                                             f"The identity provider answered: {shown}.", "/"),
                                      set_cookies=clear_cookies)
        if pending is None:
            return self._page_outcome(gw, policy, "bad_state",
                                      *_page(401, "Sign-in expired",
                                             "This sign-in link is stale or was already used. Start again.", "/"),
                                      set_cookies=clear_cookies)
        code = q.get("code")
        if not code:
            return self._page_outcome(gw, policy, "missing_code",
                                      *_page(401, "Sign-in failed", "The identity provider sent no authorization code.", "/"),
                                      set_cookies=clear_cookies)
        if not _VSCHARS.fullmatch(code):
            # RFC 6749 A.11: a code is VSCHARs. Anything else (controls, non-ASCII, bytes that are
            # not UTF-8) was not issued by an IdP and cannot even be form-encoded for it.
            return self._page_outcome(gw, policy, "bad_code",
                                      *_page(401, "Sign-in failed", "The authorization code is malformed.", "/"),
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
                                      *_page(502, "Sign-in failed", "The identity provider could not complete the sign-in.", "/"),
                                      set_cookies=clear_cookies)
        except TokenError as err:
            log.info("oidc: code exchange refused: %s", err.error)
            return self._page_outcome(gw, policy, "code_exchange_refused",
                                      *_page(401, "Sign-in failed", "The sign-in could not be completed. Start again.", "/"),
                                      set_cookies=clear_cookies)
        except InvalidToken as err:
            log.info("oidc: %s refused at the callback: %s %s", failing, err.reason, getattr(err, "detail", ""))
            return self._page_outcome(gw, policy, f"{failing}_{err.reason}",
                                      *_page(401, "Sign-in failed", "The identity provider's answer did not verify.", "/"),
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
        )
        set_cookies = clear_cookies + self.sessions.save(session, cookies, now)
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

    # -- sessions -------------------------------------------------------------------------

    def _use_session(self, req: "RequestView", cookies: Mapping[str, str], gw: "Gateway", policy: "MatchedPolicy") -> "Outcome | None":
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

    # -- logout ---------------------------------------------------------------------------

    def _logout(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy") -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        h = req.headers
        site = (_first(h, "sec-fetch-site") or "").lower()
        origin = _first(h, "origin")
        # Fetch Metadata first (a same-site page on another port is still another origin), then
        # Origin: only this origin, or the user typing the URL ("none"), may end the session.
        if site not in ("", "same-origin", "none") or (origin is not None and not self._same_origin(req, origin)):
            return self._page_outcome(gw, policy, "cross_site_logout",
                                      *_page(403, "Sign-out refused", "A sign-out must come from this site."))
        cookies = parse_cookie_header(cookie_header)
        session, _ = self.sessions.load(cookies, time.time(), ignore_expiry=True)
        clear = self.sessions.destroy(session, cookies)
        target = self.config.logout_redirect_uri or "/"
        try:
            end_session = self.provider.metadata().get("end_session_endpoint")
        except ProviderError:
            end_session = None
        if isinstance(end_session, str) and end_session:
            params = {"client_id": self.config.client_id or ""}
            if session is not None and session.id_token:
                params["id_token_hint"] = session.id_token
            if self.config.logout_redirect_uri:
                params["post_logout_redirect_uri"] = self.config.logout_redirect_uri
            target = end_session + ("&" if "?" in end_session else "?") + urlencode(params)
        fields = gw._log_fields(None, policy.name, "logout")
        if session is not None:
            fields["subject"] = session.subject[:256]
        return Outcome(status=302, body="", response_headers={"Location": target, "Set-Cookie": clear, **NO_STORE}, log=fields)

    def _same_origin(self, req: "RequestView", origin: str) -> bool:
        parts = urlsplit(origin)
        default = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default
        except ValueError:
            return False
        return (parts.scheme == req.scheme() and (parts.hostname or "") == req.host().lower()
                and port == (req.port() or default))

    def _page_outcome(self, gw: "Gateway", policy: "MatchedPolicy", reason: str, status: int, body: str,
                      headers: dict[str, str], set_cookies: list[str] | None = None) -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        response_headers: dict[str, Any] = dict(headers)
        if set_cookies:
            response_headers["Set-Cookie"] = set_cookies
        return Outcome(status=status, body=body, response_headers=response_headers,
                       log=gw._log_fields(None, policy.name, "deny", reason=reason))
