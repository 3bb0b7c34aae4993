"""Token endpoint client (kong_oidc_py/browser/token_endpoint.py) against a tiny loopback HTTP server."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from typing import Iterator
from urllib.parse import parse_qs

import pytest

from kong_oidc_py.errors import ProviderError
from kong_oidc_py.browser.token_endpoint import MAX_TOKEN_RESPONSE_BYTES, TokenClient, TokenError

GOOD = {"access_token": "at", "token_type": "Bearer", "id_token": "it", "refresh_token": "rt", "expires_in": 300}


class TokenServer:
    """Answers every POST with (status, body bytes, content type) and records the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = json.dumps(GOOD).encode()
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"headers": dict(self.headers), "form": parse_qs(self.rfile.read(n).decode())})
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, status: int, body: dict | bytes) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture
def server() -> Iterator[TokenServer]:
    s = TokenServer()
    s.thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()


def client(method: str = "client_secret_basic", client_id: str = "web", secret: str = "web-secret") -> TokenClient:
    return TokenClient(client_id=client_id, client_secret=secret, auth_method=method, timeout_ms=2000, ssl_verify=True)


def exchange(c: TokenClient, url: str):
    return c.exchange_code(url, code="the-code", redirect_uri="http://127.0.0.1/cb", code_verifier="v" * 43)


def test_code_exchange_sends_grant_code_redirect_uri_and_verifier(server):
    exchange(client(), server.url)
    form = server.requests[0]["form"]
    assert form == {"grant_type": ["authorization_code"], "code": ["the-code"],
                    "redirect_uri": ["http://127.0.0.1/cb"], "code_verifier": ["v" * 43]}


def test_client_secret_basic_form_encodes_both_parts(server):
    exchange(client(client_id="my client", secret="s:e/c+r"), server.url)
    header = server.requests[0]["headers"]["Authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "my+client:s%3Ae%2Fc%2Br"
    assert "client_secret" not in server.requests[0]["form"]


def test_client_secret_post_puts_credentials_in_the_body(server):
    exchange(client("client_secret_post"), server.url)
    request = server.requests[0]
    assert request["form"]["client_id"] == ["web"] and request["form"]["client_secret"] == ["web-secret"]
    assert "Authorization" not in request["headers"]


def test_successful_response_is_parsed(server):
    tokens = exchange(client(), server.url)
    assert (tokens.access_token, tokens.id_token, tokens.refresh_token, tokens.expires_in) == ("at", "it", "rt", 300)


def test_refresh_sends_the_refresh_token_grant(server):
    client().refresh(server.url, refresh_token="rt")
    assert server.requests[0]["form"] == {"grant_type": ["refresh_token"], "refresh_token": ["rt"]}


def test_oauth_error_response_is_a_token_error_with_its_code(server):
    server.answer(400, {"error": "invalid_grant", "error_description": "grant request is invalid"})
    with pytest.raises(TokenError) as info:
        exchange(client(), server.url)
    assert info.value.error == "invalid_grant"


def test_error_response_without_error_field_is_server_error(server):
    server.answer(500, {"oops": True})
    with pytest.raises(TokenError) as info:
        exchange(client(), server.url)
    assert info.value.error == "server_error"


def test_non_json_answer_is_a_provider_error(server):
    server.answer(502, b"<html>bad gateway</html>")
    with pytest.raises(ProviderError):
        exchange(client(), server.url)


def test_json_array_answer_is_a_provider_error(server):
    server.answer(200, b"[1, 2]")
    with pytest.raises(ProviderError):
        exchange(client(), server.url)


def test_oversized_answer_is_a_provider_error(server):
    server.answer(200, b"{" + b" " * (MAX_TOKEN_RESPONSE_BYTES + 10) + b"}")
    with pytest.raises(ProviderError):
        exchange(client(), server.url)


def test_unreachable_endpoint_is_a_provider_error():
    with pytest.raises(ProviderError):
        exchange(client(), "http://127.0.0.1:1/token")


def test_missing_access_token_is_refused(server):
    server.answer(200, {"token_type": "Bearer"})
    with pytest.raises(TokenError) as info:
        exchange(client(), server.url)
    assert info.value.error == "invalid_response"


def test_non_bearer_token_type_is_refused(server):
    server.answer(200, {**GOOD, "token_type": "DPoP"})
    with pytest.raises(TokenError):
        exchange(client(), server.url)


def test_expires_in_as_a_string_is_accepted(server):
    server.answer(200, {**GOOD, "expires_in": "120"})
    assert exchange(client(), server.url).expires_in == 120


@pytest.mark.parametrize("bad", [-5, 0, True, "soon", 10**12])
def test_nonsense_expires_in_is_ignored(server, bad):
    server.answer(200, {**GOOD, "expires_in": bad})
    assert exchange(client(), server.url).expires_in is None


def test_error_description_is_not_echoed_unbounded(server):
    server.answer(400, {"error": "x" * 500, "error_description": "d" * 5000})
    with pytest.raises(TokenError) as info:
        exchange(client(), server.url)
    assert len(info.value.error) <= 64 and len(info.value.description) <= 200
