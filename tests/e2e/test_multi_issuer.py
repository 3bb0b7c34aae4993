"""Two real oidc-provider instances trusted by one plugin instance, each with its own keys,
audience and scopes claim; a token naming any other issuer never makes the plugin fetch."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.idp import DEFAULT_RESOURCE, OidcProvider
from tests.support.stack import call, kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

B_RESOURCE = "urn:customer-idp:api"


class CountingServer:
    """Counts every request; stands where a token's made-up issuer points."""

    def __init__(self) -> None:
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                server.hits += 1
                self.send_response(404)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def idp_b():
    # The customer IdP: its own audience, and scopes in `scp` (its clients get only "write" in scope).
    with OidcProvider({
        "resources": {B_RESOURCE: {"scope": "read write", "alg": "ES256"}},
        "default_resource": B_RESOURCE,
        "clients": [{"client_id": "m2m", "client_secret": "m2m-secret", "grant_types": ["client_credentials"],
                     "response_types": [], "redirect_uris": [], "allowed_scopes": "write",
                     "extra_claims": {"scp": ["read"]}}],
    }) as provider:
        yield provider


@pytest.fixture(scope="module")
def stranger():
    server = CountingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(oidc_provider, idp_b, echo, tmp_path_factory):
    plugin = oidc(
        oidc_provider.issuer,
        audience_required=[DEFAULT_RESOURCE],
        scopes_required=["read"],
        issuers=[{"issuer": idp_b.issuer, "audience_required": [B_RESOURCE], "scopes_claim": ["scp"]}],
        upstream_headers_claims=["sub", "iss"],
        upstream_headers_names=["X-User-Id", "X-Issuer"],
    )
    cfg = kong_config(echo.port, routes=[route("multi", "/multi", plugin)])
    with start_stack(cfg, str(tmp_path_factory.mktemp("kong"))) as (emu, client):
        yield emu, client


def upstream(response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def test_token_from_the_first_issuer_passes_with_its_rules(stack, oidc_provider):
    response, line = call(stack, "/multi/x", oidc_provider.client_credentials_token(scope="read"))
    assert response.status_code == 200 and upstream(response)["x-issuer"] == oidc_provider.issuer


def test_token_from_the_second_issuer_passes_with_its_keys_audience_and_scp(stack, idp_b):
    token = idp_b.client_credentials_token(scope="write", resource=B_RESOURCE)
    response, line = call(stack, "/multi/x", token)
    assert response.status_code == 200, line["oidc"]
    assert upstream(response)["x-issuer"] == idp_b.issuer and line["oidc"]["scopes"] == "read"


def test_first_issuers_audience_does_not_open_the_second(stack, oidc_provider, idp_b):
    # A token of issuer A for B's audience fails A's audience rule.
    token = oidc_provider.client_credentials_token(scope="read", resource="urn:kong-oidc-py:other")
    response, line = call(stack, "/multi/x", token)
    assert response.status_code == 401 and line["oidc"]["reason"] == "bad_audience"


def test_second_issuer_cannot_sign_for_the_first(stack, oidc_provider, idp_b):
    key = idp_b.signing_key("ES256")
    import time

    now = int(time.time())
    forged = key.sign({"iss": oidc_provider.issuer, "aud": DEFAULT_RESOURCE, "sub": "x", "scope": "read",
                       "iat": now, "exp": now + 300})
    response, line = call(stack, "/multi/x", forged)
    assert response.status_code == 401 and line["oidc"]["reason"] in ("unknown_kid", "bad_signature")


def test_untrusted_issuer_is_refused_and_never_contacted(stack, oidc_provider, stranger):
    import time

    now = int(time.time())
    token = oidc_provider.signing_key("RS256").sign({
        "iss": stranger.url, "aud": DEFAULT_RESOURCE, "sub": "x", "scope": "read", "iat": now, "exp": now + 300,
    })
    response, line = call(stack, "/multi/x", token)
    assert response.status_code == 401 and line["oidc"]["reason"] == "bad_issuer"
    assert stranger.hits == 0
