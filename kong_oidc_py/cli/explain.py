"""`kong-oidc-py explain`: one request through the real decision, step by step.

The instance is built like Kong builds it (`parse_config`, then `Gateway`) and the request
goes through `Gateway.handle` with a Trace (kong_oidc_py/trace.py), so every step printed is
one the decision code recorded, and the status and headers are the Outcome the plugin would
apply. Only the key source may differ: `--jwks FILE` / `--discovery FILE` replace the network.

Never printed: the token or any of its segments (a 12-hex-digit SHA-256 prefix names it, as in
the decision log) and secret option values. A last pass over the whole output replaces them in
case a value ever quoted one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl

from kong_oidc_py import PLUGIN_NAME
from kong_oidc_py.cli.findings import captured_logs
from kong_oidc_py.cli.kongfile import KongFile, Plugin, Route
from kong_oidc_py.config import SECRET_OPTIONS, PluginConfig, parse_config
from kong_oidc_py.gateway import Gateway, Outcome
from kong_oidc_py.idp.provider import Provider, ProviderSettings
from kong_oidc_py.trace import Trace

REDACTED = "<redacted>"
# Unverified claims worth showing next to a failed check (iss, aud, exp, ...).
_SHOWN_CLAIMS = ("iss", "aud", "azp", "client_id", "sub", "exp", "nbf", "iat", "scope", "scp", "typ")


class ExplainError(Exception):
    """The command cannot run (bad arguments, no such route, bad config); exit status 1."""


@dataclass
class ExplainRequest:
    """A RequestView over command-line values (what edge/handler.PdkRequest reads from Kong)."""

    headers: dict[str, list[str]]
    method_: str
    path_: str
    raw_query_: str = ""
    route_: dict | None = None
    scheme_: str = "https"
    kongfile: KongFile | None = None
    headers_truncated: bool = False
    consumer_lookups: list[str] = field(default_factory=list)

    def path(self) -> str: return self.path_
    def method(self) -> str: return self.method_
    def route(self) -> dict | None: return self.route_
    def raw_query(self) -> str: return self.raw_query_
    def scheme(self) -> str: return self.scheme_
    def body(self) -> bytes: return b""
    def credential(self) -> dict | None: return None

    def host(self) -> str:
        return (self.headers.get("host") or ["localhost"])[0].split(":")[0]

    def port(self) -> int:
        return 443 if self.scheme_ == "https" else 80

    def query(self) -> Mapping[str, list[str]]:
        out: dict[str, Any] = {}
        for part in self.raw_query_.split("&"):
            if not part:
                continue
            if "=" not in part:  # Kong gives a value-less flag as `true` (shared doc 2.4)
                out.setdefault(part, []).append(True)
                continue
            for k, v in parse_qsl(part, keep_blank_values=True):
                out.setdefault(k, []).append(v)
        return out

    def load_consumer(self, value: str, by_username: bool) -> dict | None:
        self.consumer_lookups.append(f"{'username' if by_username else 'id'}={value}")
        return self.kongfile.consumer(value, by_username) if self.kongfile is not None else None


@dataclass
class Selected:
    raw: dict[str, Any]
    where: str
    plugin: Plugin | None = None
    route: Route | None = None


def select_instance(kf: KongFile | None, inline: dict | None, route_ref: str | None,
                    service_ref: str | None) -> Selected:
    if inline is not None:
        raw = inline.get("config") if set(inline) == {"config"} and isinstance(inline.get("config"), dict) else inline
        route = kf.route(route_ref) if kf is not None and route_ref else None
        return Selected(raw, "inline config", None, route)
    assert kf is not None
    route = None
    if route_ref:
        route = kf.route(route_ref)
        if route is None:
            raise ExplainError(f"no route {route_ref!r} in {kf.path}")
    if service_ref:
        service = kf.service(service_ref)
        if service is None:
            raise ExplainError(f"no service {service_ref!r} in {kf.path}")
        if route is not None and route.service != service.key:
            raise ExplainError(f"route {route.key!r} does not belong to service {service.key!r}")
        plugin = next((p for p in kf.plugins if p.name == PLUGIN_NAME and p.scope == "service"
                       and p.service == service.key and p.enabled), None)
        if plugin is None:
            raise ExplainError(f"service {service.key!r} has no enabled service-level {PLUGIN_NAME} plugin")
    elif route is not None:
        plugin = kf.effective(PLUGIN_NAME, route)
        if plugin is None:
            raise ExplainError(f"no {PLUGIN_NAME} plugin runs on route {route.key!r}: Kong proxies it untouched")
    else:
        candidates = [p for p in kf.plugins if p.name == PLUGIN_NAME and p.enabled]
        if len(candidates) != 1:
            raise ExplainError(f"{kf.path} has {len(candidates)} {PLUGIN_NAME} instances: name one with --route or --service")
        plugin = candidates[0]
    return Selected(plugin.config, f"{plugin.label} [{plugin.location}]", plugin, route)


def build_provider(cfg: PluginConfig, jwks_file: str | None, discovery_file: str | None) -> Provider:
    settings = ProviderSettings.from_config(cfg)
    if jwks_file:
        return Provider.from_jwks(cfg.issuer, _read_json(jwks_file))
    if discovery_file:
        return Provider.from_metadata(settings, _read_json(discovery_file))
    return Provider(settings)


def _read_json(path: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExplainError(f"{path}: cannot read a JSON document ({type(err).__name__})") from None
    if not isinstance(doc, dict):
        raise ExplainError(f"{path}: expected a JSON object")
    return doc


def build_request(cfg: PluginConfig, *, method: str, target: str, headers: list[str], token: str | None,
                  route: Route | None, kongfile: KongFile | None, scheme: str) -> ExplainRequest:
    if not target.startswith("/"):
        raise ExplainError("the path must start with '/'")
    path, _, raw_query = target.partition("?")
    multimap: dict[str, list[str]] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ExplainError(f"a header is 'Name: value', got {h.split(':')[0][:40]!r}...")
        multimap.setdefault(name.strip().lower(), []).append(value.strip(" \t"))
    if token is not None:
        place = cfg.bearer_token_param_type[0]
        if place == "header":
            multimap.setdefault("authorization", []).append(f"Bearer {token}")
        elif place == "cookie":
            multimap.setdefault("cookie", []).append(f"{cfg.bearer_token_cookie_name}={token}")
        else:
            raw_query = f"{raw_query}&access_token={token}" if raw_query else f"access_token={token}"
    route_dict = {"id": route.id, "name": route.name} if route is not None else None
    return ExplainRequest(multimap, method.upper(), path, raw_query, route_dict, scheme, kongfile)


@dataclass
class Explanation:
    request: ExplainRequest
    selected: Selected
    config: PluginConfig
    trace: Trace
    outcome: Outcome
    provider: Provider
    token_hash: str | None
    token_claims: dict[str, Any] | None
    logs: list[tuple[str, str]]
    guard: str | None
    notes: list[str] = field(default_factory=list)


def explain(selected: Selected, req_args: dict[str, Any], *, jwks_file: str | None, discovery_file: str | None,
            kongfile: KongFile | None) -> Explanation:
    from kong_oidc_py.errors import ConfigError

    try:
        cfg = parse_config(selected.raw)
    except ConfigError as err:
        raise ExplainError(f"the config is refused at instance start: {err}") from None
    token = req_args.get("token")
    req = build_request(cfg, route=selected.route, kongfile=kongfile, **req_args)
    trace = Trace()
    with captured_logs() as logs:
        provider = build_provider(cfg, jwks_file, discovery_file)
        try:
            gateway = Gateway(cfg, provider)
            outcome = gateway.handle(req, trace)
        finally:
            provider.close()
    token_hash = hashlib.sha256(token.encode()).hexdigest()[:12] if token else None
    notes = []
    if jwks_file and not discovery_file and outcome.log.get("reason") == "login_unavailable":
        notes.append("--jwks gives keys but no discovery document: add --discovery FILE to explain browser logins")
    return Explanation(req, selected, cfg, trace, outcome, provider, token_hash, _unverified_claims(token),
                       logs.messages, _guard_verdict(kongfile, selected, cfg, outcome), notes)


def _unverified_claims(token: str | None) -> dict[str, Any] | None:
    """A few payload claims as sent (before verification), to read next to a failed check."""
    if not token or token.count(".") != 2:
        return None
    try:
        seg = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in _SHOWN_CLAIMS if k in data}


def _guard_verdict(kf: KongFile | None, selected: Selected, cfg: PluginConfig, outcome: Outcome) -> str | None:
    if kf is None or selected.route is None:
        return None
    acl = kf.effective("acl", selected.route)
    if acl is None:
        return f"no acl guard runs on route {selected.route.key!r} (`kong-oidc-py check` reports it)"
    allow = acl.config.get("allow") or []
    where = f"acl at {acl.location}"
    if not outcome.allowed:
        return f"{where}: not reached, the plugin answered {outcome.status}"
    groups = outcome.authenticated_groups or []
    if any(g in groups for g in allow) and not acl.config.get("deny"):
        return f"{where}: allow {allow!r} sees {groups[0]!r} -> passes"
    return f"{where}: allow {allow!r} does not see the marker {cfg.guard_group!r} -> 403"


# -- rendering -------------------------------------------------------------------------------


def _steps(ex: Explanation) -> list[dict[str, Any]]:
    out = []
    for step in ex.trace.steps:
        data = {k: v for k, v in step.data.items() if isinstance(v, (str, int, float, bool, type(None)))}
        out.append({"stage": step.stage, "check": step.check, "ok": step.ok, "detail": step.detail,
                    **({"data": data} if data else {})})
    return out


def to_json(ex: Explanation) -> dict[str, Any]:
    o = ex.outcome
    return {
        "request": {"method": ex.request.method_, "path": ex.request.path_, "route": ex.request.route_,
                    "headers": sorted(ex.request.headers), "token_sha256_prefix": ex.token_hash},
        "instance": ex.selected.where,
        "token_claims_unverified": ex.token_claims,
        "steps": _steps(ex),
        "outcome": {
            "allowed": o.allowed,
            "status": o.status if o.status is not None else 200,
            "response_headers": o.response_headers,
            "body": o.body,
            "upstream_set": o.upstream_set,
            "upstream_clear": o.upstream_clear,
            "upstream_raw_query": o.upstream_raw_query,
            "authenticated_groups": o.authenticated_groups,
            "log": o.log,
        },
        "guard": ex.guard,
        "notes": ex.notes,
        "plugin_log": [{"level": lvl, "message": msg} for lvl, msg in ex.logs],
    }


_MARK = {True: "ok  ", False: "FAIL", None: "--  "}


def render(ex: Explanation) -> str:
    o, req = ex.outcome, ex.request
    lines = [f"{req.method_} {req.path_}{'?' + req.raw_query_ if req.raw_query_ else ''}  ->  {ex.selected.where}"]
    if req.route_:
        lines.append(f"route: {req.route_.get('name') or req.route_.get('id')}")
    lines.append(f"token: sha256 {ex.token_hash} (the token itself is never printed)" if ex.token_hash
                 else "token: none given on the command line")
    if ex.token_claims:
        lines.append("token claims as sent (unverified): " + json.dumps(ex.token_claims, sort_keys=True))
    for level, message in ex.logs:
        lines.append(f"plugin log: {level}: {message}")
    lines.append("")
    for step in _steps(ex):
        lines.append(f"  {_MARK[step['ok']]} {step['stage']:<11} {step['check']}: {step['detail']}")
    lines.append("")
    if o.allowed:
        lines.append(f"result: allowed (decision {o.log.get('decision')}), proxied upstream")
        for name, value in sorted(o.upstream_set.items()):
            lines.append(f"  upstream set    {name}: {value}")
        for name in o.upstream_clear:
            lines.append(f"  upstream clear  {name}")
        if o.upstream_raw_query is not None:
            lines.append(f"  upstream query  {o.upstream_raw_query!r}")
        lines.append(f"  authenticated_groups: {o.authenticated_groups}")
        for name, value in sorted(o.response_headers.items()):
            lines.append(f"  response header {name}: {value}")
    else:
        lines.append(f"result: {o.status} (decision {o.log.get('decision')}, reason {o.log.get('reason')})")
        for name, value in sorted(o.response_headers.items()):
            lines.append(f"  {name}: {value}")
        if o.body is not None:
            lines.append(f"  body: {json.dumps(o.body) if not isinstance(o.body, str) else o.body[:200]}")
    if ex.guard:
        lines.append(f"guard: {ex.guard}")
    for note in ex.notes:
        lines.append(f"note: {note}")
    lines.append("log: " + json.dumps(o.log, sort_keys=True))
    return "\n".join(lines) + "\n"


def secrets_of(token: str | None, config: Mapping[str, Any]) -> list[str]:
    """Strings that must never appear in the output: the token, its segments, secret values."""
    out = []
    if token:
        out.append(token)
        out.extend(seg for seg in token.split(".") if len(seg) >= 8)
    out.extend(v for k, v in config.items() if k in SECRET_OPTIONS and isinstance(v, str) and len(v) >= 4)
    return sorted(set(out), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, REDACTED)
    return text


def read_token(value: str | None, path: str | None) -> str | None:
    if value is not None and path is not None:
        raise ExplainError("give the token with --token or --token-file, not both")
    if value == "-" or path == "-":
        return sys.stdin.readline().strip() or None
    if path is not None:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as err:
            raise ExplainError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    return value
