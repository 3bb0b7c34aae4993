from kong_oidc_py.errors import (
    ConfigError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    OIDCError,
    ProviderError,
    render_error,
)


def test_missing_token_challenge_has_no_error_code():
    response = render_error(MissingToken(), "kong")
    assert response.status == 401
    assert response.headers == {"WWW-Authenticate": 'Bearer realm="kong"'}


def test_invalid_token_challenge_names_the_error_and_description():
    response = render_error(InvalidToken("expired", "The token has expired"), "api")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="invalid_token", error_description="The token has expired"'
    )


def test_invalid_request_is_a_400():
    response = render_error(InvalidRequest("several_tokens", "Several tokens were sent"), "kong")
    assert response.status == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_insufficient_scope_is_a_403_with_the_needed_scope():
    err = InsufficientScope("insufficient_scope", "More scope is needed", scope="read write")
    response = render_error(err, "kong")
    assert response.status == 403
    assert response.headers["WWW-Authenticate"].endswith('error="insufficient_scope", '
                                                         'error_description="More scope is needed", scope="read write"')


def test_insufficient_scope_without_a_known_scope_has_no_scope_attribute():
    response = render_error(InsufficientScope("missing_groups", "Group missing"), "kong")
    assert "scope=" not in response.headers["WWW-Authenticate"].replace("insufficient_scope", "")


def test_scope_value_drops_quotes_and_backslashes():
    response = render_error(InsufficientScope(scope='a"b c\\d'), "kong")
    assert 'scope="ab cd"' in response.headers["WWW-Authenticate"]


def test_description_cannot_break_out_of_its_quoted_string():
    response = render_error(InvalidToken("malformed", 'bad "x" \\ y'), "kong")
    header = response.headers["WWW-Authenticate"]
    assert 'error_description="bad \'x\' / y"' in header
    assert header.count('"') == 6


def test_description_and_realm_carry_only_printable_ascii():
    response = render_error(InvalidToken("malformed", "a\r\nSet-Cookie: x\x00é"), 're"al\nm')
    header = response.headers["WWW-Authenticate"]
    assert all(" " <= ch <= "~" for ch in header)
    assert 'realm="re\'al?m"' in header


def test_body_message_is_the_sanitized_description():
    response = render_error(InvalidToken("expired", "The token has expired\n"), "kong")
    assert response.body == {"message": "The token has expired?"}


def test_errors_carry_reason_description_and_log_detail():
    err = InvalidToken("bad_issuer", "untrusted issuer", "expected 'a', got 'b'")
    assert (err.reason, err.description, err.detail) == ("bad_issuer", "untrusted issuer", "expected 'a', got 'b'")
    assert isinstance(err, OIDCError)


def test_provider_error_is_not_an_auth_error():
    assert not hasattr(ProviderError("jwks_failed", "down"), "status")


def test_config_error_string_names_the_field():
    err = ConfigError("policies[2].paths[0]", "invalid regex")
    assert str(err) == "policies[2].paths[0]: invalid regex"
    assert err.field == "policies[2].paths[0]"
