"""Ending sessions everywhere: revocation records, the sid/sub index, logout-token replay.

Why: a cookie-stored session is self-contained; logging out only asks the browser to drop its
cookie, and a copy keeps working. With Redis configured, logout writes a small revocation record
for the session id that every node checks, living until the session could no longer be valid
anyway (its absolute timeout). Redis-stored sessions are revoked by deleting their record.

Back-channel logout (OIDC Back-Channel Logout 1.0) names an IdP session (`sid`) or a user
(`sub`), not our session ids, so each login adds its session to two Redis sets: by issuer+sid
and by issuer+sub. The sets hold digests of session ids (never the ids: Redis never holds what
would let someone build a cookie), which is all that revoking needs.

Keys (KeySpace, one hash tag per owner so Cluster keeps each owner's keys in one slot):
    prefix:{s:<digest>}:session   Redis storage: the sealed session record (store.py)
    prefix:{s:<digest>}:revoked   revocation record, TTL = until the absolute timeout
    prefix:{sid:<digest>}:sessions, prefix:{sub:<digest>}:sessions   index sets
    prefix:{jti:<digest>}:logout  a logout token's jti, refused when seen again
"""

from __future__ import annotations

import logging
from typing import Any

from kong_oidc_py.browser.session.locks import StoreUnavailable
from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.shared_state.redis_client import KeySpace, RedisGuard

log = logging.getLogger("kong_oidc_py")

NO_LIMIT_TTL = 30 * 86400

# KEYS[1] = index set, ARGV[1] = member, ARGV[2] = ttl. The set lives as long as its longest member.
_INDEX_ADD = """
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class Revocations:
    """Revocation records and the back-channel logout index, on the session store's Redis."""

    def __init__(self, client: Any, guard: RedisGuard, keys: KeySpace, *, absolute_timeout: int) -> None:
        self.client = client
        self.guard = guard
        self.keys = keys
        self.absolute_timeout = absolute_timeout
        self._index_add = client.register_script(_INDEX_ADD)

    # -- names ----------------------------------------------------------------------------

    def session_digest(self, session_id: str) -> str:
        return self.keys.digest("s", session_id)

    def _session_key(self, digest: str, what: str) -> str:
        return f"{self.keys.prefix}:{{s:{digest}}}:{what}"

    def _index_key(self, kind: str, issuer: str, value: str) -> str:
        return self.keys.key(kind, f"{issuer}\x00{value}", "sessions")

    def _ttl(self, session: Session | None, now: float) -> int:
        if self.absolute_timeout <= 0:
            return NO_LIMIT_TTL
        if session is None:  # unknown age: the longest a session can live
            return self.absolute_timeout
        return max(1, int(session.created_at + self.absolute_timeout - now))

    # -- per session ----------------------------------------------------------------------

    def register(self, session: Session, now: float) -> None:
        """At login: index the session under its issuer+sid and issuer+sub."""
        digest = self.session_digest(session.id)
        ttl = self._ttl(session, now)
        targets = [("sub", session.subject)] + ([("sid", session.sid)] if session.sid else [])
        for kind, value in targets:
            if value:
                self.guard.call("index", self._index_add, keys=[self._index_key(kind, session.issuer, value)],
                                args=[digest, ttl])

    def revoke(self, session: Session, now: float) -> None:
        self._revoke_digest(self.session_digest(session.id), self._ttl(session, now))

    def is_revoked(self, session_id: str) -> bool:
        return bool(self.guard.call("revocation check", self.client.exists,
                                    self._session_key(self.session_digest(session_id), "revoked")))

    def _revoke_digest(self, digest: str, ttl: int) -> None:
        # Record first, then delete: a Redis-stored session is gone either way, a cookie-stored
        # one is refused by the record.
        self.guard.call("revoke", self.client.set, self._session_key(digest, "revoked"), b"1", ex=ttl)
        self.guard.call("revoke", self.client.delete, self._session_key(digest, "session"))

    # -- back-channel logout --------------------------------------------------------------

    def revoke_all(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        """Every session of the IdP session `sid` (or, without sid, of the user `sub`)."""
        kind, value = ("sid", sid) if sid else ("sub", sub)
        if not value:
            return 0
        index = self._index_key(kind, issuer, value)
        members = self.guard.call("index read", self.client.smembers, index)
        count = 0
        for member in members or ():
            digest = member.decode("ascii", "replace") if isinstance(member, bytes) else str(member)
            self._revoke_digest(digest, self._ttl(None, 0))
            count += 1
        self.guard.call("index delete", self.client.delete, index)
        return count

    def first_use_of_jti(self, issuer: str, jti: str, ttl: int) -> bool:
        """True the first time this issuer's jti is seen (within `ttl`), False on a replay."""
        key = self.keys.key("jti", f"{issuer}\x00{jti}", "logout")
        return bool(self.guard.call("jti", self.client.set, key, b"1", nx=True, ex=max(1, ttl)))


def build_revocations(settings: Any, client: Any = None, guard: RedisGuard | None = None) -> Revocations:
    """For a SessionSettings: on the given client (Redis storage shares its own), or a new one."""
    from kong_oidc_py.browser.session.crypto import Purpose, derive_key
    from kong_oidc_py.shared_state.redis_client import make_redis_client

    if client is None:
        client = make_redis_client(settings.redis)
    if guard is None:
        guard = RedisGuard(client, settings.redis, component="session revocation",
                           error=lambda reason, detail: StoreUnavailable(detail, reason))
    keys = KeySpace(settings.redis.prefix, derive_key(settings.secrets[0], Purpose.REDIS_ID))
    return Revocations(client, guard, keys, absolute_timeout=settings.session_absolute_timeout)
