"""The only HTTP client that talks to the IdP.

Every answer is hostile: we need status 200, at most MAX_RESPONSE_BYTES of body (counted
while streaming, so a huge or endless body costs us no more than the limit), a JSON object, and
the whole exchange must finish within the configured timeout. Redirects are never followed: a
redirect could move key material to another origin. Plain `http` is only for loopback hosts
unless the operator explicitly allows it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
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
        raise ProviderError(reason, "the URL is missing")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ProviderError(reason, "the URL is not valid") from None
    if not host:
        raise ProviderError(reason, "the URL has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and proxies.
        raise ProviderError(reason, "the URL must not carry credentials")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise ProviderError(reason, "the URL contains spaces, controls or non-ASCII characters")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (allow_insecure or is_loopback_host(host)):
        return
    raise ProviderError(reason, f"refusing {parts.scheme or 'scheme-less'} URL for host {host}: https is required")


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


def fetch_outcome(exc: ProviderError) -> str:
    """The metrics' `outcome` label of a failed fetch, from the failure's log detail."""
    detail = f"{exc.description} {exc.detail or ''}"
    for marker, outcome in (("did not answer within", "timeout"), ("answered HTTP", "status"),
                            ("more than", "too_large"), ("SSL", "tls"), ("unreachable", "unreachable"),
                            ("JSON", "bad_json"), ("URL", "invalid"), ("refusing", "invalid")):
        if marker in detail:
            return outcome
    return "error"


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
                    raise ProviderError(reason, f"{url} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
                    raise ProviderError(reason, f"{url} answered more than {self.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ProviderError(reason, f"{url} answered more than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s")
                    chunks.append(chunk)
        except ProviderError:
            raise
        except httpx.TimeoutException:
            raise ProviderError(reason, f"{url} did not answer within {self.timeout:g}s") from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            # The exception text may quote response content; its type is enough to act on.
            raise ProviderError(reason, f"{url} unreachable: {type(exc).__name__}") from None
        try:
            return parse_json_object(b"".join(chunks))
        except ValueError as exc:
            raise ProviderError(reason, f"{url} did not answer a JSON object: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
