"""headers.py: spellings an upstream reads as one header, and the Kong identity header family."""

from __future__ import annotations

from kong_oidc_py.headers import (
    KONG_CONSUMER_HEADERS,
    KONG_IDENTITY_HEADERS,
    header_key,
    identity_header_report,
    spellings,
    spoofed_spellings,
)


def test_header_key_folds_case_and_underscores():
    assert header_key("X_Consumer_ID") == header_key("x-consumer-id") == header_key("X-CONSUMER_id") == "x-consumer-id"


def test_header_key_keeps_other_characters():
    assert header_key("X.Consumer.ID") == "x.consumer.id"
    assert header_key("X--User") == "x--user"


def test_spellings_are_every_dash_underscore_combination():
    assert sorted(spellings("X-User-Id")) == sorted(["x-user-id", "x-user_id", "x_user-id", "x_user_id"])
    assert spellings("Authorization") == ("authorization",)


def test_spellings_of_a_name_with_many_separators_are_bounded():
    name = "-".join("abcdefghijklmnop")  # 15 separators
    assert set(spellings(name)) == {name, name.replace("-", "_")}


def test_spoofed_spellings_find_every_alias_of_an_owned_header():
    received = {"x-user-id": ["a"], "x_user_id": ["b"], "x-user_id": ["c"], "accept": ["*/*"]}
    assert spoofed_spellings(received, frozenset({"x-user-id"}), frozenset()) == ["x-user-id", "x-user_id", "x_user_id"]


def test_spoofed_spellings_skip_the_exact_names_kept():
    received = {"x-user-id": ["a"], "x_user_id": ["b"]}
    # the plugin sets X-User-Id, which replaces the client's x-user-id; x_user_id must still go
    assert spoofed_spellings(received, frozenset({"x-user-id"}), frozenset({"x-user-id"})) == ["x_user_id"]


def test_unowned_headers_are_never_spoofed():
    assert spoofed_spellings({"x_forwarded_for": ["1.2.3.4"]}, frozenset({"x-user-id"}), frozenset()) == []


def test_kong_identity_family_is_the_constants_lua_list_plus_oauth2_and_legacy_names():
    keys = {header_key(n) for n in KONG_IDENTITY_HEADERS}
    assert keys == {
        "x-consumer-id", "x-consumer-custom-id", "x-consumer-username", "x-credential-identifier",
        "x-anonymous-consumer", "x-consumer-groups", "x-authenticated-groups", "x-authenticated-scope",
        "x-authenticated-userid", "x-credential-username",
    }
    assert set(KONG_CONSUMER_HEADERS) <= set(KONG_IDENTITY_HEADERS)


def test_report_names_each_stripped_header_and_what_it_aliases():
    report = identity_header_report({"x_consumer_id": ["evil"], "host": ["x"]}, frozenset({"x-consumer-id"}))
    assert report == [("x_consumer_id", "x-consumer-id")]
