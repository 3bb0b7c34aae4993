"""OpenID Connect Discovery 1.0: fetch, validate and cache the provider metadata.

The metadata decides where keys come from, so it is checked like any hostile input: `issuer`
must equal the configured issuer exactly (Discovery 4.3; this is what stops one IdP from
speaking for another), `jwks_uri` and the endpoints we may call must pass the https rule.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import Fetcher, check_url
from kong_oidc_py.idp.health import IdpHealth
from kong_oidc_py.idp.singleflight import SingleFlight

log = logging.getLogger("kong_oidc_py")

WELL_KNOWN = "/.well-known/openid-configuration"
# Endpoints the plugin may call or send browsers to: each must obey the https rule.
_URL_FIELDS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "end_session_endpoint")
# With nothing usable cached, how long a failed fetch makes later callers fail fast.
FAILURE_RETRY_SECONDS = 5.0


def split_issuer(configured: str) -> tuple[str, str]:
    """(expected issuer, discovery URL) for a configured issuer or discovery URL."""
    if configured.endswith(WELL_KNOWN):
        return configured[: -len(WELL_KNOWN)], configured
    # Discovery 4: a trailing "/" of the issuer is removed before appending the well-known path,
    # but the issuer itself keeps it (exact comparison).
    return configured, configured.rstrip("/") + WELL_KNOWN


def validate_metadata(doc: dict, expected_issuer: str, *, allow_insecure: bool) -> None:
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or issuer != expected_issuer:
        # Both values are public; showing them side by side is what fixes the config.
        shown = issuer if isinstance(issuer, str) else type(issuer).__name__
        raise ProviderError(
            "discovery_failed",
            f"metadata issuer {shown[:200]!r} is not the configured issuer {expected_issuer!r}",
            cause="issuer_mismatch",
        )
    for name in ("jwks_uri", *_URL_FIELDS):
        if name in doc or name == "jwks_uri":
            try:
                check_url(doc.get(name), allow_insecure=allow_insecure, reason="discovery_failed")  # type: ignore[arg-type]
            except ProviderError as err:
                raise ProviderError("discovery_failed", f"metadata {name}: {err.description}", cause="bad_metadata") from None


class Discovery:
    """Metadata for one issuer: cached for cache_ttl, then refreshed in the background while
    the cached copy keeps serving (up to max_stale after the last successful fetch)."""

    def __init__(
        self,
        configured_issuer: str,
        fetcher: Fetcher,
        *,
        cache_ttl: float,
        max_stale: float,
        retry_interval: float,
        allow_insecure: bool,
        clock: Callable[[], float] = time.monotonic,
        health: IdpHealth | None = None,
    ) -> None:
        self.issuer, self.url = split_issuer(configured_issuer)
        self.health = health if health is not None else IdpHealth(self.issuer, clock=clock)
        self._fetcher = fetcher
        self._ttl = cache_ttl
        self._max_stale = max(max_stale, cache_ttl)
        self._retry = retry_interval
        self._allow_insecure = allow_insecure
        self._clock = clock
        self._flight: SingleFlight[dict] = SingleFlight()
        self._lock = threading.Lock()
        self._doc: dict | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._refreshing = False
        self.fetches = 0

    def metadata(self) -> dict:
        doc, age = self._doc, self._clock() - self._fetched_at
        if doc is not None and age < self._ttl:
            return doc
        if doc is not None and age <= self._max_stale:
            self._refresh_in_background()
            return doc
        return self._flight.do("metadata", self._fetch_blocking)

    def _fetch_blocking(self) -> dict:
        with self._lock:
            doc, now = self._doc, self._clock()
            if doc is not None and now - self._fetched_at <= self._max_stale:
                return doc  # someone refreshed while we queued
            if self._failed_at is not None and now - self._failed_at < self._retry:
                last = self.health.failing("discovery")
                why = f": {last.cause}: {last.description}" if last is not None else ""
                raise ProviderError(
                    "provider_unavailable",
                    f"discovery failed recently; not retrying yet{why}",
                    cause=last.cause if last is not None else "error",
                )
        return self._fetch()

    def _fetch(self) -> dict:
        with self._lock:
            self.fetches += 1
        try:
            doc = self._fetcher.get_json(self.url, reason="discovery_failed")
            validate_metadata(doc, self.issuer, allow_insecure=self._allow_insecure)
        except ProviderError as err:
            with self._lock:
                self._failed_at = self._clock()
            self.health.failure("discovery", err)
            raise
        with self._lock:
            self._doc = doc
            self._fetched_at = self._clock()
            self._failed_at = None
        self.health.success("discovery")
        return doc

    def refresh_if_due(self) -> None:
        """For the provider's refresher thread: fetch now (blocking) when the cached document
        is older than cache_ttl; a failure keeps the cached copy (within max_stale)."""
        if self._doc is not None and self._clock() - self._fetched_at < self._ttl:
            return
        try:
            self._flight.do("metadata", self._fetch_blocking_due)
        except ProviderError:
            pass  # reported to health; the cached copy keeps serving

    def _fetch_blocking_due(self) -> dict:
        with self._lock:
            doc = self._doc
            if doc is not None and self._clock() - self._fetched_at < self._ttl:
                return doc
        return self._fetch()

    def _refresh_in_background(self) -> None:
        with self._lock:
            now = self._clock()
            if self._refreshing or (self._failed_at is not None and now - self._failed_at < self._retry):
                return
            self._refreshing = True

        def run() -> None:
            try:
                self._flight.do("metadata", self._fetch)
            except Exception:  # noqa: BLE001 - already logged; the cached copy keeps serving
                pass
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=run, name="oidc-discovery-refresh", daemon=True).start()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Tests: wait for a background refresh to finish."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._refreshing:
                    return True
            time.sleep(0.005)
        return False
