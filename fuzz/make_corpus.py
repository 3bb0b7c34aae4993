"""Regenerate the seed corpus from the real test IdP (tests/idp, oidc-provider on loopback).

    .venv/bin/python -m fuzz.make_corpus

Writes `fuzz/corpus/idp.json` (issuer, public keys, mint time) and the seeds each target reads:
real access tokens (RS256 and ES256 from the IdP, plus one token per other supported algorithm
signed by a key made here, whose public half goes into idp.json), the real discovery document,
JWKS and token-endpoint answers, and cookies sealed by the plugin's own session code. Seeds are
small on purpose: the fuzzer grows its own corpus from them (not committed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import httpx

from fuzz import contract
from tests.support.idp import DEFAULT_RESOURCE, OTHER_RESOURCE, OidcProvider
from tests.support.keys import ec_key, ed448_key, ed25519_key, rsa_key


def _write(name: str, items: list[bytes]) -> None:
    folder = contract.CORPUS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in items:
        (folder / hashlib.sha1(item).hexdigest()[:16]).write_bytes(item)
    print(f"{name}: {len(items)} seeds")


def main() -> None:
    with OidcProvider() as idp:
        discovery_raw = httpx.get(idp.discovery_url, timeout=10).content
        jwks_raw = httpx.get(idp.jwks_uri, timeout=10).content
        responses = [
            idp.token_request({"grant_type": "client_credentials", "scope": "read", "resource": DEFAULT_RESOURCE}),
            idp.token_request({"grant_type": "client_credentials", "scope": "read write", "resource": OTHER_RESOURCE}),
            idp.token_request({"grant_type": "client_credentials", "scope": "nope"}),
            idp.token_request({"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://127.0.0.1/callback"}, "web"),
        ]
        issuer = idp.issuer
        idp_jwks = idp.jwks()
    now = int(time.time())
    tokens = [r.json()["access_token"] for r in responses if r.status_code == 200]

    # One key of every other supported type, so mutations reach each signature scheme.
    extra = [rsa_key("fuzz-ps", "PS256", fresh=True), ec_key("P-384", "fuzz-es384"), ec_key("P-521", "fuzz-es512"),
             ed25519_key("fuzz-ed25519"), ed448_key("fuzz-ed448")]
    claims = {"iss": issuer, "sub": "fuzz-user", "aud": [DEFAULT_RESOURCE, "other"], "iat": now - 1, "nbf": now - 1,
              "exp": now + 600, "scope": "read write", "client_id": "m2m", "jti": "j1"}
    for key in extra:
        tokens.append(key.sign(claims))
    material = {"issuer": issuer, "audience": DEFAULT_RESOURCE, "now": now + 1,
                "jwks": {"keys": idp_jwks["keys"] + [k.public_jwk() for k in extra]}}
    (contract.CORPUS / "idp.json").write_text(json.dumps(material, indent=1) + "\n")

    _write("discovery", [discovery_raw])
    _write("jwks", [jwks_raw, json.dumps(material["jwks"]).encode()])
    from fuzz.token_response import STATUSES

    _write("token_response", [bytes([STATUSES.index(r.status_code)]) + r.content for r in responses])

    # Targets that build their own inputs from this material (cookies sealed by the plugin).
    from fuzz import callback, extract_token, session_cookie, verify_token

    _write("verify_token", verify_token.make_seeds(tokens))
    _write("extract_token", extract_token.make_seeds(tokens))
    _write("session_cookie", session_cookie.make_seeds(tokens))
    _write("callback", callback.make_seeds())


if __name__ == "__main__":
    main()
