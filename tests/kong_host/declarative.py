"""Declarative kong.yml loading (subset of kong/db/schema/others/declarative_config.lua).

Entities: services, routes, consumers, plugins, acls (the acl plugin's credentials). Children may be
nested (services[].routes[], services[].plugins[], routes[].plugins[], consumers[].plugins[],
consumers[].acls[]) or given at top level with a foreign key that names the parent by name or id
(`nest_foreign_relationships`, `reference_foreign_by_name`). Entities without an id get a
deterministic uuid5 of their name/key, so tests can rely on them.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import schema as sch

NS = uuid.UUID("6f1d8a52-3c2b-4e1e-9c55-6b1d2f0a4b7e")  # fixed namespace of generated ids


def gen_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(NS, f"{kind}:{key}"))


class DeclarativeError(Exception):
    def __init__(self, err_t: dict | str):
        self.err_t = err_t
        text = err_t if isinstance(err_t, str) else sch.render_errors(err_t)
        super().__init__("failed parsing declarative configuration: " + (text if isinstance(err_t, str) else "\n" + text))


@dataclass
class KongConfig:
    services: dict[str, dict] = field(default_factory=dict)
    routes: list[dict] = field(default_factory=list)
    consumers: dict[str, dict] = field(default_factory=dict)
    plugins: list[dict] = field(default_factory=list)
    acls: list[dict] = field(default_factory=list)
    format_version: str = "3.0"
    warnings: list[str] = field(default_factory=list)

    def consumer_by_username(self, username: str) -> dict | None:
        for c in self.consumers.values():
            if c.get("username") == username:
                return c
        return None

    def consumer_groups(self, consumer_id: str) -> list[str]:
        return [a["group"] for a in self.acls if a["consumer"]["id"] == consumer_id]


SERVICE_FIELDS = {"id", "name", "url", "protocol", "host", "port", "path", "retries", "connect_timeout",
                  "write_timeout", "read_timeout", "tags", "enabled", "routes", "plugins",
                  "client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"}
ROUTE_FIELDS = {"id", "name", "protocols", "methods", "hosts", "paths", "headers", "snis", "sources",
                "destinations", "https_redirect_status_code", "regex_priority", "strip_path",
                "path_handling", "preserve_host", "request_buffering", "response_buffering", "tags",
                "service", "plugins"}
CONSUMER_FIELDS = {"id", "username", "custom_id", "tags", "plugins", "acls"}
PLUGIN_FIELDS = {"id", "name", "config", "enabled", "protocols", "instance_name", "tags", "route",
                 "service", "consumer", "ordering"}
ACL_FIELDS = {"id", "group", "consumer", "tags"}
_REGEX_MAGIC = re.compile(r"[\^$()\[\]{}*+?|\\]")


def _unknown(entity: dict, allowed: set, errs: dict) -> None:
    for k in entity:
        if k not in allowed:
            errs[k] = sch.E["UNKNOWN"]


def _str_list(value: Any, name: str, errs: dict) -> list | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        errs[name] = sch.E["ARRAY"] if not isinstance(value, list) else {
            i + 1: sch.E["STRING"] for i, x in enumerate(value) if not isinstance(x, str)}
        return None
    return list(value)


class _Loader:
    def __init__(self, data: dict, plugin_schemas: dict[str, dict]):
        self.data = data
        self.plugin_schemas = plugin_schemas
        self.errs: dict = {}
        self.cfg = KongConfig()
        self._route_count = 0

    def err_at(self, path: tuple, sub: dict | str) -> None:
        node = self.errs
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = sub

    # -- services ---------------------------------------------------------------------------------
    def service(self, s: Any, path: tuple) -> dict | None:
        errs: dict = {}
        if not isinstance(s, dict):
            self.err_at(path, sch.E["RECORD"])
            return None
        _unknown(s, SERVICE_FIELDS, errs)
        out = {k: copy.deepcopy(v) for k, v in s.items() if k in SERVICE_FIELDS - {"routes", "plugins", "url"}}
        if "url" in s:
            u = urlsplit(str(s["url"]))
            if not u.scheme or not u.hostname:
                errs["url"] = "missing host in url" if u.scheme else "missing scheme in url"
            else:
                out["protocol"] = u.scheme
                out["host"] = u.hostname
                if u.port:
                    out["port"] = u.port
                if u.path:
                    out["path"] = u.path
        out.setdefault("protocol", "http")
        out.setdefault("port", 443 if out["protocol"] == "https" else 80)
        for k, d in (("retries", 5), ("connect_timeout", 60000), ("write_timeout", 60000),
                     ("read_timeout", 60000), ("enabled", True)):
            out.setdefault(k, d)
        if out["protocol"] not in ("http", "https", "grpc", "grpcs", "tcp", "tls", "udp"):
            errs["protocol"] = sch.E["ONE_OF"] % "grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"
        if not out.get("host"):
            errs.setdefault("host", sch.E["REQUIRED"])
        if "path" in out and (not isinstance(out["path"], str) or not out["path"].startswith("/")):
            errs["path"] = "should start with: /"
        out["id"] = out.get("id") or gen_id("services", out.get("name") or f"{out.get('host')}:{path}")
        if errs:
            self.err_at(path, errs)
            return None
        self.cfg.services[out["id"]] = out
        for i, r in enumerate(s.get("routes") or [], 1):
            self.route(r, path + ("routes", i), service=out)
        for i, p in enumerate(s.get("plugins") or [], 1):
            self.plugin(p, path + ("plugins", i), service=out)
        return out

    # -- routes -----------------------------------------------------------------------------------
    def route(self, r: Any, path: tuple, service: dict | None = None) -> None:
        errs: dict = {}
        if not isinstance(r, dict):
            self.err_at(path, sch.E["RECORD"])
            return
        _unknown(r, ROUTE_FIELDS, errs)
        out = {k: copy.deepcopy(v) for k, v in r.items() if k in ROUTE_FIELDS - {"plugins", "service"}}
        self._route_count += 1
        if service is None and r.get("service") is not None:
            service = self.resolve("services", r["service"], errs, "service")
        for k in ("methods", "hosts", "paths"):
            if k in out:
                out[k] = _str_list(out[k], k, errs)
                if out[k] is None:
                    del out[k]
        if self.cfg.format_version != "3.0" and out.get("paths"):
            # kong/db/declarative/migrations/route_path.lua: pre-3.0 regex paths get "~"
            new = [("~" + p if _REGEX_MAGIC.search(p) and not p.startswith("~") else p) for p in out["paths"]]
            if new != out["paths"]:
                self.cfg.warnings.append(f"route {r.get('name') or path}: migrated regex paths {new}")
            out["paths"] = new
        for i, p in enumerate(out.get("paths") or [], 1):
            if not (p.startswith("/") or p.startswith("~/")):
                errs.setdefault("paths", {})[i] = "should start with: / (fixed path) or ~/ (regex path)"
            elif p.startswith("~"):
                try:
                    re.compile(p[1:])
                except re.error as e:
                    errs.setdefault("paths", {})[i] = f"invalid regex: '{p[1:]}' ({e})"
        for k, d in (("protocols", ["http", "https"]), ("https_redirect_status_code", 426),
                     ("regex_priority", 0), ("strip_path", True), ("path_handling", "v0"),
                     ("preserve_host", False), ("request_buffering", True), ("response_buffering", True)):
            out.setdefault(k, d)
        for k in ("strip_path", "preserve_host"):
            if not isinstance(out[k], bool):
                errs[k] = sch.E["BOOLEAN"]
        if not isinstance(out["regex_priority"], int) or isinstance(out["regex_priority"], bool):
            errs["regex_priority"] = sch.E["INTEGER"]
        if not any(out.get(k) for k in ("methods", "hosts", "paths", "headers")):
            errs["@entity"] = {1: "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"}
        key = out.get("name") or f"{(service or {}).get('name')}:{self._route_count}"
        out["id"] = out.get("id") or gen_id("routes", key)
        if service is not None:
            out["service"] = {"id": service["id"]}
        if errs:
            self.err_at(path, errs)
            return
        self.cfg.routes.append(out)
        for i, p in enumerate(r.get("plugins") or [], 1):
            self.plugin(p, path + ("plugins", i), route=out)

    # -- consumers / acls -------------------------------------------------------------------------
    def consumer(self, c: Any, path: tuple) -> None:
        errs: dict = {}
        if not isinstance(c, dict):
            self.err_at(path, sch.E["RECORD"])
            return
        _unknown(c, CONSUMER_FIELDS, errs)
        out = {k: copy.deepcopy(v) for k, v in c.items() if k in ("id", "username", "custom_id", "tags")}
        if not out.get("username") and not out.get("custom_id"):
            errs["@entity"] = {1: "at least one of these fields must be non-empty: 'custom_id', 'username'"}
        out["id"] = out.get("id") or gen_id("consumers", out.get("username") or out.get("custom_id") or str(path))
        if errs:
            self.err_at(path, errs)
            return
        self.cfg.consumers[out["id"]] = out
        for i, a in enumerate(c.get("acls") or [], 1):
            self.acl(a, path + ("acls", i), consumer=out)
        for i, p in enumerate(c.get("plugins") or [], 1):
            self.plugin(p, path + ("plugins", i), consumer=out)

    def acl(self, a: Any, path: tuple, consumer: dict | None = None) -> None:
        errs: dict = {}
        if not isinstance(a, dict):
            self.err_at(path, sch.E["RECORD"])
            return
        _unknown(a, ACL_FIELDS, errs)
        if consumer is None:
            consumer = self.resolve("consumers", a.get("consumer"), errs, "consumer")
        if not isinstance(a.get("group"), str) or not a.get("group"):
            errs["group"] = sch.E["REQUIRED"]
        if errs:
            self.err_at(path, errs)
            return
        self.cfg.acls.append({"id": a.get("id") or gen_id("acls", f"{consumer['id']}:{a['group']}"),
                              "group": a["group"], "consumer": {"id": consumer["id"]}})

    # -- plugins ----------------------------------------------------------------------------------
    def plugin(self, p: Any, path: tuple, route=None, service=None, consumer=None) -> None:
        errs: dict = {}
        if not isinstance(p, dict):
            self.err_at(path, sch.E["RECORD"])
            return
        _unknown(p, PLUGIN_FIELDS, errs)
        name = p.get("name")
        if route is None and p.get("route") is not None:
            route = self.resolve("routes", p["route"], errs, "route")
        if service is None and p.get("service") is not None:
            service = self.resolve("services", p["service"], errs, "service")
        if consumer is None and p.get("consumer") is not None:
            consumer = self.resolve("consumers", p["consumer"], errs, "consumer")
        config = None
        if not isinstance(name, str) or not name:
            errs["name"] = sch.E["REQUIRED"]
        elif name not in self.plugin_schemas:
            # kong/db/schema/entities/plugins.lua subschema error
            errs["name"] = f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
        else:
            dumped = self.plugin_schemas[name]
            wrapper = {"type": "record", "fields": [{"config": sch.plugin_config_schema(dumped)}],
                       "entity_checks": dumped.get("entity_checks") or []}
            raw = p.get("config", None)
            given = {} if "config" not in p else {"config": raw}
            if raw is None and "config" in p:
                given = {}  # `config:` with no value: filled from defaults like an absent one
            norm, cerr = sch.validate_record(wrapper, given)
            if cerr:
                errs.update(cerr)
            config = norm.get("config")
        enabled = p.get("enabled", True)
        if not isinstance(enabled, bool):
            errs["enabled"] = sch.E["BOOLEAN"]
        if errs:
            self.err_at(path, errs)
            return
        scope = "|".join((e or {}).get("id", "") for e in (route, service, consumer))
        out = {
            "id": p.get("id") or gen_id("plugins", f"{name}:{scope}:{p.get('instance_name') or ''}"),
            "name": name,
            "config": config,
            "enabled": enabled,
            "protocols": p.get("protocols") or ["grpc", "grpcs", "http", "https"],
        }
        for k, ent in (("route", route), ("service", service), ("consumer", consumer)):
            if ent is not None:
                out[k] = {"id": ent["id"]}
        for k in ("instance_name", "tags"):
            if p.get(k) is not None:
                out[k] = p[k]
        self.cfg.plugins.append(out)

    def resolve(self, kind: str, ref: Any, errs: dict, fname: str) -> dict | None:
        if isinstance(ref, dict):
            ref = ref.get("id") or ref.get("name") or ref.get("username")
        pool = {"services": list(self.cfg.services.values()), "routes": self.cfg.routes,
                "consumers": list(self.cfg.consumers.values())}[kind]
        for ent in pool:
            if ref in (ent.get("id"), ent.get("name"), ent.get("username")):
                return ent
        errs[fname] = f"invalid reference '{ref}' (no such entry in '{kind}')"
        return None

    def run(self) -> KongConfig:
        d = self.data
        if not isinstance(d, dict):
            raise DeclarativeError("expected an object")
        fv = d.get("_format_version")
        if fv is None:
            self.errs["_format_version"] = sch.E["REQUIRED"]
            raise DeclarativeError(self.errs)
        if str(fv) not in ("1.1", "2.1", "3.0"):
            self.errs["_format_version"] = sch.E["ONE_OF"] % "1.1, 2.1, 3.0"
            raise DeclarativeError(self.errs)
        self.cfg.format_version = str(fv)
        allowed = {"_format_version", "_transform", "_comment", "_ignore", "services", "routes",
                   "consumers", "plugins", "acls"}
        for k in d:
            if k not in allowed:
                self.errs[k] = sch.E["UNKNOWN"] if not k.startswith("_") else sch.E["UNKNOWN"]
        # parents first so that top-level references resolve (order of declarative_config.lua)
        for i, s in enumerate(d.get("services") or [], 1):
            self.service(s, ("services", i))
        for i, r in enumerate(d.get("routes") or [], 1):
            self.route(r, ("routes", i))
        for i, c in enumerate(d.get("consumers") or [], 1):
            self.consumer(c, ("consumers", i))
        for i, a in enumerate(d.get("acls") or [], 1):
            self.acl(a, ("acls", i))
        for i, p in enumerate(d.get("plugins") or [], 1):
            self.plugin(p, ("plugins", i))
        self._check_unique()
        if self.errs:
            raise DeclarativeError(self.errs)
        return self.cfg

    def _check_unique(self) -> None:
        seen: dict = {}
        for p in self.cfg.plugins:
            key = (p["name"], (p.get("route") or {}).get("id"), (p.get("service") or {}).get("id"),
                   (p.get("consumer") or {}).get("id"), p.get("instance_name"))
            if key in seen:
                self.errs.setdefault("plugins", {})[len(seen) + 1] = (
                    f"uniqueness violation: 'plugins' entity with primary key set to '{p['id']}' already declared")
            seen[key] = p


def load(source: str | os.PathLike | dict, plugin_schemas: dict[str, dict]) -> KongConfig:
    """Load a kong.yml path, YAML/JSON text or dict. `plugin_schemas`: enabled plugin name ->
    dumped schema ({"name", "fields": [{"config": {...}}]})."""
    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        text = str(source)
        if os.path.exists(text):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise DeclarativeError(f"failed parsing YAML: {e}") from None
    return _Loader(data, plugin_schemas).run()
