"""Entity checks as kong/db/schema/init.lua runs them (line numbers: Kong 3.9.3; 3.4.2 has the
same checkers and the same `run_entity_check`, about 30 lines earlier).

A plugin schema carries them on any record (the `config` record's children, e.g. an array of
records) and at its top level, next to `name` and `fields`, where Kong's bundled plugins put
theirs with fields named "config.<field>" (`run_entity_checks` runs the subschema's checks on the
plugin entity, l.1435-1456). They run after defaults are filled: a record is validated as
`process_auto_fields(value, "insert")` then `validate` (l.956-958), so an absent optional field
is null (l.1037-1073 `handle_missing_field`) and a defaulted one has its default.

All checkers that can be written in JSON are implemented: at_least_one_of, only_one_of,
distinct, conditional, conditional_at_least_one_of, mutually_required, mutually_exclusive,
mutually_exclusive_sets. `custom_entity_check` needs a Lua function (`fn`, l.771-779) that no
plugin-server dump can carry; `check_schema` refuses it, with any unknown checker, when the
plugin info is loaded (Kong's MetaSubSchema would accept the table and then fail calling a nil
`fn` on the first validation).

Known simplification: a field that already failed its own validation is looked up as it was
normalized here (absent), where Kong passes the raw invalid value; the entity is refused either
way.
"""

from __future__ import annotations

from typing import Any, Callable

from .lua_pattern import lua_match

MISSING = object()  # Lua nil (no such path), as opposed to None = ngx.null

# validation_errors (init.lua l.64-141)
MESSAGES = {
    "REQUIRED": "required field missing",
    "REQUIRED_FOR_ENTITY_CHECK": "field required for entity check",
    "ENTITY_CHECK": "failed entity check: %s(%s)",
    "CONDITIONAL": "failed conditional validation given value of field '%s'",
    "AT_LEAST_ONE_OF": "at least one of these fields must be non-empty: %s",
    "CONDITIONAL_AT_LEAST_ONE_OF": "at least one of these fields must be non-empty: %s",
    "ONLY_ONE_OF": "exactly one of these fields must be non-empty: %s",
    "DISTINCT": "values of these fields must be distinct: %s",
    "MUTUALLY_REQUIRED": "all or none of these fields must be set: %s",
    "MUTUALLY_EXCLUSIVE": "only one or none of these fields must be set: %s",
    "MUTUALLY_EXCLUSIVE_SETS": "these sets are mutually exclusive: %s",
    "EQ": "value must be %s",
    "NE": "value must not be %s",
    "MATCH": "invalid value: %s",
}

# Schema.entity_checkers attributes (l.590-822): run_with_missing_fields, run_with_invalid_fields,
# field_sources, required_fields.
CHECKERS: dict[str, dict[str, Any]] = {
    "at_least_one_of": {"missing": True, "invalid": True},
    "conditional_at_least_one_of": {"missing": True, "invalid": True,
                                    "sources": ("if_field", "then_at_least_one_of", "else_then_at_least_one_of"),
                                    "required": ()},  # l.615 lists it as an array: never matches a source name
    "only_one_of": {"missing": False, "invalid": True},
    "distinct": {"missing": False, "invalid": True},
    "conditional": {"missing": False, "invalid": True, "sources": ("if_field", "then_field"),
                    "required": ("if_field",)},
    "mutually_required": {"missing": True, "invalid": False},
    "mutually_exclusive": {"missing": True, "invalid": False},
    "mutually_exclusive_sets": {"missing": True, "invalid": False, "sources": ("set1", "set2"),
                                "required": ()},
}

# metaschema.lua l.45-73 (validators usable in if_match/then_match/else_match, l.315-323)
MATCH_KEYS = {"required", "elements", "keys", "values", "between", "eq", "ne", "gt", "len_eq",
              "len_min", "len_max", "match", "not_match", "match_all", "match_none", "match_any",
              "starts_with", "one_of", "not_one_of", "contains", "is_regex", "timestamp", "uuid",
              "custom_validator", "mutually_exclusive_subsets"}


class SchemaError(Exception):
    """The dumped schema is not one Kong could use."""


def check_schema(checks: Any, where: str) -> None:
    """Refuse entity checks Kong could not run from a JSON dump (MetaSubSchema shape,
    metaschema.lua l.326-398: one checker per entry)."""
    if checks is None:
        return
    if not isinstance(checks, list):
        raise SchemaError(f"{where}.entity_checks: expected an array")
    for i, check in enumerate(checks, 1):
        if not isinstance(check, dict) or len(check) != 1:
            raise SchemaError(f"{where}.entity_checks[{i}]: exactly one checker per entry")
        (name, arg), = check.items()
        if name == "custom_entity_check":
            raise SchemaError(f"{where}.entity_checks[{i}]: custom_entity_check needs a Lua function "
                              "(fn), which a plugin server's JSON dump cannot carry")
        if name not in CHECKERS:
            raise SchemaError(f"{where}.entity_checks[{i}]: unknown entity checker {name!r}")
        if isinstance(arg, dict):
            for key in ("if_match", "then_match", "else_match"):
                extra = set(arg.get(key) or {}) - MATCH_KEYS
                if extra:
                    raise SchemaError(f"{where}.entity_checks[{i}].{name}.{key}: unknown field(s) {sorted(extra)}")
            if "custom_validator" in (arg.get("if_match") or {}) or "custom_validator" in (arg.get("then_match") or {}):
                raise SchemaError(f"{where}.entity_checks[{i}]: custom_validator needs a Lua function")


def get_field(view: Any, name: str) -> Any:
    """init.lua l.472-482 over a view where null is None and an absent path is MISSING."""
    cur = view
    for part in name.split("."):
        if cur is None or cur is MISSING or not isinstance(cur, dict):
            return MISSING
        cur = cur.get(part, MISSING)
    return cur


def get_schema_field(rdef: dict, name: str) -> dict | None:
    cur: dict | None = rdef
    for part in name.split("."):
        if cur is None:
            return None
        found = None
        for f in cur.get("fields", []):
            if part in f:
                found = f[part]
        cur = found
    return cur


def _set_error(errors: dict, name: str, msg: Any) -> None:
    """init.lua l.488-501 `set_field` on the error table."""
    parts = name.split(".")
    node = errors
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = msg


def _nonempty(v: Any) -> bool:
    """init.lua l.429-438: nil, null, {} and "" are empty; false and 0 are not."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (dict, list, str)) and len(v) == 0:
        return False
    return True


def _quoted(words: list) -> str:
    """init.lua l.185-196 `quoted_list`."""
    return ", ".join(f"({_quoted(w)})" if isinstance(w, list) else f"'{w}'" for w in words)


def _lua_format(fmt: str, *args: Any) -> str:
    """string.format for the %s/%d/%% a then_err may hold; extra arguments are ignored as in Lua."""
    out, i, k = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            spec = fmt[i + 1]
            if spec == "%":
                out.append("%")
            elif spec in "sd":
                out.append(str(args[k]) if k < len(args) else "nil")
                k += 1
            else:
                out.append(c + spec)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _is_reference(v: Any) -> bool:
    # kong/pdk/vault.lua is_reference: "{vault://...}"
    return isinstance(v, str) and v.startswith("{vault://") and v.endswith("}")


def _validate_match(validate: Callable[[dict, Any], Any], fdef: dict | None, match: dict, value: Any) -> Any:
    """Schema.validate_field(schema, match, value) with `match` indexing the field definition
    (setmetatable __index, l.737-755): returns an error or None."""
    merged = {**(fdef or {}), **match}
    if value is None or value is MISSING:  # l.877-888
        if "eq" in merged and merged["eq"] is not None:
            return MESSAGES["EQ"] % _lua_str(merged["eq"])
        if merged.get("required"):
            return MESSAGES["REQUIRED"]
        return None
    if "match_any" in merged:
        err = _match_any(value, merged["match_any"])
        if err is not None:
            return err
        merged = {k: v for k, v in merged.items() if k != "match_any"}
    return validate(merged, value)


def _lua_str(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _match_any(value: Any, arg: dict) -> Any:
    # init.lua l.297-306 (Lua patterns)
    if isinstance(value, str) and any(lua_match(value, p) for p in arg.get("patterns", [])):
        return None
    return arg.get("err") or MESSAGES["MATCH"] % value


def run(rdef: dict, view: dict, errors: dict, validate: Callable[[dict, Any], Any], full_check: bool = True) -> None:
    """Run `rdef["entity_checks"]` over `view` (the record after defaults, nulls as None),
    adding to `errors` like `run_entity_check` (l.1262-1363)."""
    for check in rdef.get("entity_checks") or []:
        (name, arg), = check.items()
        if arg is None:
            continue
        _run_one(rdef, name, arg, view, errors, validate, full_check)


def _run_one(rdef, name, arg, view, errors, validate, full_check) -> None:
    checker = CHECKERS[name]
    fields: list[str] = []
    required: set[str] = set()
    if "sources" in checker:
        for source in checker["sources"]:
            v = arg.get(source)
            names = [v] if isinstance(v, str) else list(v) if isinstance(v, list) else []
            fields += names
            if source in checker["required"]:
                required.update(names)
    else:
        fields = list(arg)
        required = set(arg)
    missing, all_nil, all_ok = [], True, True
    for fname in fields:
        value = get_field(view, fname)
        if value is MISSING:
            fdef = get_schema_field(rdef, fname) or {}
            run_missing = checker["missing"] or (isinstance(arg, dict) and arg.get("run_with_missing_fields"))
            if not run_missing and fname in required and not fdef.get("nilable"):
                missing.append(fname)
        else:
            all_nil = False
            fdef = get_schema_field(rdef, fname) or {}
            if fdef.get("type") == "string" and fdef.get("referenceable") and _is_reference(value):
                return  # l.1311-1315
        if fname in errors:
            all_ok = False
    if not all_ok and not checker["invalid"] and not (isinstance(arg, dict) and arg.get("run_with_invalid_fields")):
        return
    if all_nil and not (checker["missing"] and full_check):
        return
    if missing:
        for fname in missing:
            _set_error(errors, fname, MESSAGES["REQUIRED_FOR_ENTITY_CHECK"])
        return
    err = _evaluate(rdef, name, arg, view, errors, validate)
    if err is not None:
        errors.setdefault("@entity", []).append(err)


def _evaluate(rdef, name, arg, view, errors, validate) -> str | None:
    """The checker functions (l.590-822); returns the @entity message or None."""
    get = lambda f: get_field(view, f)  # noqa: E731
    if name in ("at_least_one_of", "only_one_of", "distinct", "mutually_required", "mutually_exclusive"):
        present = [f for f in arg if _nonempty(get(f))]
        ok = {
            "at_least_one_of": bool(present),
            "only_one_of": len(present) == 1,
            "mutually_required": len(present) in (0, len(arg)),
            "mutually_exclusive": len(present) <= 1,
        }.get(name)
        if name == "distinct":
            seen = [repr(get(f)) for f in present]
            ok = len(seen) == len(set(seen))
        return None if ok else MESSAGES[name.upper()] % _quoted(list(arg))
    if name == "mutually_exclusive_sets":
        s1 = [f for f in arg["set1"] if _nonempty(get(f))]
        s2 = [f for f in arg["set2"] if _nonempty(get(f))]
        if s1 and s2:
            return MESSAGES["MUTUALLY_EXCLUSIVE_SETS"] % f"({_quoted(s1)}), ({_quoted(s2)})"
        return None
    if name == "conditional":  # l.725-769
        if_value = get(arg["if_field"])
        if _validate_match(validate, get_schema_field(rdef, arg["if_field"]), arg["if_match"], if_value) is not None:
            return None
        then_value = get(arg["then_field"])
        then_value = None if then_value is MISSING else then_value
        if arg["then_match"].get("required") is True and then_value is None:
            _set_error(errors, arg["then_field"], MESSAGES["REQUIRED"])
        else:
            err = _validate_match(validate, get_schema_field(rdef, arg["then_field"]), arg["then_match"], then_value)
            if err is None:
                return None
            _set_error(errors, arg["then_field"], err)
        if arg.get("then_err"):
            return _lua_format(arg["then_err"], arg["if_field"])
        return MESSAGES["CONDITIONAL"] % arg["if_field"]
    if name == "conditional_at_least_one_of":  # l.607-672
        if_value = get(arg["if_field"])
        if if_value is MISSING:
            return None
        if_def = get_schema_field(rdef, arg["if_field"])
        if _validate_match(validate, if_def, arg["if_match"], if_value) is not None:
            if arg.get("else_match") is None:
                return None
            if _validate_match(validate, if_def, arg["else_match"], if_value) is not None:
                return None
            names, err_fmt = arg.get("else_then_at_least_one_of") or [], arg.get("else_then_err")
        else:
            names, err_fmt = arg.get("then_at_least_one_of") or [], arg.get("then_err")
        if any(_nonempty(get(f)) for f in names):
            return None
        listed = _quoted(list(names))
        return _lua_format(err_fmt, listed) if err_fmt else MESSAGES["CONDITIONAL_AT_LEAST_ONE_OF"] % listed
    raise AssertionError(name)


def check_plugin_schema(schema: dict) -> None:
    """`check_schema` on a dumped plugin schema: its top level and every nested record."""
    check_schema(schema.get("entity_checks"), schema.get("name") or "schema")

    def walk(fdef: Any, where: str) -> None:
        if not isinstance(fdef, dict):
            return
        if fdef.get("type") == "record":
            check_schema(fdef.get("entity_checks"), where)
            for f in fdef.get("fields") or []:
                for k, sub in f.items():
                    walk(sub, f"{where}.{k}")
        for key in ("elements", "keys", "values"):
            walk(fdef.get(key), where)

    for f in schema.get("fields") or []:
        for k, sub in f.items():
            walk(sub, k)
