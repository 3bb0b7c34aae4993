"""The claims of a DPoP proof payload (RFC 9449 4.2), read as strictly as any JOSE part.

`proof_claims(payload)` returns (jti, htm, htu, iat, ath, nonce) with their exact JSON types, or
raises InvalidDpopProof (a missing or mistyped claim) / JoseError (not strict JSON: duplicate
member, non-finite number, ...). The values are then compared with the request by ProofChecker.

Every client sends a proof per request, and a client writes every proof the same way: the same
members in the same order, compact. So the payload is first matched against templates, one
regular expression per member order seen before, e.g. for jti, htm, htu, iat, ath:

    {"jti":"<s>","htm":"<s>","htu":"<s>","iat":<int>,"ath":"<s>"}

where <s> is a run of characters other than a quote, a backslash and U+0000-U+001F (a JSON
string with no escape, so its text is its value; for jti, 1 to MAX_JTI of them) and <int> a JSON
integer literal within jose's length bound. A text matched in full is
one JSON object with exactly these members, each once, with these values and types: what
jose.json_object and the claim type checks would return, so the template path never accepts what
the strict path refuses. A template exists only for an order the strict path has already
accepted with exactly the proof's own claims (five, or six with `nonce`); there are at most
MAX_TEMPLATES (an attacker sending many orders only sends himself to the strict path). Anything
else (escapes, whitespace, other members, a float iat, a new order) is read by the strict path.
Measured: bench/RESULTS.md section 7.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kong_oidc_py.errors import InvalidDpopProof
from kong_oidc_py.verification.jose import MAX_INT_DIGITS, check_claim_types, json_object

MAX_JTI = 256
MAX_TEMPLATES = 8
_CLAIMS = ("jti", "htm", "htu", "iat", "ath", "nonce")
_STRING = r'"([^"\\\x00-\x1f]*)"'
_JTI = r'"([^"\\\x00-\x1f]{1,%d})"' % MAX_JTI
# JSON's integer grammar, at most MAX_INT_DIGITS characters with the sign (jose's bound).
_INT = r"(-?(?:0|[1-9][0-9]{0,%d}))" % (MAX_INT_DIGITS - 2)

Claims = tuple[str, str, str, "int | float", str, "str | None"]
# (member order, compiled template, the group number of each of _CLAIMS, 0 for an absent
# nonce), newest last.
_templates: tuple[tuple[tuple[str, ...], Any, tuple[int, ...]], ...] = ()


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


def _learn(order: tuple[str, ...]) -> None:
    """Adds the template of a member order the strict path accepted (see the docstring)."""
    global _templates
    # A client whose proofs always need the strict path (whitespace, escapes) comes here on
    # every proof with an order already known: that answer costs a few tuple comparisons.
    if len(_templates) >= MAX_TEMPLATES:
        return
    for known, _, _ in _templates:
        if known == order:
            return
    source = "\\{" + ",".join(
        f'"{name}":' + (_INT if name == "iat" else _JTI if name == "jti" else _STRING) for name in order) + "\\}"
    groups = tuple(order.index(name) + 1 if name in order else 0 for name in _CLAIMS)
    # A tuple replaced whole: a reader in another thread sees the old one or the new one, and
    # a lost race between two learners costs one template, learned again on its next sight.
    _templates = (*_templates, (order, re.compile(source), groups))


def _strict(payload: bytes) -> Claims:
    claims = json_object(payload, "payload")
    check_claim_types(claims)
    typed = _typed(claims)
    if len(claims) == (5 if typed[5] is None else 6) and type(typed[3]) is int:
        _learn(tuple(claims))
    return typed


def proof_claims(payload: bytes) -> Claims:
    """(jti, htm, htu, iat, ath, nonce) of a decoded proof payload; see the module docstring."""
    text = payload.decode("utf-8")
    for _, template, (jti, htm, htu, iat, ath, nonce) in _templates:
        m = template.fullmatch(text)
        if m is not None:
            g = m.groups()
            return g[jti - 1], g[htm - 1], g[htu - 1], int(g[iat - 1]), g[ath - 1], g[nonce - 1] if nonce else None
    return _strict(payload)
