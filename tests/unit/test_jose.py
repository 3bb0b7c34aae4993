"""Strict JOSE: one reading of every token (RFC 7515, RFC 7519, RFC 8725 3.10, RFC 8259).

Every ambiguity two parsers could resolve differently is refused as `malformed`: non-canonical
base64url, duplicate member names, non-finite or oversized numbers, and registered header
parameters or claims with the wrong JSON type (null included), on the first sight and on every
later sight of the token, for access tokens and ID tokens alike.
"""

import base64
import binascii
import json
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kong_oidc_py.errors import InvalidToken
from kong_oidc_py.idp.provider import Provider
from kong_oidc_py.verification.jose import CLAIM_TYPES, HEADER_TYPES, b64url_decode
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.keys import ISSUER, b64url, encode_part, rsa_key, sign_raw

NOW = 1_700_000_000
RSA = rsa_key("rsa-1")
BASE_HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}
BASE_CLAIMS = {"iss": ISSUER, "sub": "user-1", "aud": "api", "iat": NOW, "exp": NOW + 300}


def verifier(**options):
    options.setdefault("issuer", ISSUER)
    options.setdefault("audiences", ("api",))
    return Verifier(Provider.from_jwks(ISSUER, {"keys": [RSA.public_jwk()]}), VerifyOptions(**options),
                    clock=lambda: NOW)


def token(header_json: str | None = None, payload_json: str | None = None) -> str:
    header = (header_json if header_json is not None else json.dumps(BASE_HEADER)).encode()
    payload = (payload_json if payload_json is not None else json.dumps(BASE_CLAIMS)).encode()
    return sign_raw(RSA.private, "RS256", encode_part(header), encode_part(payload))


def failure(v, tok):
    with pytest.raises(InvalidToken) as info:
        v.verify(tok)
    return info.value


def with_member(base: dict, name: str, raw_value: str) -> str:
    """`base` as JSON with `name` set to the raw JSON text `raw_value` (null, true, [1], ...)."""
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in base.items() if k != name]
    members.append(f"{json.dumps(name)}:{raw_value}")
    return "{" + ",".join(members) + "}"


def test_the_baseline_token_verifies():
    assert verifier().verify(token()).data["sub"] == "user-1"


# -- base64url --------------------------------------------------------------------------------


@pytest.mark.parametrize(("canonical", "sibling", "data"), [("QQ", "QR", b"A"), ("QUI", "QUJ", b"AB"),
                                                            ("_w", "_x", b"\xff")])
def test_base64url_with_non_zero_trailing_bits_is_refused(canonical, sibling, data):
    assert b64url_decode(canonical.encode()) == data
    with pytest.raises(ValueError):
        b64url_decode(sibling.encode())


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_a_token_spelled_with_non_canonical_trailing_bits_is_malformed(segment):
    parts = token().split(".")
    last = parts[segment][-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rest = len(parts[segment]) % 4
    if rest == 0:
        pytest.skip("a segment of length 0 mod 4 has no spare bits")
    spare = 4 if rest == 2 else 2  # low bits of the last character that carry no data
    index = alphabet.index(last)
    parts[segment] = parts[segment][:-1] + alphabet[index | (1 << (spare - 1))]
    assert failure(verifier(), ".".join(parts)).reason == "malformed"


def test_each_segment_of_the_test_token_has_spare_bits_to_flip():
    # The test above is only meaningful when the segments are not multiples of 4 long.
    assert any(len(p) % 4 for p in token().split("."))


@pytest.mark.parametrize("bad", ["QUJD\n", "QU JD", "QUJD=", "QUJD==", "QU+D", "QU/D", "QUJD\t"])
def test_base64url_with_padding_whitespace_or_the_standard_alphabet_is_refused(bad):
    with pytest.raises(ValueError):
        b64url_decode(bad.encode())


def reference_b64url_decode(segment: bytes) -> bytes | None:
    """What the decoder must answer, from first principles: the unpadded base64url alphabet
    only, and the one canonical spelling of the bytes (it re-encodes to the same text)."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(segment) % 4 == 1 or any(c not in alphabet for c in segment):
        return None
    data = binascii.a2b_base64(segment.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(segment) % 4),
                               strict_mode=True)
    return data if base64.urlsafe_b64encode(data).rstrip(b"=") == segment else None


_SEGMENT_BYTES = st.sampled_from(list(b"AQgwEzz09-_+/= \n.!") + [0, 0x80, 0xFF])


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.one_of(st.binary(max_size=12).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")),
                 st.lists(_SEGMENT_BYTES, max_size=10).map(bytes),
                 st.tuples(st.binary(max_size=9), _SEGMENT_BYTES, st.integers(0, 12)).map(
                     lambda t: (lambda enc: enc[:t[2]] + bytes([t[1]]) + enc[t[2]:])(
                         base64.urlsafe_b64encode(t[0]).rstrip(b"=")))))
@example(b"QUJD=")
@example(b"QQ==")
def test_base64url_decoding_accepts_exactly_the_canonical_unpadded_spellings(segment):
    expected = reference_b64url_decode(segment)
    try:
        got = b64url_decode(segment)
    except ValueError:
        got = None
    assert got == expected


# -- JSON -------------------------------------------------------------------------------------


def test_a_duplicate_header_member_is_malformed():
    header = '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","kid":"other"}'
    err = failure(verifier(), token(header_json=header))
    assert (err.reason, err.detail) == ("malformed", "header: duplicate JSON member name")


def test_a_duplicate_claim_is_malformed():
    payload = json.dumps(BASE_CLAIMS)[:-1] + ',"sub":"admin"}'
    assert failure(verifier(), token(payload_json=payload)).reason == "malformed"


def test_a_duplicate_member_in_a_nested_claim_is_malformed():
    payload = json.dumps(BASE_CLAIMS)[:-1] + ',"realm_access":{"roles":["a"],"roles":["admin"]}}'
    assert failure(verifier(), token(payload_json=payload)).reason == "malformed"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_malformed_in_any_claim(number):
    payload = with_member(BASE_CLAIMS, "custom", number)
    assert failure(verifier(), token(payload_json=payload)).reason == "malformed"


def test_an_integer_longer_than_32_digits_is_malformed():
    payload = with_member(BASE_CLAIMS, "custom", "1" * 33)
    assert failure(verifier(), token(payload_json=payload)).reason == "malformed"


def test_a_32_digit_integer_is_accepted():
    payload = with_member(BASE_CLAIMS, "custom", "9" * 32)
    assert verifier().verify(token(payload_json=payload)).data["custom"] == int("9" * 32)


# -- JSON types of registered header parameters and claims ---------------------------------------

# A value of the wrong JSON type for each kind (null is tested separately, for every member).
WRONG = {"string": "7", "number": '"1700000000"', "object": '["x"]', "array of strings": '["a",1]',
         "string or array of strings": '{"a":1}'}


@pytest.mark.parametrize("name", sorted(HEADER_TYPES))
def test_a_null_header_parameter_is_malformed(name):
    err = failure(verifier(), token(header_json=with_member(BASE_HEADER, name, "null")))
    assert (err.reason, err.detail) == ("malformed", f"header {name} must be a {HEADER_TYPES[name]}, got null")


@pytest.mark.parametrize("name", sorted(HEADER_TYPES))
def test_a_header_parameter_of_the_wrong_type_is_malformed(name):
    err = failure(verifier(), token(header_json=with_member(BASE_HEADER, name, WRONG[HEADER_TYPES[name]])))
    assert err.reason == "malformed"


@pytest.mark.parametrize("name", sorted(CLAIM_TYPES))
def test_a_null_registered_claim_is_malformed(name):
    err = failure(verifier(), token(payload_json=with_member(BASE_CLAIMS, name, "null")))
    assert (err.reason, err.detail) == ("malformed", f"claim {name} must be a {CLAIM_TYPES[name]}, got null")


@pytest.mark.parametrize("name", sorted(CLAIM_TYPES))
def test_a_registered_claim_of_the_wrong_type_is_malformed(name):
    err = failure(verifier(), token(payload_json=with_member(BASE_CLAIMS, name, WRONG[CLAIM_TYPES[name]])))
    assert err.reason == "malformed"


@pytest.mark.parametrize("name", ["exp", "nbf", "iat", "auth_time"])
@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_time_claim_is_malformed(name, value):
    assert failure(verifier(), token(payload_json=with_member(BASE_CLAIMS, name, value))).reason == "malformed"


def test_a_null_exp_is_malformed_even_when_exp_is_optional():
    v = verifier(require_exp=False)
    assert failure(v, token(payload_json=with_member(BASE_CLAIMS, "exp", "null"))).reason == "malformed"


def test_an_audience_array_with_a_non_string_item_is_malformed_even_when_another_item_matches():
    payload = with_member(BASE_CLAIMS, "aud", '["api",7]')
    assert failure(verifier(), token(payload_json=payload)).reason == "malformed"


@pytest.mark.parametrize("scope", ['"read write"', '["read","write"]'])
def test_scope_may_be_a_string_or_an_array_of_strings(scope):
    assert verifier().verify(token(payload_json=with_member(BASE_CLAIMS, "scope", scope))).data["scope"]


@pytest.mark.parametrize("typ", ['"at+jwt"', '"JWT"'])
def test_registered_members_of_the_right_type_pass(typ):
    header = with_member(BASE_HEADER, "typ", typ)
    payload = with_member(BASE_CLAIMS, "amr", '["pwd"]')
    assert verifier().verify(token(header_json=header, payload_json=payload)).alg == "RS256"


def test_an_unregistered_claim_may_hold_null():
    assert verifier().verify(token(payload_json=with_member(BASE_CLAIMS, "nickname", "null"))).data["nickname"] is None


def test_a_malformed_token_stays_malformed_on_every_try():
    v = verifier()
    tok = token(payload_json=with_member(BASE_CLAIMS, "exp", "null"))
    assert [failure(v, tok).reason for _ in range(3)] == ["malformed"] * 3
    assert v.cache is not None and len(v.cache) == 0


def test_the_header_table_does_not_let_a_second_spelling_of_a_known_header_through():
    # The verifier remembers checked header bytes; a different spelling is checked afresh.
    v = verifier()
    v.verify(token())
    header = json.dumps(BASE_HEADER)[:-1] + ',"kid":"rsa-1"}'
    assert failure(v, token(header_json=header)).reason == "malformed"


def test_the_malformed_detail_never_quotes_the_token():
    tok = token(payload_json=with_member(BASE_CLAIMS, "sub", '{"secret":"s3cr3t-value"}'))
    err = failure(verifier(), tok)
    for part in tok.split("."):
        assert part not in (err.detail or "")
    assert "s3cr3t" not in (err.detail or "")


# -- ID tokens: the browser flow verifies them with the same Verifier --------------------------


def id_token_verifier():
    config = SimpleNamespace(issuer=ISSUER, client_id="web", audience_required=["api"], audience_claim=["aud"],
                             signing_algs=["RS256"], leeway=0, require_exp=True, max_token_size=8192,
                             token_types=["at+jwt", "jwt"], token_type_required=False, reject_id_tokens=False,
                             hmac_secret=None, cache_ttl=600, cache_tokens=True, token_cache_size=10)
    return Verifier(Provider.from_jwks(ISSUER, {"keys": [RSA.public_jwk()]}), VerifyOptions.for_id_token(config),
                    clock=lambda: NOW)


@pytest.mark.parametrize("name", ["nonce", "azp", "at_hash", "sid", "auth_time"])
def test_an_id_token_with_a_null_oidc_claim_is_malformed(name):
    claims = {**BASE_CLAIMS, "aud": "web", "nonce": "n1"}
    tok = sign_raw(RSA.private, "RS256", encode_part({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
                   b64url(with_member(claims, name, "null").encode()))
    assert failure(id_token_verifier(), tok).reason == "malformed"


def test_the_browser_flow_verifies_id_tokens_with_the_project_verifier():
    from kong_oidc_py.browser import login

    assert login.Verifier is Verifier
