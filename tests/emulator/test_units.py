"""Pure functions: header rules, Lua value shapes, path normalization, v0 path joining."""

from __future__ import annotations

import pytest

from tests.kong_host.lua import LuaError, to_multimap, to_wire, unpack_args
from tests.kong_host.pdk import validate_header
from tests.kong_host.router import upstream_uri_v0
from tests.kong_host.uri import normalize


def test_empty_header_value_becomes_a_space():
    assert validate_header("x", "") == " "


def test_boolean_header_value_is_stringified_like_lua():
    assert validate_header("x", True) == "true"


def test_table_header_value_is_a_lua_error():
    with pytest.raises(LuaError, match='invalid header value for "x"'):
        validate_header("x", {"a": 1})


def test_empty_lua_table_is_packed_as_an_empty_array():
    assert to_wire({}) == [] and to_wire({"a": {}}) == {"a": []}


def test_multimap_turns_flags_into_empty_lists_and_strings_into_lists():
    assert to_multimap({"a": "1", "f": True, "m": ["x", "y"]}) == {"a": ["1"], "f": [], "m": ["x", "y"]}


def test_trailing_nil_args_are_dropped():
    assert unpack_args([1, 2, None]) == [1, 2]


def test_measured_nil_hole_shape_truncates_like_luajit():
    assert unpack_args([403, None, {"x": "y"}]) == [403]


def test_normalize_decodes_unreserved_and_keeps_reserved_upper_case():
    assert normalize("/a/%7e/%2f/./b/../c//d", True) == "/a/~/%2F/c/d"


@pytest.mark.parametrize("strip,postfix,req,base,expected", [
    (True, "", "/api", "/", "/"),
    (True, "/x", "/api/x", "/svc", "/svc/x"),
    (True, "x", "/apix", "/svc/", "/svc/x"),
    (True, "", "/api/", "/svc", "/svc/"),
    (False, "/x", "/api/x", "/svc", "/svc/api/x"),
    (False, "/x", "/api/x", "/svc/", "/svc/api/x"),
])
def test_upstream_uri_v0_joins_like_kong(strip, postfix, req, base, expected):
    assert upstream_uri_v0(strip, postfix, req, base) == expected


# -- what the plugin's path and header rules rely on (kong_oidc_py/paths.py, headers.py) ------


def test_normalize_keeps_encoded_slash_semicolon_and_percent_but_decodes_backslash():
    # kong/tools/uri.lua: "\" (0x5C) is not in RESERVED_CHARS, so %5C is decoded; ";" stays
    assert normalize("/a%2fb/%3B/%25/%5c/c;d", True) == "/a%2Fb/%3B/%25/\\/c;d"


def test_get_headers_lower_cases_names_and_keeps_underscores():
    from tests.kong_host.pdk import headers_table

    assert headers_table([("X_User_Id", "a"), ("X-User-Id", "b"), ("x-user-id", "c")], 1000) == {
        "x_user_id": "a", "x-user-id": ["b", "c"]}


def test_set_headers_empty_array_removes_that_name_in_any_case_but_not_other_spellings():
    from tests.kong_host.pdk import _set_header_op

    ops = [("X-User-Id", "a"), ("x-USER-id", "b"), ("X_User_Id", "c"), ("Accept", "*/*")]
    assert _set_header_op(ops, "x-user-id", [], add=False) == [("X_User_Id", "c"), ("Accept", "*/*")]
