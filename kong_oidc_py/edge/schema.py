"""Kong schema for the plugin's `config` record, generated from config.OPTIONS.

Only attributes every Kong from 3.4 to 3.9 accepts in a plugin schema are emitted (shared doc
5.3): type, required, default, one_of, between, len_min, len_max, elements, keys, values, fields,
description, plus encrypted/referenceable on secrets (in the 3.4 metaschema too), so secrets can
be vault references and are encrypted at rest when a keyring is configured. `match` is never
used: Kong evaluates it as a Lua pattern, not a regex, and config.py validates shapes instead.

Rules across options (rules.py) travel as `entity_checks`: on the `policies[]` record, and at
the top of the plugin schema, where Kong's bundled plugins put theirs (fields named
"config.<option>"). kong-pdk 0.36 builds that top level itself and has no place for them
(kong_pdk/server.py `get_plugin_info`), so `server.py` adds `ENTITY_CHECKS` to its `--dump`
output (`with_entity_checks`).
"""

from __future__ import annotations

from typing import Any

from kong_oidc_py.config import OPTIONS, UNSET, Option
from kong_oidc_py.rules import kong_entity_checks


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _as_is(value: Any) -> Any:
    return value


def field_schema(opt: Option) -> dict[str, Any]:
    """The Kong field definition (without its name) for one option or element spec."""
    out: dict[str, Any] = {"type": opt.type}
    if opt.required:
        out["required"] = True
    if opt.default is not UNSET:
        out["default"] = _json_value(opt.default)
    # Option attributes Kong spells the same, written only when set.
    for attr, write in (("one_of", list), ("between", list), ("len_min", _as_is), ("len_max", _as_is),
                        ("elements", field_schema), ("keys", field_schema), ("values", field_schema)):
        value = getattr(opt, attr)
        if value is not None:
            out[attr] = write(value)
    if opt.fields is not None:
        out["fields"] = [{f.name: field_schema(f)} for f in opt.fields]
    if opt.entity_checks:
        out["entity_checks"] = [dict(c) for c in opt.entity_checks]
    if opt.secret:
        out["encrypted"] = True
        if opt.type == "array" and "elements" in out:
            # Kong resolves vault references per string: on an array the elements carry it
            # (as Kong Enterprise's introspection_headers_values does).
            out["elements"] = {**out["elements"], "referenceable": True}
        else:
            out["referenceable"] = True
    if opt.description:
        out["description"] = opt.description
    return out


def build_schema() -> list[dict[str, dict[str, Any]]]:
    return [{opt.name: field_schema(opt)} for opt in OPTIONS]


SCHEMA: list[dict[str, dict[str, Any]]] = build_schema()
ENTITY_CHECKS: list[dict[str, Any]] = kong_entity_checks()


def with_entity_checks(dump: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kong-pdk's `--dump` (a list of plugin infos) with our top-level entity checks added to
    each plugin's Schema (kong/db/schema/metaschema.lua `MetaSubSchema` accepts
    `entity_checks` beside `name` and `fields`: l.998-1036 in 3.9.3, l.817-851 in 3.4.2)."""
    out = []
    for info in dump:
        info = dict(info)
        info["Schema"] = {**info["Schema"], "entity_checks": ENTITY_CHECKS}
        out.append(info)
    return out
