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

import hashlib
import hmac
import json
import logging
import secrets
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
    "SessionTooLarge",
    "StoreUnavailable",
    "build_session_store",
]

NO_LIMIT_TTL = 30 * 86400  # cookie Max-Age / Redis TTL when every session timeout is disabled
MAX_PENDING_LOGINS = 4
MAX_RETURN_URL = 2048


class SessionTooLarge(SessionStoreError):
    """The session does not fit in MAX_CHUNKS cookies (use Redis storage)."""

    default_reason = "session_too_large"


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: int = 0
    prefix: str = "oidc"
    connect_timeout_ms: int = 2000
    read_timeout_ms: int = 2000
    max_connections: int = 64


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
        redis = RedisSettings(
            host=opt("session_redis_host", "127.0.0.1"),
            port=int(opt("session_redis_port", 6379)),
            username=getattr(config, "session_redis_username", None) or None,
            password=getattr(config, "session_redis_password", None) or None,
            database=int(opt("session_redis_database", 0)),
            prefix=opt("session_redis_prefix", "oidc"),
            connect_timeout_ms=int(opt("session_redis_connect_timeout", 2000)),
            read_timeout_ms=int(opt("session_redis_read_timeout", 2000)),
        )
        timeout_ms = int(opt("timeout", 10000))
        return cls(
            secrets=tuple([secret] if secret else []) + tuple(old_secrets),
            storage=opt("session_storage", "cookie"),
            cookie_name=opt("session_cookie_name", "session"),
            authorization_cookie_name=opt("authorization_cookie_name", "authorization"),
            attributes=attrs,
            session_idling_timeout=int(opt("session_idling_timeout", 900)),
            session_rolling_timeout=int(opt("session_rolling_timeout", 3600)),
            session_absolute_timeout=int(opt("session_absolute_timeout", 86400)),
            authorization_rolling_timeout=int(opt("authorization_rolling_timeout", 600)),
            redis=redis,
            # A refresh is one token-endpoint call: hold/wait for that long plus slack.
            refresh_lock_ttl_ms=timeout_ms + 5000,
            refresh_lock_wait_ms=timeout_ms + 5000,
        )


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

    def load(self, cookies: Mapping[str, str], now: float, *, ignore_expiry: bool = False) -> tuple[Session | None, str]:
        payload, reason = self._read_payload(cookies)
        if payload is None:
            return None, reason
        try:
            session = Session.from_dict(payload)
        except ValueError:
            return None, "bad_payload"
        return self._check(session, now, ignore_expiry)

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
        return self.clear_cookies(cookies)

    @contextmanager
    def refresh_lock(self, session: Session) -> Iterator[None]:
        with self._local.hold(session.id, self.settings.refresh_lock_wait_ms / 1000.0):
            yield


# -- redis storage -----------------------------------------------------------------------------


def make_redis_client(cfg: RedisSettings) -> Any:
    """A redis-py client on a bounded, blocking pool; no retries (an outage fails fast)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    connect_s = cfg.connect_timeout_ms / 1000.0
    pool = redis.BlockingConnectionPool(
        host=cfg.host,
        port=cfg.port,
        username=cfg.username,
        password=cfg.password,
        db=cfg.database,
        socket_connect_timeout=connect_s,
        socket_timeout=cfg.read_timeout_ms / 1000.0,
        retry=Retry(NoBackoff(), 0),
        max_connections=cfg.max_connections,
        timeout=connect_s,  # waiting for a free pooled connection is bounded too
    )
    return redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class RedisStore(_CookieBase):
    """Tokens in Redis, sealed with a per-session key that only the cookie carries."""

    kind = "r"

    def __init__(self, settings: SessionSettings, client: Any = None) -> None:
        super().__init__(settings)
        import redis.exceptions

        self._errors = (redis.exceptions.RedisError, OSError)
        self.client = client if client is not None else make_redis_client(settings.redis)
        self._id_key = derive_key(settings.secrets[0], Purpose.REDIS_ID)

    # names ------------------------------------------------------------------------------

    def _digest(self, session_id: str) -> str:
        return hmac.new(self._id_key, session_id.encode("utf-8"), hashlib.sha256).hexdigest()[:40]

    def redis_key(self, session_id: str) -> str:
        return f"{self.settings.redis.prefix}:session:{self._digest(session_id)}"

    def lock_key(self, session_id: str) -> str:
        return f"{self.settings.redis.prefix}:lock:{self._digest(session_id)}"

    # redis calls: every failure becomes StoreUnavailable ---------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as err:
            log.warning("oidc: session store %s failed: %s", what, type(err).__name__)
            raise StoreUnavailable(f"{what}: {type(err).__name__}") from None

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
        self._call("set", self.client.set, rkey, record, ex=ttl)
        handle = {"i": session.id, "k": b64url_encode(session.key)}
        return self._write_payload(handle, cookies, now, ttl, compress=False)

    def destroy(self, session: Session | None, cookies: Mapping[str, str]) -> list[str]:
        """Deletes the Redis record (from the session, or the cookie when the session did not
        load) and expires every session cookie chunk."""
        sid = session.id if session is not None else None
        if sid is None:
            handle, _ = self._handle(cookies)
            sid = handle[0] if handle else None
        if sid is not None:
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
    return CookieStore(settings)


# -- authorization (login round trip) ----------------------------------------------------------


class AuthorizationStore:
    """Pending logins, in ONE sealed cookie (`authorization_cookie_name`, chunked if needed).

    Several tabs may start a login at once: the cookie holds up to `max_pending_logins` states,
    each valid for `authorization_rolling_timeout`; pushing one more evicts the oldest (that tab's
    callback then fails cleanly with "start again"). A state is single-use: `pop` removes it.
    Not compressed: `original_url` is chosen by whoever crafted the link (see crypto.py).
    """

    def __init__(self, config: Any) -> None:
        self.settings = _settings(config)
        self._box = Box.for_secrets(self.settings.secrets, Purpose.AUTHORIZATION_COOKIE)

    @property
    def name(self) -> str:
        return self.settings.authorization_cookie_name

    def pending(self, cookies: Mapping[str, str], now: float) -> tuple[list[AuthorizationState], str]:
        """Unexpired pending states (oldest first), or ([], reason) for a missing/bad cookie."""
        value, reason = join_chunks(self.name, cookies)
        if value is None:
            return [], reason
        try:
            payload = self._box.open_json(value, self.name)
        except DecryptError as err:
            return [], err.reason
        items = payload.get("p") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return [], "bad_payload"
        states: list[AuthorizationState] = []
        for item in items[: self.settings.max_pending_logins]:
            try:
                state = AuthorizationState.from_dict(item)
            except ValueError:
                return [], "bad_payload"
            if now - state.created_at < self.settings.authorization_rolling_timeout:
                states.append(state)
        return states, ""

    def push(self, state: AuthorizationState, cookies: Mapping[str, str], now: float) -> list[str]:
        """Set-Cookie values storing `state` next to the still-valid pending ones."""
        if len(state.original_url) > MAX_RETURN_URL:
            log.info("oidc: return URL longer than %d characters; the login returns to /", MAX_RETURN_URL)
            state = replace(state, original_url="/")
        states, _ = self.pending(cookies, now)
        states = (states + [state])[-self.settings.max_pending_logins :]
        return self._write(states, cookies, now)

    def pop(self, state_value: str, cookies: Mapping[str, str], now: float) -> tuple[AuthorizationState | None, list[str]]:
        """(the matching state, Set-Cookie values without it). Mismatch: (None, [])."""
        states, reason = self.pending(cookies, now)
        if not states:
            if reason and reason != "no_cookie":
                log.info("oidc: authorization cookie refused: %s", reason)
            return None, expire_chunks(self.name, self.settings.authorization_attributes, cookies) if reason != "no_cookie" else []
        # A query value with bytes that are not UTF-8 arrives with lone surrogates (pdk_fixes):
        # it can never match a state we issued, and must not raise while we find that out.
        wanted = state_value.encode("utf-8", "surrogateescape") if isinstance(state_value, str) else b""
        match = None
        for s in states:  # compare every entry: no early exit that timing could reveal
            if hmac.compare_digest(s.state.encode("utf-8"), wanted) and match is None:
                match = s
        if match is None:
            return None, []
        rest = [s for s in states if s is not match]
        return match, self._write(rest, cookies, now)

    def clear(self, cookies: Mapping[str, str]) -> list[str]:
        return expire_chunks(self.name, self.settings.authorization_attributes, cookies)

    def _write(self, states: list[AuthorizationState], cookies: Mapping[str, str], now: float) -> list[str]:
        attrs = self.settings.authorization_attributes
        if not states:
            return expire_chunks(self.name, attrs, cookies)
        newest = max(s.created_at for s in states)
        max_age = int(newest + self.settings.authorization_rolling_timeout - now)
        value = self._box.seal_json({"p": [s.to_dict() for s in states]}, self.name)
        return write_chunks(self.name, value, attrs, cookies, max_age=max(1, max_age), now=now)
