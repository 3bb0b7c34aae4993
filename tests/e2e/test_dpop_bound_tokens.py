"""DPoP end to end: the real oidc-provider binds access tokens to a client key (RFC 9449 5), real
proofs go through emulated Kong to the plugin server, and each replay an attacker could try
(same jti, another method, another URL, no proof, the token as Bearer) is refused."""

from __future__ import annotations


import httpx
import pytest

from tests.support.dpop import proof, thumbprint
from tests.support.idp import DEFAULT_RESOURCE, M2M
from tests.support.keys import ec_key
from tests.support.stack import call, kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

CLIENT_KEY = ec_key(kid=None)
THIEF_KEY = ec_key("P-256", kid=None)


@pytest.fixture(scope="module")
def stack(oidc_provider, echo, tmp_path_factory):
    issuer = oidc_provider.issuer
    base = {"audience_required": [DEFAULT_RESOURCE], "upstream_headers_claims": ["sub"],
            "upstream_headers_names": ["X-User-Id"]}
    cfg = kong_config(echo.port, routes=[
        route("optional", "/optional", oidc(issuer, proof_of_possession_dpop="optional", **base)),
        route("strict", "/strict", oidc(issuer, proof_of_possession_dpop="strict", **base)),
        route("nonce", "/nonce", oidc(issuer, proof_of_possession_dpop="optional", dpop_use_nonce=True,
                                      dpop_nonce_secret="n" * 40, **base)),
        route("off", "/off", oidc(issuer, **base)),
    ])
    with start_stack(cfg, str(tmp_path_factory.mktemp("kong"))) as (emu, client):
        yield emu, client


def dpop_token(idp, key=CLIENT_KEY) -> dict:
    """client_credentials with a DPoP proof at the token endpoint: a token bound to `key`."""
    p = proof(key, "POST", idp.token_endpoint)
    response = httpx.post(idp.token_endpoint, data={"grant_type": "client_credentials", "scope": "read",
                                                    "resource": DEFAULT_RESOURCE},
                          auth=(M2M.client_id, M2M.client_secret), headers={"DPoP": p}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    return body


def send(stack, path, token, *, scheme="DPoP", proof_header=None, method="GET", headers=None):
    proof_headers = {"DPoP": proof_header} if proof_header is not None else {}
    return call(stack, path, token, scheme=scheme, method=method, headers={**(headers or {}), **proof_headers})


def url(stack, path) -> str:
    return f"{stack[1].base_url}".rstrip("/") + path


@pytest.fixture
def bound(oidc_provider):
    return dpop_token(oidc_provider)["access_token"]


def test_the_idp_binds_the_token_to_the_client_key(oidc_provider, bound):
    import jwt

    claims = jwt.decode(bound, options={"verify_signature": False})
    jwk = {k: v for k, v in CLIENT_KEY.public_jwk().items() if k in ("kty", "crv", "x", "y")}
    assert claims["cnf"]["jkt"] == thumbprint(jwk)


def test_bound_token_with_a_real_proof_is_allowed(stack, bound):
    response, line = send(stack, "/optional/x", bound, proof_header=proof(CLIENT_KEY, "GET", url(stack, "/optional/x"), bound))
    assert response.status_code == 200, line["oidc"]
    assert line["oidc"]["token_binding"] == "dpop"


def test_a_dpop_request_costs_four_pdk_reads_more_than_a_bearer_one(stack, oidc_provider, bound):
    plain = oidc_provider.client_credentials_token(scope="read")
    _, bearer_line = send(stack, "/optional/x", plain, scheme="Bearer")
    _, dpop_line = send(stack, "/optional/x", bound, proof_header=proof(CLIENT_KEY, "GET", url(stack, "/optional/x"), bound))
    # htm and htu: method, forwarded scheme, host and port; the path is read on every request
    # already (the path rules), so nothing else.
    assert dpop_line["pdk_calls"]["oidc"] - bearer_line["pdk_calls"]["oidc"] == 4


def test_same_proof_twice_is_a_replay(stack, bound):
    p = proof(CLIENT_KEY, "GET", url(stack, "/optional/x"), bound)
    assert send(stack, "/optional/x", bound, proof_header=p)[0].status_code == 200
    response, line = send(stack, "/optional/x", bound, proof_header=p)
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_replayed"
    assert response.headers["www-authenticate"].startswith("DPoP ") and 'error="invalid_dpop_proof"' in response.headers["www-authenticate"]


def test_proof_for_another_method_is_refused(stack, bound):
    p = proof(CLIENT_KEY, "GET", url(stack, "/optional/x"), bound)
    response, line = send(stack, "/optional/x", bound, proof_header=p, method="POST")
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_bad_htm"


def test_proof_for_another_url_is_refused(stack, bound):
    p = proof(CLIENT_KEY, "GET", url(stack, "/optional/other"), bound)
    response, line = send(stack, "/optional/x", bound, proof_header=p)
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_bad_htu"


def test_forged_forwarded_scheme_from_an_untrusted_client_does_not_change_the_url(stack, bound):
    https_url = url(stack, "/optional/x").replace("http://", "https://")
    p = proof(CLIENT_KEY, "GET", https_url, bound)
    response, line = send(stack, "/optional/x", bound, proof_header=p, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_bad_htu"


def test_bound_token_without_a_proof_is_refused(stack, bound):
    response, line = send(stack, "/optional/x", bound)
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_missing_proof"


def test_bound_token_as_bearer_is_refused(stack, bound):
    response, line = send(stack, "/optional/x", bound, scheme="Bearer")
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_bound_as_bearer"


def test_bound_token_as_bearer_is_refused_where_dpop_is_off(stack, bound):
    response, line = send(stack, "/off/x", bound, scheme="Bearer")
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_bound_as_bearer"


def test_stolen_token_with_the_thiefs_own_proof_is_refused(stack, bound):
    p = proof(THIEF_KEY, "GET", url(stack, "/optional/x"), bound)
    response, line = send(stack, "/optional/x", bound, proof_header=p)
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_key_mismatch"


def test_strict_route_refuses_plain_bearer_tokens_with_a_dpop_challenge(stack, oidc_provider):
    plain = oidc_provider.client_credentials_token(scope="read")
    response, line = send(stack, "/strict/x", plain, scheme="Bearer")
    assert response.status_code == 401 and line["oidc"]["reason"] == "dpop_required"
    assert response.headers["www-authenticate"].startswith("DPoP ") and "algs=" in response.headers["www-authenticate"]


def test_optional_route_still_takes_plain_bearer_tokens(stack, oidc_provider):
    plain = oidc_provider.client_credentials_token(scope="read")
    assert send(stack, "/optional/x", plain, scheme="Bearer")[0].status_code == 200


def test_server_nonce_round_trip(stack, bound):
    target = url(stack, "/nonce/x")
    first, line = send(stack, "/nonce/x", bound, proof_header=proof(CLIENT_KEY, "GET", target, bound))
    assert first.status_code == 401 and 'error="use_dpop_nonce"' in first.headers["www-authenticate"]
    nonce = first.headers["dpop-nonce"]
    second, line = send(stack, "/nonce/x", bound, proof_header=proof(CLIENT_KEY, "GET", target, bound, nonce=nonce))
    assert second.status_code == 200, line["oidc"]
