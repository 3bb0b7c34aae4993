"""The claims of a DPoP proof payload (RFC 9449 4.2), read as strictly as any JOSE part.

`proof_claims(payload)` returns (jti, htm, htu, iat, ath, nonce) with their exact JSON types, or
raises InvalidDpopProof (a missing or mistyped claim) / JoseError (not strict JSON: duplicate
member, non-finite number, ...). The values are then compared with the request by ProofChecker.

Every client sends a proof per request, so the common payload is read on a fast path: 1.5 us
against 2.3 us for the strict one on the same payloads (bench/RESULTS.md section 7): the C
scanner without the Python hooks that jose.json_object runs per object and per integer, and the
duplicate-member check done by counting quotes instead. The fast path keeps a payload only when
(a) the scanner read one object up to the last character, (b) that object has the proof's five
required claims and, if present, `nonce`, and nothing else (n = 5 or 6 members), (c) those claims
have their exact types (below), (d) the text has no backslash and (e) it holds exactly 4n - 2
quote characters. Why that is as strict as jose.json_object:

* without a backslash there are no escaped quotes, so every quote delimits a string token and
  the text holds two per string token;
* by (b) and (c) the object read has n members whose values are all strings but `iat` (a
  number): 2n - 1 string tokens, 4n - 2 quotes. Any member beyond those n - a duplicate name,
  whose earlier value the scanner dropped - adds at least its name's two quotes, so (e) holds
  only when there is none. With no duplicates and no nested value (all values are scalars),
  nothing the per-object hook refuses is left, and of the per-integer one only the length
  bound, checked here on `iat` (the only integer); NaN/Infinity and out-of-range floats are
  still refused by the scanner's hooks for those (they run only when such a token occurs).

Anything else (other members, escapes, whitespace around the object, nesting) is parsed again by
jose.json_object, and other registered claims are type-checked as in a token
(jose.check_claim_types): the fast path never accepts what the strict path refuses.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kong_oidc_py.errors import InvalidDpopProof
from kong_oidc_py.verification.jose import MAX_INT_DIGITS, _constant, _float, check_claim_types, json_object

MAX_JTI = 256

# jose's bound on integer literals (MAX_INT_DIGITS characters, a minus sign included).
_INT_MAX, _INT_MIN = 10**MAX_INT_DIGITS, -(10 ** (MAX_INT_DIGITS - 1))
_SCAN = json.JSONDecoder(parse_constant=_constant, parse_float=_float).scan_once

Claims = tuple[str, str, str, "int | float", str, "str | None"]


def _error(reason: str, detail: str) -> InvalidDpopProof:
    return InvalidDpopProof(reason, "The DPoP proof is invalid", detail)


def _typed(claims: dict[str, Any]) -> Claims:
    jti = claims.get("jti")
    if type(jti) is not str or not jti or len(jti) > MAX_JTI:
        raise _error("dpop_missing_claim", "jti")
    htm = claims.get("htm")
    if type(htm) is not str:
        raise _error("dpop_bad_htm", "htm is not a string")
    htu = claims.get("htu")
    if type(htu) is not str:
        raise _error("dpop_bad_htu", "htu is not a string")
    iat = claims.get("iat")
    if type(iat) is not int and (type(iat) is not float or not math.isfinite(iat)):
        raise _error("dpop_missing_claim", "iat")
    ath = claims.get("ath")
    if type(ath) is not str:
        raise _error("dpop_bad_ath", "ath is missing")
    nonce = claims.get("nonce")
    if nonce is None and "nonce" not in claims:
        return jti, htm, htu, iat, ath, None
    if type(nonce) is not str:
        raise _error("dpop_malformed", "nonce is not a string")
    return jti, htm, htu, iat, ath, nonce


def _strict(payload: bytes) -> Claims:
    claims = json_object(payload, "payload")
    check_claim_types(claims)
    return _typed(claims)


def proof_claims(payload: bytes) -> Claims:
    """(jti, htm, htu, iat, ath, nonce) of a decoded proof payload; see the module docstring."""
    text = payload.decode("utf-8")
    try:
        claims, end = _SCAN(text, 0)
    except StopIteration:
        return _strict(payload)
    if end != len(text) or type(claims) is not dict:
        return _strict(payload)
    typed = _typed(claims)
    # The five required claims are there (_typed): `n` members means no other member.
    n = 5 if typed[5] is None else 6
    if len(claims) != n or "\\" in text or text.count('"') != 4 * n - 2 or not _INT_MIN < typed[3] < _INT_MAX:
        return _strict(payload)
    return typed
