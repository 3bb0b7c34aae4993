"""Target: a bearer token through `Verifier.verify` end to end, signature checks on.

The key set is fixed (`corpus/idp.json`: the real test IdP's public keys plus one key of every
other supported type) and so is the clock (the moment the seed tokens were minted). Input:

* a token as text (the seeds are real tokens): mutations exercise splitting, base64, the
  header rules, key lookup and every signature scheme;
* a 0x00 byte, then header JSON, 0x00, payload JSON: the harness signs them (ES256 with its own
  key, which is in the key set, or HS256 with the strict verifier's secret, as the header's alg
  says), so mutations of the claims pass the signature check and reach every later check.

Two verifiers take turns (by input length parity): the production defaults with an audience,
and the strictest options (typ required, ID tokens refused, HS256 with a secret); caches are
off so every input takes the full path.

Contract: `InvalidToken` with a reason from errors.TOKEN_REASONS and a fixed description, no
input echoed, bounded time; an accepted token really meets the rules (independent re-check).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Iterator

from fuzz import contract
from kong_oidc_py.errors import TOKEN_REASONS, InvalidToken
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.verify import ASYMMETRIC_ALGS, Verifier, VerifyOptions
from tests.support.keys import ec_key, encode_part, sign_raw

NAME = "verify_token"
MATERIAL = json.loads((contract.CORPUS / "idp.json").read_text())
ISSUER: str = MATERIAL["issuer"]
AUDIENCE: str = MATERIAL["audience"]
NOW: float = MATERIAL["now"]

# Every description a client may see for a token rejection (verify.py, jwks.py).
DESCRIPTIONS = frozenset({
    "The token is malformed",
    "The token is too large",
    "The token's signing algorithm is not allowed",
    "The token signature is invalid",
    "The token has expired",
    "The token is not valid yet",
    "The token was issued in the future",
    "The token lacks a required claim",
    "The token was issued by an untrusted issuer",
    "The token is not intended for this audience",
    "The token type is not accepted",
    "The token requires unsupported header extensions",
    "The token was signed with an unknown key",
    "The signing keys are not available",
})


HARNESS_KEY = ec_key("P-256", "fuzz-harness")
HMAC_SECRET = b"fuzz-hmac-secret-0123456789abcdef"


def _provider() -> Provider:
    return Provider.from_jwks(ISSUER, {"keys": MATERIAL["jwks"]["keys"] + [HARNESS_KEY.public_jwk()]})


def _clock() -> float:
    return NOW


DEFAULT = Verifier(_provider(), VerifyOptions(issuer=ISSUER, audiences=(AUDIENCE,), cache_ttl=0), clock=_clock)
STRICT = Verifier(
    _provider(),
    VerifyOptions(issuer=ISSUER, audiences=(AUDIENCE,), token_type_required=True, reject_id_tokens=True,
                  leeway=0, cache_ttl=0, hmac_secret=HMAC_SECRET,
                  algorithms=frozenset(ASYMMETRIC_ALGS | {"HS256"})),
    clock=_clock,
)


def _decoded(segment: str) -> str:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - best effort: only widens what a detail may name
        return ""


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001
        return None


def _named_values(token: str) -> list[str]:
    """What the design lets a log detail name: the header's kid/alg/typ and the payload's iss."""
    parts = token.split(".")
    header = _json(_decoded(parts[0])) if parts else None
    payload = _json(_decoded(parts[1])) if len(parts) > 1 else None
    values = []
    if isinstance(header, dict):
        values += [repr(header.get(k)) for k in ("kid", "alg", "typ")]
        values += [str(header.get(k)) for k in ("kid", "alg", "typ")]
    if isinstance(payload, dict):
        values += [repr(payload.get("iss")), str(payload.get("iss"))]
    return values


def _check_accepted(verifier: Verifier, token: str) -> None:
    """Independent re-check of an accepted token (not through the verifier's code)."""
    header = _json(_decoded(token.split(".")[0]))
    payload = _json(_decoded(token.split(".")[1]))
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise contract.Violation("accepted a token whose header or payload is not a JSON object")
    allowed = ASYMMETRIC_ALGS | ({"HS256"} if verifier is STRICT else set())
    if header.get("alg") not in allowed or "crit" in header:
        raise contract.Violation(f"accepted alg {header.get('alg')!r} / crit")
    if payload.get("iss") != ISSUER:
        raise contract.Violation("accepted a foreign issuer")
    exp = payload.get("exp")
    if type(exp) not in (int, float) or exp <= NOW:
        raise contract.Violation("accepted a token without a future exp")
    aud = payload.get("aud")
    if not (aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)):
        raise contract.Violation("accepted a token for another audience")
    for name in ("nbf", "iat"):
        value = payload.get(name)
        if value is not None and (type(value) not in (int, float) or value > NOW):
            raise contract.Violation(f"accepted a token with {name} in the future or not a number")
    if verifier is STRICT and header.get("typ") is None:
        raise contract.Violation("strict verifier accepted a token without typ")


def _run(verifier: Verifier, token: str) -> None:
    try:
        contract.bounded(lambda: verifier.verify(token))
    except InvalidToken as err:
        if err.reason not in TOKEN_REASONS:
            raise contract.Violation(f"unknown reason {err.reason!r}") from None
        contract.check_error(err, [token], DESCRIPTIONS, allowed=lambda: _named_values(token))
        return
    _check_accepted(verifier, token)


def signed(header: bytes, payload: bytes) -> str:
    """header.payload signed by the harness: HS256 when the header asks for it, else ES256."""
    h64, p64 = encode_part(header), encode_part(payload)
    if b'"HS256"' in header:
        mac = hmac.new(HMAC_SECRET, f"{h64}.{p64}".encode(), hashlib.sha256).digest()
        return f"{h64}.{p64}.{encode_part(mac)}"
    return sign_raw(HARNESS_KEY.private, "ES256", h64, p64)


def one_input(data: bytes) -> None:
    if data[:1] == b"\x00":
        header, _, payload = data[1:].partition(b"\x00")
        token = signed(header, payload)
    else:
        token = contract.text(data)
    # One verifier per input (by length parity, so a replay takes the same one): both together
    # halve the executions per second for little extra coverage.
    _run(STRICT if len(data) & 1 else DEFAULT, token)


def make_seeds(tokens: list[str]) -> list[bytes]:
    """The real tokens, and their claims as structured inputs for the harness to sign."""
    items = [t.encode() for t in tokens]
    for token in tokens[:2]:
        payload = _decoded(token.split(".")[1]).encode()
        items.append(b"\x00" + json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": HARNESS_KEY.kid}).encode()
                     + b"\x00" + payload)
        items.append(b"\x00" + json.dumps({"alg": "HS256", "typ": "JWT"}).encode() + b"\x00" + payload)
    return items


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
