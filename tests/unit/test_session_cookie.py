from __future__ import annotations

import pytest

from kong_oidc_py.browser.session.cookie import (
    CHUNK_BUDGET,
    MAX_CHUNKS,
    CookieAttributes,
    CookieTooLarge,
    expire_chunks,
    expire_cookie,
    join_chunks,
    parse_cookie_header,
    set_cookie,
    split_value,
    strip_cookies,
    write_chunks,
)

ATTRS = CookieAttributes()
NOW = 1_700_000_000


def attributes_of(header: str) -> list[str]:
    return [p.strip() for p in header.split(";")[1:]]


def as_cookies(chunks: list[tuple[str, str]]) -> dict[str, str]:
    return dict(chunks)


# -- Set-Cookie ----------------------------------------------------------------------------


def test_set_cookie_defaults_are_httponly_secure_lax_root_path() -> None:
    attrs = attributes_of(set_cookie("session", "v", ATTRS, max_age=60, now=NOW))
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"} <= set(attrs)


def test_set_cookie_carries_expires_matching_max_age() -> None:
    header = set_cookie("session", "v", ATTRS, max_age=60, now=0)
    assert "Expires=Thu, 01 Jan 1970 00:01:00 GMT" in header


def test_secure_can_be_disabled_explicitly() -> None:
    attrs = attributes_of(set_cookie("s", "v", CookieAttributes(secure=False), max_age=1, now=NOW))
    assert "Secure" not in attrs


def test_samesite_none_requires_secure() -> None:
    with pytest.raises(ValueError):
        CookieAttributes(samesite="None", secure=False)


def test_samesite_must_be_a_known_value() -> None:
    with pytest.raises(ValueError):
        CookieAttributes(samesite="lax")


def test_strict_samesite_and_domain_are_rendered() -> None:
    header = set_cookie("s", "v", CookieAttributes(samesite="Strict", domain="example.com", path="/app"), max_age=1, now=NOW)
    assert {"SameSite=Strict", "Domain=example.com", "Path=/app"} <= set(attributes_of(header))


def test_path_with_semicolon_is_rejected() -> None:
    with pytest.raises(ValueError):
        CookieAttributes(path="/a;Domain=evil")


def test_expire_cookie_sets_max_age_zero_and_empty_value() -> None:
    header = expire_cookie("session_2", ATTRS)
    assert header.startswith("session_2=;") and "Max-Age=0" in header


# -- parsing -------------------------------------------------------------------------------


def test_parse_cookie_header_splits_pairs_and_trims_spaces() -> None:
    jar = parse_cookie_header("a=1;  b=two ;c=")
    assert dict(jar) == {"a": "1", "b": "two", "c": ""}


def test_parse_accepts_several_cookie_headers() -> None:
    assert dict(parse_cookie_header(["a=1", "b=2"])) == {"a": "1", "b": "2"}


def test_parse_records_repeated_names_as_duplicates() -> None:
    jar = parse_cookie_header("session=a; other=1; session=b")
    assert jar.duplicates == frozenset({"session"})


def test_parse_ignores_pieces_without_a_name() -> None:
    assert dict(parse_cookie_header("novalue; =x; a=1")) == {"a": "1"}


def test_value_keeps_equals_signs_after_the_first() -> None:
    assert parse_cookie_header("a=b=c")["a"] == "b=c"


def test_jar_repr_hides_values() -> None:
    assert "secret-value" not in repr(parse_cookie_header("session=secret-value"))


# -- chunking ------------------------------------------------------------------------------


def test_small_value_is_one_cookie_with_count_prefix() -> None:
    assert split_value("session", "abc") == [("session", "1.abc")]


def test_large_value_splits_into_numbered_chunks_within_budget() -> None:
    chunks = split_value("session", "x" * 10_000)
    assert [n for n, _ in chunks] == ["session", "session_2", "session_3"]
    assert all(len(n) + 1 + len(v) <= CHUNK_BUDGET for n, v in chunks)


def test_chunks_join_back_to_the_value() -> None:
    value = "".join(chr(65 + i % 26) for i in range(9_000))
    assert join_chunks("session", as_cookies(split_value("session", value))) == (value, "")


def test_value_needing_too_many_chunks_is_refused() -> None:
    with pytest.raises(CookieTooLarge):
        split_value("session", "x" * (CHUNK_BUDGET * MAX_CHUNKS))


def test_missing_chunk_is_detected() -> None:
    cookies = as_cookies(split_value("session", "x" * 9_000))
    del cookies["session_3"]
    assert join_chunks("session", cookies) == (None, "missing_chunk")


def test_missing_first_chunk_is_detected() -> None:
    cookies = as_cookies(split_value("session", "x" * 9_000))
    del cookies["session"]
    assert join_chunks("session", cookies) == (None, "missing_chunk")


def test_extra_chunk_is_detected() -> None:
    cookies = as_cookies(split_value("session", "x" * 9_000))
    cookies["session_4"] = "x"
    assert join_chunks("session", cookies) == (None, "extra_chunk")


def test_duplicate_chunk_is_refused() -> None:
    jar = parse_cookie_header("session=1.abc; session=1.def")
    assert join_chunks("session", jar) == (None, "duplicate_cookie")


def test_first_chunk_without_count_is_refused() -> None:
    assert join_chunks("session", {"session": "abc"}) == (None, "bad_chunk_header")


def test_count_beyond_the_cap_is_refused() -> None:
    assert join_chunks("session", {"session": "9.abc"}) == (None, "too_many_chunks")


def test_oversized_chunk_is_refused() -> None:
    assert join_chunks("session", {"session": "1." + "x" * 5000}) == (None, "oversized")


def test_no_cookie_reason_when_absent() -> None:
    assert join_chunks("session", {"other": "1"}) == (None, "no_cookie")


def test_shrinking_value_expires_unused_chunks() -> None:
    before = as_cookies(split_value("session", "x" * 9_000))
    headers = write_chunks("session", "small", ATTRS, before, max_age=60, now=NOW)
    expired = [h.split("=", 1)[0] for h in headers if "Max-Age=0" in h]
    assert expired == ["session_2", "session_3"]


def test_growing_value_expires_nothing() -> None:
    headers = write_chunks("session", "x" * 9_000, ATTRS, {"session": "1.abc"}, max_age=60, now=NOW)
    assert len(headers) == 3 and not any("Max-Age=0" in h for h in headers)


def test_expire_chunks_always_includes_the_base_name() -> None:
    headers = expire_chunks("session", ATTRS, {"session_2": "x"})
    assert [h.split("=", 1)[0] for h in headers] == ["session", "session_2"]


def test_expire_chunks_is_bounded_for_hostile_requests() -> None:
    cookies = {f"session_{i}": "x" for i in range(2, 500)}
    assert len(expire_chunks("session", ATTRS, cookies)) <= 2 * MAX_CHUNKS + 1


# -- upstream ------------------------------------------------------------------------------


def own(name: str) -> bool:
    return name in ("session", "session_2")


def test_strip_removes_gateway_cookies_and_keeps_others_in_order() -> None:
    header = "a=1; session=1.xyz; b=2; session_2=abc; c=3"
    assert strip_cookies(header, own) == "a=1; b=2; c=3"


def test_strip_returns_none_when_nothing_remains() -> None:
    assert strip_cookies(["session=1.x", "session_2=y"], own) is None


def test_strip_keeps_values_verbatim() -> None:
    assert strip_cookies('pref="quoted value"; session=x', own) == 'pref="quoted value"'


def test_strip_of_missing_header_is_none() -> None:
    assert strip_cookies(None, own) is None
