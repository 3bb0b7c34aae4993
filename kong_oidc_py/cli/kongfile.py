"""A Kong declarative file (kong.yml) as far as `check` and `explain` need it: services,
routes, plugins with their scope, consumers and their acl groups.

Entities may be nested (services[].routes[], services[].plugins[], routes[].plugins[],
consumers[].plugins[], consumers[].acls[]) or listed at top level with a foreign key naming the
parent by name or id, as Kong's declarative format allows.

Which instance of a plugin runs on a route follows Kong's precedence (kong/runloop/
plugins_iterator.lua, the "combos"): an enabled instance on the route wins over one on the
route's service, which wins over a global one. Disabled instances do not count
(`should_process_plugin` checks `plugin.enabled` before an instance enters the plan). Consumer-scoped
instances only apply once a consumer is known, so they never decide whether a route is
guarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class KongFileError(Exception):
    """The file cannot be read as a declarative config; str() says where."""


@dataclass
class Plugin:
    name: str
    config: dict[str, Any]
    location: str                    # where in the file, e.g. services[0].routes[1].plugins[0]
    enabled: bool = True
    protocols: tuple[str, ...] | None = None
    service: str | None = None       # service key (name, else id)
    route: str | None = None         # route key (name, else id)
    consumer: str | None = None
    instance_name: str | None = None

    @property
    def scope(self) -> str:
        if self.consumer is not None:
            return "consumer"
        if self.route is not None:
            return "route"
        if self.service is not None:
            return "service"
        return "global"

    @property
    def label(self) -> str:
        """Human name of the instance: `route orders, plugin oidc`."""
        owner = {"route": f"route {self.route}", "service": f"service {self.service}",
                 "consumer": f"consumer {self.consumer}", "global": "global"}[self.scope]
        return f"{owner}, plugin {self.instance_name or self.name}"


@dataclass
class Route:
    key: str                         # name, else id, else its location
    name: str | None
    id: str | None
    service: str | None
    location: str
    protocols: tuple[str, ...] = ("http", "https")


@dataclass
class Service:
    key: str
    name: str | None
    id: str | None
    location: str


@dataclass
class KongFile:
    path: str
    services: list[Service] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    plugins: list[Plugin] = field(default_factory=list)
    consumers: list[dict[str, Any]] = field(default_factory=list)
    acl_groups: list[tuple[str, str, str]] = field(default_factory=list)  # (consumer, group, location)

    def route(self, ref: str) -> Route | None:
        for r in self.routes:
            if ref in (r.name, r.id, r.key):
                return r
        return None

    def service(self, ref: str) -> Service | None:
        for s in self.services:
            if ref in (s.name, s.id, s.key):
                return s
        return None

    def consumer(self, value: str, by_username: bool) -> dict[str, Any] | None:
        for c in self.consumers:
            if (c.get("username") if by_username else c.get("id")) == value:
                return c
        return None

    def effective(self, name: str, route: Route) -> Plugin | None:
        """The instance of plugin `name` Kong runs on `route` (route > service > global)."""
        candidates = [p for p in self.plugins if p.name == name and p.enabled and p.consumer is None]
        for p in candidates:
            if p.route == route.key:
                return p
        if route.service is not None:
            for p in candidates:
                if p.route is None and p.service == route.service:
                    return p
        for p in candidates:
            if p.scope == "global":
                return p
        return None

    def routes_of(self, plugin: Plugin) -> list[Route]:
        """The routes on which `plugin` is the instance that runs."""
        return [r for r in self.routes if self.effective(plugin.name, r) is plugin]


def _key(entity: dict[str, Any], location: str) -> str:
    for k in ("name", "id"):
        v = entity.get(k)
        if isinstance(v, str) and v:
            return v
    return location


def _ref(value: Any) -> str | None:
    """A foreign key as Kong's declarative format accepts it: "name-or-id" or {name|id: ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for k in ("name", "id", "username"):
            if isinstance(value.get(k), str):
                return value[k]
    return None


def _list(parent: dict[str, Any], key: str, location: str) -> list[tuple[dict[str, Any], str]]:
    items = parent.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise KongFileError(f"{location}{key}: expected a list")
    out = []
    for i, item in enumerate(items):
        where = f"{location}{key}[{i}]"
        if not isinstance(item, dict):
            raise KongFileError(f"{where}: expected a mapping")
        out.append((item, where))
    return out


class _Loader:
    def __init__(self, doc: dict[str, Any], path: str) -> None:
        self.doc = doc
        self.out = KongFile(path=path)
        self._service_keys: dict[str, str] = {}  # name or id -> key
        self._route_keys: dict[str, str] = {}

    def run(self) -> KongFile:
        for svc, where in _list(self.doc, "services", ""):
            self._service(svc, where)
        for route, where in _list(self.doc, "routes", ""):
            self._route(route, where, _ref(route.get("service")))
        for consumer, where in _list(self.doc, "consumers", ""):
            self._consumer(consumer, where)
        for acl, where in _list(self.doc, "acls", ""):
            self._acl(acl, where, _ref(acl.get("consumer")))
        for plugin, where in _list(self.doc, "plugins", ""):
            self._plugin(plugin, where)
        # Foreign keys given by id resolve to the entity's key (its name when it has one).
        for p in self.out.plugins:
            if p.service is not None:
                p.service = self._service_keys.get(p.service, p.service)
            if p.route is not None:
                p.route = self._route_keys.get(p.route, p.route)
        for r in self.out.routes:
            if r.service is not None:
                r.service = self._service_keys.get(r.service, r.service)
        return self.out

    def _service(self, svc: dict[str, Any], where: str) -> None:
        key = _key(svc, where)
        self.out.services.append(Service(key, svc.get("name"), svc.get("id"), where))
        for k in (svc.get("name"), svc.get("id")):
            if isinstance(k, str):
                self._service_keys[k] = key
        for route, rwhere in _list(svc, "routes", where + "."):
            self._route(route, rwhere, key)
        for plugin, pwhere in _list(svc, "plugins", where + "."):
            self._plugin(plugin, pwhere, service=key)

    def _route(self, route: dict[str, Any], where: str, service: str | None) -> None:
        key = _key(route, where)
        protocols = route.get("protocols")
        self.out.routes.append(Route(
            key, route.get("name"), route.get("id"), service, where,
            tuple(protocols) if isinstance(protocols, list) else ("http", "https"),
        ))
        for k in (route.get("name"), route.get("id")):
            if isinstance(k, str):
                self._route_keys[k] = key
        for plugin, pwhere in _list(route, "plugins", where + "."):
            self._plugin(plugin, pwhere, route=key)

    def _consumer(self, consumer: dict[str, Any], where: str) -> None:
        self.out.consumers.append(consumer)
        key = consumer.get("username") or consumer.get("id") or where
        for plugin, pwhere in _list(consumer, "plugins", where + "."):
            self._plugin(plugin, pwhere, consumer=key)
        for acl, awhere in _list(consumer, "acls", where + "."):
            self._acl(acl, awhere, key)

    def _acl(self, acl: dict[str, Any], where: str, consumer: str | None) -> None:
        group = acl.get("group")
        if isinstance(group, str):
            self.out.acl_groups.append((consumer or "?", group, where))

    def _plugin(self, plugin: dict[str, Any], where: str, *, service: str | None = None,
                route: str | None = None, consumer: str | None = None) -> None:
        name = plugin.get("name")
        if not isinstance(name, str):
            raise KongFileError(f"{where}.name: a plugin needs a name")
        config = plugin.get("config") or {}
        if not isinstance(config, dict):
            raise KongFileError(f"{where}.config: expected a mapping")
        protocols = plugin.get("protocols")
        self.out.plugins.append(Plugin(
            name=name,
            config=config,
            location=where,
            enabled=plugin.get("enabled", True) is not False,
            protocols=tuple(protocols) if isinstance(protocols, list) else None,
            service=service or _ref(plugin.get("service")),
            route=route or _ref(plugin.get("route")),
            consumer=consumer or _ref(plugin.get("consumer")),
            instance_name=plugin.get("instance_name") if isinstance(plugin.get("instance_name"), str) else None,
        ))


def parse_document(doc: Any, path: str = "<inline>") -> KongFile:
    if not isinstance(doc, dict):
        raise KongFileError(f"{path}: a declarative config is a mapping (with _format_version, services, ...)")
    return _Loader(doc, path).run()


def load(path: str | Path) -> KongFile:
    """Read a kong.yml / kong.json; KongFileError when it cannot be parsed."""
    import yaml  # only the CLI needs YAML; the plugin server never imports it

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise KongFileError(f"{path}: cannot read: {err.strerror or type(err).__name__}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise KongFileError(f"{path}:{at} not valid YAML/JSON ({getattr(err, 'problem', None) or type(err).__name__})") from None
    return parse_document(doc, str(path))
