"""SCHEMA obeys Kong's MetaSchema rules (portable subset, 3.4-3.9) and matches parse_config."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from kong_oidc_py.config import OPTIONS, POLICY_FIELDS, SECRET_OPTIONS, parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.edge.schema import SCHEMA

# shared doc 5.3: portable attributes, plus encrypted/referenceable (in the 3.4 list too).
# entity_checks on records: metaschema.lua field_schema (l.281 in 3.4.2, l.414 in 3.9.3).
PORTABLE = {"type", "required", "default", "one_of", "between", "len_min", "len_max", "elements",
            "keys", "values", "fields", "description", "encrypted", "referenceable", "entity_checks"}
TYPES = {"string", "integer", "number", "boolean", "array", "set", "map", "record"}
ISSUER = "https://idp.example.com/realms/demo"
BASE = {"issuer": ISSUER, "audience_required": ["api"]}  # the smallest valid bearer config


def walk(fields: list[dict[str, Any]], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named field and every nested element/key/value spec, with a readable path."""
    for entry in fields:
        assert len(entry) == 1, f"{prefix}: each field entry has exactly one key"
        (name, spec), = entry.items()
        yield from walk_spec(f"{prefix}{name}", spec)


def walk_spec(path: str, spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, spec
    for key in ("elements", "keys", "values"):
        if key in spec:
            yield from walk_spec(f"{path}.<{key}>", spec[key])
    if "fields" in spec:
        yield from walk(spec["fields"], f"{path}.")


ALL_SPECS = list(walk(SCHEMA))


def kong_validate(spec: dict[str, Any], value: Any) -> None:
    """The subset of kong/db/schema/init.lua validation our schema uses; raises AssertionError."""
    t = spec["type"]
    if t == "string":
        assert isinstance(value, str) and len(value) >= spec.get("len_min", 1)
    elif t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool)
    elif t == "boolean":
        assert isinstance(value, bool)
    elif t == "array":
        assert isinstance(value, list)
        for item in value:
            kong_validate(spec["elements"], item)
    elif t == "map":
        assert isinstance(value, dict)
        for k, v in value.items():
            kong_validate(spec["keys"], k)
            kong_validate(spec["values"], v)
    if "one_of" in spec:
        assert value in spec["one_of"]
    if "between" in spec:
        lo, hi = spec["between"]
        assert lo <= value <= hi
    if t == "array" and "len_min" in spec:
        assert len(value) >= spec["len_min"]
    if "len_max" in spec:
        assert len(value) <= spec["len_max"]


@pytest.mark.parametrize("path, spec", ALL_SPECS, ids=[p for p, _ in ALL_SPECS])
def test_only_portable_attributes_are_used(path, spec):
    assert set(spec) <= PORTABLE


@pytest.mark.parametrize("path, spec", ALL_SPECS, ids=[p for p, _ in ALL_SPECS])
def test_every_field_has_a_known_type_and_its_companions(path, spec):
    assert spec["type"] in TYPES
    if spec["type"] in ("array", "set"):
        assert "elements" in spec
    if spec["type"] == "map":
        assert "keys" in spec and "values" in spec
    if spec["type"] == "record":
        assert spec.get("fields")


@pytest.mark.parametrize("path, spec", ALL_SPECS, ids=[p for p, _ in ALL_SPECS])
def test_descriptions_are_10_to_500_characters(path, spec):
    if "description" in spec:
        assert 10 <= len(spec["description"]) <= 500


@pytest.mark.parametrize("path, spec", ALL_SPECS, ids=[p for p, _ in ALL_SPECS])
def test_validators_sit_on_types_that_support_them(path, spec):
    t = spec["type"]
    if "between" in spec:
        assert t in ("integer", "number")
    if "one_of" in spec:
        assert t in ("string", "integer", "number")
    if "len_min" in spec or "len_max" in spec:
        assert t in ("string", "array", "set", "map")


@pytest.mark.parametrize("path, spec", [(p, s) for p, s in ALL_SPECS if "default" in s],
                         ids=[p for p, s in ALL_SPECS if "default" in s])
def test_every_default_validates_against_its_own_field(path, spec):
    kong_validate(spec, spec["default"])


def test_named_top_level_fields_all_have_descriptions():
    for entry in SCHEMA:
        (name, spec), = entry.items()
        assert "description" in spec, name


def test_secrets_are_encrypted_and_referenceable():
    flagged = {name for entry in SCHEMA for name, spec in entry.items() if spec.get("encrypted")}
    assert flagged == SECRET_OPTIONS == {"client_secret", "session_secret", "hmac_secret", "session_redis_password",
                                         "session_redis_sentinel_password", "client_jwk",
                                         "introspection_headers_values", "dpop_nonce_secret"}


def test_secret_arrays_make_each_element_referenceable():
    spec = next(e["introspection_headers_values"] for e in SCHEMA if "introspection_headers_values" in e)
    assert spec["encrypted"] is True and "referenceable" not in spec
    assert spec["elements"] == {"type": "string", "referenceable": True}


def test_schema_is_plain_json():
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA


def test_policies_are_records_with_a_claims_map_of_string_arrays():
    spec = next(e["policies"] for e in SCHEMA if "policies" in e)
    fields = {name: s for f in spec["elements"]["fields"] for name, s in f.items()}
    assert fields["name"]["required"] is True
    assert fields["claims"]["type"] == "map"
    assert fields["claims"]["keys"]["type"] == "string"
    assert fields["claims"]["values"] == {"type": "array", "elements": {"type": "string"}, "len_min": 1}


# -- the schema and parse_config agree ------------------------------------------------------


def test_schema_declares_exactly_the_option_table():
    assert [next(iter(e)) for e in SCHEMA] == [o.name for o in OPTIONS]


def test_explicit_schema_defaults_parse_like_omitted_fields():
    explicit = dict(BASE)
    for entry in SCHEMA:
        (name, spec), = entry.items()
        if "default" in spec and name not in BASE:
            explicit[name] = spec["default"]
    assert parse_config(explicit) == parse_config(BASE)


@pytest.mark.parametrize("name", [o.name for o in OPTIONS if o.name != "issuer"])
def test_parse_config_accepts_every_schema_field_unset(name):
    base = {"issuer": ISSUER, "allow_any_audience": True} if name == "audience_required" else BASE
    parse_config({**base, name: None})


def test_parse_config_rejects_a_field_the_schema_does_not_declare():
    with pytest.raises(ConfigError):
        parse_config({"issuer": ISSUER, "not_in_schema": 1})


def test_policy_record_fields_match_the_table():
    spec = next(e["policies"] for e in SCHEMA if "policies" in e)
    assert [next(iter(f)) for f in spec["elements"]["fields"]] == [o.name for o in POLICY_FIELDS]


def test_policy_defaults_parse_like_omitted_fields():
    spec = next(e["policies"] for e in SCHEMA if "policies" in e)
    explicit = {"name": "p", "paths": ["/x"]}
    for f in spec["elements"]["fields"]:
        (name, s), = f.items()
        if "default" in s and name not in explicit:
            explicit[name] = s["default"]
    assert parse_config({**BASE, "policies": [explicit]}) == parse_config(
        {**BASE, "policies": [{"name": "p", "paths": ["/x"]}]}
    )
