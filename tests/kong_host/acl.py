"""Kong's bundled `acl` plugin (K3.9.3 kong/plugins/acl/handler.lua, groups.lua, schema.lua),
reimplemented in Python over the emulator's request context.

PRIORITY 950. Consumer groups come from `acls` entities of kong.yml; authenticated groups from
kong.ctx.shared.authenticated_groups first, then ngx.ctx.authenticated_groups (groups.lua
`get_authenticated_groups`).
"""

from __future__ import annotations

from typing import Any

from .context import RequestCtx
from .lua import lua_len
from .pdk import PDK

PRIORITY = 950
VERSION = "3.9.3"

SCHEMA = {
    "name": "acl",
    "fields": [
        {"config": {
            "type": "record",
            "fields": [
                {"allow": {"type": "array", "elements": {"type": "string"}}},
                {"deny": {"type": "array", "elements": {"type": "string"}}},
                {"hide_groups_header": {"type": "boolean", "required": True, "default": False}},
                {"always_use_authenticated_groups": {"type": "boolean", "required": True, "default": False}},
            ],
        }},
    ],
    # schema.lua entity_checks
    "entity_checks": [
        {"only_one_of": ["config.allow", "config.deny"]},
        {"at_least_one_of": ["config.allow", "config.deny"]},
    ],
}


def _get_current_consumer_id(ctx: RequestCtx) -> str | None:
    # groups.lua get_current_consumer_id: consumer.id or credential.consumer_id
    c = ctx.authenticated_consumer
    if isinstance(c, dict) and c.get("id"):
        return c["id"]
    cred = ctx.authenticated_credential
    if isinstance(cred, dict):
        return cred.get("consumer_id")
    return None


def _get_authenticated_groups(ctx: RequestCtx, pdk: PDK) -> list[str] | None:
    groups: Any = ctx.shared.get("authenticated_groups")
    if not isinstance(groups, (list, dict)):
        groups = ctx.ngx_ctx.get("authenticated_groups")
        if groups is None:
            return None
        if not isinstance(groups, (list, dict)):
            pdk.host.log("warn", "[kong] [acl] invalid authenticated_groups, a table was expected",
                         worker=ctx.worker, conn=ctx.conn)
            return None
    n = lua_len(groups)  # `for i = 1, #authenticated_groups`
    if isinstance(groups, list):
        return [g for g in groups[:n]]
    return [groups[i] for i in range(1, n + 1)]


def _to_be_blocked(conf_type: str, hide: bool, groups: list, in_group: bool):
    blocked = in_group if conf_type == "DENY" else not in_group
    if blocked is False:
        return "" if hide else ", ".join(str(g) for g in groups)
    return blocked


def access(ctx: RequestCtx, conf: dict, pdk: PDK) -> None:
    """Raises KongExit through pdk calls like the Lua handler's `return kong.response.error(...)`."""
    conf_type = "DENY" if conf.get("deny") else "ALLOW"
    check = conf.get("deny") if conf_type == "DENY" else (conf.get("allow") or [])
    hide = conf.get("hide_groups_header", False)
    consumer_id = _get_current_consumer_id(ctx)
    if not consumer_id:
        groups = _get_authenticated_groups(ctx, pdk)
        if groups is None:
            if ctx.authenticated_credential is not None:
                return pdk.call(ctx, "kong.response.error", [403, "You cannot consume this service"])
            return pdk.call(ctx, "kong.response.error", [401])
        in_group = any(g in groups for g in check)
        to_be_blocked = _to_be_blocked(conf_type, hide, groups, in_group)
    else:
        credential = ctx.authenticated_credential
        groups = None
        if credential is None or conf.get("always_use_authenticated_groups"):
            groups = _get_authenticated_groups(ctx, pdk)
        if groups is not None:
            consumer_id = None
            in_group = any(g in groups for g in check)
            to_be_blocked = _to_be_blocked(conf_type, hide, groups, in_group)
        else:
            cgroups = pdk.host.config.consumer_groups(consumer_id)
            in_group = any(g in cgroups for g in check)
            to_be_blocked = _to_be_blocked(conf_type, hide, cgroups, in_group)
    if to_be_blocked is True:
        return pdk.call(ctx, "kong.response.error", [403, "You cannot consume this service"])
    if not hide and to_be_blocked:
        name = "X-Consumer-Groups" if consumer_id else "X-Authenticated-Groups"  # constants.HEADERS
        pdk.call(ctx, "kong.service.request.set_header", [name, to_be_blocked])
