"""The IdP's key set over time: lookup, refresh policy, and telling verifiers about changes.

Refresh policy:
* one refresher thread per provider (`start_refresher`, called by warm start): it fetches at
  once, then every cache_ttl (discovery first, when due), so a key the IdP stops publishing
  stops verifying within one cache_ttl; after a failure it retries every
  min(cache_ttl, max(rediscovery_lifetime, 1)) s while held keys keep serving;
* without a refresher (providers built by hand), the first lookup after cache_ttl starts one
  background refresh while the held keys keep serving;
* an unknown kid triggers at most one refresh per rediscovery_lifetime, shared by every caller
  that missed at the same time (single-flight), so random kids cannot hammer the IdP;
* when the IdP fails, held keys keep serving until jwks_max_stale after the last success.

Every installed key set that resolves some (kid, alg) differently from the last one is passed
to the subscribers (verifiers), which drop cached verifications made with keys that are gone.
Failures and recoveries are reported to idp/health.py, which logs them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.idp.fetch import Fetcher
from kong_oidc_py.idp.health import IdpHealth
from kong_oidc_py.idp.keyset import (  # noqa: F401 - parse_jwk, MIN_RSA_BITS re-exported
    ALG_KEY_TYPE,
    MIN_RSA_BITS,
    JwkEntry,
    KeySet,
    log_ignored,
    parse_jwk,
)
from kong_oidc_py.idp.singleflight import SingleFlight

log = logging.getLogger("kong_oidc_py")

# With no usable key at all, a failed fetch makes later callers fail fast for this long
# (or rediscovery_lifetime, when that is shorter).
FAILURE_RETRY_SECONDS = 5.0

KeysChanged = Callable[[KeySet, KeySet], None]


class JwksCache:
    def __init__(
        self,
        jwks_uri: Callable[[], str],
        fetcher: Fetcher | None,
        *,
        cache_ttl: float,
        max_stale: float,
        rediscovery_lifetime: float,
        clock: Callable[[], float] = time.monotonic,
        preloaded: KeySet | None = None,
        health: IdpHealth | None = None,
        refresh_metadata: Callable[[], None] | None = None,
    ) -> None:
        self._jwks_uri = jwks_uri
        self._fetcher = fetcher
        self._ttl = cache_ttl
        self._max_stale = max(max_stale, cache_ttl)
        self._rate = rediscovery_lifetime
        self._clock = clock
        self.health = health if health is not None else IdpHealth("(unnamed issuer)", clock=clock)
        self._refresh_metadata = refresh_metadata
        self._flight: SingleFlight[None] = SingleFlight()
        self._lock = threading.Lock()
        self._static = preloaded is not None
        self._keys: KeySet | None = preloaded
        self._fetched_at = clock()
        self._generation = 0
        self._miss_refresh_at: float | None = None
        self._load_failed_at: float | None = None
        self._load_retry = min(rediscovery_lifetime, FAILURE_RETRY_SECONDS)
        self._background_failed_at: float | None = None
        self._background = 0  # running background fetches
        self._warm_started = False
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribers: list[Callable[[], KeysChanged | None]] = []
        self.fetches = 0
        self.failures = 0
        self.rate_limited = 0
        _live.add(self)

    def _after_fork(self) -> None:
        """In a forked child (kong-pdk -m respawning a pool worker) the refresher thread and any
        lock holder are gone: start clean; lookups refresh lazily until warm_start runs again."""
        self._lock = threading.Lock()
        self._flight = SingleFlight()
        self._stop = threading.Event()
        self._refresher = None
        self._warm_started = False
        self._background = 0

    # -- lookup ---------------------------------------------------------------------------

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The key for (kid, alg); InvalidToken unknown_kid / keys_unavailable otherwise."""
        return self.entry_for(kid, alg).key

    def entry_for(self, kid: str | None, alg: str) -> JwkEntry:
        """The key entry (key, kid, thumbprint) for (kid, alg); same failures as key_for."""
        if alg not in ALG_KEY_TYPE:
            raise InvalidToken("alg_not_allowed", "The token's signing algorithm is not allowed", f"alg={alg}")
        keys = self._keys
        if keys is not None:
            if self._static:
                entry = keys.find_entry(kid, alg)
                if entry is None:
                    raise self._unknown(kid, alg)
                return entry
            age = self._clock() - self._fetched_at
            if age <= self._max_stale:
                if age >= self._ttl and self._refresher is None:
                    self._refresh_in_background()
                entry = keys.find_entry(kid, alg)
                if entry is not None:
                    return entry
        return self._after_miss(kid, alg)

    def is_current(self, kid: str | None, alg: str, thumbprint: str) -> bool:
        """Whether the installed key set still resolves (kid, alg) to this key. No fetch: for a
        verifier that just cached a result and must not keep one a concurrent refresh removed."""
        keys = self._keys
        entry = keys.find_entry(kid, alg) if keys is not None else None
        return entry is not None and entry.thumbprint == thumbprint

    def _after_miss(self, kid: str | None, alg: str) -> JwkEntry:
        seen = self._generation
        try:
            self._flight.do("fetch", lambda: self._refresh_for_miss(seen))
        except Exception:  # noqa: BLE001 - refresh failures are reported; we answer from what we hold
            pass
        keys = self._keys
        if keys is not None and self._clock() - self._fetched_at <= self._max_stale:
            entry = keys.find_entry(kid, alg)
            if entry is not None:
                return entry
            raise self._unknown(kid, alg)
        raise InvalidToken("keys_unavailable", "The signing keys are not available", self._unavailable(kid, alg))

    def _unavailable(self, kid: str | None, alg: str) -> str:
        held = "no usable JWKS held" if self._keys is None else (
            f"the held JWKS is {self._clock() - self._fetched_at:.0f}s old, beyond jwks_max_stale"
        )
        last = self.health.last_failure()
        why = f"; last IdP failure: {last.summary()}" if last is not None else ""
        return f"{held} (kid={_shown(kid)} alg={alg}){why}"

    @staticmethod
    def _unknown(kid: str | None, alg: str) -> InvalidToken:
        return InvalidToken("unknown_kid", "The token was signed with an unknown key", f"kid={_shown(kid)} alg={alg}")

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self, callback: KeysChanged) -> None:
        """Call `callback(old, new)` in the fetching thread whenever a fetched key set resolves
        some (kid, alg) differently. Bound methods are held weakly: a verifier that is gone is
        forgotten, not kept alive."""
        ref: Callable[[], KeysChanged | None]
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        else:
            ref = lambda: callback  # noqa: E731 - a strong reference for plain functions
        with self._lock:
            self._subscribers = [r for r in self._subscribers if r() is not None] + [ref]

    def _notify(self, old: KeySet, new: KeySet) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for ref in subscribers:
            callback = ref()
            if callback is None:
                continue
            try:
                callback(old, new)
            except Exception:  # noqa: BLE001 - one broken subscriber must not stop the others
                log.exception("oidc: key set change subscriber failed")

    # -- refresh --------------------------------------------------------------------------

    def _refresh_for_miss(self, seen_generation: int) -> None:
        with self._lock:
            if self._generation != seen_generation:
                return  # refreshed since the caller looked; it will look again
            now = self._clock()
            holding = self._keys is not None and now - self._fetched_at <= self._max_stale
            if holding:
                # An unknown kid with keys in hand: the rediscovery_lifetime window applies.
                if self._miss_refresh_at is not None and now - self._miss_refresh_at < self._rate:
                    self.rate_limited += 1
                    return
                self._miss_refresh_at = now
            elif self._load_failed_at is not None and now - self._load_failed_at < self._load_retry:
                # Nothing usable held and the IdP just failed: fail fast instead of queueing.
                self.rate_limited += 1
                return
        if not self._fetch() and not holding:
            with self._lock:
                self._load_failed_at = self._clock()

    def _fetch(self) -> bool:
        """One discovery lookup + JWKS fetch; True when new keys were installed."""
        try:
            uri = self._jwks_uri()
        except ProviderError:
            with self._lock:
                self.failures += 1
            return False  # discovery reported its own failure to health
        with self._lock:
            self.fetches += 1
        try:
            assert self._fetcher is not None
            keys = KeySet.parse(self._fetcher.get_json(uri, reason="jwks_failed"))
        except ProviderError as err:
            with self._lock:
                self.failures += 1
            self.health.failure("jwks", err)
            return False
        with self._lock:
            old = self._keys
            self._keys = keys
            self._fetched_at = self._clock()
            self._generation += 1
            self._load_failed_at = None
        self.health.success("jwks")
        if old is None or old.ignored != keys.ignored:
            # Once per change, not at every refresh: the refresher runs every cache_ttl.
            log_ignored(keys.ignored, self.health.issuer)
        if old is None:
            log.info("oidc: JWKS loaded for %s: %d usable keys", self.health.issuer, len(keys))
        elif old.identity != keys.identity:
            gone = sorted({(e.kid or "", e.thumbprint) for e in old.entries} - {(e.kid or "", e.thumbprint) for e in keys.entries})
            log.info(
                "oidc: JWKS changed for %s: %d usable keys; no longer listed: %s",
                self.health.issuer,
                len(keys),
                ", ".join(f"kid={_shown(k)} thumbprint={t}" for k, t in gone) or "none",
            )
            self._notify(old, keys)
        return True

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:  # noqa: BLE001 - a background refresh never takes the process down
                log.exception("oidc: background JWKS task failed")
            finally:
                with self._lock:
                    self._background -= 1

        with self._lock:
            self._background += 1
        try:
            threading.Thread(target=run, name=name, daemon=True).start()
        except RuntimeError:
            with self._lock:
                self._background -= 1

    def _refresh_in_background(self) -> None:
        with self._lock:
            now = self._clock()
            failed = self._background_failed_at
            if self._background or (failed is not None and now - failed < max(self._rate, 1.0)):
                return
            self._background_failed_at = now  # cleared on success below

        def refresh() -> None:
            def run() -> None:
                if self._clock() - self._fetched_at < self._ttl:
                    return  # someone else refreshed
                if self._fetch():
                    with self._lock:
                        self._background_failed_at = None

            self._flight.do("fetch", run)

        self._spawn("oidc-jwks-refresh", refresh)

    # -- the refresher thread ---------------------------------------------------------------

    def start_refresher(self) -> None:
        """Start the one refresher thread (warm start included); never raises, never blocks."""
        with self._lock:
            if self._warm_started or self._static:
                return
            self._warm_started = True
            self._background += 1  # the warm fetch, until the thread has done it
        thread = threading.Thread(
            target=_refresh_loop, args=(weakref.ref(self), self._stop), name="oidc-jwks-refresher", daemon=True
        )
        self._refresher = thread
        # A cache that is garbage-collected wakes its thread so it ends now, not a period later.
        weakref.finalize(self, self._stop.set)
        try:
            thread.start()
        except RuntimeError:
            self._refresher = None
            with self._lock:
                self._background -= 1

    # The old name: warm start is the refresher's first fetch.
    warm_start = start_refresher

    def _tick(self, first: bool) -> float:
        """One refresher round; returns the seconds to sleep before the next."""
        if first:
            if self._keys is None:
                self._flight.do("fetch", self._fetch_if_due)
        elif self._clock() - self._fetched_at >= self._ttl:
            with self._lock:
                self._background += 1
            try:
                if self._refresh_metadata is not None:
                    self._refresh_metadata()
                self._flight.do("fetch", self._fetch_if_due)
            finally:
                with self._lock:
                    self._background -= 1
        age = self._clock() - self._fetched_at
        if self._keys is not None and age < self._ttl:
            return max(self._ttl - age, 0.01)
        return max(min(self._ttl, max(self._rate, 1.0)), 0.01)

    def _fetch_if_due(self) -> None:
        if self._keys is not None and self._clock() - self._fetched_at < self._ttl:
            return  # a miss-triggered fetch just ran
        self._fetch()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the refresher (tests, provider close). A fetch in progress ends at its timeout."""
        self._stop.set()
        thread = self._refresher
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Tests and bench: wait until no background fetch is running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._background:
                    return True
            time.sleep(0.005)
        return False

    @property
    def usable_keys(self) -> int:
        keys = self._keys
        return len(keys) if keys is not None else 0


_live: "weakref.WeakSet[JwksCache]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for cache in list(_live):
        cache._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _refresh_loop(ref: "weakref.ref[JwksCache]", stop: threading.Event) -> None:
    """The refresher thread. It holds its cache only weakly between rounds, so a provider that
    is dropped (or closed) ends its thread at the next wake-up."""
    first = True
    while True:
        cache = ref()
        if cache is None:
            return
        try:
            delay = cache._tick(first)
        except Exception:  # noqa: BLE001 - the refresher must outlive any one bad round
            log.exception("oidc: JWKS refresher round failed")
            delay = FAILURE_RETRY_SECONDS
        finally:
            if first:
                with cache._lock:
                    cache._background -= 1
                first = False
        del cache
        if stop.wait(delay):
            return


def _shown(kid: str | None) -> str:
    # kids are public identifiers, but a hostile token can make them long or unprintable.
    if kid is None:
        return "None"
    return repr(kid[:64])
