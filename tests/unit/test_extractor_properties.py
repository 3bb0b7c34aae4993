"""Property: header names are case-insensitive (RFC 9110 5.1), so every spelling of
`Authorization` and `Cookie` leads to the same token, the same refusal and the same removal.

Requests are read into the table Kong hands the plugin (ngx.req.get_headers: lower-cased names,
repeats as lists; modelled in tests/kong_host/pdk.headers_table), which is where the spelling
must stop mattering. Hypothesis runs derandomized with no example database.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import InvalidRequest
from kong_oidc_py.verification.extractor import bearer_removal, extract
from tests.kong_host.pdk import headers_table

PROPERTY = settings(max_examples=200, derandomize=True, database=None, deadline=None)
CFG = parse_config({"issuer": "https://idp.example.com", "allow_any_audience": True, "bearer_token_param_type": ["header", "cookie"],
                    "bearer_token_cookie_name": "at"})
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"


def spellings(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips)))


values = st.sampled_from([f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN}", "Basic dXNlcg==", "Bearer",
                          f"Bearer {TOKEN}, Bearer {TOKEN}", ""])
cookies = st.sampled_from([f"at={TOKEN}", f"a=1; at={TOKEN}", "a=1", f"at={TOKEN}; at={TOKEN}", "at="])


def outcome(pairs: list[tuple[str, str]]) -> tuple:
    table = headers_table(pairs)
    headers = {k: (v if isinstance(v, list) else [v]) for k, v in table.items()}
    try:
        result: object = extract(headers, CFG)
    except InvalidRequest as err:
        result = ("refused", err.description)
    return result, bearer_removal(headers, CFG)


@PROPERTY
@given(spellings("authorization"), spellings("cookie"), values, cookies, st.booleans(), st.booleans())
def test_every_spelling_of_authorization_and_cookie_is_treated_alike(auth_name, cookie_name, value, cookie,
                                                                      with_auth, with_cookie):
    def request(a: str, c: str) -> list[tuple[str, str]]:
        return ([(a, value)] if with_auth else []) + ([(c, cookie)] if with_cookie else []) + [("Accept", "*/*")]

    assert outcome(request(auth_name, cookie_name)) == outcome(request("Authorization", "Cookie"))


@PROPERTY
@given(spellings("authorization"), spellings("authorization"))
def test_two_authorization_headers_in_different_spellings_are_still_two(first, second):
    result, _ = outcome([(first, f"Bearer {TOKEN}"), (second, f"Bearer {TOKEN}")])
    assert result == ("refused", "More than one Authorization header")
