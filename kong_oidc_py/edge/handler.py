"""The Kong-facing plugin: read the request lazily, ask the core, apply the Outcome.

Every PDK call is an IPC round trip to Kong, so this module makes as few as it can and in an
order that fails closed (docs/DESIGN.md "Handler PDK order"):

* the first call is always `kong.request.get_headers` (kong-pdk's own listener, still used with
  --kong-pdk-listener and -m, holds a server-wide lock until a handler's first PDK call, so
  nothing may block before it);
* on allow, the guard marker (`kong.ctx.shared.authenticated_groups`) is written only after
  every upstream change, so a plugin server that dies half-way leaves no marker and Kong's
  `acl` guard denies the request;
* `kong.response.exit` is never the first call and nothing runs after it;
* no exception escapes `access`: kong-pdk 0.36's listener would leave the event unanswered
  (and, before the first PDK call, deadlock every later event); ours (edge/listener.py) would
  answer a 500, but the handler does not rely on it.

A config that fails `parse_config` (a rule Kong's schema cannot express, rules.START_ONLY_RULES)
does not fail StartInstance: Kong would log the error and answer a bare 500 on every request,
starting the instance again each time (ps/plugin.lua l.282-287 in 3.9.3). The instance starts
*broken* instead: the error is logged once per process and config at ERROR (replayed through
`kong.log.err` by edge/kong_log.py), and every request gets a 500 with Kong's generic body,
without re-parsing and without the guard marker, so `acl` denies too.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kong_oidc_py import metrics
from kong_oidc_py.edge import kong_log
from kong_oidc_py.edge.pdk_tree import PdkNode
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.gateway import Gateway, Outcome, config_fingerprint, gateway_for

log = logging.getLogger("kong_oidc_py")

# Kong accepts 1..1000 (kong/pdk/request.lua get_headers); asking for the maximum makes it hard
# to hide an identity header behind a pile of junk headers. When the answer is full we assume
# truncation and clear every identity header we do not set (see Gateway.handle).
MAX_HEADERS = 1000

INTERNAL_ERROR_BODY = {"message": "An unexpected error occurred"}
_ERROR_LOG = {"decision": "error", "reason": "internal_error"}
_CONFIG_ERROR_LOG = {"decision": "error", "reason": "config_error"}


class _Once:
    """Keys seen by this process (bounded), so a broken config is reported once, not once per
    worker instance or per request."""

    def __init__(self, limit: int = 1024) -> None:
        self._seen: dict[str, None] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def first(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= self._limit:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = None
            return True


_REPORTED = _Once()


@dataclass(frozen=True)
class BrokenConfig:
    """Why an instance cannot run: the line for Kong's error log (never a secret value:
    ConfigError messages name fields, not values)."""

    key: str
    message: str


def _stack() -> str:
    """Where it failed and the exception's type, never its message: a message can quote the
    request (a header value, a token) and logs must never carry a credential."""
    exc = sys.exc_info()[1]
    if exc is None:
        return ""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"{frames}{type(exc).__module__}.{type(exc).__qualname__} (message withheld)"


_MISSING = object()


def pdk_caller(kong: Any) -> Callable[..., Any]:
    """call(name, *args): one PDK call by its full name. Our listener's object makes it directly
    (edge/pdk_tree.py: no attribute chain to build per call); any other PDK object (kong-pdk's
    own listener, `-m`, test doubles) by walking the chain."""
    if isinstance(kong, PdkNode):
        return kong.call

    def call(name: str, *args: Any) -> Any:
        target = kong
        for part in name.split(".")[1:]:
            target = getattr(target, part)
        return target(*args)

    return call


class PdkRequest:
    """RequestView over the PDK: each getter costs one call, made at most once."""

    __slots__ = ("_call", "headers", "headers_truncated", "calls", "_cache")

    def __init__(self, kong: Any) -> None:
        self._call = pdk_caller(kong)
        self._cache: dict[str, Any] = {}
        headers = self._call("kong.request.get_headers", MAX_HEADERS)
        self.calls = 1
        self.headers: Mapping[str, list[str]] = headers if isinstance(headers, dict) else {}
        # Kong's max counts values, not names: a repeated header arrives as a list.
        count = len(self.headers)
        for value in self.headers.values():
            if type(value) is list:
                count += len(value) - 1
        self.headers_truncated = count >= MAX_HEADERS

    def _get(self, key: str, name: str, *args: Any) -> Any:
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:  # first use in this request (a KeyError would cost more than the lookup)
            self.calls += 1
            value = self._cache[key] = self._call(name, *args)
        return value

    def path(self) -> str:
        return self._get("path", "kong.request.get_path") or "/"

    def method(self) -> str:
        return self._get("method", "kong.request.get_method") or "GET"

    def route(self) -> dict | None:
        route = self._get("route", "kong.router.get_route")
        return route if isinstance(route, dict) else None

    def cached_route(self) -> dict | None:
        """The route if a getter already fetched it; never a PDK call."""
        route = self._cache.get("route")
        return route if isinstance(route, dict) else None

    def query(self) -> Mapping[str, list[str]]:
        query = self._get("query", "kong.request.get_query", 100)
        return query if isinstance(query, dict) else {}

    def raw_query(self) -> str:
        return self._get("raw_query", "kong.request.get_raw_query") or ""

    def scheme(self) -> str:
        return self._get("scheme", "kong.request.get_forwarded_scheme") or "http"

    def host(self) -> str:
        return self._get("host", "kong.request.get_forwarded_host") or ""

    def port(self) -> int:
        port = self._get("port", "kong.request.get_forwarded_port")
        return int(port) if isinstance(port, (int, float)) else 0

    def body(self) -> bytes:
        body = self._get("body", "kong.request.get_raw_body")
        if isinstance(body, str):
            return body.encode("utf-8", "surrogateescape")
        return body if isinstance(body, bytes) else b""

    def credential(self) -> dict | None:
        credential = self._get("credential", "kong.client.get_credential")
        return credential if isinstance(credential, dict) else None

    def load_consumer(self, value: str, by_username: bool) -> dict | None:
        consumer = self._get(f"consumer:{by_username}:{value}", "kong.client.load_consumer", value, by_username)
        return consumer if isinstance(consumer, dict) else None


def upstream_headers(outcome: Outcome) -> dict[str, Any]:
    """The Outcome's header changes as one `kong.service.request.set_headers` table: an empty
    array removes every header of that name (Kong's t/01-pdk/06-service-request/12-set_headers.t
    TEST 16, ngx.req.set_header with an empty table), so clears cost no call of their own
    instead of one `clear_header` each. A name that is also set is not cleared: nginx compares
    names case-insensitively and Lua's `pairs` order is unspecified."""
    headers: dict[str, Any] = {}
    set_lower = {name.lower() for name in outcome.upstream_set}
    for name in outcome.upstream_clear:
        if name.lower() not in set_lower:
            headers[name] = []
    headers.update(outcome.upstream_set)
    return headers


def apply_outcome(kong: Any, outcome: Outcome) -> None:
    """Turn the core's decision into PDK calls (the fewest, in the fail-closed order)."""
    call = pdk_caller(kong)
    if outcome.status is None:
        headers = upstream_headers(outcome)
        if headers:
            call("kong.service.request.set_headers", headers)
        if outcome.upstream_raw_query is not None:
            call("kong.service.request.set_raw_query", outcome.upstream_raw_query)
        if outcome.response_headers:
            call("kong.response.set_headers", outcome.response_headers)
        if outcome.consumer is not None or outcome.credential is not None:
            # [None, credential] reaches Lua whole (measured, shared doc 2.5); only a None
            # *followed by two values* loses arguments to LuaJIT's unpack.
            call("kong.client.authenticate", outcome.consumer, outcome.credential)
        if outcome.authenticated_groups is not None:
            call("kong.ctx.shared.set", "authenticated_groups", outcome.authenticated_groups)
        call("kong.log.set_serialize_value", "oidc", outcome.log)
        return
    call("kong.log.set_serialize_value", "oidc", outcome.log)
    body = outcome.body if outcome.body is not None else ""
    call("kong.response.exit", outcome.status, body, outcome.response_headers or {})


class Plugin:
    """kong-pdk instantiates this once per plugin instance (StartInstance) with Kong's config.

    A bad config does not raise: the instance starts broken (module docstring) and refuses
    every request with 500, having said why once: fail closed, loudly, once.
    """

    broken: BrokenConfig | None = None

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._raw = dict(config)
        self._instance, self._route = metrics.instance_labels(self._raw)
        try:
            self.gateway: Gateway = gateway_for(self._raw)
        except ConfigError as err:
            self._start_broken(f"oidc: invalid configuration, every request on this plugin instance is "
                               f"refused with 500 until it is fixed: {err}", "")
        except Exception:  # noqa: BLE001 - a bug while building must fail closed too, not retry per request
            self._start_broken("oidc: the plugin instance could not start; every request is refused "
                               "with 500", f":\n{_stack()}")

    def _start_broken(self, message: str, detail: str) -> None:
        # One ERROR record per process and config: edge/kong_log.py replays it through
        # kong.log.err on the next access event, where Kong shows it by default.
        self.gateway = None  # type: ignore[assignment]
        self.broken = BrokenConfig(config_fingerprint(self._raw), message)
        if _REPORTED.first(self.broken.key):
            log.error("%s%s", message, detail)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # kong-pdk's -m mode pickles the bound handler per event; rebuild from the raw config
        # in the pool process (gateway_for shares one Gateway per config per process).
        return (Plugin, (self._raw,))

    def access(self, kong: Any) -> None:
        started = time.perf_counter()
        if self.broken is not None:
            # No re-parse, no request read: [kong.log.err replay] -> set_serialize_value -> exit(500).
            _fail(kong, "config_error")
            self._count(None, _CONFIG_ERROR_LOG, started)
            return
        try:
            request = PdkRequest(kong)
        except Exception:  # noqa: BLE001 - nothing has been said to Kong yet; a plain return lets the guard deny
            log.error("oidc: reading the request failed:\n%s", _stack())
            self._count(None, _ERROR_LOG, started)
            return
        try:
            outcome = self.gateway.handle(request)
        except Exception:  # noqa: BLE001 - a bug must become a 500, never a hung event
            log.error("oidc: unexpected error:\n%s", _stack())
            _fail(kong, "internal_error")
            self._count(request, _ERROR_LOG, started)
            return
        try:
            _replay_warnings(kong)
            apply_outcome(kong, outcome)
        except Exception:  # noqa: BLE001
            log.error("oidc: applying the outcome failed:\n%s", _stack())
            if outcome.status is None:
                _fail(kong, "internal_error")
            self._count(request, _ERROR_LOG, started)
            return
        self._count(request, outcome.log, started)

    def _count(self, request: "PdkRequest | None", fields: Mapping[str, Any], started: float) -> None:
        if not metrics.enabled():
            return
        route = self._route
        if not route and request is not None:
            # A service-scoped instance knows its route only if the decision already asked.
            fetched = request.cached_route()
            route = (fetched.get("name") or fetched.get("id") or "") if fetched else ""
        metrics.decision(self._instance, route, fields, time.perf_counter() - started)


def _replay_warnings(kong: Any) -> None:
    """Our warnings/errors since the last event, at their level in Kong's log (edge/kong_log.py).
    After the first PDK call (kong-pdk's lock) and before the last (exit ends the event)."""
    bridge = kong_log.bridge()
    if bridge is not None and bridge.pending():
        bridge.drain(kong)


def _fail(kong: Any, reason: str) -> None:
    try:
        _replay_warnings(kong)
        kong.log.set_serialize_value("oidc", {"decision": "error", "reason": reason})
        kong.response.exit(500, INTERNAL_ERROR_BODY, {})
    except Exception:  # noqa: BLE001 - the guard still denies: no marker was written
        log.error("oidc: could not send the 500:\n%s", _stack())
