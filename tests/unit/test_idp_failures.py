"""Visible IdP failures: each failure is classified (errors.PROVIDER_CAUSES), logged at error
level with its cause, and named in the keys_unavailable detail a denied request logs."""

from __future__ import annotations

import contextlib
import datetime
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec as ec_keys
from cryptography.x509.oid import NameOID

from kong_oidc_py import gateway as gateway_mod
from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.fetch import Fetcher, classify_network_error
from kong_oidc_py.idp.provider import Provider, ProviderSettings
from kong_oidc_py.verification.verify import Verifier, VerifyOptions
from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.ports import free_port

RSA = rsa_key("rsa-1")


@pytest.fixture
def idp():
    with FakeIdP() as server:
        server.set_keys(RSA)
        yield server


@contextlib.contextmanager
def watching(caplog):
    with caplog.at_level(logging.INFO, logger="kong_oidc_py"):
        caplog.clear()
        yield


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "kong_oidc_py" and r.levelno >= logging.ERROR]


def provider_for(issuer, **kw):
    kw.setdefault("timeout_ms", 1000)
    return Provider(ProviderSettings(issuer=issuer, **kw))


def keys_unavailable_detail(provider):
    with pytest.raises(InvalidToken) as info:
        Verifier(provider, VerifyOptions(issuer=provider.issuer)).verify(RSA.sign(claims(provider.issuer)))
    assert info.value.reason == "keys_unavailable"
    return info.value.detail


# -- classification --------------------------------------------------------------------------


def cause_of(fn):
    with pytest.raises(ProviderError) as info:
        fn()
    return info.value.cause, info.value.description


def test_a_closed_port_is_unreachable():
    url = f"http://127.0.0.1:{free_port()}/x"
    cause, description = cause_of(lambda: Fetcher(timeout_ms=1000).get_json(url, reason="jwks_failed"))
    assert (cause, description) == ("unreachable", f"{url}: unreachable (ECONNREFUSED)")


def test_a_dns_failure_is_unreachable():
    try:
        raise OSError("wrapped") from socket.gaierror(-2, "Name or service not known")
    except OSError as exc:
        assert classify_network_error(exc) == ("unreachable", "DNS lookup failed")


def test_a_hanging_idp_is_a_timeout(idp):
    idp.hang[idp.jwks_path] = 5
    cause, description = cause_of(lambda: Fetcher(timeout_ms=200).get_json(idp.jwks_uri, reason="jwks_failed"))
    assert (cause, description) == ("timeout", f"{idp.jwks_uri} did not answer within 0.2s")


def test_a_status_other_than_200_is_http_status_with_the_code(idp):
    idp.fail[idp.jwks_path] = 503
    cause, description = cause_of(lambda: Fetcher(timeout_ms=1000).get_json(idp.jwks_uri, reason="jwks_failed"))
    assert (cause, description) == ("http_status", f"{idp.jwks_uri} answered HTTP 503")


def test_a_body_that_is_not_json_is_bad_json(idp):
    idp.non_json.add(idp.jwks_path)
    assert cause_of(lambda: Fetcher(timeout_ms=1000).get_json(idp.jwks_uri, reason="jwks_failed"))[0] == "bad_json"


def test_an_oversized_body_is_too_large(idp):
    idp.oversize[idp.jwks_path] = 2 * 1024 * 1024
    assert cause_of(lambda: Fetcher(timeout_ms=2000).get_json(idp.jwks_uri, reason="jwks_failed"))[0] == "too_large"


@pytest.fixture
def tls_server():
    """An https server on loopback with a self-signed certificate no trust store accepts."""
    key = ec_keys.generate_private_key(ec_keys.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = f"{tmp}/c.pem", f"{tmp}/k.pem"
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_is_tls(tls_server):
    cause, description = cause_of(lambda: Fetcher(timeout_ms=2000).get_json(tls_server + "/x", reason="jwks_failed"))
    assert cause == "tls"
    assert "certificate" in description


# -- what the provider logs and reports ----------------------------------------------------------


def test_an_unreachable_idp_is_logged_at_error_with_its_cause_and_named_in_the_detail(caplog):
    issuer = f"http://127.0.0.1:{free_port()}/realms/test"
    provider = provider_for(issuer)
    with watching(caplog):
        detail = keys_unavailable_detail(provider)
    assert errors(caplog) == [f"oidc: IdP {issuer}: discovery failing (unreachable): "
                              f"{issuer}/.well-known/openid-configuration: unreachable (ECONNREFUSED)"]
    assert "last IdP failure: discovery unreachable" in detail


def test_an_issuer_mismatch_logs_the_configured_and_the_discovered_issuer(idp, caplog):
    idp.metadata_overrides["issuer"] = "https://other.example/realms/test"
    with watching(caplog):
        detail = keys_unavailable_detail(provider_for(idp.issuer))
    [line] = errors(caplog)
    assert "discovery failing (issuer_mismatch)" in line
    assert "'https://other.example/realms/test'" in line and repr(idp.issuer) in line
    assert "last IdP failure: discovery issuer_mismatch" in detail


def test_a_jwks_without_a_usable_key_says_why_each_key_was_ignored(idp, caplog):
    idp.set_keys(RSA, use="enc")
    with watching(caplog):
        detail = keys_unavailable_detail(provider_for(idp.issuer))
    [line] = errors(caplog)
    assert "jwks failing (no_usable_key)" in line
    assert "kid='rsa-1': use is not sig" in line
    assert "last IdP failure: jwks no_usable_key" in detail


def test_a_jwks_status_error_names_the_code_in_the_detail(idp):
    idp.fail[idp.jwks_path] = 502
    assert "jwks http_status" in keys_unavailable_detail(provider_for(idp.issuer))
    assert "answered HTTP 502" in keys_unavailable_detail(provider_for(idp.issuer))


def test_the_detail_follows_the_latest_cause(idp):
    provider = provider_for(idp.issuer, rediscovery_lifetime=0)
    idp.fail[idp.discovery_path] = 500
    assert "discovery http_status" in keys_unavailable_detail(provider)
    idp.fail.clear()
    idp.set_keys(RSA, use="enc")
    assert "jwks no_usable_key" in keys_unavailable_detail(provider)


def test_recovery_is_logged_once_the_idp_answers_again(idp, caplog):
    provider = provider_for(idp.issuer, rediscovery_lifetime=0)
    idp.fail[idp.jwks_path] = 500
    keys_unavailable_detail(provider)
    idp.fail.clear()
    with watching(caplog):
        assert provider.key_for("rsa-1", "RS256") is not None
    assert any("jwks recovered after" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert provider.health.last_failure() is None


def test_a_denied_request_logs_keys_unavailable_with_the_cause(idp, monkeypatch):
    idp.fail[idp.jwks_path] = 503
    provider = provider_for(idp.issuer)
    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: provider)
    gw = Gateway(parse_config({"issuer": idp.issuer, "audience_required": ["api"]}))
    from tests.unit.test_gateway import FakeRequest

    outcome = gw.handle(FakeRequest({"Authorization": "Bearer " + RSA.sign(claims(idp.issuer))}))
    assert (outcome.status, outcome.log["reason"]) == (401, "keys_unavailable")
    assert "last IdP failure: jwks http_status" in outcome.log["detail"]


def test_ignored_keys_are_logged_once_not_at_every_refresh(idp, caplog):
    idp.set_jwks({"keys": [RSA.public_jwk(), rsa_key("small", bits=1024).public_jwk()]})
    provider = provider_for(idp.issuer, rediscovery_lifetime=0)
    with watching(caplog):
        for kid in ("rsa-1", "absent-1", "absent-2"):  # the misses refresh the same key set twice
            try:
                provider.key_for(kid, "RS256")
            except InvalidToken:
                pass
    assert idp.jwks_hits == 3
    ignored = [r for r in caplog.records if "ignoring JWKS key" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.WARNING
    assert "kid='small': RSA key of 1024 bits is below 2048" in ignored[0].getMessage()


def test_a_key_published_for_encryption_is_ignored_at_info_level(idp, caplog):
    idp.set_jwks({"keys": [RSA.public_jwk(), rsa_key("enc-1", fresh=True).public_jwk(use="enc")]})
    with watching(caplog):
        assert provider_for(idp.issuer).key_for("rsa-1", "RS256") is not None
    [record] = [r for r in caplog.records if "ignoring JWKS key" in r.getMessage()]
    assert record.levelno == logging.INFO and "kid='enc-1': use is not sig" in record.getMessage()
