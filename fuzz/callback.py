"""Target: the login callback (browser/login.py): query parsing, state lookup in the sealed
authorization cookie, the IdP's error answer, the code exchange.

Input: text; the first line is the raw query of the callback request (parsed like
ngx.req.get_uri_args, tests/kong_host/pdk.parse_query), the other lines are Cookie header
values. The flow runs through `Gateway.handle` with a fixed key set and metadata (no network)
and a token endpoint that refuses every code (`invalid_grant`), as a real IdP does for a code
it did not issue.

Contract: nothing escapes `handle`; the answer is a page (401/403/502/503) or, for a matched
state, a redirect to a same-origin path; no page, header or log reason echoes the query or the
cookies (the callback URL is attacker-crafted: anything reflected is content injection);
bounded time.
"""

from __future__ import annotations

import html
import json
from typing import Any, Iterator
from unittest import mock
from urllib.parse import parse_qs

import httpx

from fuzz import contract
from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.browser import callback as callback_mod
from kong_oidc_py.browser import login as login_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.browser.session.model import AuthorizationState
from tests.kong_host.pdk import parse_query

NAME = "callback"
MATERIAL = json.loads((contract.CORPUS / "idp.json").read_text())
ISSUER = MATERIAL["issuer"]
SECRET = "fuzz-callback-session-secret-0123456789"
CALLBACK = "/callback"
NOW = MATERIAL["now"]
STATE = "c3RhdGUtb2YtdGhlLWZ1enotbG9naW4tMDEyMzQ1Njc"
CONFIG = parse_config({
    "issuer": ISSUER,
    "auth_methods": ["bearer", "authorization_code", "session"],
    "client_id": "web",
    "client_secret": "web-secret",
    "redirect_uri": "https://app.example.com" + CALLBACK,
    "session_secret": SECRET,
    "audience_required": [MATERIAL["audience"]],
    "scopes": ["openid"],
})


def _refuse(request: httpx.Request) -> httpx.Response:
    return httpx.Response(400, json={"error": "invalid_grant", "error_description": "grant request is invalid"})


def _gateway() -> Gateway:
    provider = Provider.from_jwks(ISSUER, MATERIAL["jwks"])
    provider._static_metadata = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "end_session_endpoint": ISSUER + "/session/end",
    }
    with mock.patch.object(gateway_mod, "get_provider", lambda issuer, settings: provider):
        gw = Gateway(CONFIG)
    assert gw.browser is not None
    gw.browser.tokens._http = httpx.Client(transport=httpx.MockTransport(_refuse))
    return gw


GW = _gateway()


class Request:
    """A RequestView for one callback request."""

    def __init__(self, raw_query: str, cookies: list[str]) -> None:
        self.headers = {"cookie": cookies} if cookies else {}
        self.headers_truncated = False
        self._raw = raw_query

    def path(self) -> str: return CALLBACK
    def method(self) -> str: return "GET"
    def route(self) -> dict | None: return None
    def query(self) -> dict: return parse_query(self._raw)
    def raw_query(self) -> str: return self._raw
    def scheme(self) -> str: return "https"
    def host(self) -> str: return "app.example.com"
    def port(self) -> int: return 443
    def body(self) -> bytes: return b""
    def credential(self) -> dict | None: return None
    def load_consumer(self, value: str, by_username: bool) -> dict | None: return None


class FixedTime:
    """login.py and callback.py read `time.time()`; the seeds' authorization cookies were sealed at NOW."""

    @staticmethod
    def time() -> float:
        return NOW

    monotonic = staticmethod(__import__("time").monotonic)


def _handle(req: Request) -> Any:
    real, login_mod.time, callback_mod.time = login_mod.time, FixedTime, FixedTime
    try:
        return GW.handle(req)
    finally:
        login_mod.time = callback_mod.time = real


def one_input(data: bytes) -> None:
    text = contract.text(data)
    raw_query, _, cookie_text = text.partition("\n")
    cookies = [c for c in cookie_text.split("\n") if c]
    outcome = contract.bounded(lambda: _handle(Request(raw_query, cookies)))
    sources = [raw_query, *cookies]
    if outcome.status == 302:
        location = outcome.response_headers.get("Location", "")
        if not location.startswith("/") or location.startswith("//") or "\\" in location:
            raise contract.Violation(f"callback redirect leaves the origin: {location[:40]!r}")
    elif outcome.status not in (401, 403, 502, 503):
        raise contract.Violation(f"callback answered {outcome.status}")
    # Issue 12 asks for the IdP's error_description on the error page (escaped, printable):
    # that one value may be shown; nothing else the link carries may.
    described = [html.escape(v) for v in parse_qs(raw_query, keep_blank_values=True).get("error_description", [])]
    contract.check_message("page", outcome.body if isinstance(outcome.body, str) else json.dumps(outcome.body), sources,
                           allowed=described)
    for name, value in outcome.response_headers.items():
        if name == "Set-Cookie":
            # Cookie names are ours (config) and attributes fixed: the value is what could echo.
            for cookie in value:
                contract.check_message("Set-Cookie value", cookie.split(";", 1)[0].partition("=")[2], sources)
        elif name != "Location":
            for item in value if isinstance(value, list) else [str(value)]:
                contract.check_message("response header", item, sources)
    contract.check_message("log reason", str(outcome.log.get("reason", "")), sources)


def make_seeds() -> list[bytes]:
    """Callback requests around a real authorization cookie, sealed by the plugin's store at
    the target's fixed clock."""
    state = AuthorizationState(state=STATE, nonce="bm9uY2U", code_verifier="v" * 43, original_url="/app?x=1",
                               created_at=NOW - 1)
    pairs = "; ".join(h.split(";", 1)[0] for h in GW.browser.authorizations.push(state, {}, NOW - 1))
    requests = [
        f"code=abc&state={STATE}\n{pairs}",
        f"code=abc&state={STATE}&iss={ISSUER}\ntheme=dark; {pairs}",
        f"error=access_denied&error_description=User+cancelled&state={STATE}\n{pairs}",
        f"error=login_required&state={STATE}\n{pairs}",
        f"code=abc&state=other\n{pairs}",
        f"code=a&code=b&state={STATE}\n{pairs}",
        "state&code\n",
    ]
    return [r.encode() for r in requests]


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
