"""Target: where the bearer token is (verification/extractor.py) and how it is removed again.

Input: text lines, one request. The first character picks the enabled places (bit 1 header,
2 cookie, 4 query; "7" enables all). Then `<Header-Name>: <value>` lines, read into the table
Kong hands the plugin (lower-cased names, repeats as lists: tests/kong_host/pdk.headers_table),
and one `?<raw query>` line, parsed like ngx.req.get_uri_args (tests/kong_host/pdk.parse_query).

Contract: the token found is one RFC 6750 b64token that the request really carries; a refusal
is InvalidRequest with a fixed description; hide_credentials removes every copy (the rebuilt
Cookie header holds no token cookie, the stripped query no access_token); bounded time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import parse_qsl

from fuzz import contract
from kong_oidc_py.errors import InvalidRequest
from kong_oidc_py.verification.extractor import bearer_removal, extract, parse_cookies, query_without_token
from tests.kong_host.pdk import headers_table, parse_query

NAME = "extract_token"
COOKIE_NAME = "access_token"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
DESCRIPTIONS = frozenset({
    "Malformed Authorization header: expected 'Bearer <token>'",
    "The token cookie was sent more than once",
    "Malformed token cookie",
    "The access_token parameter must appear exactly once with a value",
    "Malformed access_token parameter",
    "More than one Authorization header",
    "The token was sent by more than one method",
})
_PLACES = ("header", "cookie", "query")


@dataclass(frozen=True)
class Cfg:
    bearer_token_param_type: tuple[str, ...]
    bearer_token_cookie_name: str = COOKIE_NAME


def parse_request(text: str) -> tuple[Cfg, dict, str | None]:
    mask = (ord(text[0]) & 7) if text else 7
    places = tuple(p for i, p in enumerate(_PLACES) if mask & (1 << i))
    pairs: list[tuple[str, str]] = []
    raw_query = None
    for line in text[1:].split("\n"):
        if line.startswith("?") and raw_query is None:
            raw_query = line[1:]
            continue
        name, sep, value = line.partition(":")
        if sep and name:
            pairs.append((name, value.lstrip(" ")))
    return Cfg(places), headers_table(pairs, 1000), raw_query


def _as_lists(table: dict) -> dict:
    return {k: (v if isinstance(v, list) else [v]) for k, v in table.items()}


def one_input(data: bytes) -> None:
    text = contract.text(data)
    cfg, table, raw_query = parse_request(text)
    query = parse_query(raw_query) if raw_query is not None else None
    headers = _as_lists(table)
    try:
        token = contract.bounded(lambda: extract(headers, cfg, query))
    except InvalidRequest as err:
        contract.check_error(err, [text], DESCRIPTIONS)
        token = None
    if token is not None:
        if not isinstance(token, str) or not _B64TOKEN.fullmatch(token):
            raise contract.Violation("extracted something that is not one b64token")
        if token not in text and not (query and token in str(query.get("access_token"))):
            raise contract.Violation("extracted a token the request does not carry")

    removal = contract.bounded(lambda: bearer_removal(headers, cfg, query))
    if "cookie" in cfg.bearer_token_param_type:
        rebuilt = removal.set.get("cookie")
        if rebuilt is not None and any(n == COOKIE_NAME for n, _ in parse_cookies([rebuilt])):
            raise contract.Violation("hide_credentials kept a token cookie")
        if any(n == COOKIE_NAME for n, _ in parse_cookies(headers.get("cookie", []))) and "cookie" not in removal.clear:
            raise contract.Violation("hide_credentials left the Cookie header with the token cookie")
    if "header" in cfg.bearer_token_param_type and token is not None \
            and any(v.strip(" \t")[:7].lower() == "bearer " for v in headers.get("authorization", [])) \
            and "authorization" not in removal.clear:
        raise contract.Violation("hide_credentials left the Authorization header")
    if raw_query is not None:
        stripped = contract.bounded(lambda: query_without_token(raw_query))
        if "access_token" in parse_query(stripped) or any(k == "access_token" for k, _ in parse_qsl(stripped, keep_blank_values=True)):
            raise contract.Violation("the stripped query still carries access_token")


def make_seeds(tokens: list[str]) -> list[bytes]:
    t = tokens[0]
    requests = [
        f"7Authorization: Bearer {t}",
        f"1authorization: bearer {t}\nAccept: application/json",
        f"2Cookie: theme=dark; {COOKIE_NAME}={t}; other=1",
        f"4\n?a=1&access_token={t}&b=2",
        f"7Authorization: Bearer {t}\n?access_token={t}",
        f"7Authorization: Basic dXNlcjpwYXNz\nCookie: {COOKIE_NAME}=\"{t}\"",
        f"3Cookie: {COOKIE_NAME}={t}\nCookie: {COOKIE_NAME}={t}",
        f"7AUTHORIZATION: Bearer {t}\nAuthorization: Bearer {t}",
        "7Authorization: DPoP abc\n?access_token&x=%41",
    ]
    return [r.encode() for r in requests]


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
