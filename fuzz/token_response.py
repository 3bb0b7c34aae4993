"""Target: the token endpoint's answer (browser/token_endpoint.py).

Input: first byte picks the HTTP status (STATUSES[b % len]), the rest is the body. The real
client posts (a code exchange) and httpx.MockTransport answers in-process.

Contract: a TokenResponse with typed fields (a non-empty access token, expires_in a positive
int or None), or TokenError / ProviderError; the error code and description a refusal carries
are bounded and free of control characters (they are logged); bounded time.
"""

from __future__ import annotations

from typing import Iterator

from fuzz import contract
from kong_oidc_py.browser.token_endpoint import TokenClient, TokenError, TokenResponse
from kong_oidc_py.errors import ProviderError

NAME = "token_response"
STATUSES = (200, 400, 401, 500, 503, 302)
ANSWER = contract.CannedAnswer("application/json")
CLIENT = TokenClient(client_id="web", client_secret="web-secret", auth_method="client_secret_basic",
                     timeout_ms=2000, ssl_verify=True)
CLIENT._http = ANSWER.client()


def _exchange() -> TokenResponse:
    return CLIENT.exchange_code("https://idp.example/token", code="c", redirect_uri="https://app.example/cb",
                                code_verifier="v" * 43)


def one_input(data: bytes) -> None:
    ANSWER.status = STATUSES[data[0] % len(STATUSES)] if data else 200
    ANSWER.body = data[1:]
    body = contract.text(data[1:])
    try:
        result = contract.bounded(_exchange)
    except TokenError as err:
        # The IdP's own error code and description are logged (that is their purpose): bounded
        # and without control characters, but they may quote the body.
        contract.check_message("error", err.error, [], [])
        contract.check_message("error description", err.description, [], [])
        return
    except ProviderError as err:
        contract.check_error(err, [body])
        return
    if not isinstance(result.access_token, str) or not result.access_token:
        raise contract.Violation("accepted a response without an access token")
    for name in ("id_token", "refresh_token", "scope"):
        value = getattr(result, name)
        if value is not None and not isinstance(value, str):
            raise contract.Violation(f"{name} is {type(value).__name__}")
    if result.expires_in is not None and (type(result.expires_in) is not int or result.expires_in <= 0):
        raise contract.Violation(f"expires_in is {result.expires_in!r}")


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
