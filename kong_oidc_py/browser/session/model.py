"""Session and login-round-trip state, and the three session timeouts.

Times are whole seconds since the epoch (ints keep cookies short; flooring only makes a session
end up to one second early).

Timeouts (a value <= 0 disables that check):
* idling   (`session_idling_timeout`):  since `last_seen_at`, the last time the session was re-issued
  because it was used;
* rolling  (`session_rolling_timeout`): since `rotated_at`, the last re-issue of the session
  (a fresh encryption, new cookie Max-Age / Redis TTL); a session not re-issued in time ends;
* absolute (`session_absolute_timeout`): since `created_at` (login); nothing extends it.

A client can only learn a new `last_seen_at` through a new cookie, so "touching" a session means
re-issuing it: `touched()` moves both clocks, and the store decides how often that is worth a
Set-Cookie (`needs_touch`).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol

ID_BYTES = 18  # 144 bits, 24 url-safe characters
KEY_BYTES = 32  # per-session AES-256 key (Redis storage)


class Timeouts(Protocol):
    """Satisfied by the plugin config and by SessionSettings."""

    session_idling_timeout: int
    session_rolling_timeout: int
    session_absolute_timeout: int


def _secs(t: float) -> int:
    return int(math.floor(t))


@dataclass(frozen=True)
class Tokens:
    access_token: str
    id_token: str | None = None
    refresh_token: str | None = None
    expires_at: int = 0  # access token expiry (epoch seconds)

    def __repr__(self) -> str:  # never print a token
        return f"Tokens(expires_at={self.expires_at}, id_token={self.id_token is not None}, refresh_token={self.refresh_token is not None})"


@dataclass(frozen=True)
class Session:
    id: str
    created_at: int
    last_seen_at: int
    rotated_at: int
    subject: str
    issuer: str
    tokens: Tokens
    # Redis storage: the per-session key that encrypts the Redis value. It travels only in the
    # (encrypted) cookie, never to Redis. Unused by cookie storage.
    key: bytes = field(default=b"", repr=False, compare=False)
    # The IdP's session id (ID token `sid`), for back-channel logout by sid.
    sid: str | None = None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        *,
        subject: str,
        issuer: str,
        access_token: str,
        id_token: str | None,
        refresh_token: str | None,
        expires_at: float,
        now: float,
        sid: str | None = None,
    ) -> "Session":
        t = _secs(now)
        return cls(
            id=secrets.token_urlsafe(ID_BYTES),
            created_at=t,
            last_seen_at=t,
            rotated_at=t,
            subject=subject,
            issuer=issuer,
            tokens=Tokens(access_token, id_token, refresh_token, _secs(expires_at)),
            key=secrets.token_bytes(KEY_BYTES),
            sid=sid,
        )

    def touched(self, now: float) -> "Session":
        """The session re-issued at `now` (the caller saves it): idle and rolling clocks restart."""
        t = _secs(now)
        return replace(self, last_seen_at=t, rotated_at=t)

    def with_tokens(
        self,
        *,
        access_token: str,
        id_token: str | None,
        refresh_token: str | None,
        expires_at: float,
        now: float,
    ) -> "Session":
        """After a refresh: same id (other processes find it), new tokens, re-issued."""
        return replace(
            self.touched(now), tokens=Tokens(access_token, id_token, refresh_token, _secs(expires_at))
        )

    # -- convenience ---------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    @property
    def id_token(self) -> str | None:
        return self.tokens.id_token

    @property
    def refresh_token(self) -> str | None:
        return self.tokens.refresh_token

    @property
    def expires_at(self) -> int:
        return self.tokens.expires_at

    # -- timeouts ------------------------------------------------------------------------

    def expired(self, now: float, cfg: Timeouts) -> str | None:
        """None while valid, else the first limit reached: absolute, rolling, idle."""
        t = _secs(now)
        if cfg.session_absolute_timeout > 0 and t >= self.created_at + cfg.session_absolute_timeout:
            return "absolute_timeout"
        if cfg.session_rolling_timeout > 0 and t >= self.rotated_at + cfg.session_rolling_timeout:
            return "rolling_timeout"
        if cfg.session_idling_timeout > 0 and t >= self.last_seen_at + cfg.session_idling_timeout:
            return "idle_timeout"
        return None

    def remaining(self, now: float, cfg: Timeouts) -> int | None:
        """Seconds until the first limit is reached (<= 0: expired); None when all are disabled."""
        t = _secs(now)
        ends = []
        if cfg.session_absolute_timeout > 0:
            ends.append(self.created_at + cfg.session_absolute_timeout)
        if cfg.session_rolling_timeout > 0:
            ends.append(self.rotated_at + cfg.session_rolling_timeout)
        if cfg.session_idling_timeout > 0:
            ends.append(self.last_seen_at + cfg.session_idling_timeout)
        return min(ends) - t if ends else None

    # -- serialization (short keys: every byte ends up in a cookie) ------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything except `key` (which must never reach Redis)."""
        d: dict[str, Any] = {
            "i": self.id,
            "c": self.created_at,
            "l": self.last_seen_at,
            "r": self.rotated_at,
            "s": self.subject,
            "is": self.issuer,
            "at": self.tokens.access_token,
            "e": self.tokens.expires_at,
        }
        if self.tokens.id_token is not None:
            d["it"] = self.tokens.id_token
        if self.tokens.refresh_token is not None:
            d["rt"] = self.tokens.refresh_token
        if self.sid is not None:
            d["sd"] = self.sid
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], key: bytes = b"") -> "Session":
        """Raises ValueError on any shape problem."""
        if not isinstance(d, Mapping):
            raise ValueError("not an object")
        tokens = Tokens(
            access_token=_str(d, "at"),
            id_token=_opt_str(d, "it"),
            refresh_token=_opt_str(d, "rt"),
            expires_at=_int(d, "e"),
        )
        return cls(
            id=_str(d, "i"),
            created_at=_int(d, "c"),
            last_seen_at=_int(d, "l"),
            rotated_at=_int(d, "r"),
            subject=_str(d, "s"),
            issuer=_str(d, "is"),
            tokens=tokens,
            key=key,
            sid=_opt_str(d, "sd"),
        )


@dataclass(frozen=True)
class AuthorizationState:
    """One pending login: everything the callback needs, kept only in the encrypted cookie."""

    state: str
    nonce: str
    code_verifier: str
    original_url: str
    created_at: float
    acr_values: str = ""  # step-up: the acr values this login asked for ("" for none)

    def __repr__(self) -> str:
        return f"AuthorizationState(original_url={self.original_url!r}, created_at={self.created_at})"

    def to_dict(self) -> dict[str, Any]:
        out = {"s": self.state, "n": self.nonce, "v": self.code_verifier, "u": self.original_url, "c": _secs(self.created_at)}
        if self.acr_values:
            out["a"] = self.acr_values
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AuthorizationState":
        if not isinstance(d, Mapping):
            raise ValueError("not an object")
        return cls(_str(d, "s"), _str(d, "n"), _str(d, "v"), _str(d, "u"), _int(d, "c"), _opt_str(d, "a") or "")


def _str(d: Mapping[str, Any], k: str) -> str:
    v = d.get(k)
    if not isinstance(v, str):
        raise ValueError(f"{k}: not a string")
    return v


def _opt_str(d: Mapping[str, Any], k: str) -> str | None:
    v = d.get(k)
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{k}: not a string")
    return v


def _int(d: Mapping[str, Any], k: str) -> int:
    v = d.get(k)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{k}: not an integer")
    return v
