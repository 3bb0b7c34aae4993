"""The request path: rewrite (global plugins) -> router -> access (collecting iterator, delayed
response) -> proxy to the upstream -> response -> log phase -> one JSON log line.

Kong sources: kong/init.lua (`execute_global_plugins_iterator`, `execute_collecting_plugins_iterator`,
`flush_delayed_response`), kong/runloop/handler.lua (router, X-Forwarded-*, Via, latency and
request-id headers), kong/runloop/plugins_iterator.lua (plugin precedence), file-log (one JSON line
of kong.log.serialize() per request).
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import acl
from .bridge import StartInstanceError
from .context import SERVER_TOKENS, RequestCtx
from .lua import KongExit, LuaError
from .pdk import error_body, serialize

# nginx bounds request headers by size (Kong's default large_client_header_buffers 4 8k,
# kong.conf.default `nginx_http_large_client_header_buffers`), not by count, so a client can send
# more than the 1000 headers `kong.request.get_headers` returns. http.server stops at 100
# (http.client._MAXHEADERS); 32 KiB hold at most 8192 minimal "a:" lines.
http.client._MAXHEADERS = max(http.client._MAXHEADERS, 8192)  # type: ignore[attr-defined]

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
# set by nginx_kong.lua proxy_set_header (client values are replaced)
KONG_SET = {"host", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
            "x-forwarded-path", "x-forwarded-prefix", "x-real-ip", "x-kong-request-id", "content-length"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_TOKENS

    def setup(self) -> None:
        super().setup()
        self.worker = self.server.engine.next_worker()  # type: ignore[attr-defined]
        self.conn_no = next(self.server.conn_counter)  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:  # no stderr noise
        pass

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _any(self) -> None:
        engine = self.server.engine  # type: ignore[attr-defined]
        body = self._read_body()
        ctx = RequestCtx(
            worker=self.worker.index,
            conn=self.conn_no,
            method=self.command,
            request_uri=self.path,
            http_version=self.request_version,
            # nginx hands Lua the header bytes as they came; http.server decoded them as
            # latin-1, so recover the bytes and carry them as surrogate-escaped str (see rpc.py).
            headers=[(k, v.encode("latin-1").decode("utf-8", "surrogateescape")) for k, v in self.headers.items()],
            body=body,
            client_ip=self.client_address[0],
            client_port=self.client_address[1],
            server_port=self.server.server_address[1],
        )
        ctx.request_length = len(self.raw_requestline) + sum(len(k) + len(v) + 4 for k, v in ctx.headers) + 2 + len(body)
        status, headers, payload = engine.process(self.worker, ctx)
        self._send(status, headers, payload, ctx)
        engine.after_response(self.worker, ctx)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes, ctx: RequestCtx) -> None:
        reason = http.client.responses.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {reason}"]
        if not any(k.lower() == "date" for k, _ in headers):  # Kong: proxy_pass_header Date
            lines.append("Date: " + self.date_time_string())
        for k, v in headers:
            lines.append(f"{k}: {v}")
        if (self.headers.get("Connection") or "").lower() == "close":
            self.close_connection = True
            lines.append("Connection: close")
        else:
            lines.append("Connection: keep-alive")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        data = raw + (payload if self.command != "HEAD" else b"")
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        ctx.bytes_sent = len(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


class HTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, engine):
        self.engine = engine
        self.conn_counter = itertools.count(1)
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = fam
        super().__init__(addr, Handler)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Engine:
    """Kong's runloop for the emulator; `emu` gives state, workers, logs."""

    def __init__(self, emu: Any):
        self.emu = emu
        self._rr = itertools.count()

    def next_worker(self):
        workers = self.emu.workers
        return workers[next(self._rr) % len(workers)]

    # ------------------------------------------------------------------ phases
    def _run_plugin(self, worker, ctx: RequestCtx, handler, entity: dict, conf: dict, phase: str) -> None:
        ctx.plugin = entity
        if handler.kind == "acl":
            if phase == "access":
                acl.access(ctx, entity["config"], worker.pdk)
            return
        worker.bridges[handler.name].handle_event(ctx, conf, phase)

    def process(self, worker, ctx: RequestCtx) -> tuple[int, list[tuple[str, str]], bytes]:
        state = self.emu.state
        ctx.upstream_headers = list(ctx.headers)
        ctx.state = state  # type: ignore[attr-defined]
        t0 = time.monotonic()
        # rewrite: global plugins only, no coroutine, no delayed response (kong/init.lua)
        ctx.phase = "rewrite"
        for handler in state.handlers:
            if "rewrite" not in handler.phases:
                continue
            entity, conf = state.lookup(handler, None, None, None)
            if entity is None:
                continue
            try:
                self._run_plugin(worker, ctx, handler, entity, conf, "rewrite")
            except KongExit as e:
                return self._finish_exit(ctx, e, t0)
            except (LuaError, StartInstanceError) as e:
                self.emu.log("err", f"[kong] {e}", worker=ctx.worker, conn=ctx.conn)
                ctx.unexpected = True
                return self._finish_exit(ctx, self._unexpected(ctx), t0)
        # router (access.before)
        ctx.phase = "access"
        m = state.router.find(ctx.method, ctx.request_uri, (ctx.header_values("host") or [None])[0])
        if m is None:
            ctx.exited = True
            body, hdrs = error_body(ctx, 404, "no Route matched with those values", {})
            e = KongExit(404, body, list(hdrs.items()) + [("Content-Length", str(len(body)))])
            return self._finish_exit(ctx, e, t0)
        ctx.match, ctx.route, ctx.service = m, m.route, m.service
        ctx.upstream_uri = m.upstream_uri
        # access: collecting iterator with delayed response
        for handler in state.handlers:
            route_id = ctx.route["id"]
            service_id = (ctx.service or {}).get("id")
            consumer_id = None if handler.no_consumer else (ctx.authenticated_consumer or {}).get("id") if isinstance(ctx.authenticated_consumer, dict) else None
            entity, conf = state.lookup(handler, route_id, service_id, consumer_id)
            if entity is None or "http" not in entity.get("protocols", ["http"]):
                continue
            ctx.collected.append((handler, entity, conf))
            if ctx.delayed_response is not None or "access" not in handler.phases:
                continue
            try:
                self._run_plugin(worker, ctx, handler, entity, conf, "access")
            except KongExit as e:
                ctx.delayed_response = e
            except (LuaError, StartInstanceError) as e:
                self.emu.log("err", f"[kong] {e}", worker=ctx.worker, conn=ctx.conn)
                ctx.unexpected = True
                ctx.delayed_response = self._unexpected(ctx)
        ctx.plugin = None
        if ctx.delayed_response is not None:
            return self._finish_exit(ctx, ctx.delayed_response, t0)  # flush_delayed_response
        return self._proxy(ctx, t0)

    def _unexpected(self, ctx: RequestCtx) -> KongExit:
        # flush_delayed_response -> kong.response.error(500, "An unexpected error occurred")
        body, hdrs = error_body(ctx, 500, "An unexpected error occurred", {})
        return KongExit(500, body, list(hdrs.items()) + [("Content-Length", str(len(body)))])

    def _apply_resp_ops(self, ctx: RequestCtx, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for op, name, value in ctx.resp_ops:
            if op in ("set", "clear"):
                headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
            if op in ("set", "add"):
                headers += [(name, v) for v in (value if isinstance(value, list) else [value])]
        return headers

    def _finish_exit(self, ctx: RequestCtx, e: KongExit, t0: float):
        ctx.kong_latency_ms = int((time.monotonic() - t0) * 1000)
        headers = self._apply_resp_ops(ctx, [])
        # exit headers win over earlier set_header calls for the same name (ngx.header assignment)
        names = {k.lower() for k, _ in e.headers}
        headers = [(k, v) for k, v in headers if k.lower() not in names] + list(e.headers)
        # header_filter (kong/runloop/handler.lua): not proxied
        headers.append(("X-Kong-Response-Latency", str(ctx.kong_latency_ms)))
        if not any(k.lower() == "server" for k, _ in headers):
            headers.append(("Server", SERVER_TOKENS))
        headers.append(("X-Kong-Request-Id", ctx.request_id))
        ctx.status = e.status
        ctx.response_headers = headers
        return e.status, headers, e.body or b""

    def _proxy(self, ctx: RequestCtx, t0: float):
        svc = ctx.service
        if svc is None:
            body, hdrs = error_body(ctx, 503, "no Service found with those values", {})
            return self._finish_exit(ctx, KongExit(503, body, list(hdrs.items()) + [("Content-Length", str(len(body)))]), t0)
        host, port = svc["host"], int(svc["port"])
        target = self.emu.upstream_override.get(f"{host}:{port}") or self.emu.upstream_override.get(host)
        thost, tport = (target.rsplit(":", 1)[0], int(target.rsplit(":", 1)[1])) if target else (host, port)
        # headers as nginx sends them
        hdrs = [(k, v) for k, v in ctx.upstream_headers if k.lower() not in HOP_BY_HOP and k.lower() not in KONG_SET]
        if ctx.upstream_host:
            up_host = ctx.upstream_host
        elif ctx.match.upstream_host:
            up_host = ctx.match.upstream_host
        else:
            up_host = host if port in (80, 443) else f"{host}:{port}"
        xff = [v for k, v in ctx.upstream_headers if k.lower() == "x-forwarded-for"]
        via = [v for k, v in ctx.upstream_headers if k.lower() == "via"]
        prefix = ctx.match.uri_prefix if ctx.match.uri_prefix not in (None, "/") else None
        hdrs += [("Host", up_host), ("Via", (via[0] + ", " if via else "") + "1.1 " + SERVER_TOKENS),
                 ("X-Forwarded-For", (xff[0] + ", " if xff else "") + ctx.client_ip),
                 ("X-Forwarded-Proto", ctx.scheme), ("X-Forwarded-Host", ctx.host),
                 ("X-Forwarded-Port", str(ctx.server_port)), ("X-Forwarded-Path", ctx.raw_path)]
        if prefix:
            hdrs.append(("X-Forwarded-Prefix", prefix))
        hdrs += [("X-Real-IP", ctx.client_ip), ("X-Kong-Request-Id", ctx.request_id)]
        from .uri import escape

        path = escape(ctx.upstream_uri or "/")
        query = ctx.upstream_query if ctx.upstream_query is not None else ctx.args
        if query is not None and query != "" or ctx.request_uri.endswith("?"):
            path += "?" + (query or "")
        ctx.upstream_uri = path  # var.upstream_uri (with the query, as Kong sets it)
        if not (_is_loopback(thost)):
            self.emu.log("err", f"[kong] refusing non-loopback upstream {thost}:{tport} (use upstream_override)",
                         worker=ctx.worker, conn=ctx.conn)
            return self._bad_gateway(ctx, t0)
        kong_done = time.monotonic()
        ctx.kong_latency_ms = int((kong_done - t0) * 1000)
        try:
            conn = http.client.HTTPConnection(thost, tport, timeout=svc.get("read_timeout", 60000) / 1000)
            conn.putrequest(ctx.upstream_method or ctx.method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs:
                # the original bytes again (see RequestCtx headers): nginx forwards them as sent
                conn.putheader(k, v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v)
            if ctx.body or ctx.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(ctx.body)))
            conn.endheaders(ctx.body or None)
            resp = conn.getresponse()
            payload = resp.read()
            up_headers = [(k, v) for k, v in resp.getheaders()
                          if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
            status = resp.status
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            self.emu.log("err", f"connect() failed ({e}) while connecting to upstream", worker=ctx.worker, conn=ctx.conn)
            return self._bad_gateway(ctx, t0)
        ctx.proxied = True
        ctx.ngx_ctx["__upstream_status"] = status
        ctx.proxy_latency_ms = int((time.monotonic() - kong_done) * 1000)
        headers = self._apply_resp_ops(ctx, up_headers)
        headers.append(("Content-Length", str(len(payload))))
        up_via = [v for k, v in up_headers if k.lower() == "via"]
        headers = [(k, v) for k, v in headers if k.lower() != "via"]
        headers += [("X-Kong-Upstream-Latency", str(ctx.proxy_latency_ms)),
                    ("X-Kong-Proxy-Latency", str(ctx.kong_latency_ms)),
                    ("Via", (up_via[0] + ", " if up_via else "") + "1.1 " + SERVER_TOKENS)]
        if not any(k.lower() == "server" for k, _ in headers):
            headers.append(("Server", SERVER_TOKENS))
        headers.append(("X-Kong-Request-Id", ctx.request_id))
        ctx.status = status
        ctx.response_headers = headers
        return status, headers, payload

    def _bad_gateway(self, ctx: RequestCtx, t0: float):
        body, hdrs = error_body(ctx, 502, "An invalid response was received from the upstream server", {})
        return self._finish_exit(ctx, KongExit(502, body, list(hdrs.items()) + [("Content-Length", str(len(body)))]), t0)

    # ------------------------------------------------------------------ log phase
    def after_response(self, worker, ctx: RequestCtx) -> None:
        """Log phase (Kong: a 0-delay timer after the response) then file-log's JSON line."""
        ctx.phase = "log"
        try:
            serialized = serialize(ctx, self.emu)
            ctx.log_snapshot = {"serialized": json.dumps(serialized), "request_headers": _hdr_table(ctx.headers)}
        except LuaError:
            ctx.log_snapshot = {"serialized": "{}", "request_headers": _hdr_table(ctx.headers)}
        for handler, entity, conf in ctx.collected:
            if "log" not in handler.phases or handler.kind == "acl":
                continue
            try:
                self._run_plugin(worker, ctx, handler, entity, conf, "log")
            except (LuaError, StartInstanceError, KongExit) as e:
                self.emu.log("err", f"[kong] [{handler.name}] log phase: {e}", worker=ctx.worker, conn=ctx.conn)
        ctx.plugin = None
        try:
            line = serialize(ctx, self.emu)
        except LuaError as e:
            self.emu.log("err", f"[kong] [file-log] {e}", worker=ctx.worker, conn=ctx.conn)
            line = {"serialize_error": str(e)}
        line["pdk_calls"] = dict(ctx.pdk_calls)
        self.emu.write_log_line(line)


def _hdr_table(pairs):
    from .pdk import headers_table

    return headers_table(pairs)
