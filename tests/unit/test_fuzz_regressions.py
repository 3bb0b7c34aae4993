"""Findings of the fuzz targets (fuzz/FUZZING.md), each with its minimized input.

Every test replays the input through the module that had the defect and through its fuzz
target, so the contract the target checks is pinned too.
"""

from __future__ import annotations

import pytest

from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import InvalidRequest
from kong_oidc_py.verification.extractor import extract
from tests.kong_host.pdk import parse_query


def test_a_value_less_access_token_parameter_is_invalid_request_not_a_crash():
    # extract_token finding 1: `?access_token` reaches the plugin as {"access_token": True}
    # (ngx.req.get_uri_args); list(True) raised TypeError, which the handler turned into a 500.
    from fuzz import extract_token

    cfg = parse_config({"issuer": "https://idp.example.com", "allow_any_audience": True, "bearer_token_param_type": ["query"]})
    query = parse_query("access_token")
    assert query == {"access_token": True}
    with pytest.raises(InvalidRequest) as info:
        extract({}, cfg, query)
    assert info.value.reason == "invalid_request"
    extract_token.one_input(b"4\n?access_token")


def test_the_callback_error_page_names_only_registered_error_codes():
    # callback finding: the page said "The identity provider answered: <error[:64]>", so a
    # crafted link put its own text on our origin (minimized input: error=login_re<0xf9>uired).
    from fuzz import callback

    outcome = callback._handle(callback.Request("error=Your+account+is+locked.+Call+555-0100", []))
    assert outcome.status == 401
    assert "locked" not in outcome.body and "555" not in outcome.body
    assert "unrecognized_error" in outcome.body
    callback.one_input(b"error=login_re\xf9uired&state=x\n")


def test_the_callback_error_page_still_names_a_registered_error_code():
    from fuzz import callback

    outcome = callback._handle(callback.Request("error=access_denied", []))
    assert outcome.status == 403 and "access_denied" in outcome.body


def test_a_callback_state_that_is_not_utf8_is_a_stale_login_not_a_crash():
    # callback finding: `?state=%C1...` reaches us as a str with a lone surrogate (pdk_fixes
    # decodes Kong's bytes with surrogateescape); AuthorizationStore.pop encoded it strictly and
    # the UnicodeEncodeError became a 500. Minimized input below.
    from fuzz import callback

    data = b"code=abc&state=c3RhdGUtb2YtdGhlLWZ1enot\xc1G9naW4tMDEyMzQ1Njc\n" + _pending_login_cookie(callback)
    raw_query, _, cookie = data.decode("utf-8", "surrogateescape").partition("\n")
    outcome = callback._handle(callback.Request(raw_query, [cookie]))
    assert (outcome.status, outcome.log["reason"]) == (401, "state_not_pending")
    callback.one_input(data)


def _pending_login_cookie(callback) -> bytes:
    """The real authorization cookie of the callback target's seeds (one pending login)."""
    prefix = b"code=abc&state=" + callback.STATE.encode() + b"\n"
    return next(s for s in callback.make_seeds() if s.startswith(prefix))[len(prefix):]


def test_a_callback_code_that_is_not_visible_ascii_is_refused_before_the_token_endpoint():
    # callback finding: with a matching state, `code=%FF` reached the form encoder of the code
    # exchange as a lone surrogate, and the UnicodeEncodeError became a 500.
    from fuzz import callback

    data = b"code=\xff&state=" + callback.STATE.encode() + b"\n" + _pending_login_cookie(callback)
    raw_query, _, cookie = data.decode("utf-8", "surrogateescape").partition("\n")
    outcome = callback._handle(callback.Request(raw_query, [cookie]))
    assert (outcome.status, outcome.log["reason"]) == (401, "bad_code")
    callback.one_input(data)


@pytest.mark.parametrize("field", ["hmac_secret", "issuer", "session_secret", "client_id"])
def test_a_config_string_that_is_not_utf8_is_refused_at_load_naming_the_field(field):
    # config_map finding: a non-UTF-8 byte (a lone surrogate after pdk_fixes) in hmac_secret
    # passed parse_config and raised UnicodeEncodeError when the verifier encoded the secret.
    from kong_oidc_py.errors import ConfigError

    raw = {"issuer": "https://idp.example.com", "signing_algs": ["RS256", "HS256"], "hmac_secret": "h" * 40}
    raw[field] = raw.get(field, "x" * 40)[:9] + "\udcbd" + "h" * 30
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.field == field
    from fuzz import config_map

    config_map.one_input(b'{"issuer": "https://idp.example.com", "signing_algs": ["RS256", "HS256"], '
                         b'"hmac_secret": "hhhhhhhhh\xbdhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"}')


def _token_client_answering(status: int, body: bytes):
    import httpx

    from kong_oidc_py.browser.token_endpoint import TokenClient

    client = TokenClient(client_id="web", client_secret="s", auth_method="client_secret_basic", timeout_ms=2000,
                         ssl_verify=True)
    client._http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body)))
    return client


def test_a_token_endpoint_error_with_control_characters_is_not_passed_on_to_the_log():
    # token_response finding: the IdP's error / error_description went into TokenError (and the
    # error code into the log line) as sent, CR/LF included.
    from kong_oidc_py.browser.token_endpoint import TokenError

    client = _token_client_answering(400, b'{"error":"invalid_grant\\r\\nFAKE log line","error_description":"a\\nb"}')
    with pytest.raises(TokenError) as info:
        client.exchange_code("https://idp.example/token", code="c", redirect_uri="https://app.example/cb", code_verifier="v" * 43)
    assert (info.value.error, info.value.description) == ("invalid_error_code", "")
    from fuzz import token_response

    token_response.one_input(b'\x01{"error":"invalid_grant","error_description":"line\\nbreak"}')


def test_a_token_endpoint_error_in_the_rfc_charset_is_kept():
    from kong_oidc_py.browser.token_endpoint import TokenError

    client = _token_client_answering(400, b'{"error":"invalid_grant","error_description":"grant request is invalid"}')
    with pytest.raises(TokenError) as info:
        client.exchange_code("https://idp.example/token", code="c", redirect_uri="https://app.example/cb", code_verifier="v" * 43)
    assert (info.value.error, info.value.description) == ("invalid_grant", "grant request is invalid")


@pytest.mark.parametrize("key", ["hmac_secre\x7f", "x\r\nFAKE log line", "a" * 500, ""])
def test_an_unknown_config_field_is_named_without_control_characters_or_its_whole_length(key):
    # config_map finding: an unknown key was quoted as sent in the ConfigError Kong logs at start.
    from kong_oidc_py.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"issuer": "https://idp.example.com", key: 1})
    text = str(info.value)
    assert info.value.field and text.endswith("unknown field")
    assert all(" " <= c != "\x7f" for c in text) and len(text) < 120
    from fuzz import config_map

    config_map.one_input(b'{"issuer": "https://idp.example.com", "hmac_secre\\u007f": "h"}')
