"""One IdP (discovery + JWKS) per issuer and settings, shared by every plugin instance.

Sharing matters: Kong creates a plugin instance per route/service configuration, and each
one fetching its own JWKS would multiply the load on the IdP and the rate-limit windows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from kong_oidc_py.idp.discovery import FAILURE_RETRY_SECONDS, Discovery, split_issuer, validate_metadata
from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import Fetcher
from kong_oidc_py.idp.health import IdpHealth
from kong_oidc_py.idp.jwks import JwksCache, KeysChanged, KeySet


@dataclass(frozen=True)
class ProviderSettings:
    issuer: str
    timeout_ms: int = 10000
    ssl_verify: bool = True
    allow_insecure: bool = False
    cache_ttl: int = 600
    rediscovery_lifetime: int = 30
    jwks_max_stale: int = 86400

    @classmethod
    def from_config(cls, config: Any) -> "ProviderSettings":
        """From a PluginConfig (option names as in docs/DESIGN.md)."""
        return cls(
            issuer=config.issuer,
            timeout_ms=int(config.timeout),
            ssl_verify=bool(config.ssl_verify),
            allow_insecure=bool(config.allow_insecure_issuer),
            cache_ttl=int(config.cache_ttl),
            rediscovery_lifetime=int(config.rediscovery_lifetime),
            jwks_max_stale=int(config.jwks_max_stale),
        )


@dataclass(frozen=True)
class ProviderStats:
    discovery_fetches: int
    jwks_fetches: int
    jwks_failures: int
    refresh_rate_limited: int


class Provider:
    def __init__(self, settings: ProviderSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.issuer, self.discovery_url = split_issuer(settings.issuer)
        self._fetcher = Fetcher(
            timeout_ms=settings.timeout_ms,
            ssl_verify=settings.ssl_verify,
            allow_insecure=settings.allow_insecure,
            issuer=self.issuer,
        )
        retry = min(float(settings.rediscovery_lifetime), FAILURE_RETRY_SECONDS)
        self.health = IdpHealth(self.issuer, clock=clock)
        self._discovery = Discovery(
            settings.issuer,
            self._fetcher,
            cache_ttl=settings.cache_ttl,
            max_stale=settings.jwks_max_stale,
            retry_interval=retry,
            allow_insecure=settings.allow_insecure,
            clock=clock,
            health=self.health,
        )
        self._jwks = JwksCache(
            self._jwks_uri,
            self._fetcher,
            cache_ttl=settings.cache_ttl,
            max_stale=settings.jwks_max_stale,
            rediscovery_lifetime=settings.rediscovery_lifetime,
            clock=clock,
            health=self.health,
            refresh_metadata=self._discovery.refresh_if_due,
        )
        self._static_metadata: dict | None = None
        # Bound once: verify() calls these per first-sight token.
        self.key_for = self._jwks.key_for
        self.entry_for = self._jwks.entry_for

    @classmethod
    def from_jwks(cls, issuer: str, jwks: dict) -> "Provider":
        """A provider with fixed keys that never talks to the network (tests and bench).

        Unknown kids fail with unknown_kid; metadata() is {"issuer": issuer}.
        """
        self = cls.__new__(cls)
        self.settings = ProviderSettings(issuer=issuer)
        self.issuer, self.discovery_url = split_issuer(issuer)
        self._fetcher = None
        self._discovery = None
        self.health = IdpHealth(self.issuer)
        self._jwks = JwksCache(
            lambda: "",
            None,
            cache_ttl=float("inf"),
            max_stale=float("inf"),
            rediscovery_lifetime=float("inf"),
            preloaded=KeySet.parse(jwks),
            health=self.health,
        )
        self._static_metadata = {"issuer": self.issuer}
        self.key_for = self._jwks.key_for
        self.entry_for = self._jwks.entry_for
        return self

    @classmethod
    def from_metadata(cls, settings: ProviderSettings, doc: dict) -> "Provider":
        """A provider with a fixed discovery document (explain --discovery FILE); the document
        passes the same validation as a fetched one, and keys are still fetched from its jwks_uri."""
        self = cls(settings)
        validate_metadata(doc, self.issuer, allow_insecure=settings.allow_insecure)
        self._static_metadata = doc
        return self

    def _jwks_uri(self) -> str:
        uri = self.metadata().get("jwks_uri")
        if not isinstance(uri, str):
            raise ProviderError("discovery_failed", "metadata has no jwks_uri", cause="bad_metadata")
        return uri

    def metadata(self) -> dict:
        """The validated discovery document; ProviderError when none is available."""
        if self._static_metadata is not None:
            return self._static_metadata
        return self._discovery.metadata()

    def key_for(self, kid: str | None, alg: str) -> Any:  # replaced per instance in __init__
        return self._jwks.key_for(kid, alg)

    def entry_for(self, kid: str | None, alg: str) -> Any:  # replaced per instance in __init__
        return self._jwks.entry_for(kid, alg)

    def key_is_current(self, kid: str | None, alg: str, thumbprint: str) -> bool:
        """Whether the held key set still gives this key for (kid, alg); never fetches."""
        return self._jwks.is_current(kid, alg, thumbprint)

    def subscribe_key_changes(self, callback: KeysChanged) -> None:
        """`callback(old, new)` after each fetch that changes which key some (kid, alg) gets."""
        self._jwks.subscribe(callback)

    def warm_start(self) -> None:
        """Start the background refresher: one fetch now, then one every cache_ttl."""
        self._jwks.start_refresher()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        ok = self._jwks.wait_idle(timeout)
        if self._discovery is not None:
            ok = self._discovery.wait_idle(timeout) and ok
        return ok

    @property
    def stats(self) -> ProviderStats:
        return ProviderStats(
            discovery_fetches=self._discovery.fetches if self._discovery is not None else 0,
            jwks_fetches=self._jwks.fetches,
            jwks_failures=self._jwks.failures,
            refresh_rate_limited=self._jwks.rate_limited,
        )

    def close(self) -> None:
        self._jwks.stop()
        if self._fetcher is not None:
            self._fetcher.close()


_registry: dict[ProviderSettings, Provider] = {}
_registry_lock = threading.Lock()


def get_provider(issuer: str, settings: ProviderSettings) -> Provider:
    """The process-wide Provider for this issuer and settings, created (and warm-started) once."""
    if settings.issuer != issuer:
        settings = replace(settings, issuer=issuer)
    with _registry_lock:
        provider = _registry.get(settings)
        if provider is None:
            provider = Provider(settings)
            _registry[settings] = provider
            provider.warm_start()
    return provider


def clear_registry() -> None:
    """Tests: forget (and close) every shared provider."""
    with _registry_lock:
        providers = list(_registry.values())
        _registry.clear()
    for provider in providers:
        provider.close()
