"""Token endpoint client: authorization-code exchange and refresh (RFC 6749 4.1.3, 6; RFC 7636).

Client authentication is `client_secret_basic` (RFC 6749 2.3.1: both parts form-urlencoded
before base64) or `client_secret_post`. Responses are hostile like any IdP input: size-limited,
JSON object only, `token_type` must be Bearer, and nothing from them is logged.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote_plus

import httpx

from kong_oidc_py import metrics
from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import classify_network_error, fetch_outcome

MAX_TOKEN_RESPONSE_BYTES = 256 * 1024
_NQSCHARS = re.compile(r'[\x20\x21\x23-\x5b\x5d-\x7e]*')


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    id_token: str | None
    refresh_token: str | None
    expires_in: int | None
    scope: str | None


class TokenError(Exception):
    """The token endpoint said no (invalid_grant, ...) or answered nonsense."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class TokenClient:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        auth_method: str,
        timeout_ms: int,
        ssl_verify: bool,
        issuer: str = "",
    ) -> None:
        self._issuer = issuer  # metrics label
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method
        seconds = timeout_ms / 1000.0
        self._http = httpx.Client(
            timeout=httpx.Timeout(seconds), verify=ssl_verify, follow_redirects=False,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    def exchange_code(self, endpoint: str, *, code: str, redirect_uri: str, code_verifier: str) -> TokenResponse:
        return self._post(endpoint, {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        })

    def refresh(self, endpoint: str, *, refresh_token: str, scope: str | None = None) -> TokenResponse:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope:
            form["scope"] = scope
        return self._post(endpoint, form)

    def push_authorization_request(self, endpoint: str, params: dict[str, str]) -> str:
        """RFC 9126: POST the authorization request (client-authenticated) and return the
        `request_uri` to send the browser with. Raises TokenError / ProviderError."""
        status, data = self._measured("par", endpoint, params)
        if status not in (200, 201):
            raise _error(data)
        request_uri = data.get("request_uri")
        if not isinstance(request_uri, str) or not request_uri or len(request_uri) > 2048:
            raise TokenError("invalid_response", "no request_uri in the pushed authorization response")
        return request_uri

    def _post(self, endpoint: str, form: dict[str, str]) -> TokenResponse:
        status, data = self._measured("token", endpoint, form)
        if status != 200:
            raise _error(data)
        return _parse(data)

    def _measured(self, kind: str, endpoint: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        outcome = "error"
        try:
            status, data = self._call(endpoint, form)
            outcome = "ok" if status in (200, 201) else "status"  # "status": the IdP answered with an OAuth error
            return status, data
        except ProviderError as exc:
            outcome = fetch_outcome(exc)
            raise
        finally:
            metrics.idp_fetch(self._issuer, kind, outcome, time.monotonic() - started)

    def _call(self, endpoint: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if self._auth_method == "client_secret_post":
            form = {**form, "client_id": self._client_id, "client_secret": self._client_secret}
        else:
            # RFC 6749 2.3.1: each part application/x-www-form-urlencoded (space -> "+").
            pair = f"{quote_plus(self._client_id, safe='')}:{quote_plus(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            with self._http.stream("POST", endpoint, data=form, headers=headers) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_TOKEN_RESPONSE_BYTES:
                        raise ProviderError("token_endpoint_failed", "token response too large", cause="too_large")
                status = response.status_code
        except httpx.HTTPError as exc:
            cause, text = classify_network_error(exc)
            raise ProviderError("token_endpoint_failed", f"token endpoint failed: {text}", cause=cause) from None
        try:
            data: Any = json.loads(bytes(body))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError("token_endpoint_failed", f"token endpoint answered {status} without a JSON object",
                                cause="bad_json")
        return status, data


def _error(data: Mapping[str, Any]) -> TokenError:
    error = data.get("error") if isinstance(data.get("error"), str) else "server_error"
    description = data.get("error_description") if isinstance(data.get("error_description"), str) else ""
    # RFC 6749 5.2 limits both to %x20-21 / %x23-5B / %x5D-7E; they are logged, so an answer
    # outside that set (CR/LF would forge log lines) is not passed on.
    if not _NQSCHARS.fullmatch(error):
        error = "invalid_error_code"
    if not _NQSCHARS.fullmatch(description):
        description = ""
    return TokenError(error[:64], description[:200])


def _parse(data: Mapping[str, Any]) -> TokenResponse:
    access = data.get("access_token")
    token_type = data.get("token_type")
    if not isinstance(access, str) or not access:
        raise TokenError("invalid_response", "no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError("invalid_response", "token_type is not Bearer")
    id_token = data.get("id_token")
    refresh = data.get("refresh_token")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit() and len(expires_in) <= 9:
        expires_in = int(expires_in)  # some providers send a string
    scope = data.get("scope")
    return TokenResponse(
        access_token=access,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=int(expires_in) if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and 0 < expires_in < 10**8 else None,
        scope=scope if isinstance(scope, str) else None,
    )
