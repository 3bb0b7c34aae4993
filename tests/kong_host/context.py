"""Per-request state (what Kong keeps in ngx.var / ngx.ctx) and the emulator's error log."""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

LEVELS = ["debug", "info", "notice", "warn", "err", "crit", "alert", "emerg"]
KONG_VERSION = "3.9.3"
SERVER_TOKENS = f"kong/{KONG_VERSION}"  # kong/meta.lua _SERVER_TOKENS


class ErrorLog:
    """nginx-style error log: lines below `level` are dropped (Kong's default log_level = notice,
    kong/templates/kong_defaults.lua)."""

    def __init__(self, path: str | None, level: str = "notice", echo: bool = False):
        self.path = path
        self.level = level
        self.echo = echo
        self._lock = threading.Lock()
        self.lines: list[str] = []
        self._f = open(path, "a", encoding="utf-8") if path else None

    def enabled(self, level: str) -> bool:
        return LEVELS.index(level) >= LEVELS.index(self.level)

    def __call__(self, level: str, msg: str, worker: int | None = None, conn: int | None = None) -> None:
        if not self.enabled(level):
            return
        ts = time.strftime("%Y/%m/%d %H:%M:%S")
        w = f"{worker if worker is not None else 0}#0"
        c = f" *{conn}" if conn is not None else ""
        line = f"{ts} [{level}] {w}:{c} {msg}"
        with self._lock:
            self.lines.append(line)
            if self._f:
                self._f.write(line + "\n")
                self._f.flush()
            if self.echo:
                print(line, flush=True)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def close(self) -> None:
        with self._lock:
            if self._f:
                self._f.close()
                self._f = None


@dataclass
class RequestCtx:
    worker: int
    conn: int
    method: str
    request_uri: str
    http_version: str
    headers: list[tuple[str, str]]  # as received, in order
    body: bytes
    client_ip: str
    client_port: int
    server_port: int
    scheme: str = "http"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    start_time: float = field(default_factory=time.time)
    start_mono: float = field(default_factory=time.monotonic)
    # router
    route: dict | None = None
    service: dict | None = None
    match: Any = None
    # upstream request (kong.service.request.*)
    upstream_headers: list[tuple[str, str]] = field(default_factory=list)
    upstream_uri: str | None = None
    upstream_query: str | None = None  # None: the client's args
    upstream_method: str | None = None
    upstream_host: str | None = None
    # downstream response headers set before the response (kong.response.set_header in access)
    resp_ops: list[tuple[str, str, Any]] = field(default_factory=list)
    # ngx.ctx
    phase: str = "rewrite"
    plugin: Any = None  # the running plugin entity (dict)
    shared: dict = field(default_factory=dict)  # kong.ctx.shared
    ngx_ctx: dict = field(default_factory=dict)  # kong.nginx.get_ctx/set_ctx
    authenticated_consumer: dict | None = None
    authenticated_credential: dict | None = None
    serialize_values: list[dict] = field(default_factory=list)
    delayed_response: Any = None
    exited: bool = False
    unexpected: bool = False
    pdk_calls: collections.Counter = field(default_factory=collections.Counter)
    collected: list = field(default_factory=list)  # (plugin entity, handler) for later phases
    # response (for the log phase)
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    bytes_sent: int = 0
    proxied: bool = False
    kong_latency_ms: int = 0
    proxy_latency_ms: int = -1
    log_snapshot: dict | None = None
    request_length: int = 0

    # -- ngx.var ----------------------------------------------------------------------------------
    def header_values(self, name: str) -> list[str]:
        n = name.lower().replace("_", "-")
        return [v for k, v in self.headers if k.lower().replace("_", "-") == n]

    @property
    def raw_path(self) -> str:
        return self.request_uri.split("?", 1)[0]

    @property
    def args(self) -> str | None:
        return self.request_uri.split("?", 1)[1] if "?" in self.request_uri else None

    @property
    def host(self) -> str:
        # nginx $host: Host header lower-cased without port, else the server name
        h = (self.header_values("host") or [""])[0]
        if h.startswith("["):
            h = h.split("]")[0] + "]"
        else:
            h = h.split(":")[0]
        return h.lower() or "kong"

    def var(self, name: str) -> str | None:
        if name.startswith("http_"):
            vals = self.header_values(name[5:])
            return ", ".join(vals) if vals else None
        if name.startswith("arg_"):
            from .pdk import parse_query

            q = parse_query(self.args or "", 100)
            v = q.get(name[4:])
            return v[0] if isinstance(v, list) else (v if isinstance(v, str) else None)
        table = {
            "request_uri": self.request_uri,
            "uri": self.raw_path,
            "scheme": self.scheme,
            "host": self.host,
            "remote_addr": self.client_ip,
            "realip_remote_addr": self.client_ip,
            "remote_port": str(self.client_port),
            "request_method": self.method,
            "server_port": str(self.server_port),
            "server_addr": "127.0.0.1",
            "request_id": self.request_id,
            "kong_request_id": self.request_id,
            "args": self.args,
            "is_args": "?" if self.args is not None else "",
            "query_string": self.args,
            "request_length": str(self.request_length),
            "server_protocol": self.http_version,
            "upstream_uri": self.upstream_uri,
            "status": str(self.status) if self.status else None,
        }
        return table.get(name)


def cjson_encode(value: Any) -> str:
    """cjson.encode as Kong configures it: compact, `/` escaped, empty tables as `{}`."""

    def fix(v):
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v] if v else {}
        return v

    return json.dumps(fix(value), separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")
