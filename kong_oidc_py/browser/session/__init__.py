"""Session layer for the browser login flow (docs/DESIGN.md, `session/`).

crypto.py  HKDF-SHA256 keys per purpose, AES-256-GCM envelope bound to the cookie name
cookie.py  Cookie parsing, Set-Cookie attributes, chunking (`name`, `name_2`, ...), upstream stripping
model.py   `Session`, `Tokens`, `AuthorizationState`, the idle/rolling/absolute timeouts
store.py   `CookieStore`, `RedisStore`, `AuthorizationStore`, `build_session_store`
locks.py   refresh single-flight (in-process and Redis) and the store error types
"""

from kong_oidc_py.browser.session.cookie import CookieAttributes, CookieJar, parse_cookie_header
from kong_oidc_py.browser.session.locks import LockTimeout, SessionStoreError, StoreUnavailable
from kong_oidc_py.browser.session.model import AuthorizationState, Session, Tokens
from kong_oidc_py.browser.session.store import (
    AuthorizationStore,
    CookieStore,
    RedisSettings,
    RedisStore,
    SessionSettings,
    SessionStore,
    SessionTooLarge,
    build_session_store,
)

__all__ = [
    "AuthorizationState",
    "AuthorizationStore",
    "CookieAttributes",
    "CookieJar",
    "CookieStore",
    "LockTimeout",
    "RedisSettings",
    "RedisStore",
    "Session",
    "SessionSettings",
    "SessionStore",
    "SessionStoreError",
    "SessionTooLarge",
    "StoreUnavailable",
    "Tokens",
    "build_session_store",
    "parse_cookie_header",
]
