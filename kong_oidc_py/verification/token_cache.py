"""Verified tokens, keyed by sha256(token), so a repeat token costs a hash and a dict lookup.

Only successful verifications are stored, and an entry never outlives the token: it expires at
min(exp + leeway, stored_at + ttl). The verifier also drops entries whose signing key the IdP
no longer publishes (`evict_where`, at the key set refresh that notices it). Reads take no lock (a CPython dict read is atomic); writes
and eviction do. Eviction drops the oldest insertion, which for same-TTL entries is also the
one closest to expiry, so a full cache behaves like a TTL cache without per-read bookkeeping.

The store is an OrderedDict: evicting the oldest entry is `popitem(last=False)`, O(1). With a
plain dict, `next(iter(d))` walks over every slot freed by earlier evictions until the next
resize, so a full cache paid several microseconds per insertion (measured: bench/verify.py
`cache_put_full`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from kong_oidc_py import metrics

V = TypeVar("V")


class TokenCache(Generic[V]):
    __slots__ = ("max_size", "ttl", "_data", "_lock")

    def __init__(self, max_size: int, ttl: float) -> None:
        if max_size < 1 or ttl <= 0:
            raise ValueError("a token cache needs max_size >= 1 and ttl > 0")
        self.max_size = max_size
        self.ttl = ttl
        self._data: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float) -> V | None:
        entry = self._data.get(digest)
        if entry is None:
            metrics.token_cache(False)
            return None
        if now < entry[0]:
            metrics.token_cache(True)
            return entry[1]
        with self._lock:
            if self._data.get(digest) is entry:
                del self._data[digest]
        metrics.token_cache(False)
        return None

    def put(self, digest: bytes, value: V, now: float, expires_at: float | None) -> None:
        """Store `value` until min(expires_at, now + ttl); nothing when that is not in the future."""
        deadline = now + self.ttl
        if expires_at is not None and expires_at < deadline:
            deadline = expires_at
        if deadline <= now:
            return
        data = self._data
        entry = (deadline, value)
        with self._lock:
            if data.pop(digest, None) is None:
                max_size = self.max_size
                while len(data) >= max_size:
                    data.popitem(last=False)
            data[digest] = entry

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._data.pop(digest, None)

    def evict_where(self, predicate: Callable[[V], bool]) -> int:
        """Drop every entry whose value matches; returns how many. O(n) under the lock: meant
        for rare events (a key set that changed), never for the request path."""
        with self._lock:
            doomed = [digest for digest, (_, value) in self._data.items() if predicate(value)]
            for digest in doomed:
                del self._data[digest]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
