import pytest

from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import MAX_RESPONSE_BYTES, Fetcher, check_url, parse_json_object
from tests.support.fake_idp import FakeIdP


@pytest.fixture
def idp():
    with FakeIdP() as server:
        yield server


def fetcher(**kw):
    kw.setdefault("timeout_ms", 2000)
    return Fetcher(**kw)


def test_a_json_object_is_returned(idp):
    assert fetcher().get_json(idp.discovery_url, reason="discovery_failed")["issuer"] == idp.issuer


@pytest.mark.parametrize("status", [500, 404, 302, 204])
def test_any_status_but_200_is_a_provider_error(idp, status):
    idp.fail[idp.discovery_path] = status
    with pytest.raises(ProviderError) as info:
        fetcher().get_json(idp.discovery_url, reason="discovery_failed")
    assert info.value.reason == "discovery_failed"


def test_a_non_json_body_is_a_provider_error(idp):
    idp.non_json.add(idp.jwks_path)
    with pytest.raises(ProviderError) as info:
        fetcher().get_json(idp.jwks_uri, reason="jwks_failed")
    assert info.value.reason == "jwks_failed"


def test_a_json_value_that_is_not_an_object_is_a_provider_error(idp):
    idp.raw_body[idp.jwks_path] = b'["keys"]'
    with pytest.raises(ProviderError):
        fetcher().get_json(idp.jwks_uri, reason="jwks_failed")


def test_a_declared_oversized_body_is_refused(idp):
    idp.oversize[idp.jwks_path] = MAX_RESPONSE_BYTES
    with pytest.raises(ProviderError) as info:
        fetcher().get_json(idp.jwks_uri, reason="jwks_failed")
    assert "more than" in info.value.description


def test_an_oversized_body_without_length_is_cut_off_while_streaming(idp):
    idp.oversize[idp.jwks_path] = 5000
    idp.no_length.add(idp.jwks_path)
    with pytest.raises(ProviderError) as info:
        fetcher(max_bytes=1000).get_json(idp.jwks_uri, reason="jwks_failed")
    assert "more than 1000 bytes" in info.value.description


def test_a_body_at_the_limit_is_accepted(idp):
    idp.raw_body[idp.jwks_path] = b'{"a":"' + b"x" * 90 + b'"}'
    assert fetcher(max_bytes=98).get_json(idp.jwks_uri, reason="jwks_failed")["a"] == "x" * 90


def test_a_hanging_idp_times_out(idp):
    idp.hang[idp.jwks_path] = 30
    with pytest.raises(ProviderError) as info:
        fetcher(timeout_ms=200).get_json(idp.jwks_uri, reason="jwks_failed")
    assert info.value.reason == "jwks_failed"


def test_an_unreachable_idp_is_a_provider_error(idp):
    url = idp.jwks_uri
    idp.close()
    with pytest.raises(ProviderError):
        fetcher().get_json(url, reason="jwks_failed")


def test_connections_are_pooled(idp):
    f = fetcher()
    f.get_json(idp.discovery_url, reason="discovery_failed")
    f.get_json(idp.jwks_uri, reason="jwks_failed")
    pool = f._client._transport._pool  # httpx internals: one keep-alive connection reused
    assert len(pool.connections) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://127.8.9.1:80/x", "http://[::1]:8080/x",
                                 "http://localhost/x", "https://idp.example.com/x"])
def test_https_or_loopback_urls_pass(url):
    check_url(url, allow_insecure=False, reason="discovery_failed")


@pytest.mark.parametrize("url", ["http://idp.example.com/x", "http://10.0.0.1/x", "ftp://idp.example.com/x",
                                 "//idp.example.com/x", "/relative", "", "http://localhost.evil.com/x"])
def test_other_urls_are_refused(url):
    with pytest.raises(ProviderError):
        check_url(url, allow_insecure=False, reason="discovery_failed")


def test_allow_insecure_permits_http_anywhere():
    check_url("http://idp.example.com/x", allow_insecure=True, reason="discovery_failed")


@pytest.mark.parametrize("url", ["https://user:pw@idp.example.com/x", "https://idp.example.com/a b",
                                 "https://idp.example.com/\r\nx", "https://idp.example.com:99999/"])
def test_urls_with_credentials_spaces_or_bad_ports_are_refused(url):
    with pytest.raises(ProviderError):
        check_url(url, allow_insecure=True, reason="discovery_failed")


def test_a_refused_url_is_never_requested(idp):
    # The host is not loopback, so nothing may leave the machine: the refusal comes first.
    with pytest.raises(ProviderError) as info:
        fetcher().get_json("http://idp.example.com/.well-known/openid-configuration", reason="discovery_failed")
    assert "https is required" in info.value.description


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b"[" * 100000, b"\xff", b"1"])
def test_json_parsing_refuses_non_objects_constants_and_deep_nesting(raw):
    with pytest.raises(ValueError):
        parse_json_object(raw)
