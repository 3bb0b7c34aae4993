"""Target: the discovery document (idp/discovery.py) as the IdP's HTTP answer.

Input: the response body. It goes through the real fetch path (idp/fetch.Fetcher, with the
HTTP exchange answered in-process by httpx.MockTransport) and `validate_metadata`, as
`Discovery._fetch` runs them.

Contract: a validated dict, or ProviderError("discovery_failed") whose description names what
is wrong without quoting the body (the issuer and endpoint URLs under judgement may be named),
bounded; every log line bounded and free of control characters; an accepted
document really has the configured issuer and https (or loopback http) endpoints.
"""

from __future__ import annotations

import json
from typing import Iterator

from fuzz import contract
from kong_oidc_py.idp.discovery import Discovery, split_issuer
from kong_oidc_py.idp.fetch import Fetcher, check_url

NAME = "discovery"
MATERIAL = json.loads((contract.CORPUS / "idp.json").read_text())
ISSUER = MATERIAL["issuer"]
ANSWER = contract.CannedAnswer("application/json")
FETCHER = Fetcher(timeout_ms=2000)
FETCHER._client = ANSWER.client()
DISCOVERY = Discovery(ISSUER, FETCHER, cache_ttl=0, max_stale=0, retry_interval=0, allow_insecure=False)


def _named_values(body: str) -> list[str]:
    """What a discovery log line may name: the configured issuer and its discovery URL
    (config), and the document's issuer and endpoint URLs (the metadata being judged)."""
    values = [ISSUER, split_issuer(ISSUER)[1]]
    try:
        doc = json.loads(body)
    except Exception:  # noqa: BLE001 - only widens what a message may name
        return values
    if isinstance(doc, dict):
        for name in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                     "end_session_endpoint"):
            value = doc.get(name)
            if isinstance(value, str):
                values += [value[:200], repr(value[:200])]
    return values


def one_input(data: bytes) -> None:
    ANSWER.body = data
    body = contract.text(data)
    doc = contract.fetched_or_refused(DISCOVERY._fetch, body, "discovery_failed", _named_values(body))
    if doc is None:
        return
    if doc.get("issuer") != split_issuer(ISSUER)[0]:
        raise contract.Violation("accepted metadata for another issuer")
    for name in ("jwks_uri", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "end_session_endpoint"):
        if name in doc or name == "jwks_uri":
            check_url(doc[name], allow_insecure=False, reason="discovery_failed")  # raises: a finding


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
