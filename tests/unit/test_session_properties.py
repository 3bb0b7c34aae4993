"""Properties of the session layer: whatever a session holds survives seal/unseal and
chunk/reassemble, and a value split into chunks joins back to itself in any cookie order.

Hypothesis runs derandomized with no example database, so `make test` is deterministic.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kong_oidc_py.browser.session.cookie import MAX_CHUNKS, join_chunks, parse_cookie_header, split_value
from kong_oidc_py.browser.session.crypto import Box, Purpose
from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.browser.session.store import CookieStore, SessionSettings, SessionTooLarge

PROPERTY = settings(max_examples=150, derandomize=True, database=None, deadline=None)
SETTINGS = SessionSettings(secrets=("p" * 40, "q" * 40))
STORE = CookieStore(SETTINGS)
NOW = 1_800_000_000
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Tokens as IdPs issue them (JWTs, opaque strings) and anything else a session could carry.
tokens = st.one_of(st.text(alphabet=B64URL + ".", min_size=1, max_size=3000), st.text(min_size=1, max_size=200))


@PROPERTY
@given(json_values, st.sampled_from(["session", "authorization", "s_2"]), st.booleans())
def test_any_json_value_unseals_to_itself_under_its_cookie_name_only(value, name, compress):
    box = Box.for_secrets(["k" * 40], Purpose.SESSION_COOKIE)
    sealed = box.seal_json(value, name, compress=compress)
    assert box.open_json(sealed, name) == value
    import pytest

    from kong_oidc_py.browser.session.crypto import DecryptError

    with pytest.raises(DecryptError):
        box.open_json(sealed, name + "x")


@PROPERTY
@given(
    subject=st.text(max_size=100), access=tokens, id_token=st.none() | tokens, refresh=st.none() | tokens,
    expires=st.integers(NOW - 10**6, NOW + 10**6), age=st.integers(0, 800),
)
def test_any_session_content_round_trips_through_the_chunked_cookie(subject, access, id_token, refresh, expires, age):
    session = Session.new(subject=subject, issuer="https://idp.example.com", access_token=access,
                          id_token=id_token, refresh_token=refresh, expires_at=expires, now=NOW - age)
    try:
        set_cookies = STORE.save(session, {}, NOW - age)
    except SessionTooLarge:
        return  # more than MAX_CHUNKS cookies: refused at save, never half-written
    header = "; ".join(c.split(";", 1)[0] for c in set_cookies if "Max-Age=0" not in c)
    loaded, reason = STORE.load(parse_cookie_header(header), NOW)
    assert reason == ""
    assert loaded == session


@PROPERTY
@given(st.text(alphabet=B64URL, min_size=1, max_size=4000 * MAX_CHUNKS - 200),
       st.sampled_from(["session", "a", "x" * 30]), st.randoms(use_true_random=False))
def test_a_value_split_into_chunks_joins_back_in_any_cookie_order(value, name, rng):
    chunks = split_value(name, value)
    assert all(len(n) + 1 + len(v) <= 4000 for n, v in chunks)
    rng.shuffle(chunks)
    jar = parse_cookie_header("; ".join(f"{n}={v}" for n, v in chunks))
    assert join_chunks(name, jar) == (value, "")


@PROPERTY
@given(st.text(alphabet=B64URL, min_size=1, max_size=12000), st.integers(0, 20))
def test_a_missing_or_extra_chunk_never_joins(value, drop):
    chunks = split_value("session", value)
    if len(chunks) > 1:
        del chunks[1 + drop % (len(chunks) - 1)]
        assert join_chunks("session", dict(chunks))[0] is None
    extra = dict(split_value("session", value))
    extra[f"session_{len(extra) + 1}"] = "AAAA"
    assert join_chunks("session", extra) == (None, "extra_chunk")
