"""Kong's traditional router, the HTTP subset (kong/router/traditional.lua, kong/router/utils.lua).

* route order: categories by match_weight (number of rule kinds: host, header, uri, method) and
  category bit (HOST 0x40 > HEADER 0x20 > URI 0x10 > METHOD 0x08), then `sort_routes`:
  submatch_weight (regex uri 0x01, plain hosts only 0x02), regex_priority (only routes with a regex
  path), longest plain path, declaration order (created_at);
* paths: plain prefix (`find(req_uri, value, nil, true) == 1`) or `~regex` anchored at the start
  (`re_match(..., "ajo")` of `<regex>(?<uri_postfix>.*)`), longest path of a route first;
* the request path is normalized first (utils.lua `strip_uri_args` -> kong/tools/uri.lua
  `normalize(path, true)`);
* hosts: exact (port ignored when the route host has none) or wildcard (`*.example.com`,
  `example.*`);
* upstream uri: path_handling v0 (utils.lua `get_upstream_uri_v0`) or v1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .uri import normalize

HOST, HEADER, URI, METHOD = 0x40, 0x20, 0x10, 0x08
HAS_REGEX_URI, PLAIN_HOSTS_ONLY = 0x01, 0x02


@dataclass
class Match:
    route: dict
    service: dict | None
    upstream_uri: str  # path only, without query
    upstream_host: str | None  # preserve_host: the client's Host header
    uri_prefix: str | None
    uri_captures: dict = field(default_factory=dict)


@dataclass
class _Compiled:
    route: dict
    service: dict | None
    order: int
    match_weight: int
    category_bit: int
    submatch_weight: int
    max_uri_length: int
    uris: list  # (is_regex, value, compiled)
    hosts: list  # (wildcard, value, regex)
    methods: set


class Router:
    def __init__(self, routes: list[dict], services: dict[str, dict]):
        compiled = []
        for i, r in enumerate(routes):
            if "http" not in r.get("protocols", ["http"]) and "https" not in r.get("protocols", []):
                continue
            svc = services.get((r.get("service") or {}).get("id"))
            bits, weight, sub, maxlen = 0, 0, 0, 0
            hosts = []
            has_wild = False
            for h in r.get("hosts") or []:
                if "*" in h:
                    has_wild = True
                    rx = re.escape(h).replace(r"\*", ".+")
                    if not re.search(r":\d+$", h):
                        rx += r"(?::\d+)?"
                    hosts.append((True, h, re.compile("^" + rx + "$", re.I)))
                else:
                    hosts.append((False, h.lower(), None))
            if hosts:
                bits |= HOST
                weight += 1
                if not has_wild:
                    sub |= PLAIN_HOSTS_ONLY
            uris = []
            for p in r.get("paths") or []:
                if p.startswith("~"):
                    uris.append((True, p[1:], re.compile(p[1:] + r"(?P<uri_postfix>.*)", re.S)))
                    sub |= HAS_REGEX_URI
                else:
                    uris.append((False, p, None))
                    maxlen = max(maxlen, len(p))
            if uris:
                bits |= URI
                weight += 1
                uris.sort(key=lambda u: -len(u[1]))  # sort_uris
            methods = set(m.upper() for m in r.get("methods") or [])
            if methods:
                bits |= METHOD
                weight += 1
            compiled.append(_Compiled(r, svc, i, weight, bits, sub, maxlen, uris, hosts, methods))

        def key(c: _Compiled):
            rp = c.route.get("regex_priority", 0) if c.submatch_weight & HAS_REGEX_URI else 0
            return (-c.match_weight, -c.category_bit, -c.submatch_weight, -rp, -c.max_uri_length, c.order)

        self.routes = sorted(compiled, key=key)

    def find(self, method: str, request_uri: str, host_header: str | None) -> Match | None:
        idx = request_uri.find("?", 1)  # utils.lua strip_uri_args: find(req_uri, "?", 2, true)
        path = request_uri[:idx] if idx >= 0 else request_uri
        req_uri = normalize(path, True)
        host = (host_header or "").lower()
        host_no_port = re.sub(r":\d+$", "", host)
        for c in self.routes:
            if c.methods and method.upper() not in c.methods:
                continue
            if c.hosts and not self._host_ok(c, host, host_no_port):
                continue
            prefix = postfix = None
            captures: dict = {}
            if c.uris:
                m = self._uri(c, req_uri)
                if m is None:
                    continue
                prefix, postfix, captures = m
            return Match(
                route=c.route,
                service=c.service,
                upstream_uri=self._upstream_uri(c, req_uri, prefix, postfix),
                upstream_host=host_header if c.route.get("preserve_host") else None,
                uri_prefix=prefix if c.route.get("strip_path") else None,
                uri_captures=captures,
            )
        return None

    @staticmethod
    def _host_ok(c: _Compiled, host: str, host_no_port: str) -> bool:
        for wild, value, rx in c.hosts:
            if wild:
                if rx.match(host):
                    return True
            elif value == host or (":" not in value and value == host_no_port):
                return True
        return False

    @staticmethod
    def _uri(c: _Compiled, req_uri: str):
        for is_regex, value, rx in c.uris:
            if is_regex:
                m = rx.match(req_uri)
                if m:
                    postfix = m.group("uri_postfix")
                    prefix = req_uri[: len(req_uri) - len(postfix)]
                    groups = {"unnamed": [g for g in m.groups()[:-1]],
                              "named": {k: v for k, v in m.groupdict().items() if k != "uri_postfix"}}
                    return prefix, _sanitize_postfix(postfix), groups
            elif req_uri.startswith(value):
                return req_uri[: len(value)], _sanitize_postfix(req_uri[len(value):]), {}
        return None

    @staticmethod
    def _upstream_uri(c: _Compiled, req_uri: str, prefix, postfix) -> str:
        route = c.route
        strip = route.get("strip_path", True)
        request_postfix = postfix if postfix is not None else req_uri[1:]
        base = (c.service or {}).get("path") or "/"
        if route.get("path_handling") == "v1":
            if strip:
                if base.endswith("/") and request_postfix.startswith("/"):
                    return base[:-1] + request_postfix
                return base + request_postfix
            return base + req_uri[1:]
        return upstream_uri_v0(strip, request_postfix, req_uri, base)


def _sanitize_postfix(p: str) -> str:
    # utils.lua sanitize_uri_postfix
    if p in (".", ".."):
        return ""
    if p.startswith("./"):
        return p[2:]
    if p.startswith("../"):
        return p[3:]
    return p


def upstream_uri_v0(strip_path: bool, request_postfix: str, req_uri: str, upstream_base: str) -> str:
    """kong/router/utils.lua `get_upstream_uri_v0`, same branches."""
    if upstream_base.endswith("/"):
        if strip_path:
            if request_postfix == "":
                if upstream_base == "/":
                    return "/"
                if req_uri.endswith("/"):
                    return upstream_base
                return upstream_base[:-1]
            if request_postfix.startswith("/"):
                return upstream_base[:-1] + request_postfix
            return upstream_base + request_postfix
        return upstream_base + req_uri[1:]
    if strip_path:
        if request_postfix == "":
            if len(req_uri) > 1 and req_uri.endswith("/"):
                return upstream_base + "/"
            return upstream_base
        if request_postfix.startswith("/"):
            return upstream_base + request_postfix
        return upstream_base + "/" + request_postfix
    if req_uri == "/":
        return upstream_base
    return upstream_base + req_uri
