"""Opaque tokens end to end: emulated Kong -> plugin server -> RFC 7662 introspection at the real
oidc-provider (whose default access-token format is opaque), with each client authentication
method, RFC 9701 signed answers, caching and single-flight seen from the IdP side."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.idp import DEFAULT_RESOURCE, OTHER_RESOURCE, M2M, OidcProvider
from tests.support.keys import ec_key
from tests.support.stack import call, kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

JWT_RESOURCE = "urn:kong-oidc-py:jwt"
CLIENT_KEY = ec_key(kid="rs-jwt-1")
IDENTITY = {
    "upstream_headers_claims": ["sub", "client_id", "scope"],
    "upstream_headers_names": ["X-User-Id", "X-Client-Id", "X-Scopes"],
}


class CountingProxy:
    """Loopback pass-through to the IdP that counts the introspection calls it forwards."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                with proxy.lock:
                    proxy.calls += 1
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = httpx.post(proxy.target + self.path, content=body, headers=headers, timeout=10)
                self.send_response(upstream.status_code)
                self.send_header("content-type", upstream.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def idp():
    config = {
        "resources": {
            DEFAULT_RESOURCE: {"scope": "read write admin", "format": "opaque"},
            OTHER_RESOURCE: {"scope": "read write admin", "format": "opaque"},
            JWT_RESOURCE: {"scope": "read write admin", "alg": "RS256"},
        },
        "jwt_introspection": True,
        "extra_clients": [
            {"client_id": "rs-jwt", "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
             "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [CLIENT_KEY.public_jwk()]}},
            {"client_id": "rs-signed", "client_secret": "rs-signed-secret", "grant_types": ["client_credentials"],
             "response_types": [], "redirect_uris": [], "introspection_signed_response_alg": "RS256"},
        ],
    }
    with OidcProvider(config) as provider:
        yield provider


@pytest.fixture(scope="module")
def proxy(idp):
    p = CountingProxy(idp.issuer)
    yield p
    p.close()


@pytest.fixture(scope="module")
def stack(idp, proxy, echo, tmp_path_factory):
    issuer = idp.issuer
    base = {"auth_methods": ["bearer", "introspection"], "audience_required": [DEFAULT_RESOURCE], **IDENTITY}
    basic = {"client_id": M2M.client_id, "client_secret": M2M.client_secret}
    counted = f"{proxy.url}/token/introspection"
    cfg = kong_config(echo.port, routes=[
        route("basic", "/basic", oidc(issuer, **base, **basic, scopes_required=["read"])),
        route("admin", "/admin", oidc(issuer, **base, **basic, scopes_required=["admin"])),
        route("post", "/post", oidc(issuer, **base, client_id="web-post", client_secret="web-post-secret",
                                     introspection_endpoint_auth_method="client_secret_post")),
        route("pkjwt", "/pkjwt", oidc(issuer, **base, client_id="rs-jwt",
                                       introspection_endpoint_auth_method="private_key_jwt",
                                       client_jwk=json.dumps(CLIENT_KEY.private_jwk()))),
        route("signed", "/signed", oidc(issuer, **base, client_id="rs-signed", client_secret="rs-signed-secret",
                                         introspection_accept="application/token-introspection+jwt")),
        route("counted", "/counted", oidc(issuer, **base, **basic, introspection_endpoint=counted)),
        route("dpop", "/dpop", oidc(issuer, **base, **basic, proof_of_possession_dpop="optional")),
        route("down", "/down", oidc(issuer, **base, **basic, introspection_endpoint="http://127.0.0.1:9/x")),
    ])
    with start_stack(cfg, str(tmp_path_factory.mktemp("kong"))) as (emu, client):
        yield emu, client


def upstream(response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def opaque(idp, scope="read", resource=DEFAULT_RESOURCE) -> str:
    token = idp.client_credentials_token(scope=scope, resource=resource)
    assert token.count(".") == 0, "the IdP should issue an opaque token here"
    return token


def revoke(idp, token: str) -> None:
    response = httpx.post(f"{idp.issuer}/token/revocation", data={"token": token},
                          auth=(M2M.client_id, M2M.client_secret), timeout=10)
    assert response.status_code == 200


def test_opaque_token_is_introspected_and_its_claims_reach_the_upstream(stack, idp):
    response, line = call(stack, "/basic/x", opaque(idp))
    assert response.status_code == 200
    headers = upstream(response)
    assert headers["x-client-id"] == "m2m" and headers["x-scopes"] == "read"
    assert line["oidc"]["auth_method"] == "introspection" and line["oidc"]["issuer"] == idp.issuer


def test_log_line_never_contains_the_opaque_token(stack, idp):
    token = opaque(idp)
    _, line = call(stack, "/basic/x", token)
    assert token not in json.dumps({k: v for k, v in line.items() if k != "request"})


def test_revoked_token_is_inactive(stack, idp):
    token = opaque(idp)
    revoke(idp, token)
    response, line = call(stack, "/basic/x", token)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]
    assert line["oidc"]["reason"] == "inactive"


def test_made_up_token_is_inactive(stack):
    response, line = call(stack, "/basic/x", "not-a-token-the-idp-ever-issued")
    assert response.status_code == 401 and line["oidc"]["reason"] == "inactive"


def test_introspected_scopes_feed_the_scope_requirement(stack, idp):
    response, line = call(stack, "/admin/x", opaque(idp, scope="read"))
    assert response.status_code == 403 and 'scope="admin"' in response.headers["www-authenticate"]
    assert line["oidc"]["reason"] == "insufficient_scope"


def test_introspected_audience_feeds_the_audience_check(stack, idp):
    response, line = call(stack, "/basic/x", opaque(idp, resource=OTHER_RESOURCE))
    assert response.status_code == 401 and line["oidc"]["reason"] == "bad_audience"


def test_jwt_access_tokens_are_still_verified_locally(stack, idp):
    token = idp.client_credentials_token(scope="read", resource=JWT_RESOURCE)
    response, line = call(stack, "/post/x", token)
    # Verified locally (auth_method bearer); this route wants the api audience, not the jwt one.
    assert response.status_code == 401 and line["oidc"]["reason"] == "bad_audience"


@pytest.mark.parametrize("path", ["/post/x", "/pkjwt/x", "/signed/x"],
                         ids=["client_secret_post", "private_key_jwt", "rfc9701_signed_answer"])
def test_each_client_authentication_and_answer_format_works_with_the_real_idp(stack, idp, path):
    response, line = call(stack, path, opaque(idp))
    assert response.status_code == 200, line["oidc"]
    assert line["oidc"]["auth_method"] == "introspection"


def test_signed_answer_route_refuses_revoked_tokens_too(stack, idp):
    token = opaque(idp)
    revoke(idp, token)
    response, line = call(stack, "/signed/x", token)
    assert response.status_code == 401 and line["oidc"]["reason"] == "inactive"


def test_a_cached_answer_serves_repeats_without_asking_the_idp(stack, idp, proxy):
    token = opaque(idp)
    before = proxy.calls
    for _ in range(3):
        assert call(stack, "/counted/x", token)[0].status_code == 200
    assert proxy.calls - before == 1
    # The price of caching: a revoked token stays good here until the cached answer ends.
    revoke(idp, token)
    assert call(stack, "/counted/x", token)[0].status_code == 200


def test_concurrent_requests_with_one_new_token_make_one_introspection_call(stack, idp, proxy):
    token = opaque(idp)
    before = proxy.calls
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: call(stack, "/counted/x", token)[0].status_code, range(8)))
    assert statuses == [200] * 8
    assert proxy.calls - before == 1


def test_idp_down_fails_closed_with_a_clear_reason(stack, idp):
    response, line = call(stack, "/down/x", opaque(idp))
    assert response.status_code == 401
    assert line["oidc"]["reason"] == "introspection_failed" and "unreachable" in line["oidc"]["detail"]


def test_dpop_bound_opaque_token_needs_its_proof(stack, idp):
    from tests.support.dpop import proof

    p = proof(CLIENT_KEY, "POST", idp.token_endpoint)
    issued = httpx.post(idp.token_endpoint, data={"grant_type": "client_credentials", "scope": "read",
                                                  "resource": DEFAULT_RESOURCE},
                        auth=(M2M.client_id, M2M.client_secret), headers={"DPoP": p}, timeout=10).json()
    token = issued["access_token"]
    assert issued["token_type"] == "DPoP" and token.count(".") == 0
    as_bearer, line = call(stack, "/dpop/x", token)
    assert as_bearer.status_code == 401 and line["oidc"]["reason"] == "dpop_bound_as_bearer"
    emu, client = stack
    target = f"{client.base_url}".rstrip("/") + "/dpop/x"
    response = client.get("/dpop/x", headers={"Authorization": f"DPoP {token}",
                                              "DPoP": proof(CLIENT_KEY, "GET", target, token)})
    assert response.status_code == 200
