"""Strict JOSE decoding: base64url, JSON and the JSON types of registered members.

A token is parsed once by us and possibly again, differently, by someone else (the upstream, a
logging pipeline, another gateway). Every place where two parsers can disagree is refused here,
so what we checked is the only reading there is:

* base64url (RFC 7515 2, RFC 4648 3.5): no padding, no whitespace, no standard-alphabet `+`/`/`,
  and the unused bits of the last character must be zero (`QQ` and `QR` would otherwise both
  decode to `A`, giving one token several spellings, and thus several cache keys);
* JSON (RFC 8259, RFC 7515 4 / RFC 8725 3.10): duplicate member names are refused (parsers
  disagree on which one wins), NaN/Infinity and numbers that overflow to infinity are refused,
  integers are bounded in length;
* registered header parameters and claims must have their registered JSON type; `null` is never
  a valid value for any of them (an absent member and a null one are different things).

Every refusal raises JoseError (a ValueError) with a short, token-free message; verify.py turns
it into InvalidToken("malformed", detail=message). binascii.Error means bad base64url.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pybase64 import b64decode as _b64decode_std

# base64url -> standard alphabet; "+", "/" and "=" map to "!" so strict decoding refuses them.
_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
# Padding by length mod 4; a length of 1 mod 4 is never valid base64, "!" makes it fail.
_PADDING = (b"", b"!", b"==", b"=")
# Last characters whose unused low bits are zero: 2 chars carry 1 byte (4 spare bits),
# 3 chars carry 2 bytes (2 spare bits).
_CANONICAL_LAST = (None, None, frozenset(b"AQgw"), frozenset(b"AEIMQUYcgkosw048"))

MAX_INT_DIGITS = 32  # a 32-digit integer is already far beyond any NumericDate or id


class JoseError(ValueError):
    """A token-free reason why a JOSE part is refused (its str() is safe to log)."""


def b64url_decode(segment: bytes) -> bytes:
    """Strict, canonical base64url without padding; binascii.Error / JoseError otherwise.

    The segment is mapped to the standard alphabet (anything outside base64url becomes "!"),
    padded to its exact length, then decoded with validation: any other character, padding in
    the middle or a bad length is refused (the answers of a from-first-principles reference,
    checked by tests/unit/test_jose.py). pybase64, not binascii: an RSA signature decodes in
    a third of the time (bench/RESULTS.md section 7); arguments are positional, its keyword
    parsing costs as much as the decoding."""
    rest = len(segment) & 3
    if rest >= 2 and segment[-1] not in _CANONICAL_LAST[rest]:  # type: ignore[operator]
        raise JoseError("base64url with non-zero trailing bits")
    return _b64decode_std(segment.translate(_URLSAFE) + _PADDING[rest], None, True)


def _object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JoseError("duplicate JSON member name")
    return obj


def _constant(name: str) -> Any:
    raise JoseError(f"non-JSON constant {name}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JoseError("number out of range")
    return value


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise JoseError("integer too long")
    return int(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)


# The C scanner behind _DECODER.decode, called directly: decode() adds two regex matches and two
# Python frames (~0.7 us of a 1.9 us payload parse). A value that starts at 0 and ends at the
# end of the text reads the same either way; anything else (surrounding whitespace, trailing
# bytes, no value) goes through decode(), which accepts or names the fault as before.
_SCAN = _DECODER.scan_once


def json_object(raw: bytes, what: str) -> dict:
    """A strict JSON object from UTF-8 bytes; JoseError naming `what` otherwise."""
    try:
        text = raw.decode("utf-8")
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except RecursionError:
        raise JoseError(f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise JoseError(f"{what} is not UTF-8") from None
    except JoseError as exc:
        raise JoseError(f"{what}: {exc}") from None
    except ValueError:
        raise JoseError(f"{what} is not valid JSON") from None
    if type(value) is not dict:
        raise JoseError(f"{what} is not a JSON object")
    return value


# -- registered members and their JSON types ----------------------------------------------------

STRING = "string"
NUMBER = "number"
OBJECT = "object"
STRINGS = "array of strings"
STRING_OR_STRINGS = "string or array of strings"


# kind -> (JSON scalar/object types accepted as such, whether an array of strings is accepted).
# bool is not int here (type() is compared, not isinstance); floats are finite by construction.
_ACCEPTS: dict[str, tuple[frozenset[type], bool]] = {
    STRING: (frozenset({str}), False),
    NUMBER: (frozenset({int, float}), False),
    OBJECT: (frozenset({dict}), False),
    STRINGS: (frozenset(), True),
    STRING_OR_STRINGS: (frozenset({str}), True),
}


# RFC 7515 4.1 (JWS header parameters). jku/x5u/jwk/x5c are never used to pick a key, but
# their type is still checked so every parser reads the same header.
HEADER_TYPES: dict[str, str] = {
    "alg": STRING,
    "kid": STRING,
    "typ": STRING,
    "cty": STRING,
    "crit": STRINGS,
    "jku": STRING,
    "x5u": STRING,
    "jwk": OBJECT,
    "x5c": STRINGS,
    "x5t": STRING,
    "x5t#S256": STRING,
}

# RFC 7519 4.1, OIDC Core 2 / 5.1, RFC 9068 2.2, RFC 8693 4, RFC 7800 3.
CLAIM_TYPES: dict[str, str] = {
    "iss": STRING,
    "sub": STRING,
    "aud": STRING_OR_STRINGS,
    "exp": NUMBER,
    "nbf": NUMBER,
    "iat": NUMBER,
    "jti": STRING,
    "auth_time": NUMBER,
    "nonce": STRING,
    "acr": STRING,
    "amr": STRINGS,
    "azp": STRING,
    "sid": STRING,
    "at_hash": STRING,
    "c_hash": STRING,
    "client_id": STRING,
    # RFC 8693 4.2 defines a space-separated string; Spring Authorization Server and others
    # issue an array, which claims.py reads the same way. Anything else is refused.
    "scope": STRING_OR_STRINGS,
    "cnf": OBJECT,
    "act": OBJECT,
    "may_act": OBJECT,
}

# name -> (accepted types, arrays of strings accepted, kind for the message)
_Rule = tuple[frozenset[type], bool, str]
_HEADER_RULES: dict[str, _Rule] = {name: (*_ACCEPTS[kind], kind) for name, kind in HEADER_TYPES.items()}
_CLAIM_RULES: dict[str, _Rule] = {name: (*_ACCEPTS[kind], kind) for name, kind in CLAIM_TYPES.items()}


def _check_types(obj: dict, rules: dict[str, _Rule], where: str) -> None:
    # One pass over the members present (a token has a handful), one dict probe each.
    get_rule = rules.get
    for name, value in obj.items():
        rule = get_rule(name)
        if rule is None:
            continue
        t = type(value)
        if t in rule[0] or (t is list and rule[1] and all(type(v) is str for v in value)):
            continue
        got = "null" if value is None else type(value).__name__
        raise JoseError(f"{where} {name} must be a {rule[2]}, got {got}")


def check_header_types(header: dict) -> None:
    """JoseError when a registered header parameter has the wrong JSON type (null included)."""
    _check_types(header, _HEADER_RULES, "header")


def check_claim_types(claims: dict) -> None:
    """JoseError when a registered claim has the wrong JSON type (null included)."""
    _check_types(claims, _CLAIM_RULES, "claim")
