"""Logout from the browser (`logout_uri_suffix`): end the session here, then at the IdP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from kong_oidc_py.browser.pages import NO_STORE, page
from kong_oidc_py.browser.requests import first_header
from kong_oidc_py.browser.session.cookie import parse_cookie_header
from kong_oidc_py.errors import ProviderError

if TYPE_CHECKING:
    from kong_oidc_py.gateway import Gateway, Outcome, RequestView
    from kong_oidc_py.policy import MatchedPolicy


class LogoutSteps:
    """Mixed into BrowserFlow (login.py)."""

    def _logout(self, req: "RequestView", cookie_header: str, gw: "Gateway", policy: "MatchedPolicy") -> "Outcome":
        from kong_oidc_py.gateway import Outcome

        h = req.headers
        site = (first_header(h, "sec-fetch-site") or "").lower()
        origin = first_header(h, "origin")
        # Fetch Metadata first (a same-site page on another port is still another origin), then
        # Origin: only this origin, or the user typing the URL ("none"), may end the session.
        if site not in ("", "same-origin", "none") or (origin is not None and not self._same_origin(req, origin)):
            return self._page_outcome(gw, policy, "cross_site_logout",
                                      *page(403, "Sign-out refused", "A sign-out must come from this site."))
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
            if session is not None and session.id_token and self.config.logout_id_token_hint:
                params["id_token_hint"] = session.id_token
            elif session is not None and session.sid:
                # RP-Initiated Logout 1.0 section 2: an opaque hint; the IdP's own session id is
                # the one value every IdP can match, and it is no credential.
                params["logout_hint"] = session.sid
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
