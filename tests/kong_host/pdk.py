"""The Kong PDK functions reachable from a plugin server, with Kong 3.9's semantics.

Each function takes the request context and the (already unpacked) Lua arguments and returns the
FIRST return value (mp_rpc.lua `call_pdk_method` keeps only that). Lua `error()`s are raised as
LuaError, terminal calls as KongExit. Source of every function is cited next to it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Callable
from urllib.parse import unquote_plus

from .context import SERVER_TOKENS, RequestCtx, cjson_encode
from .lua import KongExit, LuaError, lua_len, lua_tostring
from .uri import normalize

# kong/pdk/private/phases.lua
REQUEST_PHASES = {"rewrite", "access", "balancer", "response", "header_filter", "body_filter", "log", "error", "admin_api"}
ACCESS_AND_LATER = {"access", "header_filter", "response", "body_filter", "log"}
REWRITE_ACCESS = {"rewrite", "access"}
REWRITE_ACCESS_HEADER = {"rewrite", "access", "response", "balancer", "header_filter", "error", "admin_api"}
RAW_BODY_PHASES = {"rewrite", "access", "response", "admin_api"}
SERIALIZE_VALUE_PHASES = {"certificate", "rewrite", "access", "header_filter", "response", "body_filter", "log"}
PHASE_ORDER = ["init_worker", "certificate", "rewrite", "access", "balancer", "response", "header_filter",
               "body_filter", "log", "error", "admin_api"]

# Methods served by the bridge's own wrappers (K3.9 ps/plugin.lua `exposed_api`); in the log timer
# they read the saved snapshot. Every other request-reading call fails there (shared doc 2.9).
LOG_WRAPPERS = {
    "kong.log.serialize", "kong.nginx.get_var", "kong.nginx.get_tls1_version_str", "kong.nginx.get_ctx",
    "kong.nginx.set_ctx", "kong.ctx.shared.get", "kong.ctx.shared.set", "kong.request.get_headers",
    "kong.request.get_header", "kong.request.get_uri_captures", "kong.response.get_status",
    "kong.response.get_headers", "kong.response.get_header", "kong.response.get_source",
    "kong.nginx.req_start_time",
}
# PDK calls that read ngx.var / ngx.req and so raise "API disabled in the current context" in the
# log timer (they are not wrappers).
NGX_REQUEST_READERS = {
    "kong.request.get_method", "kong.request.get_path", "kong.request.get_raw_path", "kong.request.get_raw_query",
    "kong.request.get_query", "kong.request.get_query_arg", "kong.request.get_scheme", "kong.request.get_host",
    "kong.request.get_port", "kong.request.get_forwarded_scheme", "kong.request.get_forwarded_host",
    "kong.request.get_forwarded_port", "kong.request.get_forwarded_path", "kong.request.get_forwarded_prefix",
    "kong.request.get_path_with_query", "kong.request.get_raw_body", "kong.request.get_http_version",
    "kong.client.get_ip", "kong.client.get_forwarded_ip", "kong.client.get_port", "kong.client.get_forwarded_port",
}

# mp_rpc.lua `get_step_method`
STEP_METHODS = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}
RAW_METHODS = {"kong.request.get_raw_body", "kong.response.get_raw_body", "kong.service.response.get_raw_body"}
TERMINAL = {"kong.response.exit", "kong.response.error"}
LOG_LEVELS = {"alert": "alert", "crit": "crit", "err": "err", "warn": "warn", "notice": "notice",
              "info": "info", "debug": "debug"}


class MethodNotFound(Exception):
    pass


def check_phase(ctx: RequestCtx, allowed: set) -> None:
    """phases.lua `check_phase`: error "function cannot be called in <p> phase (only in: ...)"."""
    if ctx.phase not in allowed:
        names = ", ".join(p for p in PHASE_ORDER if p in allowed)
        raise LuaError(f"function cannot be called in {ctx.phase} phase (only in: {names})")


def parse_query(args: str, max_args: int = 100) -> dict:
    """ngx.req.get_uri_args: `a=1&a=2&flag&e=` -> {a: [1, 2], flag: true, e: ""} (decoded)."""
    out: dict = {}
    n = 0
    for part in args.split("&"):
        if part == "":
            continue
        if n >= max_args:
            break
        n += 1
        if "=" in part:
            k, v = part.split("=", 1)
            k, v = unquote_plus(k), unquote_plus(v)
        else:
            k, v = unquote_plus(part), True
        if k == "":
            continue
        _put_repeatable(out, k, v)
    return out


def headers_table(pairs: list[tuple[str, str]], max_headers: int = 100) -> dict:
    """ngx.req.get_headers(max): lower-cased names with `_` kept (nginx's `lowcase_key`, which
    lua-nginx-module `ngx_http_lua_ffi_req_get_headers` returns when raw = 0; lua-resty-core's
    `req_headers_mt` maps `_` to `-` only on lookup), repeated headers as arrays."""
    out: dict = {}
    for i, (k, v) in enumerate(pairs):
        if i >= max_headers:
            break
        _put_repeatable(out, k.lower(), v)
    return out


def _put_repeatable(out: dict, key: str, value: Any) -> None:
    """lua-nginx-module's args and headers tables: a name seen again turns its value into an
    array, in the order received."""
    if key not in out:
        out[key] = value
    elif isinstance(out[key], list):
        out[key].append(value)
    else:
        out[key] = [out[key], value]


def _check_max(name: str, value: Any) -> int:
    # kong/pdk/request.lua get_headers / get_query argument checks
    if value is None:
        return 100
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LuaError(f"{name} must be a number")
    if value < 1:
        raise LuaError(f"{name} must be >= 1")
    if value > 1000:
        raise LuaError(f"{name} must be <= 1000")
    return int(value)


def validate_header(name: Any, value: Any, multi: bool = True) -> Any:
    """kong/pdk/private/checks.lua validate_header + normalize_multi_header."""
    if not isinstance(name, str):
        raise LuaError(f'invalid header name "{lua_tostring(name)}": got {lua_type(name)}, expected string')
    return _header_value(name, value, "array of string, string, number or boolean", multi)


def validate_headers(headers: Any) -> dict:
    """checks.lua validate_headers (values normalized later like `normalize_multi_header`)."""
    if isinstance(headers, list) and not headers:
        return {}
    if not isinstance(headers, dict):
        raise LuaError("headers must be a table")
    out = {}
    for k, v in headers.items():
        if not isinstance(k, str):
            raise LuaError(f'invalid header name "{k}": got {lua_type(k)}, expected string')
        out[k] = _header_value(k, v, "string, number, boolean or array of strings")
    return out


def _header_value(name: str, value: Any, expected: str, multi: bool = True) -> Any:
    """The value checks validate_header and validate_headers share (their final error words
    differ): "" becomes " ", numbers and booleans their tostring, arrays only of strings."""
    if isinstance(value, str):
        return value if value != "" else " "
    if isinstance(value, list) and multi:
        for vv in value:
            if not isinstance(vv, str):
                raise LuaError(f'invalid header value in array "{name}": got {lua_type(vv)}, expected string')
        return [v if v != "" else " " for v in value]
    if isinstance(value, (bool, int, float)):
        return lua_tostring(value)
    raise LuaError(f'invalid header value for "{name}": got {lua_type(value)}, expected {expected}')


def lua_type(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (str, bytes)):
        return "string"
    return "table"


def _set_header_op(ops: list[tuple[str, str]], name: str, value: Any, add: bool) -> list[tuple[str, str]]:
    """ngx.req.set_header: lua-nginx-module `ngx_http_set_header_helper` replaces every header
    whose name has the same length and matches under `ngx_strncasecmp` (case-insensitive; `_`
    and `-` stay different), and an empty array removes them all (Kong's
    t/01-pdk/06-service-request/12-set_headers.t TEST 16, "removes headers when given an empty
    array")."""
    values = value if isinstance(value, list) else [value]
    if not add:
        ops = [(k, v) for k, v in ops if k.lower() != name.lower()]
    return ops + [(name, v) for v in values]


def strip_nulls(entity: dict | None) -> dict | None:
    if entity is None:
        return None
    return {k: v for k, v in entity.items() if v is not None}


HTTP_ERROR_MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 406: "Not acceptable", 407: "Proxy authentication required",
    408: "Request timeout", 409: "Conflict", 410: "Gone", 411: "Length required", 412: "Precondition failed",
    413: "Payload too large", 414: "URI too long", 415: "Unsupported media type", 416: "Range not satisfiable",
    417: "Expectation failed", 418: "I'm a teapot", 421: "Misdirected request", 422: "Unprocessable entity",
    423: "Locked", 424: "Failed dependency", 425: "Too early", 426: "Upgrade required",
    428: "Precondition required", 429: "Too many requests", 431: "Request header fields too large",
    451: "Unavailable for legal reasons", 494: "Request header or cookie too large",
    500: "An unexpected error occurred", 501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable", 504: "The upstream server is timing out",
    505: "HTTP version not supported", 506: "Variant also negotiates", 507: "Insufficient storage",
    508: "Loop detected", 510: "Not extended", 511: "Network authentication required",
}  # kong/pdk/response.lua HTTP_ERROR_MESSAGES


def error_body(ctx: RequestCtx, status: int, message: str | None, headers: dict | None) -> tuple[bytes, dict]:
    """kong/pdk/response.lua `error` + kong/tools/http.lua templates (K3.5+: request_id)."""
    headers = dict(headers or {})
    ctype = None
    for k, v in headers.items():
        if k.lower() == "content-type":
            ctype = v[0] if isinstance(v, list) else v
    if ctype is None:
        ctype = response_type(ctx.header_values("accept"))
        headers["Content-Type"] = ctype
    msg = message if message is not None else HTTP_ERROR_MESSAGES.get(status, f"The upstream server responded with {status}")
    rid = ctx.request_id
    if ctype.startswith("text/html"):
        body = ("<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n"
                f"  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{msg}.</p>\n    <p>request_id: {rid}</p>\n"
                "  </body>\n</html>\n")
    elif ctype.startswith("text/plain"):
        body = f"{msg}\nrequest_id: {rid}\n"
    elif ctype.startswith("application/xml"):
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>{msg}</message>\n"
                f"  <requestid>{rid}</requestid>\n</error>\n")
    else:
        body = f"{{\n  \"message\":\"{msg}\",\n  \"request_id\":\"{rid}\"\n}}"
    return body.encode(), headers


_MIME = {"text/html": "text/html; charset=utf-8", "application/json": "application/json; charset=utf-8",
         "text/plain": "text/plain; charset=utf-8", "application/xml": "application/xml; charset=utf-8",
         "application/*": "application/json; charset=utf-8", "text/*": "text/plain; charset=utf-8",
         "*/*": "application/json; charset=utf-8"}


def response_type(accept_values: list[str]) -> str:
    """kong/tools/http.lua `get_response_type`: highest q wins, default JSON."""
    best, ctype = 0.0, _MIME["*/*"]
    for item in ",".join(accept_values).split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = [p.strip() for p in item.split(";")]
        media, q = parts[0], 1.0
        for p in parts[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    pass
        if q > best:
            best = q
            if media.endswith("/*") and media != "*/*":
                ctype = _MIME.get(media, ctype) if media in _MIME else ctype
            else:
                ctype = _MIME.get(media, ctype)
    return ctype


def _upstream_header(ctx: RequestCtx, name: str, value: Any, add: bool) -> None:
    """kong/pdk/service/request.lua set_header/add_header/set_headers: a Host header also sets
    the upstream host."""
    if name.lower() == "host":
        ctx.upstream_host = value if isinstance(value, str) else value[0]
    ctx.upstream_headers = _set_header_op(ctx.upstream_headers, name, value, add=add)


def _check_exit_code(status: Any, lowest: int) -> None:
    """kong/pdk/response.lua exit (100..599) and error (400..599)."""
    if isinstance(status, bool) or not isinstance(status, (int, float)):
        raise LuaError("code must be a number")
    if status < lowest or status > 599:
        raise LuaError(f"code must be a number between {lowest} and 599")


def _exit_headers(headers: Any) -> dict:
    """kong/pdk/response.lua exit and error: headers are nil or a valid headers table."""
    if headers is None:
        return {}
    if not isinstance(headers, (dict, list)):
        raise LuaError("headers must be a nil or table")
    return validate_headers(headers)


def _set_or_remove(table: dict, key: Any, value: Any) -> None:
    """ps/plugin.lua exposed_api ctx setters: assigning nil removes the key, as in a Lua table."""
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


class PDK:
    """Dispatch table of PDK methods. `host` gives access to emulator state (consumers, node id,
    error log)."""

    def __init__(self, host: Any):
        self.host = host
        self.methods: dict[str, Callable] = {}
        for name in dir(self):
            if name.startswith("m_"):
                self.methods["kong." + name[2:].replace("__", ".")] = getattr(self, name)

    def call(self, ctx: RequestCtx, method: str, args: list) -> Any:
        fn = self.methods.get(method)
        if fn is None:
            if re.match(r"^kong\.log\.\w+$", method) is None and method != "kong.log":
                raise MethodNotFound(method)
            fn = self.m_log
            args = ["notice", *args] if method == "kong.log" else [method.split(".")[-1], *args]
            if args[0] not in LOG_LEVELS:
                raise MethodNotFound(method)
            return fn(ctx, *args)
        if ctx.phase == "log" and method in NGX_REQUEST_READERS:
            raise LuaError("API disabled in the current context")
        return fn(ctx, *args)

    # ---------------- kong.request (kong/pdk/request.lua) ----------------
    def m_request__get_headers(self, ctx, max_headers=None):
        check_phase(ctx, REQUEST_PHASES)
        if ctx.phase == "log" and ctx.log_snapshot:
            return ctx.log_snapshot["request_headers"]  # ps/plugin.lua saved ngx.req.get_headers()
        return headers_table(ctx.headers, _check_max("max_headers", max_headers))

    def m_request__get_header(self, ctx, name=None):
        check_phase(ctx, REQUEST_PHASES)
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        vals = ctx.header_values(name)
        return vals[0] if vals else None

    def m_request__get_method(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.method.upper()

    def m_request__get_path(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return normalize(ctx.raw_path, True)

    def m_request__get_raw_path(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.raw_path

    def m_request__get_raw_query(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.args or ""

    def m_request__get_query(self, ctx, max_args=None):
        check_phase(ctx, REQUEST_PHASES)
        return parse_query(ctx.args or "", _check_max("max_args", max_args))

    def m_request__get_query_arg(self, ctx, name=None):
        check_phase(ctx, REQUEST_PHASES)
        if not isinstance(name, str):
            raise LuaError("query argument name must be a string")
        v = parse_query(ctx.args or "").get(name)
        return v[0] if isinstance(v, list) else v

    def m_request__get_scheme(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.scheme

    def m_request__get_host(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.host

    def m_request__get_port(self, ctx):
        check_phase(ctx, REQUEST_PHASES | {"certificate", "preread"})
        return ctx.server_port

    # trusted_ips is empty by default (kong/pdk/ip.lua): the forwarded getters ignore X-Forwarded-*
    m_request__get_forwarded_scheme = m_request__get_scheme
    m_request__get_forwarded_host = m_request__get_host

    def m_request__get_forwarded_port(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.server_port

    def m_request__get_forwarded_path(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return ctx.raw_path

    def m_request__get_forwarded_prefix(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return None

    def m_request__get_path_with_query(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        q = ctx.args or ""
        p = normalize(ctx.raw_path, True)
        return p + "?" + q if q else p

    def m_request__get_http_version(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return float(ctx.http_version.split("/")[1])

    def m_request__get_raw_body(self, ctx, max_file=None):
        check_phase(ctx, RAW_BODY_PHASES)
        return ctx.body or b""

    def m_request__get_start_time(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        return int(ctx.start_time * 1000)

    def m_request__get_uri_captures(self, ctx):
        check_phase(ctx, REQUEST_PHASES)
        caps = (ctx.match.uri_captures if ctx.match else None) or {}
        return {"unnamed": caps.get("unnamed") or [], "named": caps.get("named") or {}}

    # ---------------- kong.service.request (kong/pdk/service/request.lua) ----------------
    def m_service__request__set_header(self, ctx, name=None, value=None):
        check_phase(ctx, REWRITE_ACCESS)
        _upstream_header(ctx, name, validate_header(name, value), add=False)

    def m_service__request__add_header(self, ctx, name=None, value=None):
        check_phase(ctx, REWRITE_ACCESS)
        _upstream_header(ctx, name, validate_header(name, value), add=True)

    def m_service__request__clear_header(self, ctx, name=None):
        check_phase(ctx, REWRITE_ACCESS)
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        # ngx.req.clear_header: same name comparison as _set_header_op
        ctx.upstream_headers = [(k, v) for k, v in ctx.upstream_headers if k.lower() != name.lower()]

    def m_service__request__set_headers(self, ctx, headers=None):
        check_phase(ctx, REWRITE_ACCESS)
        for k, v in validate_headers(headers).items():
            _upstream_header(ctx, k, v, add=False)

    def m_service__request__set_path(self, ctx, path=None):
        check_phase(ctx, REWRITE_ACCESS)
        if not isinstance(path, str):
            raise LuaError("path must be a string")
        if not path.startswith("/"):
            raise LuaError("path must start with /")
        ctx.upstream_uri = path

    def m_service__request__set_raw_query(self, ctx, query=None):
        check_phase(ctx, REWRITE_ACCESS)
        if not isinstance(query, str):
            raise LuaError("query must be a string")
        ctx.upstream_query = query

    def m_service__request__set_method(self, ctx, method=None):
        check_phase(ctx, REWRITE_ACCESS)
        if not isinstance(method, str):
            raise LuaError("method must be a string")
        ctx.upstream_method = method

    # ---------------- kong.response (kong/pdk/response.lua) ----------------
    def _resp_header_phase(self, ctx):
        check_phase(ctx, REWRITE_ACCESS_HEADER)

    def m_response__set_header(self, ctx, name=None, value=None):
        self._resp_header_phase(ctx)
        ctx.resp_ops.append(("set", name, validate_header(name, value)))

    def m_response__add_header(self, ctx, name=None, value=None):
        self._resp_header_phase(ctx)
        ctx.resp_ops.append(("add", name, validate_header(name, value)))

    def m_response__clear_header(self, ctx, name=None):
        self._resp_header_phase(ctx)
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        ctx.resp_ops.append(("clear", name, None))

    def m_response__set_headers(self, ctx, headers=None):
        self._resp_header_phase(ctx)
        for k, v in validate_headers(headers).items():
            ctx.resp_ops.append(("set", k, v))

    def m_response__get_status(self, ctx):
        check_phase(ctx, {"header_filter", "response", "body_filter", "log", "admin_api"})
        return ctx.status

    def m_response__get_headers(self, ctx, max_headers=None):
        check_phase(ctx, {"header_filter", "response", "body_filter", "log", "admin_api"})
        return headers_table(ctx.response_headers, _check_max("max_headers", max_headers))

    def m_response__get_header(self, ctx, name=None):
        check_phase(ctx, {"header_filter", "response", "body_filter", "log", "admin_api"})
        if not isinstance(name, str):
            raise LuaError("header name must be a string")
        for k, v in ctx.response_headers:
            if k.lower() == name.lower().replace("_", "-"):
                return v
        return None

    def m_response__get_source(self, ctx):
        if ctx.unexpected:
            return "error"
        if ctx.exited:
            return "exit"
        return "service" if ctx.proxied else "error"

    def m_response__exit(self, ctx, status=None, body=None, headers=None):
        check_phase(ctx, REWRITE_ACCESS_HEADER)
        _check_exit_code(status, 100)
        if body is not None and not isinstance(body, (str, bytes, dict, list)):
            raise LuaError("body must be a nil, string or table")
        hdrs = _exit_headers(headers)
        ctx.exited = True
        out = []
        has_ct = has_cl = False
        for k, v in hdrs.items():
            lk = k.lower()
            if lk in ("transfer-encoding", "transfer_encoding"):
                self.host.log("warn", "manually setting Transfer-Encoding. Ignored.")
                continue
            has_ct = has_ct or lk in ("content-type", "content_type")
            has_cl = has_cl or lk in ("content-length", "content_length")
            for x in (v if isinstance(v, list) else [v]):
                out.append((k.replace("_", "-") if "_" in k else k, x))
        if isinstance(body, (dict, list)):
            data = cjson_encode(body).encode()
            if not has_ct:
                out.append(("Content-Type", "application/json; charset=utf-8"))
        elif body is None:
            data = b""
        else:
            data = body.encode() if isinstance(body, str) else body
        if not has_cl:
            out.append(("Content-Length", str(len(data))))
        raise KongExit(int(status), data, out)

    def m_response__error(self, ctx, status=None, message=None, headers=None):
        check_phase(ctx, REWRITE_ACCESS_HEADER)
        _check_exit_code(status, 400)
        if isinstance(message, (dict, list)):
            message = cjson_encode(message)
        if message is not None and not isinstance(message, str):
            raise LuaError("message must be a nil, a string or a table")
        hdrs = _exit_headers(headers)
        ctx.exited = True
        body, hdrs = error_body(ctx, int(status), message, hdrs)
        out = []
        for k, v in hdrs.items():
            for x in (v if isinstance(v, list) else [v]):
                out.append((k, x))
        out.append(("Content-Length", str(len(body))))
        raise KongExit(int(status), body, out)

    # ---------------- kong.log (kong/pdk/log.lua) ----------------
    def m_log(self, ctx, level, *args):
        msg = "".join(lua_tostring(a) for a in args)
        ns = (ctx.plugin or {}).get("name", "core") if ctx is not None else "core"
        self.host.log(LOG_LEVELS[level], f"[kong] [{ns}] {msg}", worker=ctx.worker if ctx else None,
                      conn=ctx.conn if ctx else None)

    def m_log__set_serialize_value(self, ctx, key=None, value=None, options=None):
        check_phase(ctx, SERIALIZE_VALUE_PHASES)
        if not isinstance(key, str):
            raise LuaError("key must be a string")
        mode = (options or {}).get("mode", "set") if isinstance(options, dict) else "set"
        if mode not in ("set", "add", "replace"):
            raise LuaError("mode must be 'set', 'add' or 'replace'")
        ctx.serialize_values.append({"key": key, "value": value, "mode": mode})

    def m_log__serialize(self, ctx):
        check_phase(ctx, {"log"})
        if ctx.log_snapshot is not None:
            return ctx.log_snapshot["serialized"]  # the wrapper returns a JSON string
        return json.dumps(self.host.serialize(ctx))

    # ---------------- kong.ctx.shared / kong.nginx ctx (ps/plugin.lua exposed_api) ----------------
    def m_ctx__shared__get(self, ctx, k=None):
        return ctx.shared.get(k)

    def m_ctx__shared__set(self, ctx, k=None, v=None):
        _set_or_remove(ctx.shared, k, v)

    def m_nginx__get_ctx(self, ctx, k=None):
        return ctx.ngx_ctx.get(k)

    def m_nginx__set_ctx(self, ctx, k=None, v=None):
        _set_or_remove(ctx.ngx_ctx, k, v)

    def m_nginx__get_var(self, ctx, name=None):
        if not isinstance(name, str):
            raise LuaError("bad argument #1 to 'get_var' (string expected)")
        return ctx.var(name)

    def m_nginx__req_start_time(self, ctx):
        return ctx.start_time

    def m_nginx__get_tls1_version_str(self, ctx):
        return None

    def m_nginx__get_subsystem(self, ctx):
        return "http"

    # ---------------- kong.client (kong/pdk/client.lua) ----------------
    def m_client__get_ip(self, ctx):
        check_phase(ctx, REQUEST_PHASES | {"certificate", "preread"})
        return ctx.client_ip

    def m_client__get_port(self, ctx):
        check_phase(ctx, REQUEST_PHASES | {"certificate", "preread"})
        return ctx.client_port

    # trusted_ips is empty by default (kong/pdk/ip.lua): the forwarded getters ignore X-Forwarded-*
    m_client__get_forwarded_ip = m_client__get_ip
    m_client__get_forwarded_port = m_client__get_port

    def m_client__authenticate(self, ctx, consumer=None, credential=None):
        check_phase(ctx, {"access"})
        if consumer is not None and not isinstance(consumer, (dict, list)):
            raise LuaError("consumer must be a table or nil")
        if credential is not None and not isinstance(credential, (dict, list)):
            raise LuaError("credential must be a table or nil")
        if consumer is None and credential is None:
            raise LuaError("either credential or consumer must be provided")
        ctx.authenticated_consumer = consumer if consumer is not None else None
        ctx.authenticated_credential = credential if credential is not None else None

    def m_client__get_consumer(self, ctx):
        check_phase(ctx, ACCESS_AND_LATER)
        return ctx.authenticated_consumer

    def m_client__get_credential(self, ctx):
        check_phase(ctx, ACCESS_AND_LATER)
        return ctx.authenticated_credential

    def m_client__load_consumer(self, ctx, consumer_id=None, search_by_username=None):
        check_phase(ctx, ACCESS_AND_LATER)
        if not isinstance(consumer_id, str):
            raise LuaError("consumer_id must be a string")
        try:
            is_uuid = str(uuid.UUID(consumer_id)) == consumer_id.lower() and len(consumer_id) == 36
        except ValueError:
            is_uuid = False
        cfg = self.host.config
        found = None
        if not is_uuid:
            if not search_by_username:
                raise LuaError(f"{consumer_id} is not a valid uuid")
        else:
            found = cfg.consumers.get(consumer_id.lower())
        if found is None and search_by_username:
            found = cfg.consumer_by_username(consumer_id)
        return strip_nulls(dict(found)) if found else None

    def m_client__get_protocol(self, ctx, allow_terminated=None):
        check_phase(ctx, ACCESS_AND_LATER)
        if not ctx.route:
            return None
        protos = ctx.route.get("protocols") or []
        return protos[0] if len(protos) == 1 else ctx.scheme

    # ---------------- kong.router (kong/pdk/router.lua) ----------------
    def m_router__get_route(self, ctx):
        check_phase(ctx, ACCESS_AND_LATER)
        return strip_nulls(ctx.route)

    def m_router__get_service(self, ctx):
        check_phase(ctx, ACCESS_AND_LATER)
        return strip_nulls(ctx.service)

    # ---------------- kong.plugin / kong.node ----------------
    def m_plugin__get_id(self, ctx):
        return (ctx.plugin or {}).get("id")  # kong/pdk/plugin.lua: ngx.ctx.plugin_id

    def m_node__get_id(self, ctx):
        return self.host.node_id  # kong/pdk/node.lua

    def m_node__get_hostname(self, ctx):
        import socket

        return socket.gethostname()

    def m_ip__is_trusted(self, ctx, address=None):
        return False  # trusted_ips = NONE (kong_defaults.lua)


def serialize(ctx: RequestCtx, pdk_host: Any) -> dict:
    """kong/pdk/log.lua `serialize` (http) + edit_result for set_serialize_value."""
    request_uri = ctx.request_uri
    upstream_uri = ctx.var("upstream_uri") or ""
    if upstream_uri and "?" not in upstream_uri:
        if request_uri.endswith("?"):
            upstream_uri += "?"
        elif ctx.args is not None:
            upstream_uri += "?" + (ctx.args or "")
    req_headers = headers_table(ctx.headers)
    for k in ("authorization", "proxy-authorization"):
        if k in req_headers:
            req_headers[k] = "REDACTED"
    resp_headers = headers_table(ctx.response_headers)
    cred = ctx.authenticated_credential
    auth_entity = None
    if isinstance(cred, dict):
        consumer = ctx.authenticated_consumer if isinstance(ctx.authenticated_consumer, dict) else {}
        auth_entity = {"id": cred.get("id"), "consumer_id": cred.get("consumer_id") or consumer.get("id")}
        auth_entity = {k: v for k, v in auth_entity.items() if v is not None}
    total_ms = int((__import__("time").monotonic() - ctx.start_mono) * 1000)
    root = {
        "request": {
            "id": ctx.request_id,
            "uri": request_uri,
            "url": f"{ctx.scheme}://{ctx.host}:{ctx.server_port}{request_uri}",
            "querystring": parse_query(ctx.args or ""),
            "method": ctx.method,
            "headers": req_headers,
            "size": ctx.request_length,
        },
        "upstream_uri": upstream_uri,
        "upstream_status": str(ctx.ngx_ctx.get("__upstream_status", "")) if ctx.proxied else "",
        "response": {"status": ctx.status, "headers": resp_headers, "size": ctx.bytes_sent},
        "latencies": {"kong": ctx.kong_latency_ms, "proxy": ctx.proxy_latency_ms, "request": total_ms, "receive": 0},
        "authenticated_entity": auth_entity,
        "route": strip_nulls(ctx.route),
        "service": strip_nulls(ctx.service),
        "consumer": ctx.authenticated_consumer,
        "client_ip": ctx.client_ip,
        "started_at": int(ctx.start_time * 1000),
        "source": PDK.m_response__get_source(None, ctx),  # type: ignore[arg-type]
        "workspace": "00000000-0000-0000-0000-000000000000",
        "workspace_name": "default",
    }
    root = {k: v for k, v in root.items() if v is not None}
    for item in ctx.serialize_values:
        if not _valid_value(item["value"], set()):
            raise LuaError("value must be nil, a number, string, boolean or a non-self-referencial table "
                           "containing numbers, string and booleans")
        key, mode = item["key"], item["mode"]
        node: Any = root
        parts = key.split(".")
        for sub in parts[:-1]:
            if sub == "":
                continue
            if node.get(sub) is None:
                if mode in ("set", "add"):
                    node[sub] = {}
                else:
                    node = None
                    break
            elif not isinstance(node[sub], dict):
                raise LuaError(f"The key '{key}' could not be used as a serialize value. Subkey '{sub}' is not a table. It's {lua_tostring(node[sub])}")
            node = node[sub]
        if isinstance(node, dict):
            last = parts[-1]
            existing = node.get(last)
            if mode == "set" or (mode == "add" and existing is None) or (mode == "replace" and existing is not None):
                if item["value"] is None:
                    node.pop(last, None)
                else:
                    node[last] = item["value"]
    return root


def _valid_value(v: Any, seen: set) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (dict, list)):
        if id(v) in seen:
            return False
        seen.add(id(v))
        items = v.items() if isinstance(v, dict) else enumerate(v)
        return all(isinstance(k, (str, int, float, bool)) and _valid_value(x, seen) for k, x in items)
    return False
