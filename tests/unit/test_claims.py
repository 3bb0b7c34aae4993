"""Claim paths, value lists, header sanitizing and the upstream identity headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from kong_oidc_py.claims import (
    MAX_HEADER_VALUE,
    build_upstream_headers,
    claim_at,
    claim_values,
    identity_header_names,
    parse_dotted_path,
    sanitize_header_value,
)
from kong_oidc_py.config import parse_config

DATA: dict[str, Any] = {
    "sub": "u1",
    "scope": "openid  orders.read\torders.write",
    "scp": ["a", "b"],
    "realm_access": {"roles": ["admin", "user"]},
    "n": 42,
    "flag": True,
    "mixed": ["x", 3, False, None, {"nested": 1}, ["deep"], ""],
    "obj": {"k": "v"},
}


# -- claim_at / claim_values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        (("sub",), "u1"),
        (("realm_access", "roles"), ["admin", "user"]),
        (("realm_access", "missing"), None),
        (("sub", "deeper"), None),  # stepping into a string
        (("scp", "0"), None),  # arrays are not indexed
        ((), None),
    ],
)
def test_claim_at_walks_objects_only(path, expected):
    assert claim_at(DATA, path) == expected


def test_space_separated_string_becomes_words():
    assert claim_values(DATA, [("scope",)]) == ["openid", "orders.read", "orders.write"]


def test_array_contributes_its_scalar_items_only():
    assert claim_values(DATA, [("mixed",)]) == ["x", "3", "false"]


@pytest.mark.parametrize("path, expected", [(("n",), ["42"]), (("flag",), ["true"]), (("obj",), [])])
def test_bare_scalars_become_one_value_and_objects_none(path, expected):
    assert claim_values(DATA, [path]) == expected


def test_first_present_path_is_used():
    assert claim_values(DATA, [("absent",), ("scp",), ("scope",)]) == ["a", "b"]


def test_no_present_path_gives_no_values():
    assert claim_values(DATA, [("absent",)]) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sub", ("sub",)),
        ("realm_access.roles", ("realm_access", "roles")),
        ("resource_access.kong-api.roles", ("resource_access", "kong-api", "roles")),
        ("https://example\\.com/roles", ("https://example.com/roles",)),
        ("a\\\\.b", ("a\\", "b")),
        ("cognito:groups", ("cognito:groups",)),
    ],
)
def test_dotted_paths_split_on_unescaped_dots(text, expected):
    assert parse_dotted_path(text) == expected


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "a\\", "a\\b"])
def test_malformed_dotted_paths_are_rejected(text):
    with pytest.raises(ValueError):
        parse_dotted_path(text)


# -- sanitize_header_value ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "alice\r\nX-Admin: true",
        "alice\nX-Admin: true",
        "alice\rX-Admin: true",
        "a\x00b",
        "a\x1bb\x7f",
        "a\u2028b\u0085c",  # Unicode line separators some parsers honour
        ["ok", "evil\r\nX-Admin: 1"],
        {"k": "v\r\nX: 1"},
    ],
)
def test_no_control_characters_survive(value):
    out = sanitize_header_value(value)
    assert out is not None
    assert all(0x20 <= ord(c) < 0x7F for c in out)


def test_crlf_injection_is_percent_encoded_not_passed():
    assert sanitize_header_value("alice\r\nX-Admin: true") == "alice%0D%0AX-Admin: true"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Zoë", "Zo%C3%AB"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("😀", "%F0%9F%98%80"),
        ("100%", "100%25"),
    ],
)
def test_non_ascii_and_percent_are_utf8_percent_encoded(value, expected):
    assert sanitize_header_value(value) == expected


@pytest.mark.parametrize("value", ["Zoë 100% \r\n ok", "plain text", "a,b;c=\"d\""])
def test_encoding_is_reversible_with_unquote(value):
    assert unquote(sanitize_header_value(value)) == value.strip()


@pytest.mark.parametrize(
    "value, expected",
    [
        (["admin", "user"], "admin, user"),
        (("a",), "a"),
        ([], ""),
        ([1, True, None, "x"], "1, true, x"),
        ({"b": 1, "a": [1, 2]}, '{"b":1,"a":[1,2]}'),
        ({"name": "Zoë"}, '{"name":"Zo%C3%AB"}'),
        (5, "5"),
        (False, "false"),
        (1.5, "1.5"),
        (2.0, "2"),
        ("  padded  ", "padded"),
    ],
)
def test_values_render_as_header_text(value, expected):
    assert sanitize_header_value(value) == expected


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), object()])
def test_values_without_a_safe_rendering_give_none(value):
    assert sanitize_header_value(value) is None


def test_oversized_single_value_is_dropped_not_truncated():
    assert sanitize_header_value("a" * (MAX_HEADER_VALUE + 1)) is None


def test_value_at_the_cap_is_kept():
    assert sanitize_header_value("a" * MAX_HEADER_VALUE) == "a" * MAX_HEADER_VALUE


def test_encoding_growth_counts_against_the_cap():
    assert sanitize_header_value("é" * (MAX_HEADER_VALUE // 6 + 1)) is None


def test_oversized_list_keeps_only_whole_items():
    items = ["g%04d" % i for i in range(5000)]
    out = sanitize_header_value(items)
    assert len(out) <= MAX_HEADER_VALUE
    assert all(part in items for part in out.split(", "))


# -- upstream headers -----------------------------------------------------------------------------


def config(claims: list[str], names: list[str]):
    return parse_config({"issuer": "https://idp.example.com", "audience_required": ["api"], "upstream_headers_claims": claims,
                         "upstream_headers_names": names})


def test_upstream_headers_map_claims_to_names():
    cfg = config(["sub", "realm_access.roles", "scope"], ["X-Sub", "X-Roles", "X-Scope"])
    assert build_upstream_headers(DATA, cfg) == {
        "X-Sub": "u1", "X-Roles": "admin, user", "X-Scope": "openid  orders.read%09orders.write",
    }


def test_absent_claims_produce_no_header():
    assert build_upstream_headers(DATA, config(["email", "sub"], ["X-Email", "X-Sub"])) == {"X-Sub": "u1"}


def test_hostile_claim_values_are_sanitized_in_upstream_headers():
    cfg = config(["name"], ["X-Name"])
    assert build_upstream_headers({"name": "Eve\r\nX-Admin: yes"}, cfg) == {"X-Name": "Eve%0D%0AX-Admin: yes"}


def test_identity_header_names_are_lower_cased():
    cfg = config(["sub", "email"], ["X-Auth-Subject", "X-Auth-Email"])
    assert identity_header_names(cfg) == frozenset({"x-auth-subject", "x-auth-email"})


def test_identity_header_names_are_empty_without_mappings():
    assert identity_header_names(config([], [])) == frozenset()
