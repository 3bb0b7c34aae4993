from __future__ import annotations

import pytest

from kong_oidc_py.browser.session.crypto import (
    FLAG_ZLIB,
    Box,
    DecryptError,
    Purpose,
    b64url_decode,
    b64url_encode,
    derive_key,
    fingerprint,
)

SECRET = "s" * 16 + "e" * 16 + "cret"
OLD_SECRET = "o" * 40
DATA = {"sub": "alice", "at": "token-value-123"}


def box(*secrets: str, purpose: Purpose = Purpose.SESSION_COOKIE) -> Box:
    return Box.for_secrets(secrets or (SECRET,), purpose)


def test_round_trip_returns_the_sealed_json() -> None:
    b = box()
    assert b.open_json(b.seal_json(DATA, "session"), "session") == DATA


def test_each_seal_uses_a_fresh_nonce() -> None:
    b = box()
    assert b.seal_json(DATA, "session") != b.seal_json(DATA, "session")


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    raw = box().seal(b"token-value-123", "session")
    assert b"token-value-123" not in raw


def test_any_flipped_byte_fails_to_open() -> None:
    b = box()
    blob = b.seal(b'{"a":1}', "session")
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises(DecryptError):
            b.open(tampered, "session")


def test_truncated_value_fails_to_open() -> None:
    b = box()
    token = b.seal_json(DATA, "session")
    with pytest.raises(DecryptError):
        b.open_json(token[:-4], "session")


def test_value_sealed_for_another_cookie_name_fails() -> None:
    b = box()
    token = b.seal_json(DATA, "session")
    with pytest.raises(DecryptError) as err:
        b.open_json(token, "authorization")
    assert err.value.reason == "bad_tag"


def test_purposes_derive_unrelated_keys() -> None:
    keys = {derive_key(SECRET, p) for p in Purpose}
    assert len(keys) == len(Purpose)


def test_value_sealed_for_one_purpose_fails_under_another() -> None:
    token = box(purpose=Purpose.SESSION_COOKIE).seal_json(DATA, "c")
    with pytest.raises(DecryptError):
        box(purpose=Purpose.AUTHORIZATION_COOKIE).open_json(token, "c")


def test_old_secret_still_opens_after_rotation() -> None:
    token = box(OLD_SECRET).seal_json(DATA, "session")
    assert box(SECRET, OLD_SECRET).open_json(token, "session") == DATA


def test_rotated_box_seals_with_the_first_secret() -> None:
    token = box(SECRET, OLD_SECRET).seal_json(DATA, "session")
    assert box(SECRET).open_json(token, "session") == DATA


def test_dropped_secret_no_longer_opens() -> None:
    token = box(OLD_SECRET).seal_json(DATA, "session")
    with pytest.raises(DecryptError):
        box(SECRET).open_json(token, "session")


def test_unknown_version_is_refused() -> None:
    b = box()
    blob = b.seal(b"{}", "session")
    with pytest.raises(DecryptError) as err:
        b.open(bytes([9]) + blob[1:], "session")
    assert err.value.reason == "unknown_version"


def test_non_base64_value_is_refused() -> None:
    with pytest.raises(DecryptError) as err:
        box().open_json("not base64!", "session")
    assert err.value.reason == "not_base64"


def test_padding_and_standard_alphabet_are_refused() -> None:
    with pytest.raises(DecryptError):
        b64url_decode("ab+/")
    with pytest.raises(DecryptError):
        b64url_decode("abc=")


def test_non_canonical_base64_spelling_is_refused() -> None:
    assert b64url_encode(b"\xff") == "_w"
    with pytest.raises(DecryptError):
        b64url_decode("_x")  # same byte, non-zero unused bits


def test_base64url_round_trip() -> None:
    raw = bytes(range(256))
    assert b64url_decode(b64url_encode(raw)) == raw


def test_oversized_token_is_refused_before_decoding() -> None:
    with pytest.raises(DecryptError) as err:
        box().open_json("A" * 70_000, "session")
    assert err.value.reason == "too_large"


def test_too_short_blob_is_refused() -> None:
    with pytest.raises(DecryptError) as err:
        box().open(b"\x01\x00short", "session")
    assert err.value.reason == "too_short"


def test_compression_is_used_when_it_saves_space() -> None:
    b = box()
    plaintext = b"x" * 2000
    blob = b.seal(plaintext, "session", compress=True)
    assert blob[1] & FLAG_ZLIB
    assert len(blob) < len(plaintext)
    assert b.open(blob, "session") == plaintext


def test_compression_is_skipped_when_it_does_not_help() -> None:
    blob = box().seal(b"ab", "session", compress=True)
    assert blob[1] == 0


def test_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError):
        derive_key("short", Purpose.SESSION_COOKIE)


def test_fingerprint_is_a_short_hash_not_the_value() -> None:
    fp = fingerprint("session-id-value")
    assert len(fp) == 12 and "session" not in fp
