"""DPoP proof payloads: as strict as any JOSE part, and the fast path of proof_claims accepts
exactly what the strict path (jose.json_object + registered claim types) accepts, with the same
values. Signed proofs with such payloads are checked end to end in test_dpop.py."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_oidc_py.errors import InvalidDpopProof
from kong_oidc_py.verification import dpop_claims
from kong_oidc_py.verification.dpop_claims import MAX_TEMPLATES, _strict, proof_claims
from kong_oidc_py.verification.jose import JoseError

NOW = int(time.time())
GOOD = ('{"jti":"j-1","htm":"GET","htu":"https://api.example.com/api","iat":%d,'
        '"ath":"AVgm7um9dcPYpsGM82EYcJXjanbhGop_9fluByGDJrE"}' % NOW)


@pytest.fixture(autouse=True)
def no_templates(monkeypatch):
    """Every test starts with no member order learned."""
    monkeypatch.setattr(dpop_claims, "_templates", ())


def outcome(fn, payload: bytes):
    try:
        return fn(payload)
    except (InvalidDpopProof, JoseError, ValueError, RecursionError) as exc:
        return type(exc)


def refused(payload: str) -> bool:
    return outcome(proof_claims, payload.encode()) in (InvalidDpopProof, JoseError, ValueError)


def test_a_compact_payload_gives_its_typed_claims():
    assert proof_claims(GOOD.encode()) == ("j-1", "GET", "https://api.example.com/api", NOW,
                                           "AVgm7um9dcPYpsGM82EYcJXjanbhGop_9fluByGDJrE", None)


@pytest.mark.parametrize("dup", ['"jti":"j-2"', '"htm":"POST"', '"iat":%d' % NOW, '"ath":"x"', '"nonce":"n"'])
def test_a_duplicate_member_is_refused_wherever_it_is(dup):
    for text in (GOOD[:-1] + "," + dup + "}", "{" + dup + "," + GOOD[1:]):
        if text.count('"nonce"') == 1 and dup.startswith('"nonce"'):
            text = text.replace("}", ',"nonce":"m"}', 1) if text.endswith("}") else text
        assert refused(text), text


def test_a_duplicate_whose_first_value_was_nested_is_refused():
    assert refused('{"jti":{"a":1},' + GOOD[1:])


def test_a_duplicate_inside_a_nested_extension_member_is_refused():
    assert refused(GOOD[:-1] + ',"ext":{"a":1,"a":2}}')


def test_escaped_strings_are_read_by_the_strict_path_with_their_value():
    text = GOOD.replace("https://api.example.com/api", "https:\\/\\/api.example.com\\/api")
    assert proof_claims(text.encode())[2] == "https://api.example.com/api"


def test_whitespace_around_and_inside_the_object_is_accepted():
    spaced = json.dumps(json.loads(GOOD), indent=2)
    assert proof_claims(("\n " + spaced + " \n").encode()) == proof_claims(GOOD.encode())


@pytest.mark.parametrize("member", ['"exp":"soon"', '"nbf":null', '"cnf":"x"', '"aud":[1]'])
def test_other_registered_claims_must_have_their_types(member):
    assert refused(GOOD[:-1] + "," + member + "}")


def test_unregistered_extension_members_are_accepted():
    assert proof_claims((GOOD[:-1] + ',"x-trace":{"k":[1,2]}}').encode())[0] == "j-1"


@pytest.mark.parametrize("iat", ["1e999", "NaN", "Infinity", "1" * 33, '"%d"' % NOW, "true", "null"])
def test_iat_must_be_a_finite_json_number(iat):
    assert refused(GOOD.replace(str(NOW), iat))


def test_a_long_integer_in_an_extension_member_is_refused():
    assert refused(GOOD[:-1] + ',"x":' + "9" * 33 + "}")


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "ath"])
def test_the_proof_claims_must_be_strings(claim):
    data = json.loads(GOOD)
    data[claim] = 7
    assert refused(json.dumps(data, separators=(",", ":")))


def test_a_null_nonce_is_refused_and_a_string_one_returned():
    assert refused(GOOD[:-1] + ',"nonce":null}')
    assert proof_claims((GOOD[:-1] + ',"nonce":"n-1"}').encode())[5] == "n-1"


@pytest.mark.parametrize("text", ["", "[]", '"x"', "{}", GOOD + "x", GOOD + "{}", "\x00" + GOOD])
def test_anything_but_one_object_is_refused(text):
    assert refused(text)


# -- templates --------------------------------------------------------------------------------

ORDERS = [("jti", "htm", "htu", "iat", "ath"), ("iat", "jti", "htm", "htu", "ath"),
          ("htm", "htu", "iat", "jti", "ath", "nonce")]


def compact(order, **values) -> str:
    data = {**json.loads(GOOD), "nonce": "n-1", **values}
    return "{" + ",".join(json.dumps(k) + ":" + json.dumps(data[k], ensure_ascii=False) for k in order) + "}"


@pytest.mark.parametrize("order", ORDERS)
def test_an_accepted_order_of_exactly_the_proof_claims_becomes_a_template(order):
    first = proof_claims(compact(order).encode())
    assert len(dpop_claims._templates) == 1
    assert proof_claims(compact(order, jti="j-2").encode()) == ("j-2",) + first[1:]


def test_a_strict_only_text_in_a_known_order_adds_no_template():
    proof_claims(GOOD.encode())
    spaced = GOOD.replace(",", ", ")
    assert proof_claims(spaced.encode()) == proof_claims(GOOD.encode())
    assert len(dpop_claims._templates) == 1


def test_an_order_with_other_members_or_a_float_iat_teaches_nothing():
    proof_claims((GOOD[:-1] + ',"x":1}').encode())
    proof_claims(GOOD.replace(str(NOW), f"{NOW}.5").encode())
    assert dpop_claims._templates == ()


def test_the_template_path_gives_the_strict_values_of_non_ascii_strings():
    order = ORDERS[0]
    proof_claims(compact(order).encode())
    text = compact(order, htu="https://api.example.com/caf\u00e9/\u2028")
    assert proof_claims(text.encode("utf-8")) == _strict(text.encode("utf-8"))
    assert proof_claims(text.encode("utf-8"))[2] == "https://api.example.com/caf\u00e9/\u2028"


def test_at_most_max_templates_orders_are_learned():
    orders = list(itertools.permutations(ORDERS[0]))[:MAX_TEMPLATES + 5]
    for order in orders:
        proof_claims(compact(order).encode())
    assert len(dpop_claims._templates) == MAX_TEMPLATES
    # an order past the bound is still read, by the strict path, with the same values
    assert proof_claims(compact(orders[-1]).encode()) == proof_claims(compact(orders[0]).encode())


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('"htm":"GET"', '"htm":"GET","htm":"POST"'),  # duplicate
    lambda t: t.replace('"jti":"j-1"', '"jti":""'),  # empty jti
    lambda t: t.replace('"jti":"j-1"', '"jti":"' + "j" * 257 + '"'),  # jti too long
    lambda t: t.replace(str(NOW), "0" + str(NOW)),  # leading zero: not JSON
    lambda t: t.replace(str(NOW), "9" * 33),  # past jose's integer bound
    lambda t: t.replace('"GET"', '"G\x01T"'),  # a raw control character
    lambda t: t.replace('"GET"', '"GET\\"'),  # a lone backslash
])
def test_a_text_in_a_learned_order_that_strict_refuses_is_refused(edit):
    proof_claims(GOOD.encode())
    assert dpop_claims._templates
    text = edit(GOOD)
    assert text != GOOD
    assert refused(text) and outcome(_strict, text.encode()) in (InvalidDpopProof, JoseError, ValueError)


# -- the fast path against the strict one -----------------------------------------------------

_VALUES = st.one_of(
    st.text(max_size=12), st.integers(-10**40, 10**40), st.floats(allow_nan=False), st.booleans(), st.none(),
    st.dictionaries(st.sampled_from(["a", "b", "jti"]), st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
)
_NAMES = st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce", "exp", "x"])


@st.composite
def payloads(draw) -> str:
    """Mostly near-valid proofs: the good members, then edits (duplicates, other types,
    escapes, whitespace, extra members) in any order."""
    members = [(k, v) for k, v in json.loads(GOOD).items()]
    for _ in range(draw(st.integers(0, 3))):
        edit = draw(st.sampled_from(["dup", "retype", "extra", "drop"]))
        name = draw(_NAMES)
        if edit == "dup":
            members.insert(draw(st.integers(0, len(members))), (name, draw(_VALUES)))
        elif edit == "retype":
            members = [(k, draw(_VALUES) if k == name else v) for k, v in members]
        elif edit == "extra":
            members.append((name, draw(_VALUES)))
        elif members:
            members.pop(draw(st.integers(0, len(members) - 1)))
    members = draw(st.permutations(members))
    sep = draw(st.sampled_from([",", ",", ", ", " ,\n"]))
    colon = draw(st.sampled_from([":", ":", " : "]))
    escape = draw(st.booleans())
    body = sep.join(json.dumps(k, ensure_ascii=escape) + colon + json.dumps(v, ensure_ascii=escape)
                    for k, v in members)
    if escape:
        body = body.replace("/", "\\/")
    return draw(st.sampled_from(["", " "])) + "{" + body + "}"


@settings(max_examples=400, deadline=None)
@given(payloads())
def test_the_fast_path_accepts_exactly_what_the_strict_path_accepts(text):
    # The template of the text's own member order is learned first (when it has one: exactly
    # the proof's claims), so texts in a learned order but not compact, or retyped, meet it.
    try:
        names = tuple(k for k, _ in json.loads(text, object_pairs_hook=list))
    except (ValueError, TypeError):
        names = ()
    if sorted(names) in (sorted(ORDERS[0]), sorted(ORDERS[0] + ("nonce",))):
        dpop_claims._learn(names)
    payload = text.encode()
    fast, strict = outcome(proof_claims, payload), outcome(_strict, payload)
    if isinstance(strict, tuple) or isinstance(fast, tuple):
        assert fast == strict
