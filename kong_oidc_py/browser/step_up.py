"""Step-up for browser sessions (RFC 9470 applied to OIDC logins).

A session's authentication context is the `acr`, `amr` and `auth_time` of the ID token it was
created with. That ID token was verified at the callback and has lived only inside the
encrypted, authenticated session since, so its payload is read here without checking the
signature again (its `exp` is about the ID token's delivery, not the session, and must not end
the session). A session that does not meet a route's requirement is sent back to the IdP with
`acr_values` and `max_age` (OIDC Core 3.1.2.1) and `prompt=login`, so the IdP authenticates
again even while its own session is alive; the new session carries the new ID token.
"""

from __future__ import annotations

import json
from binascii import a2b_base64
from typing import Any

from kong_oidc_py.errors import InsufficientUserAuthentication

def session_auth(id_token: str | None) -> dict[str, Any]:
    """acr, amr and auth_time of a session's (already verified) ID token; {} when unreadable."""
    if not id_token:
        return {}
    try:
        payload = id_token.split(".")[1]
        data = json.loads(a2b_base64(payload.replace("-", "+").replace("_", "/") + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("acr", "amr", "auth_time") if k in data}


def authorization_params(err: InsufficientUserAuthentication) -> dict[str, str]:
    """Extra authorization request parameters asking the IdP for the missing authentication."""
    params: dict[str, str] = {"prompt": "login"}
    if err.acr_values:
        params["acr_values"] = err.acr_values
    if err.max_age is not None:
        params["max_age"] = str(err.max_age)
    return params


def acr_delivered(asked: str, id_claims: Any) -> bool:
    """At the callback: did the IdP authenticate at one of the acr values this login asked for?
    (A login that asked for none always passes.) Checked there so that an IdP ignoring
    acr_values ends in a clear page, not in a login loop."""
    if not asked:
        return True
    acr = id_claims.get("acr")
    return isinstance(acr, str) and acr in asked.split()
