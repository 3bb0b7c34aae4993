"""paths.py: which normalized paths an upstream may read differently, and every reading.

Inputs are what `kong.request.get_path()` returns (kong/tools/uri.lua normalize): `%2F`, `%3B`
and `%25` stay encoded (upper-cased), `%5C` and `%2E` arrive decoded, dot segments are gone.
"""

from __future__ import annotations

import pytest

from kong_oidc_py.paths import (
    MAX_READINGS,
    PATH_BACKSLASH,
    PATH_CONTROL_CHARACTER,
    PATH_DESCRIPTIONS,
    PATH_ENCODED_DOT,
    PATH_ENCODED_SEPARATOR,
    PATH_PARAMETER,
    PATH_REASONS,
    PATH_TOO_AMBIGUOUS,
    judge_path,
    normalize_path,
    path_problems,
    path_readings,
)


@pytest.mark.parametrize("path", ["/", "/api/users/42", "/a-b_c~d.e", "/files/100%25", "/q%3Fx", "/%40me", "/a/b/"])
def test_plain_paths_have_no_problem(path):
    assert path_problems(path) == ()


def test_a_path_without_separators_to_decode_has_one_reading():
    assert path_readings("/api/users/42") == ("/api/users/42",)


@pytest.mark.parametrize("path", ["/pub%2F..%2Fadmin", "/pub%2f..%2fadmin", "/a%5Cb", "/a%5cb"])
def test_encoded_slash_or_backslash_in_any_case_is_an_encoded_separator(path):
    assert path_problems(path) == (PATH_ENCODED_SEPARATOR,)


@pytest.mark.parametrize("path", ["/pub%252F..%252Fadmin", "/pub%25252f..", "/a%255Cb"])
def test_double_and_triple_encoded_separators_count_as_encoded_separators(path):
    # Kong keeps %25 encoded; a chain of two decoders (proxy + app) turns %252F into "/".
    assert path_problems(path) == (PATH_ENCODED_SEPARATOR,)


@pytest.mark.parametrize("path", ["/api;jsessionid=1/admin", "/api/x;v=2", "/a%3Bb", "/a%253Bb"])
def test_semicolon_raw_or_encoded_is_a_path_parameter(path):
    assert path_problems(path) == (PATH_PARAMETER,)


def test_raw_backslash_is_refused_kong_decodes_percent_5c_into_one():
    assert path_problems("/pub\\..\\admin") == (PATH_BACKSLASH,)


def test_double_encoded_dot_is_refused_but_a_literal_dot_is_not():
    assert path_problems("/pub/%252E%252E/admin") == (PATH_ENCODED_DOT,)
    assert path_problems("/v1.2/file.txt") == ()


@pytest.mark.parametrize("path", ["/a\x00b", "/a\x1fb", "/a\x7fb", "/a\tb"])
def test_control_characters_are_refused(path):
    assert path_problems(path) == (PATH_CONTROL_CHARACTER,)


def test_several_problems_are_listed_in_a_fixed_order():
    assert path_problems("/a;x\\%2F") == (PATH_ENCODED_SEPARATOR, PATH_PARAMETER, PATH_BACKSLASH)


def test_every_reason_has_a_client_safe_description():
    assert set(PATH_DESCRIPTIONS) == set(PATH_REASONS)
    assert all('"' not in d and "\\" not in d for d in PATH_DESCRIPTIONS.values())


# -- readings ----------------------------------------------------------------------------


def test_decoded_slash_then_dot_segments_reach_the_protected_resource():
    readings = path_readings("/pub/..%2Fadmin")
    assert readings[0] == "/pub/..%2Fadmin"
    assert "/pub/../admin" in readings  # decoded, dots kept (an upstream that never resolves them)
    assert "/admin" in readings         # decoded, dots resolved (nginx, most frameworks)


def test_parameters_are_dropped_as_tomcat_and_spring_do():
    assert "/api/admin" in path_readings("/api;x=1/admin")
    assert "/api/admin" in path_readings("/api/admin;jsessionid=abc")


def test_backslash_is_read_as_slash_as_iis_does():
    assert "/admin" in path_readings("/pub\\..\\admin")


def test_double_encoding_is_decoded_once_per_round():
    readings = path_readings("/pub%252F..%252Fadmin")
    assert "/pub%2F..%2Fadmin" in readings  # one decoder
    assert "/admin" in readings              # two decoders, then dots


def test_encoded_semicolon_is_a_parameter_once_decoded():
    assert "/pub/admin" in path_readings("/pub%3Bx/admin")


def test_combinations_are_read_too():
    # params dropped, then the decoded separator resolved: /pub/x/../../admin -> /admin
    assert "/admin" in path_readings("/pub;a/x%2F..%2F..%2Fadmin")


def test_readings_are_unique_and_the_path_comes_first():
    readings = path_readings("/a;b%2F..\\c")
    assert readings[0] == "/a;b%2F..\\c"
    assert len(readings) == len(set(readings))


def tangled(depth: int = 16) -> str:
    """Separators and parameters encoded `depth` times over: every decoding round is a reading."""
    return "/a%" + "25" * depth + "3Bx/%" + "25" * (depth - 1) + "2F..%" + "25" * depth + "2F..\\b;c"


def test_too_many_readings_give_none():
    assert path_readings(tangled(4)) is not None
    assert path_readings(tangled()) is None
    assert path_readings("/a%2Fb", limit=2) == ("/a%2Fb", "/a/b")
    assert path_readings("/a%2Fb", limit=1) is None


def test_normalize_path_resolves_dots_merges_slashes_and_keeps_a_trailing_slash():
    assert normalize_path("/a/./b/../c//d/") == "/a/c/d/"
    assert normalize_path("/../../x") == "/x"
    assert normalize_path("//x") == "/x"


# -- the verdict -------------------------------------------------------------------------


def test_by_default_an_ambiguous_path_is_refused_with_its_first_reason():
    verdict = judge_path("/pub;x/..%2Fadmin", allow_ambiguous=False)
    assert verdict.refused == PATH_ENCODED_SEPARATOR
    assert verdict.problems == (PATH_ENCODED_SEPARATOR, PATH_PARAMETER)
    assert verdict.readings == ("/pub;x/..%2Fadmin",)


def test_allowed_ambiguous_path_is_evaluated_under_every_reading():
    verdict = judge_path("/pub/..%2Fadmin", allow_ambiguous=True)
    assert verdict.refused is None
    assert verdict.readings == path_readings("/pub/..%2Fadmin")


def test_control_characters_are_refused_even_when_ambiguous_paths_are_allowed():
    assert judge_path("/pub\x00/x", allow_ambiguous=True).refused == PATH_CONTROL_CHARACTER


def test_a_path_with_too_many_readings_is_refused_even_when_allowed():
    assert judge_path(tangled(), allow_ambiguous=True).refused == PATH_TOO_AMBIGUOUS
    assert MAX_READINGS == 64


def test_a_plain_path_is_never_refused():
    for allow in (False, True):
        verdict = judge_path("/api/x", allow_ambiguous=allow)
        assert verdict.refused is None and verdict.readings == ("/api/x",)


def test_a_long_clean_path_is_judged_clean_without_being_remembered():
    from kong_oidc_py import paths

    long_path = "/a" * 400
    verdict = judge_path(long_path, False)
    assert verdict.refused is None and verdict.readings == (long_path,)
    assert long_path not in paths._CLEAN


def test_a_remembered_clean_verdict_does_not_hide_a_problem_in_another_path():
    assert judge_path("/api/x", False).refused is None
    assert judge_path("/api/x;jsessionid=1", False).refused == PATH_PARAMETER
