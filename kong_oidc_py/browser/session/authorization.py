"""Pending logins (state, nonce, PKCE verifier, return URL) in one sealed cookie, and what the
callback learns from it: which state matched, or why none did (for a helpful error page).

A successful callback leaves a "completed" marker (a hash of the state and the return URL) for
`authorization_rolling_timeout`: reloading the callback after login then goes back to the page
instead of showing an error, and a marker can never be used to log in again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from kong_oidc_py.browser.session.cookie import expire_chunks, join_chunks, write_chunks
from kong_oidc_py.browser.session.crypto import Box, DecryptError, Purpose
from kong_oidc_py.browser.session.model import AuthorizationState

if TYPE_CHECKING:
    from kong_oidc_py.browser.session.store import SessionSettings

log = logging.getLogger("kong_oidc_py")

MAX_RETURN_URL = 2048
MAX_COMPLETED = 4


@dataclass(frozen=True)
class Taken:
    """What `take` found: the pending state (success), else `reason` and, when known, the page
    the login was for (`return_url`)."""

    state: AuthorizationState | None
    set_cookies: list[str]
    reason: str = ""
    return_url: str | None = None


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class AuthorizationStore:
    """Pending logins, in ONE sealed cookie (`authorization_cookie_name`, chunked if needed).

    Several tabs may start a login at once: the cookie holds up to `max_pending_logins` states,
    each valid for `authorization_rolling_timeout`; pushing one more evicts the oldest (that tab's
    callback then fails cleanly with "start again"). A state is single-use: `take` removes it.
    Not compressed: `original_url` is chosen by whoever crafted the link (see crypto.py).
    """

    def __init__(self, config: Any) -> None:
        from kong_oidc_py.browser.session.store import _settings

        self.settings: SessionSettings = _settings(config)
        self._box = Box.for_secrets(self.settings.secrets, Purpose.AUTHORIZATION_COOKIE)

    @property
    def name(self) -> str:
        return self.settings.authorization_cookie_name

    def _read(self, cookies: Mapping[str, str]) -> tuple[list[AuthorizationState], list[list[Any]], str]:
        """(every state, expired included; completed markers [hash, url, at]; reason)."""
        value, reason = join_chunks(self.name, cookies)
        if value is None:
            return [], [], reason
        try:
            payload = self._box.open_json(value, self.name)
        except DecryptError as err:
            return [], [], err.reason
        items = payload.get("p") if isinstance(payload, dict) else None
        done = payload.get("d", []) if isinstance(payload, dict) else None
        if not isinstance(items, list) or not isinstance(done, list):
            return [], [], "bad_payload"
        states: list[AuthorizationState] = []
        for item in items[: self.settings.max_pending_logins]:
            try:
                states.append(AuthorizationState.from_dict(item))
            except ValueError:
                return [], [], "bad_payload"
        markers = [d for d in done[:MAX_COMPLETED] if isinstance(d, list) and len(d) == 3
                   and isinstance(d[0], str) and isinstance(d[1], str) and isinstance(d[2], int)]
        return states, markers, ""

    def _live(self, created_at: float, now: float) -> bool:
        return now - created_at < self.settings.authorization_rolling_timeout

    def pending(self, cookies: Mapping[str, str], now: float) -> tuple[list[AuthorizationState], str]:
        """Unexpired pending states (oldest first), or ([], reason) for a missing/bad cookie."""
        states, _, reason = self._read(cookies)
        return [s for s in states if self._live(s.created_at, now)], reason

    def push(self, state: AuthorizationState, cookies: Mapping[str, str], now: float) -> list[str]:
        """Set-Cookie values storing `state` next to the still-valid pending ones."""
        if len(state.original_url) > MAX_RETURN_URL:
            log.info("oidc: return URL longer than %d characters; the login returns to /", MAX_RETURN_URL)
            state = replace(state, original_url="/")
        states, done, _ = self._read(cookies)
        states = [s for s in states if self._live(s.created_at, now)]
        states = (states + [state])[-self.settings.max_pending_logins :]
        return self._write(states, [d for d in done if self._live(d[2], now)], cookies, now)

    def take(self, state_value: str | None, cookies: Mapping[str, str], now: float) -> Taken:
        """The pending state matching `state_value` (single use), or why there is none:
        no_login_cookie, bad cookie reasons, state_expired, state_already_used, state_not_pending."""
        states, done, reason = self._read(cookies)
        if reason:
            if reason != "no_cookie":
                log.info("oidc: authorization cookie refused: %s", reason)
                return Taken(None, self.clear(cookies), reason)
            return Taken(None, [], "no_login_cookie")
        # A query value with bytes that are not UTF-8 arrives with lone surrogates (pdk_fixes):
        # it can never match a state we issued, and must not raise while we find that out.
        wanted = state_value.encode("utf-8", "surrogateescape") if isinstance(state_value, str) and state_value else b""
        match = None
        for s in states:  # compare every entry: no early exit that timing could reveal
            if hmac.compare_digest(s.state.encode("utf-8"), wanted) and match is None:
                match = s
        live_done = [d for d in done if self._live(d[2], now)]
        if match is None:
            digest = _state_hash(state_value) if wanted else ""
            for d in live_done:
                if wanted and hmac.compare_digest(d[0], digest):
                    return Taken(None, [], "state_already_used", d[1])
            return Taken(None, [], "state_not_pending")
        rest = [s for s in states if s is not match and self._live(s.created_at, now)]
        if not self._live(match.created_at, now):
            return Taken(None, self._write(rest, live_done, cookies, now), "state_expired", match.original_url)
        marker = [_state_hash(match.state), match.original_url, int(now)]
        return Taken(match, self._write(rest, (live_done + [marker])[-MAX_COMPLETED:], cookies, now))

    def pop(self, state_value: str, cookies: Mapping[str, str], now: float) -> tuple[AuthorizationState | None, list[str]]:
        """(the matching state, Set-Cookie values without it). Mismatch: (None, [...])."""
        taken = self.take(state_value, cookies, now)
        return taken.state, taken.set_cookies

    def clear(self, cookies: Mapping[str, str]) -> list[str]:
        return expire_chunks(self.name, self.settings.authorization_attributes, cookies)

    def _write(self, states: list[AuthorizationState], done: list[list[Any]], cookies: Mapping[str, str],
               now: float) -> list[str]:
        attrs = self.settings.authorization_attributes
        if not states and not done:
            return expire_chunks(self.name, attrs, cookies)
        newest = max([s.created_at for s in states] + [d[2] for d in done])
        max_age = int(newest + self.settings.authorization_rolling_timeout - now)
        value = self._box.seal_json({"p": [s.to_dict() for s in states], "d": done}, self.name)
        return write_chunks(self.name, value, attrs, cookies, max_age=max(1, max_age), now=now)
