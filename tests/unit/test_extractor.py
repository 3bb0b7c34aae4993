"""Token extraction (RFC 6750 section 2) and removal for hide_credentials."""

from __future__ import annotations

from typing import Any

import pytest

from kong_oidc_py.config import PluginConfig, parse_config
from kong_oidc_py.errors import InvalidRequest
from kong_oidc_py.verification.extractor import (
    BearerRemoval,
    bearer_removal,
    extract,
    parse_cookies,
    query_without_token,
    strip_bearer,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/=="
OTHER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.b3RoZXI"


def cfg(*places: str, cookie: str | None = None) -> PluginConfig:
    raw: dict[str, Any] = {"issuer": "https://idp.example.com", "audience_required": ["api"],
                           "bearer_token_param_type": list(places or ["header"])}
    if cookie:
        raw["bearer_token_cookie_name"] = cookie
    return parse_config(raw)


HEADER = cfg("header")
ALL = cfg("header", "cookie", "query", cookie="at")


def invalid(headers: dict[str, list[str]], config: PluginConfig = HEADER, query: Any = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        extract(headers, config, query)
    err = info.value
    assert TOKEN not in err.description and OTHER not in err.description
    return err


# -- Authorization header ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme):
    assert extract({"authorization": [f"{scheme} {TOKEN}"]}, HEADER) == TOKEN


def test_no_authorization_header_means_no_token():
    assert extract({}, HEADER) is None


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "DPoP abc", "Digest username=x", "Bearerish abc", "", "   "])
def test_other_schemes_or_empty_header_are_not_a_bearer_token(value):
    assert extract({"authorization": [value]}, HEADER) is None


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",  # no token
        "Bearer ",  # empty token
        f"Bearer  {TOKEN}",  # two spaces: RFC 6750 says exactly one SP
        f"Bearer\t{TOKEN}",
        f"Bearer {TOKEN} extra",
        f"Bearer {TOKEN}, Basic dXNlcjpwYXNz",
        f"Bearer {TOKEN}=x",  # "=" only as trailing padding
        "Bearer tok\u00e9n",
        "Bearer a\"b",
    ],
)
def test_malformed_bearer_header_is_invalid_request(value):
    err = invalid({"authorization": [value]})
    assert (err.status, err.error) == (400, "invalid_request")


def test_surrounding_whitespace_of_the_field_value_is_ignored():
    assert extract({"authorization": [f"  Bearer {TOKEN} "]}, HEADER) == TOKEN


def test_two_authorization_headers_are_invalid_request():
    invalid({"authorization": [f"Bearer {TOKEN}", f"Bearer {OTHER}"]})


def test_authorization_header_is_ignored_when_header_is_not_enabled():
    assert extract({"authorization": [f"Bearer {TOKEN}"]}, cfg("query"), {}) is None


def test_plain_string_header_value_is_accepted():
    assert extract({"authorization": f"Bearer {TOKEN}"}, HEADER) == TOKEN  # type: ignore[dict-item]


# -- query ---------------------------------------------------------------------------------


def test_query_token_is_read_when_enabled():
    assert extract({}, cfg("query"), {"access_token": [TOKEN]}) == TOKEN


def test_query_token_is_ignored_by_default():
    assert extract({}, HEADER, {"access_token": [TOKEN]}) is None


@pytest.mark.parametrize("values", [[], [True], [TOKEN, OTHER], [""], ["a b"]])
def test_bad_or_repeated_access_token_parameter_is_invalid_request(values):
    invalid({}, cfg("query"), {"access_token": values})


def test_header_and_query_together_are_invalid_request():
    err = invalid({"authorization": [f"Bearer {TOKEN}"]}, cfg("header", "query"), {"access_token": [TOKEN]})
    assert "more than one method" in err.description


# -- cookie --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cookie",
    [f"at={TOKEN}", f"a=1; at={TOKEN}; b=2", f'at="{TOKEN}"', f"a=1;at={TOKEN}", f"theme=dark; at = {TOKEN}"],
)
def test_cookie_token_is_found_in_the_cookie_header(cookie):
    assert extract({"cookie": [cookie]}, cfg("cookie", cookie="at")) == TOKEN


def test_cookie_token_is_found_across_several_cookie_headers():
    assert extract({"cookie": ["a=1", f"at={TOKEN}"]}, cfg("cookie", cookie="at")) == TOKEN


def test_cookie_names_are_case_sensitive():
    assert extract({"cookie": [f"AT={TOKEN}"]}, cfg("cookie", cookie="at")) is None


def test_empty_token_cookie_counts_as_absent():
    assert extract({"cookie": ["at="]}, cfg("cookie", cookie="at")) is None


def test_repeated_token_cookie_is_invalid_request():
    invalid({"cookie": [f"at={TOKEN}; at={OTHER}"]}, cfg("cookie", cookie="at"))


def test_malformed_token_cookie_is_invalid_request():
    invalid({"cookie": ["at=a,b"]}, cfg("cookie", cookie="at"))


def test_header_and_cookie_together_are_invalid_request():
    invalid({"authorization": [f"Bearer {TOKEN}"], "cookie": [f"at={TOKEN}"]}, ALL, {})


def test_parse_cookies_skips_pairs_without_equals_and_keeps_order():
    assert parse_cookies(["a=1; junk; b=x=y", "c="]) == [("a", "1"), ("b", "x=y"), ("c", "")]


# -- hide_credentials ------------------------------------------------------------------------


def test_removal_clears_a_bearer_authorization_header():
    assert strip_bearer({"authorization": [f"Bearer {TOKEN}"]}, HEADER) == ("authorization",)


def test_removal_keeps_a_non_bearer_authorization_header():
    assert strip_bearer({"authorization": ["Basic dXNlcjpwYXNz"]}, HEADER) == ()


def test_removal_keeps_the_other_cookies():
    removal = bearer_removal({"cookie": [f'a=1; at="{TOKEN}"', "b=2"]}, cfg("cookie", cookie="at"))
    assert removal == BearerRemoval(("cookie",), {"cookie": "a=1; b=2"}, False)


def test_removal_clears_a_cookie_header_holding_only_the_token():
    assert bearer_removal({"cookie": [f"at={TOKEN}"]}, cfg("cookie", cookie="at")) == BearerRemoval(("cookie",), {}, False)


def test_removal_flags_the_query_token():
    assert bearer_removal({}, cfg("query"), {"access_token": [TOKEN]}).strip_query


def test_removal_of_nothing_changes_nothing():
    assert bearer_removal({"cookie": ["a=1"]}, ALL, {"q": ["1"]}) == BearerRemoval()


@pytest.mark.parametrize(
    "raw, expected",
    [
        (f"access_token={TOKEN}", ""),
        (f"a=1&access_token={TOKEN}&b=%20x", "a=1&b=%20x"),
        (f"access%5Ftoken={TOKEN}&a", "a"),
        (f"access_token={TOKEN}&access_token={OTHER}", ""),
        ("access_tokens=1", "access_tokens=1"),
    ],
)
def test_query_without_token_removes_every_access_token_parameter(raw, expected):
    assert query_without_token(raw) == expected


def test_b64token_check_accepts_exactly_rfc_6750_b64token():
    # RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    import random
    import re

    from kong_oidc_py.verification.extractor import is_b64token

    grammar = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
    alphabet = "Aa0-._~+/=é \t%,\x00\u0660"
    rng = random.Random(6750)
    samples = ["", "=", "a=", "a==b", "=a", "abc", "ab c", "é", "a\n", "\u0660"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(20000)]
    for sample in samples:
        assert is_b64token(sample) == bool(grammar.fullmatch(sample)), repr(sample)
