"""The only HTTP client that talks to the IdP.

Every answer is hostile: we need status 200, at most MAX_RESPONSE_BYTES of body (counted
while streaming, so a huge or endless body costs us no more than the limit), a JSON object, and
the whole exchange must finish within the configured timeout. Redirects are never followed: a
redirect could move key material to another origin. Plain `http` is only for loopback hosts
unless the operator explicitly allows it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from kong_oidc_py import metrics
from kong_oidc_py.errors import ProviderError

log = logging.getLogger("kong_oidc_py")

MAX_RESPONSE_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON (RFC 8259) and would poison numeric comparisons.
    raise ValueError(f"non-JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_insecure: bool, reason: str) -> None:
    """Raise ProviderError unless `url` is an absolute https URL (or http where allowed)."""
    if not isinstance(url, str) or not url:
        raise ProviderError(reason, "the URL is missing", cause="bad_url")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ProviderError(reason, "the URL is not valid", cause="bad_url") from None
    if not host:
        raise ProviderError(reason, "the URL has no host", cause="bad_url")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and proxies.
        raise ProviderError(reason, "the URL must not carry credentials", cause="bad_url")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise ProviderError(reason, "the URL contains spaces, controls or non-ASCII characters", cause="bad_url")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (allow_insecure or is_loopback_host(host)):
        return
    raise ProviderError(
        reason, f"refusing {parts.scheme or 'scheme-less'} URL for host {host}: https is required", cause="bad_url"
    )


def parse_json_object(raw: bytes) -> dict:
    """Parse `raw` as a JSON object or raise ValueError."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    if not isinstance(value, dict):
        raise ValueError("body is not a JSON object")
    return value


# ProviderError reasons of the fetches -> the metrics' `kind` label.
_FETCH_KIND = {"discovery_failed": "discovery", "jwks_failed": "jwks"}


# ProviderError.cause -> the metrics' `outcome` label (docs/metrics.md).
_CAUSE_OUTCOME = {"timeout": "timeout", "unreachable": "unreachable", "tls": "tls", "http_status": "status",
                  "too_large": "too_large", "bad_json": "bad_json", "bad_url": "invalid"}


def fetch_outcome(exc: ProviderError) -> str:
    """The metrics' `outcome` label of a failed fetch, from its cause."""
    return _CAUSE_OUTCOME.get(exc.cause, "error")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from (httpx wraps httpcore wraps ssl/socket)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify_network_error(exc: BaseException) -> tuple[str, str]:
    """(cause, safe text) for a failed exchange. The text comes from exception types, errno
    names and OpenSSL's verify messages, never from exception strings that could quote a body."""
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return "tls", f"TLS certificate rejected ({item.verify_message or 'verify failed'})"
        if isinstance(item, ssl.SSLError):
            return "tls", f"TLS handshake failed ({item.reason or type(item).__name__})"
    for item in chain:
        if isinstance(item, socket.gaierror):
            return "unreachable", "DNS lookup failed"
        if isinstance(item, (socket.timeout, TimeoutError)):
            return "timeout", "timed out"
        if isinstance(item, OSError) and item.errno is not None:
            name = errno.errorcode.get(item.errno, str(item.errno))
            return "unreachable", f"unreachable ({name})"
    if any(isinstance(item, httpx.ConnectError) for item in chain):
        # httpcore flattens some socket errors into its own type with the OS text only.
        text = str(exc).lower()
        if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
            return "unreachable", "DNS lookup failed"
        if "certificate" in text or "ssl" in text or "tls" in text:
            return "tls", "TLS handshake failed"
        if "refused" in text:
            return "unreachable", "unreachable (connection refused)"
        return "unreachable", "unreachable (connect failed)"
    return "unreachable", f"unreachable ({type(exc).__name__})"


class Fetcher:
    """One pooled httpx client for one provider's settings."""

    def __init__(
        self,
        *,
        timeout_ms: int,
        ssl_verify: bool = True,
        allow_insecure: bool = False,
        max_bytes: int = MAX_RESPONSE_BYTES,
        issuer: str = "",
    ) -> None:
        self.issuer = issuer  # the metrics label of every call this fetcher makes
        self.timeout = max(timeout_ms, 1) / 1000.0
        self.allow_insecure = allow_insecure
        self.max_bytes = max_bytes
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            verify=ssl_verify,
            follow_redirects=False,
            trust_env=False,  # proxies and CA bundles come from config, not the environment
            headers={"Accept": "application/json, application/jwk-set+json"},
        )
        self._closed = False
        self._lock = threading.Lock()

    def get_json(self, url: str, *, reason: str) -> dict:
        """GET `url` and return its JSON object body; any failure is ProviderError(reason)."""
        started = time.monotonic()
        kind = _FETCH_KIND.get(reason, "other")
        try:
            body = self._get_json(url, reason=reason)
        except ProviderError as exc:
            metrics.idp_fetch(self.issuer, kind, fetch_outcome(exc), time.monotonic() - started)
            raise
        metrics.idp_fetch(self.issuer, kind, "ok", time.monotonic() - started)
        return body

    def _get_json(self, url: str, *, reason: str) -> dict:
        check_url(url, allow_insecure=self.allow_insecure, reason=reason)
        # httpx timeouts apply per operation; a server that drips one byte per second would
        # never trip them, so the whole exchange also has a deadline.
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ProviderError(
                        reason, f"{url} answered HTTP {response.status_code}", cause="http_status"
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
                    raise ProviderError(reason, f"{url} answered more than {self.max_bytes} bytes", cause="too_large")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ProviderError(
                            reason, f"{url} answered more than {self.max_bytes} bytes", cause="too_large"
                        )
                    if time.monotonic() > deadline:
                        raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s", cause="timeout")
                    chunks.append(chunk)
        except ProviderError:
            raise
        except httpx.TimeoutException:
            raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s", cause="timeout") from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            cause, why = classify_network_error(exc)
            raise ProviderError(reason, f"{url}: {why}", cause=cause) from None
        try:
            return parse_json_object(b"".join(chunks))
        except ValueError as exc:
            raise ProviderError(reason, f"{url} did not answer a JSON object: {exc}", cause="bad_json") from None

    def post_form(
        self, url: str, form: dict[str, str], *, headers: dict[str, str], reason: str
    ) -> tuple[str, bytes]:
        """POST a form to `url`; (content type, body) of a 200 answer, ProviderError(reason) otherwise.

        Same rules as get_json: https rule, no redirects, size limit while streaming, one deadline
        for the whole exchange. The body is returned raw: an RFC 9701 answer is a JWT, not JSON.
        """
        check_url(url, allow_insecure=self.allow_insecure, reason=reason)
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("POST", url, data=form, headers=headers) as response:
                if response.status_code != 200:
                    raise ProviderError(reason, f"{url} answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ProviderError(reason, f"{url} answered more than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s")
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "")
        except ProviderError:
            raise
        except httpx.TimeoutException:
            raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s") from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise ProviderError(reason, f"{url} unreachable: {type(exc).__name__}") from None
        return content_type.split(";", 1)[0].strip().lower(), b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
