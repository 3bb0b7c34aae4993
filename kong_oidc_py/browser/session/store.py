"""Where sessions live: `CookieStore` (all in the cookie) or `RedisStore` (tokens in Redis).

Both hand the browser an AES-256-GCM sealed, chunked cookie (crypto.py, cookie.py):

* CookieStore: the cookie holds the whole session (compressed: it is server-generated data only).
* RedisStore: the cookie holds only `{id, key}`: a random id (144 bits) and a random per-session
  AES key (256 bits). The Redis value is sealed with that per-session key, bound to its Redis key
  name, so a Redis dump alone reveals no token. The Redis key name is HMAC(redis-id key, id), so
  listing Redis keys does not reveal usable cookie ids either. TTL = time left before the first
  session timeout. Any number of plugin servers sharing the secret and Redis share sessions.

Hostile cookies never raise: `load` returns `(None, reason)`. A Redis failure is not "no session"
(that would bounce users to the IdP during an outage): it raises `StoreUnavailable`.

Authorization (login round-trip) cookies are always cookie-stored: `AuthorizationStore`.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

from kong_oidc_py.errors import ConfigError
from kong_oidc_py.browser.session.cookie import (
    CookieAttributes,
    CookieJar,
    CookieTooLarge,
    expire_chunks,
    is_chunk_name,
    join_chunks,
    strip_cookies,
    valid_cookie_name,
    write_chunks,
)
from kong_oidc_py.browser.session.crypto import Box, DecryptError, Purpose, b64url_decode, b64url_encode, derive_key, dumps_compact, fingerprint
from kong_oidc_py.browser.session.locks import LocalLocks, LockTimeout, RedisLock, SessionStoreError, StoreUnavailable
from kong_oidc_py.browser.session.model import KEY_BYTES, AuthorizationState, Session
from kong_oidc_py.browser.session.revocation import Revocations, build_revocations
from kong_oidc_py.shared_state.redis_client import KeySpace, RedisGuard, RedisSettings, make_redis_client

log = logging.getLogger("kong_oidc_py")

__all__ = [
    "AuthorizationStore",
    "CookieStore",
    "LockTimeout",
    "RedisSettings",
    "RedisStore",
    "SessionSettings",
    "SessionStore",
    "SessionStoreError",
    "SessionRevoked",
    "SessionTooLarge",
    "StoreUnavailable",
    "build_session_store",
]

NO_LIMIT_TTL = 30 * 86400  # cookie Max-Age / Redis TTL when every session timeout is disabled
MAX_PENDING_LOGINS = 4
from kong_oidc_py.browser.session.authorization import MAX_RETURN_URL  # noqa: E402,F401  (re-export)


class SessionRevoked(SessionStoreError):
    """The session was revoked (logout elsewhere, back-channel logout) while this request ran."""

    default_reason = "session_revoked"


class SessionTooLarge(SessionStoreError):
    """The session does not fit in MAX_CHUNKS cookies (use Redis storage)."""

    default_reason = "session_too_large"


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSettings:
    """What the session layer needs from the plugin config (names follow docs/DESIGN.md)."""

    secrets: tuple[str, ...] = field(repr=False)  # first seals, all open (rotation)
    storage: str = "cookie"
    cookie_name: str = "session"
    authorization_cookie_name: str = "authorization"
    attributes: CookieAttributes = CookieAttributes()
    session_idling_timeout: int = 900
    session_rolling_timeout: int = 3600
    session_absolute_timeout: int = 86400
    authorization_rolling_timeout: int = 600
    redis: RedisSettings = RedisSettings()
    # Re-issue a used session at most this often (each re-issue is a Set-Cookie, and a Redis write).
    touch_interval: int = 60
    max_pending_logins: int = MAX_PENDING_LOGINS
    refresh_lock_ttl_ms: int = 15000
    refresh_lock_wait_ms: int = 15000
    # Cookie storage: check and write revocation records in Redis (Redis storage always revokes).
    revocation: bool = False
    # response_mode form_post: the login cookie must come with a cross-site POST.
    form_post: bool = False

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ConfigError("session_secret", "required for authorization_code/session")
        for i, secret in enumerate(self.secrets):
            if not isinstance(secret, str) or len(secret) < 32:
                raise ConfigError("session_secret" if i == 0 else f"session_secret (old #{i})", "must be at least 32 characters")
        if self.storage not in ("cookie", "redis"):
            raise ConfigError("session_storage", "must be cookie or redis")
        for fname, name in (("session_cookie_name", self.cookie_name), ("authorization_cookie_name", self.authorization_cookie_name)):
            if not valid_cookie_name(name):
                raise ConfigError(fname, "not a valid cookie name (RFC 6265 token)")
        if is_chunk_name(self.cookie_name, self.authorization_cookie_name) or is_chunk_name(
            self.authorization_cookie_name, self.cookie_name
        ):
            raise ConfigError("authorization_cookie_name", "collides with the session cookie name or its chunks")

    @property
    def authorization_attributes(self) -> CookieAttributes:
        # form_post: the callback is a cross-site POST from the IdP's page, which only carries
        # SameSite=None cookies (Secure, checked in config). `state` is the CSRF defence there.
        if self.form_post:
            return replace(self.attributes, samesite="None", secure=True)
        # The callback is a cross-site top-level GET from the IdP: a Strict cookie would not be
        # sent with it, Lax is.
        if self.attributes.samesite == "Strict":
            return replace(self.attributes, samesite="Lax")
        return self.attributes

    @classmethod
    def from_config(cls, config: Any, *, old_secrets: Sequence[str] = ()) -> "SessionSettings":
        """From a PluginConfig (or any object with the option names as attributes)."""

        def opt(name: str, default: Any) -> Any:
            value = getattr(config, name, None)
            return default if value is None else value

        secret = getattr(config, "session_secret", None)
        try:
            attrs = CookieAttributes(
                path=opt("session_cookie_path", "/"),
                domain=getattr(config, "session_cookie_domain", None) or None,
                secure=bool(opt("session_cookie_secure", True)),
                samesite=opt("session_cookie_samesite", "Lax"),
            )
        except ValueError as err:
            text = str(err)
            fname = "session_cookie_path" if "path" in text else "session_cookie_domain" if "domain" in text else "session_cookie_samesite"
            raise ConfigError(fname, text) from None
        redis = RedisSettings.from_config(config)
        host_prefix = bool(opt("session_cookie_host_prefix", True))
        timeout_ms = int(opt("timeout", 10000))
        return cls(
            secrets=tuple([secret] if secret else []) + tuple(old_secrets),
            storage=opt("session_storage", "cookie"),
            cookie_name=host_prefixed(opt("session_cookie_name", "session"), attrs, host_prefix),
            authorization_cookie_name=host_prefixed(opt("authorization_cookie_name", "authorization"), attrs, host_prefix),
            attributes=attrs,
            session_idling_timeout=int(opt("session_idling_timeout", 900)),
            session_rolling_timeout=int(opt("session_rolling_timeout", 3600)),
            session_absolute_timeout=int(opt("session_absolute_timeout", 86400)),
            authorization_rolling_timeout=int(opt("authorization_rolling_timeout", 600)),
            redis=redis,
            revocation=bool(getattr(config, "session_revocation_redis", False)),
            form_post=getattr(config, "response_mode", "query") == "form_post",
            # A refresh is one token-endpoint call: hold/wait for that long plus slack.
            refresh_lock_ttl_ms=timeout_ms + 5000,
            refresh_lock_wait_ms=timeout_ms + 5000,
        )


HOST_PREFIX = "__Host-"


def host_prefixed(name: str, attrs: CookieAttributes, enabled: bool) -> str:
    """`__Host-name` when the cookie qualifies (Secure, Path=/, no Domain; RFC 6265bis 4.1.3.2):
    browsers then refuse the same name set by a sibling subdomain or over plain http, so
    nobody can plant a session or login cookie for this host."""
    if enabled and attrs.secure and attrs.path == "/" and not attrs.domain and not name.startswith(HOST_PREFIX):
        return HOST_PREFIX + name
    return name


def _settings(config: Any) -> SessionSettings:
    return config if isinstance(config, SessionSettings) else SessionSettings.from_config(config)


# -- the protocol -----------------------------------------------------------------------------


class SessionStore(Protocol):
    settings: SessionSettings

    def owns_any(self, cookies: Mapping[str, str]) -> bool: ...
    def load(self, cookies: Mapping[str, str], now: float, *, ignore_expiry: bool = False) -> tuple[Session | None, str]: ...
    def reload(self, session: Session, cookies: Mapping[str, str], now: float) -> tuple[Session | None, str]: ...
    def save(self, session: Session, cookies: Mapping[str, str], now: float) -> list[str]: ...
    def destroy(self, session: Session | None, cookies: Mapping[str, str]) -> list[str]: ...
    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]: ...
    def needs_touch(self, session: Session, now: float) -> bool: ...
    def refresh_lock(self, session: Session) -> ContextManager[None]: ...
    def strip_own_cookies(self, header: str | Iterable[str] | None) -> str | None: ...


class _CookieBase:
    """What both stores share: the session cookie itself."""

    kind = ""  # payload type tag: a cookie written by one storage is refused by the other

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._box = Box.for_secrets(settings.secrets, Purpose.SESSION_COOKIE)
        self._local = LocalLocks()
        self.revocations: Revocations | None = None

    # cookie plumbing --------------------------------------------------------------------

    def owns_any(self, cookies: Mapping[str, str]) -> bool:
        return any(is_chunk_name(self.settings.cookie_name, n) for n in cookies)

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        return expire_chunks(self.settings.cookie_name, self.settings.attributes, cookies)

    def strip_own_cookies(self, header: str | Iterable[str] | None) -> str | None:
        names = (self.settings.cookie_name, self.settings.authorization_cookie_name)
        return strip_cookies(header, lambda n: any(is_chunk_name(base, n) for base in names))

    def _read_payload(self, cookies: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
        name = self.settings.cookie_name
        if isinstance(cookies, CookieJar) and any(is_chunk_name(name, n) for n in cookies.duplicates):
            for jar in cookies.variants(lambda n: is_chunk_name(name, n)):
                payload, _ = self._read_one(jar)
                if payload is not None:
                    return payload, ""
            return None, "duplicate_cookie"
        return self._read_one(cookies)

    def _read_one(self, cookies: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
        name = self.settings.cookie_name
        value, reason = join_chunks(name, cookies)
        if value is None:
            return None, reason
        try:
            payload = self._box.open_json(value, name)
        except DecryptError as err:
            return None, err.reason
        if not isinstance(payload, dict) or payload.get("t") != self.kind:
            return None, "bad_payload"
        return payload, ""

    def _write_payload(self, payload: dict[str, Any], cookies: Mapping[str, str], now: float, max_age: int, *, compress: bool) -> list[str]:
        name = self.settings.cookie_name
        value = self._box.seal_json({"t": self.kind, **payload}, name, compress=compress)
        try:
            return write_chunks(name, value, self.settings.attributes, cookies, max_age=max_age, now=now)
        except CookieTooLarge:
            raise SessionTooLarge(f"{len(value)} characters") from None

    def _ttl(self, session: Session, now: float) -> int:
        remaining = session.remaining(now, self.settings)
        return NO_LIMIT_TTL if remaining is None else remaining

    def _check(self, session: Session, now: float, ignore_expiry: bool) -> tuple[Session | None, str]:
        if not ignore_expiry:
            reason = session.expired(now, self.settings)
            if reason is not None:
                log.debug("oidc: session %s ended: %s", fingerprint(session.id), reason)
                return None, reason
        return session, ""

    # timing -----------------------------------------------------------------------------

    def needs_touch(self, session: Session, now: float) -> bool:
        """True when re-issuing now is worth a Set-Cookie: `touch_interval` has passed, or a
        quarter of the shortest idle/rolling timeout (so short timeouts still get renewed)."""
        interval = self.settings.touch_interval
        for t in (self.settings.session_idling_timeout, self.settings.session_rolling_timeout):
            if t > 0:
                interval = min(interval, max(1, t // 4))
        return now - session.last_seen_at >= interval


# -- cookie storage ----------------------------------------------------------------------------


class CookieStore(_CookieBase):
    """The whole session, sealed in the (chunked) cookie."""

    kind = "c"

    def __init__(self, settings: SessionSettings, redis_client: Any = None) -> None:
        super().__init__(settings)
        if settings.revocation:
            self.revocations = build_revocations(settings, redis_client)

    def load(self, cookies: Mapping[str, str], now: float, *, ignore_expiry: bool = False) -> tuple[Session | None, str]:
        payload, reason = self._read_payload(cookies)
        if payload is None:
            return None, reason
        try:
            session = Session.from_dict(payload)
        except ValueError:
            return None, "bad_payload"
        session, reason = self._check(session, now, ignore_expiry)
        # Timeouts first (no Redis call for an expired cookie), then the revocation record.
        if session is not None and self.revocations is not None and self.revocations.is_revoked(session.id):
            return None, "session_revoked"
        return session, reason

    def reload(self, session: Session, cookies: Mapping[str, str], now: float) -> tuple[Session | None, str]:
        # The cookie is the only copy: what the request carried is the latest we can know.
        return session, ""

    def save(self, session: Session, cookies: Mapping[str, str], now: float) -> list[str]:
        ttl = self._ttl(session, now)
        if ttl <= 0:
            return self.clear_cookies(cookies)
        # Compressed: a session holds only what the IdP and we generated, nothing the client chose.
        return self._write_payload(session.to_dict(), cookies, now, ttl, compress=True)

    def destroy(self, session: Session | None, cookies: Mapping[str, str]) -> list[str]:
        """Expires the cookie; with revocation on, also records the session id as revoked so a
        copy of the cookie stops working on every node."""
        if session is not None and self.revocations is not None:
            self.revocations.revoke(session, time.time())
        return self.clear_cookies(cookies)

    @contextmanager
    def refresh_lock(self, session: Session) -> Iterator[None]:
        with self._local.hold(session.id, self.settings.refresh_lock_wait_ms / 1000.0):
            yield


# -- redis storage -----------------------------------------------------------------------------


# KEYS[1] = session record, KEYS[2] = its revocation record; ARGV = value, ttl.
_SAVE_UNLESS_REVOKED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisStore(_CookieBase):
    """Tokens in Redis, sealed with a per-session key that only the cookie carries."""

    kind = "r"

    def __init__(self, settings: SessionSettings, client: Any = None) -> None:
        super().__init__(settings)
        if settings.redis.ssl and not settings.redis.ssl_verify:
            log.warning("oidc: session_redis_ssl_verify is false: the Redis server is not authenticated, "
                        "anyone on the path can read and forge sessions")
        self.client = client if client is not None else make_redis_client(settings.redis)
        self.guard = RedisGuard(self.client, settings.redis, component="session store",
                                error=lambda reason, detail: StoreUnavailable(detail, reason))
        self.keys = KeySpace(settings.redis.prefix, derive_key(settings.secrets[0], Purpose.REDIS_ID))
        self.revocations = build_revocations(settings, self.client, self.guard)
        self._save_unless_revoked = self.client.register_script(_SAVE_UNLESS_REVOKED)

    # names: a session's record and lock share one hash tag (one Cluster slot) ------------

    def redis_key(self, session_id: str) -> str:
        return self.keys.key("s", session_id, "session")

    def lock_key(self, session_id: str) -> str:
        return self.keys.key("s", session_id, "lock")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Every Redis failure becomes StoreUnavailable with a reason (redis_timeout, ...)."""
        return self.guard.call(what, fn, *args, **kwargs)

    # the store --------------------------------------------------------------------------

    def _handle(self, cookies: Mapping[str, str]) -> tuple[tuple[str, bytes] | None, str]:
        payload, reason = self._read_payload(cookies)
        if payload is None:
            return None, reason
        sid, key64 = payload.get("i"), payload.get("k")
        if not isinstance(sid, str) or not (16 <= len(sid) <= 64) or not isinstance(key64, str):
            return None, "bad_payload"
        try:
            key = b64url_decode(key64)
        except DecryptError:
            return None, "bad_payload"
        if len(key) != KEY_BYTES:
            return None, "bad_payload"
        return (sid, key), ""

    def _fetch(self, sid: str, key: bytes) -> tuple[Session | None, str]:
        rkey = self.redis_key(sid)
        raw = self._call("get", self.client.get, rkey)
        if raw is None:
            return None, "session_not_found"
        try:
            data = json.loads(Box.for_key(key).open(bytes(raw), rkey).decode("utf-8"))
            session = Session.from_dict(data, key=key)
        except (DecryptError, ValueError, UnicodeDecodeError, RecursionError):
            return None, "bad_record"
        if not hmac.compare_digest(session.id.encode(), sid.encode()):
            return None, "bad_record"
        return session, ""

    def load(self, cookies: Mapping[str, str], now: float, *, ignore_expiry: bool = False) -> tuple[Session | None, str]:
        handle, reason = self._handle(cookies)
        if handle is None:
            return None, reason
        session, reason = self._fetch(*handle)
        if session is None:
            return None, reason
        return self._check(session, now, ignore_expiry)

    def reload(self, session: Session, cookies: Mapping[str, str], now: float) -> tuple[Session | None, str]:
        """The copy in Redis, which another process may have refreshed meanwhile."""
        latest, reason = self._fetch(session.id, session.key)
        if latest is None:
            return None, reason
        return self._check(latest, now, False)

    def save(self, session: Session, cookies: Mapping[str, str], now: float) -> list[str]:
        ttl = self._ttl(session, now)
        if ttl <= 0:
            return self.destroy(session, cookies)
        if len(session.key) != KEY_BYTES:  # e.g. a session that came from cookie storage
            session = replace(session, key=secrets.token_bytes(KEY_BYTES))
        rkey = self.redis_key(session.id)
        record = Box.for_key(session.key).seal(dumps_compact(session.to_dict()), rkey, compress=True)
        # Atomic with the revocation check (same hash tag, same slot): a refresh finishing after
        # a logout cannot bring the session back.
        if not self._call("set", self._save_unless_revoked, keys=[rkey, self.keys.key("s", session.id, "revoked")],
                          args=[record, ttl]):
            raise SessionRevoked("revoked while in use")
        handle = {"i": session.id, "k": b64url_encode(session.key)}
        return self._write_payload(handle, cookies, now, ttl, compress=False)

    def destroy(self, session: Session | None, cookies: Mapping[str, str]) -> list[str]:
        """Deletes the Redis record (from the session, or the cookie when the session did not
        load) and expires every session cookie chunk."""
        sid = session.id if session is not None else None
        if sid is None:
            handle, _ = self._handle(cookies)
            sid = handle[0] if handle else None
        if session is not None:
            assert self.revocations is not None
            self.revocations.revoke(session, time.time())  # writes the record, deletes the session
        elif sid is not None:
            self._call("delete", self.client.delete, self.redis_key(sid))
        return self.clear_cookies(cookies)

    @contextmanager
    def refresh_lock(self, session: Session) -> Iterator[None]:
        wait_ms = self.settings.refresh_lock_wait_ms
        with self._local.hold(session.id, wait_ms / 1000.0):
            # In-process waiters queue on the local lock: only one thread per process polls Redis.
            with RedisLock(self.client, self.lock_key(session.id), ttl_ms=self.settings.refresh_lock_ttl_ms, wait_ms=wait_ms):
                yield


def build_session_store(config: Any, *, redis_client: Any = None) -> CookieStore | RedisStore:
    settings = _settings(config)
    if settings.storage == "redis":
        return RedisStore(settings, redis_client)
    return CookieStore(settings, redis_client)


# Login round-trip cookies live in authorization.py; re-exported for existing imports.
from kong_oidc_py.browser.session.authorization import AuthorizationStore  # noqa: E402
