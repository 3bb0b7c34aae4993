"""The emulator runs entity checks and Lua patterns as kong/db/schema/init.lua does."""

from __future__ import annotations

import pytest

from tests.kong_host import declarative
from tests.kong_host.lua_pattern import lua_match
from tests.kong_host.plugin_server import PluginServerError, PluginServerSpec, parse_info


def schema(fields: list, checks: list) -> dict:
    return {"name": "p", "fields": [{"config": {"type": "record", "fields": fields}}], "entity_checks": checks}


FIELDS = [
    {"mode": {"type": "string", "default": "a", "one_of": ["a", "b"]}},
    {"list": {"type": "array", "elements": {"type": "string"}, "default": []}},
    {"name": {"type": "string"}},
    {"flag": {"type": "boolean"}},
]


def load(checks: list, config: dict) -> None:
    doc = {"_format_version": "3.0", "plugins": [{"name": "p", "config": config}]}
    declarative.load(doc, {"p": schema(FIELDS, checks)})


def refused(checks: list, config: dict) -> str:
    with pytest.raises(declarative.DeclarativeError) as info:
        load(checks, config)
    return str(info.value)


COND = {"conditional": {"if_field": "config.mode", "if_match": {"eq": "b"},
                        "then_field": "config.name", "then_match": {"required": True}}}


def test_conditional_applies_to_the_default_value_and_names_the_then_field():
    load([COND], {})  # mode defaults to "a": the condition does not hold
    text = refused([COND], {"mode": "b"})
    assert "in 'name': required field missing" in text
    assert "failed conditional validation given value of field 'config.mode'" in text


def test_conditional_then_err_replaces_the_generic_message():
    check = {"conditional": {**COND["conditional"], "then_err": "name is needed for mode b"}}
    assert "name is needed for mode b" in refused([check], {"mode": "b"})


def test_conditional_contains_on_an_array():
    check = {"conditional": {"if_field": "config.list", "if_match": {"contains": "x"},
                             "then_field": "config.name", "then_match": {"required": True}}}
    load([check], {"list": ["y"]})
    refused([check], {"list": ["y", "x"]})


def test_conditional_at_least_one_of_counts_false_as_set_and_null_as_empty():
    check = {"conditional_at_least_one_of": {"if_field": "config.mode", "if_match": {"eq": "a"},
                                             "then_at_least_one_of": ["config.list", "config.flag"]}}
    assert "at least one of these fields must be non-empty: 'config.list', 'config.flag'" in refused([check], {})
    load([check], {"flag": False})  # init.lua is_nonempty: false is a value
    load([check], {"list": ["z"]})


def test_mutually_required_treats_an_empty_array_as_unset():
    check = {"mutually_required": ["config.list", "config.name"]}
    load([check], {})
    load([check], {"list": ["a"], "name": "n"})
    assert "all or none of these fields must be set" in refused([check], {"name": "n"})


def test_only_one_of_and_distinct():
    load([{"only_one_of": ["config.name", "config.flag"]}], {"name": "n"})
    refused([{"only_one_of": ["config.name", "config.flag"]}], {"name": "n", "flag": True})


def test_match_any_uses_lua_patterns():
    check = {"conditional": {"if_field": "config.mode", "if_match": {"eq": "a"}, "then_field": "config.name",
                             "then_match": {"match_any": {"patterns": ["^x%d+$"], "err": "want x and digits"}}}}
    load([check], {"name": "x12"})
    assert "want x and digits" in refused([check], {"name": "x1y"})


@pytest.mark.parametrize("value, pattern, matches", [
    ("http://127.0.0.1:9", "^http://127%.%d+%.%d+%.%d+[:/]", True),
    ("http://127a0.0.1:9", "^http://127%.%d+%.%d+%.%d+[:/]", False),
    ("http://[::1]/", "^http://%[[0:]*1%]", True),
    ("LocalHost", "^[Ll][Oo]", True),
    ("a-b", "^[%w-]+$", True),
    ("a b", "^[%w-]+$", False),
    ("abc", "b", True),  # unanchored like string.match
    ("abc", "^b", False),
    ("aaa", "^a-$", True),
])
def test_lua_patterns(value, pattern, matches):
    assert lua_match(value, pattern) is matches


def test_a_dump_with_custom_entity_check_is_refused_when_plugin_info_loads():
    spec = PluginServerSpec(name="p", socket="/nonexistent", start_cmd=None, query_cmd="true")
    dump = [{"Name": "p", "Priority": 1, "Version": "1.0.0", "Phases": ["access"],
             "Schema": schema(FIELDS, [{"custom_entity_check": {"field_sources": ["config.name"]}}])}]
    with pytest.raises(PluginServerError, match="custom_entity_check needs a Lua function"):
        parse_info(spec, dump)
