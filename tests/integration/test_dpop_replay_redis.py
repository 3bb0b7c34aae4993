"""DPoP jti replay shared through a real redis-server: two gateways (two Kong nodes) pointing at
the same Redis see one replay cache, and a Redis that is down refuses proofs (fail closed)."""

from __future__ import annotations

import secrets
from typing import Iterator

import pytest
import redis

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.provider import Provider
from tests.support.dpop import proof, thumbprint
from tests.support.keys import ISSUER, claims, ec_key, jwks, rsa_key
from tests.support.redis_server import RedisServer
from tests.unit.test_gateway import FakeRequest

pytestmark = pytest.mark.redis

AS_KEY = rsa_key("as-dpop-redis")
CLIENT = ec_key(kid=None)
URL = "https://api.example.com/api"  # what FakeRequest reports: https, api.example.com:443, /api


@pytest.fixture(autouse=True)
def static_provider(monkeypatch):
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: Provider.from_jwks(issuer, jwks(AS_KEY)))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


def node(port: int, prefix: str) -> Gateway:
    """One Kong node's plugin: DPoP with the replay cache in Redis."""
    return Gateway(parse_config({
        "issuer": ISSUER, "allow_any_audience": True, "proof_of_possession_dpop": "optional",
        "dpop_replay_storage": "redis", "session_redis_port": port, "session_redis_prefix": prefix,
        "session_redis_connect_timeout": 500, "session_redis_read_timeout": 500,
    }))


def bound_token() -> str:
    jwk = {k: v for k, v in CLIENT.public_jwk().items() if k not in ("kid", "use", "alg")}
    return AS_KEY.sign(claims(cnf={"jkt": thumbprint(jwk)}))


def request(token: str, dpop: str) -> FakeRequest:
    return FakeRequest({"Authorization": f"DPoP {token}", "DPoP": dpop})


def test_a_proof_used_on_one_node_is_a_replay_on_the_other(server):
    prefix = "t" + secrets.token_hex(4)
    a, b = node(server.port, prefix), node(server.port, prefix)
    token = bound_token()
    used = proof(CLIENT, "GET", URL, token)
    assert a.handle(request(token, used)).allowed
    replayed = b.handle(request(token, used))
    assert replayed.status == 401 and replayed.log["reason"] == "dpop_replayed"
    assert 'error="invalid_dpop_proof"' in replayed.response_headers["WWW-Authenticate"]
    # The same node refuses it too, and a fresh proof still passes on either node.
    assert a.handle(request(token, used)).log["reason"] == "dpop_replayed"
    assert b.handle(request(token, proof(CLIENT, "GET", URL, token))).allowed
    # Both nodes wrote to the one Redis: one key per accepted proof, each expiring.
    client = redis.Redis(host=server.host, port=server.port)
    keys = client.keys(f"{prefix}:dpop:*")
    assert len(keys) == 2 and all(0 < client.pttl(k) <= (300 + 10) * 1000 for k in keys)
    client.close()


def test_a_refused_proof_does_not_burn_its_jti_on_the_shared_cache(server):
    prefix = "t" + secrets.token_hex(4)
    a, b = node(server.port, prefix), node(server.port, prefix)
    token = bound_token()
    assert a.handle(request(token, proof(CLIENT, "POST", URL, token, jti="shared-jti"))).status == 401
    assert b.handle(request(token, proof(CLIENT, "GET", URL, token, jti="shared-jti"))).allowed


def test_redis_down_refuses_the_proof_with_invalid_dpop_proof():
    with RedisServer() as down:
        gw = node(down.port, "t" + secrets.token_hex(4))
        token = bound_token()
        assert gw.handle(request(token, proof(CLIENT, "GET", URL, token))).allowed
        down.crash()
        out = gw.handle(request(token, proof(CLIENT, "GET", URL, token)))
        challenge = out.response_headers["WWW-Authenticate"]
        assert out.status == 401 and not out.allowed and out.log["reason"] == "dpop_replay_store_failed"
        # RFC 9449 7.1: the proof could not be validated -> invalid_dpop_proof in a DPoP challenge.
        assert challenge.startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge
        down.restart()
        # Back up (empty, no persistence): the next proof passes without anyone resetting anything.
        assert gw.handle(request(token, proof(CLIENT, "GET", URL, token))).allowed
