"""Single-flight for token refresh: one refresh per session at a time, in-process and across processes.

Why: refresh tokens are often single-use (rotation). Two plugin servers refreshing the same session
at once would each spend the token; the loser's session then dies. The winner refreshes and saves;
waiters block until the lock is free, then reload the session and find it fresh.

* `LocalLocks`: threads of one process, one `threading.Lock` per key, dropped when unused.
* `RedisLock`: `SET key token NX PX ttl`; released by a Lua compare-and-delete so a holder whose
  lock already expired never deletes the next holder's lock. The TTL bounds how long a crashed
  holder blocks others. Every call goes through the client's socket timeouts: an outage raises
  `StoreUnavailable` instead of hanging, and waiting is bounded by `wait_ms` (`LockTimeout`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from kong_oidc_py.errors import OIDCError

log = logging.getLogger("kong_oidc_py")


class SessionStoreError(OIDCError):
    """The session backend failed; callers answer 503-like and keep the session cookies."""

    default_reason = "session_store_error"

    def __init__(self, detail: str | None = None, reason: str | None = None) -> None:
        super().__init__(reason or self.default_reason, "the session store is unavailable", detail)


class StoreUnavailable(SessionStoreError):
    """Redis did not answer in time, refused the connection, or failed."""

    default_reason = "session_store_unavailable"


class LockTimeout(SessionStoreError):
    """Another holder kept the refresh lock longer than we were willing to wait."""

    default_reason = "refresh_lock_timeout"


class LocalLocks:
    """Per-key locks for the threads of one process; the registry holds only keys in use."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=max(0.0, timeout)):
                raise LockTimeout("in-process refresh lock")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                _, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


# KEYS[1] = lock key, ARGV[1] = our token. Deletes only a lock we still own.
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLock:
    """A cross-process mutex on one Redis key. Use as a context manager (blocks, bounded)."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        ttl_ms: int,
        wait_ms: int,
        poll_ms: int = 50,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import redis.exceptions  # optional dependency: only Redis storage needs it

        self._errors = (redis.exceptions.RedisError, OSError)
        self._client = client
        self.name = name
        self.ttl_ms = max(1, int(ttl_ms))
        self.wait_ms = max(0, int(wait_ms))
        self.poll_ms = max(1, int(poll_ms))
        self._clock = clock
        self._sleep = sleep
        self._token = secrets.token_hex(16)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self.held = False

    def try_acquire(self) -> bool:
        """One attempt, never blocks beyond the client's socket timeout."""
        try:
            ok = self._client.set(self.name, self._token, nx=True, px=self.ttl_ms)
        except self._errors as err:
            raise StoreUnavailable(f"lock: {type(err).__name__}") from None
        self.held = bool(ok)
        return self.held

    def acquire(self) -> None:
        """Poll until we hold the lock; LockTimeout after `wait_ms`."""
        deadline = self._clock() + self.wait_ms / 1000.0
        while not self.try_acquire():
            if self._clock() >= deadline:
                raise LockTimeout(f"waited {self.wait_ms} ms")
            self._sleep(self.poll_ms / 1000.0)

    def release(self) -> bool:
        """True when our lock was deleted; False when it had expired (someone else may hold it)."""
        if not self.held:
            return False
        self.held = False
        try:
            return bool(self._release(keys=[self.name], args=[self._token]))
        except self._errors as err:
            # The TTL frees the lock anyway; a failed release must not hide the caller's result.
            raise StoreUnavailable(f"unlock: {type(err).__name__}") from None

    def __enter__(self) -> "RedisLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        # The work inside already happened (e.g. the refreshed session is saved): a failed
        # release must not turn it into an error. The TTL frees the lock.
        try:
            self.release()
        except StoreUnavailable:
            log.warning("oidc: could not release refresh lock; it expires in %d ms", self.ttl_ms)
