"""kong.yml loading and plugin config validation with Kong's messages."""

from __future__ import annotations

import pytest

from tests.kong_host.declarative import DeclarativeError, gen_id, load
from tests.kong_host.plugin_server import PluginServerError, PluginServerSpec, parse_info

from .fake_server import DUMP

SCHEMAS = {"fake": DUMP[0]["Schema"]}


def base(plugins=None, **extra):
    cfg = {"_format_version": "3.0", "services": [{"name": "s", "url": "http://127.0.0.1:1/p",
                                                    "routes": [{"name": "r", "paths": ["/"]}]}],
           "plugins": plugins or []}
    cfg.update(extra)
    return cfg


def error_of(cfg) -> str:
    with pytest.raises(DeclarativeError) as e:
        load(cfg, SCHEMAS)
    return str(e.value)


def test_generated_ids_are_uuid5_of_the_name():
    cfg = load(base(), SCHEMAS)
    assert cfg.services[gen_id("services", "s")]["path"] == "/p"
    assert cfg.routes[0]["id"] == gen_id("routes", "r")


def test_defaults_are_filled_including_nested_records():
    cfg = load(base([{"name": "fake"}]), SCHEMAS)
    assert cfg.plugins[0]["config"] == {"message": "hi", "sub": {"n": 3}, "list": []}


def test_unknown_config_field_is_rejected():
    assert "in 'config':\n      in 'nope': unknown field" in error_of(base([{"name": "fake", "config": {"nope": 1}}]))


def test_error_is_rendered_like_kong_pretty_print():
    msg = error_of(base([{"name": "fake", "config": {"sub": {"n": 1.5}}}]))
    assert msg.endswith("in 'plugins':\n  - in entry 1 of 'plugins':\n    in 'config':\n      in 'sub':\n        in 'n': expected an integer")


def test_empty_string_is_rejected_by_default():
    assert "in 'message': length must be at least 1" in error_of(base([{"name": "fake", "config": {"message": ""}}]))


def test_plugin_not_enabled_message():
    assert "in 'name': plugin 'other' not enabled; add it to the 'plugins' configuration property" in error_of(base([{"name": "other"}]))


def test_required_field_missing_message():
    schemas = {"req": {"name": "req", "fields": [{"config": {"type": "record", "fields": [
        {"issuer": {"type": "string", "required": True}}]}}]}}
    with pytest.raises(DeclarativeError) as e:
        load(base([{"name": "req"}]), schemas)
    assert "in 'issuer': required field missing" in str(e.value)


def test_one_of_and_between_messages():
    schemas = {"v": {"name": "v", "fields": [{"config": {"type": "record", "fields": [
        {"mode": {"type": "string", "one_of": ["a", "b"]}}, {"n": {"type": "integer", "between": [1, 10]}}]}}]}}
    with pytest.raises(DeclarativeError) as e:
        load(base([{"name": "v", "config": {"mode": "c", "n": 11}}]), schemas)
    assert "in 'mode': expected one of: a, b" in str(e.value)
    assert "in 'n': value should be between 1 and 10" in str(e.value)


def test_top_level_route_references_its_service_by_name():
    cfg = load({"_format_version": "3.0", "services": [{"name": "s", "url": "http://127.0.0.1:1"}],
                "routes": [{"name": "r", "service": "s", "paths": ["/x"]}]}, SCHEMAS)
    assert cfg.routes[0]["service"] == {"id": gen_id("services", "s")}


def test_invalid_reference_is_reported():
    assert "invalid reference 'nope'" in error_of({"_format_version": "3.0", "routes": [{"name": "r", "service": "nope", "paths": ["/"]}]})


def test_format_version_must_be_known():
    assert "in '_format_version': expected one of: 1.1, 2.1, 3.0" in error_of({"_format_version": "4.0"})


def test_format_2_1_regex_paths_get_a_tilde():
    cfg = load({"_format_version": "2.1", "services": [{"name": "s", "url": "http://127.0.0.1:1",
                                                        "routes": [{"name": "r", "paths": ["/v\\d+/x"]}]}]}, SCHEMAS)
    assert cfg.routes[0]["paths"] == ["~/v\\d+/x"]


def test_dump_without_version_is_rejected():
    with pytest.raises(PluginServerError, match='does not follow the "x.y.z" format'):
        parse_info(PluginServerSpec("x", "/tmp/x"), [dict(DUMP[0], Version=None)])


def test_only_the_first_dump_entry_is_registered():
    info = parse_info(PluginServerSpec("x", "/tmp/x"), [DUMP[0], dict(DUMP[0], Name="second")])
    assert info.name == "fake"


def test_acl_needs_allow_or_deny():
    from tests.kong_host import acl

    with pytest.raises(DeclarativeError) as e:
        load(base([{"name": "acl"}]), {"acl": acl.SCHEMA})
    assert "at least one of these fields must be non-empty: 'config.allow', 'config.deny'" in str(e.value)
