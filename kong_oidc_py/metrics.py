"""Prometheus metrics: what the plugin decided, how the IdP answered, how the caches did.

Off by default: every recording function is a no-op until `enable()` runs (the plugin server
does that when `--metrics-port` is given), so the hot path pays one global lookup when metrics
are off. When on, each event costs a few counter increments (~1 µs each).

Labels are bounded by configuration, never by traffic: plugin instance and route come from the
config Kong sends (ids and names it defines), issuers from the config's issuer list, decision and
reason from the plugin's fixed vocabularies (anything else is counted as `other`). No token,
subject, path or header value ever becomes a label.

Under kong-pdk's `-m` the handlers run in pool processes; prometheus_client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by the server before any process imports prometheus_client)
lets the parent's listener sum what every process recorded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Mapping

# Seconds; a decision is PDK round trips (~0.1-1 ms each) plus, rarely, an IdP call.
EVENT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
FETCH_KINDS = frozenset({"discovery", "jwks", "token", "par", "introspection", "userinfo", "revocation"})
FETCH_OUTCOMES = frozenset({"ok", "timeout", "unreachable", "tls", "status", "too_large", "bad_json", "invalid", "error"})
REFRESH_OUTCOMES = frozenset({"refreshed", "shared", "failed", "no_refresh_token"})


@dataclass
class _Metrics:
    registry: Any
    decisions: Any
    event_seconds: Any
    fetches: Any
    fetch_seconds: Any
    token_cache: Any
    refreshes: Any


class _Vocabulary:
    """Decision and reason codes are identifiers written in our code, but a future code path
    could carry an IdP-sent word: accept code-shaped values, at most `limit` distinct ones, and
    count the rest as `other`, so no input can grow the label set."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            return ""
        if value in self._seen:
            return value
        if not _CODE.fullmatch(value):
            return "other"
        with self._lock:
            if value in self._seen or len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return "other"


_metrics: _Metrics | None = None
_lock = threading.Lock()
_decisions = _Vocabulary(32)
_reasons = _Vocabulary(256)


def _bounded(value: Any, allowed: frozenset[str] | None = None, max_len: int = 64) -> str:
    if not isinstance(value, str) or not value:
        return ""
    if allowed is not None:
        return value if value in allowed else "other"
    return value[:max_len]


def enable(registry: Any = None) -> None:
    """Create the metrics (once). `registry` is for tests; the default is prometheus_client's."""
    global _metrics
    with _lock:
        if _metrics is not None:
            return
        from prometheus_client import REGISTRY, Counter, Histogram

        reg = registry if registry is not None else REGISTRY
        _metrics = _Metrics(
            registry=reg,
            decisions=Counter(
                "kong_oidc_decisions", "Requests decided by the plugin, by instance, route, decision and reason.",
                ["instance", "route", "decision", "reason"], registry=reg),
            event_seconds=Histogram(
                "kong_oidc_event_seconds", "Time the plugin spent on one access event, PDK calls included.",
                ["instance"], buckets=EVENT_BUCKETS, registry=reg),
            fetches=Counter(
                "kong_oidc_idp_fetches", "Calls to the identity provider, by issuer, kind and outcome.",
                ["issuer", "kind", "outcome"], registry=reg),
            fetch_seconds=Histogram(
                "kong_oidc_idp_fetch_seconds", "Latency of calls to the identity provider.",
                ["issuer", "kind"], buckets=FETCH_BUCKETS, registry=reg),
            token_cache=Counter(
                "kong_oidc_token_cache", "Token verification cache lookups, by result (hit or miss).",
                ["result"], registry=reg),
            refreshes=Counter(
                "kong_oidc_session_refreshes", "Browser session token refreshes, by outcome.",
                ["outcome"], registry=reg),
        )


def disable() -> None:
    """Forget the metrics and take them out of their registry, so `enable` can run again."""
    global _metrics
    with _lock:
        m, _metrics = _metrics, None
        if m is None:
            return
        for collector in (m.decisions, m.event_seconds, m.fetches, m.fetch_seconds, m.token_cache, m.refreshes):
            try:
                m.registry.unregister(collector)
            except KeyError:
                pass


def enabled() -> bool:
    return _metrics is not None


def instance_labels(config: Mapping[str, Any]) -> tuple[str, str]:
    """(instance, route) from the metadata Kong adds to a plugin config (shared doc 3.3):
    `plugin_instance_name` or `__plugin_id`, and `route_id` when the plugin is route-scoped."""
    instance = config.get("plugin_instance_name") or config.get("__plugin_id") or ""
    return _bounded(instance, max_len=128), _bounded(config.get("route_id"), max_len=64)


def decision(instance: str, route: str, log: Mapping[str, Any], seconds: float) -> None:
    m = _metrics
    if m is None:
        return
    m.decisions.labels(instance, route, _decisions(log.get("decision")), _reasons(log.get("reason"))).inc()
    m.event_seconds.labels(instance).observe(seconds)


def idp_fetch(issuer: str, kind: str, outcome: str, seconds: float) -> None:
    m = _metrics
    if m is None:
        return
    issuer = _bounded(issuer, max_len=256)
    kind = _bounded(kind, FETCH_KINDS)
    m.fetches.labels(issuer, kind, _bounded(outcome, FETCH_OUTCOMES)).inc()
    m.fetch_seconds.labels(issuer, kind).observe(seconds)


def token_cache(hit: bool) -> None:
    m = _metrics
    if m is not None:
        m.token_cache.labels("hit" if hit else "miss").inc()


def session_refresh(outcome: str) -> None:
    """One attempt to refresh a browser session's tokens, by outcome."""
    m = _metrics
    if m is not None:
        m.refreshes.labels(_bounded(outcome, REFRESH_OUTCOMES)).inc()
