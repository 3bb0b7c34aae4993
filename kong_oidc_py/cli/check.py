"""`kong-oidc-py check kong.yml`: every `oidc` instance of a declarative file, before traffic.

1. Each instance's config goes through `parse_config`, the same validation an instance start
   runs (every single-field and cross-field rule lives there, with the field and the fix), and
   `rules.config_warnings`, the warnings a start logs. Nothing is re-implemented here.
2. Lints on the file as a whole, which no single instance can see: routes where `oidc` runs
   without the fail-closed `acl` guard (README "The acl guard"), policies naming routes that do
   not exist or that the instance never runs on, a consumer holding the guard group, plain
   http issuers, tokens in the query string, one session_secret shared by several instances,
   browser sessions without Secure cookies on a non-loopback redirect_uri.
3. Unless offline: the IdP of each issuer (probe.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from kong_oidc_py import PLUGIN_NAME
from kong_oidc_py.cli.findings import Report, captured_logs
from kong_oidc_py.cli.kongfile import KongFile, Plugin, Route
from kong_oidc_py.config import OPTIONS_BY_NAME, UNSET, PluginConfig, parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.rules import config_warnings
from kong_oidc_py.idp.fetch import is_loopback_host

DEFAULT_GUARD = "oidc:verified"
# kong/db/schema/typedefs.lua protocols_http: a plugin without `protocols` runs on all of these.
PLUGIN_DEFAULT_PROTOCOLS = ("grpc", "grpcs", "http", "https")
BROWSER_METHODS = ("authorization_code", "session")
# rules.config_warnings options whose finding keeps the name the lint list uses.
WEAK_SETTING_CODES = {
    "allow_insecure_issuer": "http_issuer",
    "bearer_token_param_type": "query_token",
    "session_cookie_secure": "insecure_session_cookie",
}


@dataclass
class Instance:
    plugin: Plugin
    config: PluginConfig | None     # None when the config is invalid

    @property
    def guard_group(self) -> str:
        if self.config is not None:
            return self.config.guard_group
        value = self.plugin.config.get("guard_group")
        return value if isinstance(value, str) and value else DEFAULT_GUARD


def validate_instances(kf: KongFile, report: Report) -> list[Instance]:
    instances = []
    for plugin in kf.plugins:
        if plugin.name != PLUGIN_NAME:
            continue
        config = None
        with captured_logs() as logs:
            try:
                config = parse_config(plugin.config)
            except ConfigError as err:
                report.add("error", "config_invalid", plugin.label, err.message, location=plugin.location,
                           field=err.field, fix="the instance would not start: Kong answers 500 on its routes")
        for level, message in logs.messages:
            report.add("warning", "start_warning", plugin.label, message, location=plugin.location)
        if config is not None:
            for option, message in config_warnings(config):
                default = OPTIONS_BY_NAME[option].default
                shown = "unset" if default is UNSET or default is None else json.dumps(default, default=list)
                report.add("warning", WEAK_SETTING_CODES.get(option, "weaker_than_default"), plugin.label, message,
                           location=plugin.location, field=option,
                           fix=f"keep the default ({shown}) unless this is intended; the instance logs this at every start")
        instances.append(Instance(plugin, config))
        report.instances.append({
            "where": plugin.label,
            "location": plugin.location,
            "enabled": plugin.enabled,
            "valid": config is not None,
            "issuer": config.issuer if config is not None else plugin.config.get("issuer"),
            "routes": [r.key for r in kf.routes_of(plugin)],
        })
    return instances


# -- the fail-closed guard ------------------------------------------------------------------


def lint_guards(kf: KongFile, instances: list[Instance], report: Report) -> None:
    by_plugin = {id(i.plugin): i for i in instances}
    for route in kf.routes:
        oidc = kf.effective(PLUGIN_NAME, route)
        if oidc is None:
            continue
        _lint_route_guard(kf, route, by_plugin[id(oidc)], report)
    guards = {i.guard_group for i in instances}
    for consumer, group, location in kf.acl_groups:
        if group in guards:
            report.add("error", "guard_group_on_consumer", f"consumer {consumer}",
                       f"has the acl group {group!r}, the oidc guard marker: acl lets this consumer through "
                       "whenever another plugin identifies it, even when oidc never ran", location=location,
                       fix=f"rename the consumer's group; never give a consumer the group {group!r}")


def _lint_route_guard(kf: KongFile, route: Route, inst: Instance, report: Report) -> None:
    oidc, guard = inst.plugin, inst.guard_group
    where = f"route {route.key}"
    acl = kf.effective("acl", route)
    shape = f"{{allow: [{guard!r}], always_use_authenticated_groups: true}}"
    if acl is None:
        report.add("error", "no_guard", where,
                   f"oidc ({oidc.scope} level, {oidc.location}) runs here without the acl guard: when the plugin "
                   "server is down or fails, Kong proxies the request unauthenticated",
                   location=route.location, fix=f"add plugin acl with config {shape} next to this oidc instance")
        return
    allow = acl.config.get("allow") or []
    if acl.config.get("deny"):
        report.add("error", "guard_deny_list", where,
                   f"the acl guard ({acl.location}) uses deny: a request without the oidc marker is not refused",
                   location=acl.location, field="deny", fix=f"use {shape}")
        return
    if guard not in allow:
        report.add("error", "guard_group_not_allowed", where,
                   f"the acl plugin ({acl.location}) does not allow the guard group {guard!r} of the oidc "
                   f"instance at {oidc.location}: every request is refused, or the guard checks something else",
                   location=acl.location, field="allow", fix=f"use {shape}")
        return
    others = [g for g in allow if g != guard]
    if others:
        report.add("warning", "guard_extra_groups", where,
                   f"the acl guard also allows {others!r}: a request carrying one of these groups passes "
                   "without the oidc marker", location=acl.location, field="allow",
                   fix=f"guard with {guard!r} only; put other acl checks in a second acl layer or in policies")
    if acl.config.get("always_use_authenticated_groups") is not True:
        report.add("warning", "guard_authenticated_groups", where,
                   "the acl guard does not set always_use_authenticated_groups: once a consumer is attached, acl "
                   "checks the consumer's groups instead of the oidc marker", location=acl.location,
                   field="always_use_authenticated_groups", fix="set always_use_authenticated_groups: true")
    if acl.protocols is not None:
        runs = set(route.protocols) & set(oidc.protocols or PLUGIN_DEFAULT_PROTOCOLS)
        missing = sorted(runs - set(acl.protocols))
        if missing:
            report.add("error", "guard_protocols", where,
                       f"oidc runs on {missing!r} but the acl guard does not", location=acl.location,
                       field="protocols", fix="give the acl guard at least the protocols of the oidc instance")


# -- per-instance lints ---------------------------------------------------------------------


def lint_instances(kf: KongFile, instances: list[Instance], report: Report) -> None:
    secrets: dict[str, list[Instance]] = {}
    for inst in instances:
        cfg = inst.config
        if cfg is None:
            continue
        plugin = inst.plugin
        _lint_policy_routes(kf, inst, report)
        if urlsplit(cfg.issuer).scheme == "http" and is_loopback_host(urlsplit(cfg.issuer).hostname):
            # Allowed without allow_insecure_issuer (off loopback that option is a warning above).
            report.add("info", "http_issuer", plugin.label, "plain http issuer on a loopback host: for local "
                       "development only", location=plugin.location, field="issuer",
                       fix="use the IdP's https issuer URL in production")
        browser = any(m in cfg.auth_methods for m in BROWSER_METHODS)
        if browser and cfg.session_secret:
            digest = hashlib.sha256(cfg.session_secret.encode()).hexdigest()
            secrets.setdefault(digest, []).append(inst)
    for group in secrets.values():
        if len(group) < 2:
            continue
        for inst in group:
            others = ", ".join(o.plugin.label for o in group if o is not inst)
            report.add("warning", "shared_session_secret", inst.plugin.label,
                       f"uses the same session_secret as {others}: a session cookie issued by one instance is "
                       "accepted by the other", location=inst.plugin.location, field="session_secret",
                       fix="give each application its own session_secret (share one only within one application)")


def _lint_policy_routes(kf: KongFile, inst: Instance, report: Report) -> None:
    assert inst.config is not None
    plugin = inst.plugin
    runs_on = kf.routes_of(plugin)
    for i, policy in enumerate(inst.config.policies):
        for j, ref in enumerate(policy.routes):
            field = f"policies[{i}].routes[{j}]"
            route = kf.route(ref)
            if route is None:
                report.add("error", "policy_route_unknown", plugin.label,
                           f"policy {policy.name!r} names route {ref!r}, which is not in this file: the policy never "
                           "matches and its requirement never applies", location=plugin.location, field=field,
                           fix="use the name or id of a route this instance runs on")
            elif route not in runs_on:
                shown = ", ".join(r.key for r in runs_on) or "no route"
                report.add("warning", "policy_route_unreached", plugin.label,
                           f"policy {policy.name!r} names route {ref!r}, but this instance does not run there "
                           f"(it runs on: {shown}): the policy never matches", location=plugin.location,
                           field=field, fix="move the policy to the oidc instance that runs on that route")


def check_file(kf: KongFile, report: Report, *, offline: bool) -> list[Instance]:
    instances = validate_instances(kf, report)
    if not instances:
        report.add("warning", "no_instances", "file", f"no {PLUGIN_NAME!r} plugin in this file")
    lint_guards(kf, instances, report)
    lint_instances(kf, instances, report)
    if not offline:
        from kong_oidc_py.cli.probe import probe_issuers

        probe_issuers([i for i in instances if i.config is not None and i.plugin.enabled], report)
    return instances
