"""Plugin config validation and normalization like kong/db/schema/init.lua.

Covers: records made required (kong/db/schema/entity.lua `make_records_required`), defaults filled
(nested records too), "unknown field", "required field missing", non-empty strings unless
len_min = 0, integer/number/boolean/string type checks, array/set/map/record recursion, the
validators eq, ne, gt, between, one_of, not_one_of, len_eq, len_min, len_max, match, not_match,
match_all, match_none, match_any (Lua patterns, lua_pattern.py), starts_with, contains, uuid, and
every entity check a JSON schema can carry (entity_checks.py).
Errors are a tree of dicts (field -> message or subtree; 1-based int keys for array entries) that
`render_errors` prints as kong/db/declarative/init.lua `pretty_print_error` does.
"""

from __future__ import annotations

import copy
import math
import uuid as _uuid
from typing import Any

from . import entity_checks
from .lua_pattern import lua_match

# kong/db/schema/init.lua `validation_errors`
E = {
    "ARRAY": "expected an array",
    "SET": "expected a set",
    "MAP": "expected a map",
    "RECORD": "expected a record",
    "STRING": "expected a string",
    "NUMBER": "expected a number",
    "BOOLEAN": "expected a boolean",
    "INTEGER": "expected an integer",
    "EQ": "value must be %s",
    "NE": "value must not be %s",
    "GT": "value must be greater than %s",
    "BETWEEN": "value should be between %d and %d",
    "LEN_EQ": "length must be %d",
    "LEN_MIN": "length must be at least %d",
    "LEN_MAX": "length must be at most %d",
    "MATCH": "invalid value: %s",
    "STARTS_WITH": "should start with: %s",
    "CONTAINS": "expected to contain: %s",
    "ONE_OF": "expected one of: %s",
    "NOT_ONE_OF": "must not be one of: %s",
    "UUID": "expected a valid UUID",
    "REQUIRED": "required field missing",
    "UNKNOWN": "unknown field",
    "AT_LEAST_ONE_OF": "at least one of these fields must be non-empty: %s",
    "ONLY_ONE_OF": "exactly one of these fields must be non-empty: %s",
}

NULL = object()  # explicit null in the input (ngx.null)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool):  # Lua tostring(true)
        return "true" if v else "false"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


def make_records_required(fdef: dict) -> dict:
    """kong/db/schema/entity.lua: every record whose `required` is unset becomes required."""
    fdef = dict(fdef)
    t = fdef.get("type")
    if t == "record":
        if fdef.get("required") is None:
            fdef["required"] = True
        fdef["fields"] = [{k: make_records_required(v) for k, v in f.items()} for f in fdef.get("fields", [])]
    elif t in ("array", "set") and isinstance(fdef.get("elements"), dict):
        fdef["elements"] = make_records_required(fdef["elements"])
    elif t == "map":
        if isinstance(fdef.get("values"), dict):
            fdef["values"] = make_records_required(fdef["values"])
    return fdef


def _default_for(fdef: dict) -> Any:
    """Value used for a missing field on insert (schema/init.lua `handle_missing_field` /
    `get_field_default`): the declared default, or for a required record one built from its
    subfields' defaults."""
    if "default" in fdef and fdef["default"] is not None:
        return copy.deepcopy(fdef["default"])
    if fdef.get("type") == "record" and fdef.get("required"):
        return {}
    return None


def _run_validators(fdef: dict, v: Any) -> str | None:
    t = fdef.get("type")
    # order: schema/init.lua `Schema.validators_order`
    if "eq" in fdef and v != fdef["eq"]:
        return E["EQ"] % _fmt_num(fdef["eq"])
    if "ne" in fdef and v == fdef["ne"]:
        return E["NE"] % _fmt_num(fdef["ne"])
    if "not_one_of" in fdef and v in fdef["not_one_of"]:
        return E["NOT_ONE_OF"] % ", ".join(_fmt_num(x) for x in fdef["not_one_of"])
    if "one_of" in fdef and v not in fdef["one_of"]:
        return E["ONE_OF"] % ", ".join(_fmt_num(x) for x in fdef["one_of"])
    if "gt" in fdef and not v > fdef["gt"]:
        return E["GT"] % _fmt_num(fdef["gt"])
    if "uuid" in fdef and fdef["uuid"]:
        try:
            _uuid.UUID(v)
        except (ValueError, TypeError, AttributeError):
            return E["UUID"]
    if "between" in fdef:
        lo, hi = fdef["between"]
        if not (lo <= v <= hi):
            return E["BETWEEN"] % (lo, hi)
    if t in ("string", "array", "set", "map"):
        n = len(v)
        if "len_eq" in fdef and n != fdef["len_eq"]:
            return E["LEN_EQ"] % fdef["len_eq"]
        len_min = fdef.get("len_min")
        if len_min is None and t == "string":
            len_min = 1  # empty strings are rejected unless len_min = 0
        if len_min is not None and n < len_min:
            return E["LEN_MIN"] % len_min
        if "len_max" in fdef and n > fdef["len_max"]:
            return E["LEN_MAX"] % fdef["len_max"]
    if t == "string":
        if "starts_with" in fdef and not v.startswith(fdef["starts_with"]):
            return E["STARTS_WITH"] % fdef["starts_with"]
        # init.lua l.256-306: Lua patterns (lua_pattern.py)
        if "not_match" in fdef and lua_match(v, fdef["not_match"]):
            return E["MATCH"] % v
        for item in fdef.get("match_none") or []:
            if lua_match(v, item["pattern"]):
                return item.get("err") or E["MATCH"] % v
        if "match" in fdef and not lua_match(v, fdef["match"]):
            return E["MATCH"] % v
        for item in fdef.get("match_all") or []:
            if not lua_match(v, item["pattern"]):
                return item.get("err") or E["MATCH"] % v
        if "match_any" in fdef and not any(lua_match(v, p) for p in fdef["match_any"].get("patterns", [])):
            return fdef["match_any"].get("err") or E["MATCH"] % v
    if t in ("array", "set") and "contains" in fdef and fdef["contains"] not in v:
        return E["CONTAINS"] % fdef["contains"]
    return None


def validate_field(fdef: dict, v: Any) -> tuple[Any, Any]:
    """Validate one present (non-null) value. Returns (normalized, error-or-None)."""
    t = fdef.get("type")
    if t == "string":
        if not isinstance(v, str):
            return v, E["STRING"]
    elif t == "integer":
        if not _is_number(v) or not math.isfinite(v) or v != int(v):
            return v, E["INTEGER"]
        v = int(v)
    elif t == "number":
        if not _is_number(v) or (isinstance(v, float) and math.isnan(v)):
            return v, E["NUMBER"]
        if isinstance(v, float) and v == int(v) and math.isfinite(v):
            v = int(v)
    elif t == "boolean":
        if not isinstance(v, bool):
            return v, E["BOOLEAN"]
    elif t in ("array", "set"):
        if isinstance(v, dict) and not v:
            v = []  # an empty Lua table is a valid empty array
        if not isinstance(v, list):
            return v, E["ARRAY"] if t == "array" else E["SET"]
        elements = fdef.get("elements") or {}
        out, errs = [], {}
        for i, item in enumerate(v, 1):
            if item is None or item is NULL:
                errs[i] = E["REQUIRED"]
                continue
            nv, err = validate_field(elements, item)
            if err is not None:
                errs[i] = err
            if t == "set" and nv in out:
                continue
            out.append(nv)
        if errs:
            return v, errs
        v = out
    elif t == "map":
        if isinstance(v, list) and not v:
            v = {}
        if not isinstance(v, dict):
            return v, E["MAP"]
        out, errs = {}, {}
        for k, item in v.items():
            _, kerr = validate_field(fdef.get("keys") or {"type": "string"}, k)
            if kerr is not None:
                errs[k] = kerr
                continue
            if item is None or item is NULL:
                continue
            nv, err = validate_field(fdef.get("values") or {}, item)
            if err is not None:
                errs[k] = err
            out[k] = nv
        if errs:
            return v, errs
        v = out
    elif t == "record":
        if isinstance(v, list) and not v:
            v = {}
        if not isinstance(v, dict):
            return v, E["RECORD"]
        return validate_record(fdef, v)
    elif t == "json":
        return v, None
    err = _run_validators(fdef, v)
    return v, err


def validate_record(rdef: dict, value: dict) -> tuple[dict, dict | None]:
    """Validate a record: fills defaults, rejects unknown fields; absent optional fields stay
    absent (entities are read back with nulls removed, shared doc 3.3)."""
    fields = rdef.get("fields", [])
    known = {}
    for f in fields:
        (name, fdef), = f.items()
        known[name] = fdef
    out: dict = {}
    errs: dict = {}
    for k in value:
        if k not in known:
            errs[k] = E["UNKNOWN"]
    for name, fdef in known.items():
        if name in value and (value[name] is None or value[name] is NULL):
            # explicit null (ngx.null): not replaced by the default on insert
            if fdef.get("required"):
                errs[name] = E["REQUIRED"]
            continue
        if name in value:
            v = value[name]
        else:
            v = _default_for(fdef)
            if v is None:
                if fdef.get("required"):
                    errs[name] = E["REQUIRED"]
                continue
        nv, err = validate_field(fdef, v)
        if err is not None:
            errs[name] = err
            continue
        if fdef.get("type") == "string" and nv == "":
            continue  # empty strings are dropped on read (shared doc 3.3)
        out[name] = nv
    entity_checks.run(rdef, _view(rdef, out), errs, lambda fdef, v: validate_field(fdef, v)[1])
    if "@entity" in errs:
        errs["@entity"] = {i + 1: m for i, m in enumerate(errs["@entity"])}
    return out, (errs or None)


def _view(rdef: dict, out: dict) -> dict:
    """The record as entity checks see it after `process_auto_fields` (init.lua l.956): every
    field present, absent optional ones as null (None), nested records likewise."""
    view: dict = {}
    for f in rdef.get("fields", []):
        (name, fdef), = f.items()
        value = out.get(name)
        if fdef.get("type") == "record" and isinstance(value, dict):
            value = _view(fdef, value)
        view[name] = value
    return view


def plugin_config_schema(dumped_schema: dict) -> dict:
    """The `config` record of a dumped plugin schema with records made required."""
    for f in dumped_schema.get("fields", []):
        if "config" in f:
            return make_records_required(f["config"])
    return {"type": "record", "required": True, "fields": []}


def render_errors(err_t: dict, item: str | None = None, indent: str = "") -> str:
    """kong/db/declarative/init.lua `pretty_print_error` (keys sorted for determinism)."""
    out = []
    for k in sorted(err_t, key=lambda x: (isinstance(x, str), x if isinstance(x, str) else f"{x:09d}")):
        v = err_t[k]
        pretty = f"- in entry {k} of '{item}'" if isinstance(k, int) else f"in '{k}'"
        if isinstance(v, dict):
            out.append(f"{indent}{pretty}:")
            out.append(render_errors(v, str(k), indent + "  "))
        else:
            out.append(f"{indent}{pretty}: {v}")
    return "\n".join(out)
