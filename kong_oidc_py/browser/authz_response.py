"""The authorization response: where its parameters come from (query or form_post) and the ID
token checks shared by the front channel (hybrid flow) and the token endpoint.

form_post (OAuth 2.0 Form Post Response Mode): the IdP's page POSTs the response to
redirect_uri, so the code never sits in a URL, a browser history or a request log. Only a POST
with `application/x-www-form-urlencoded` counts; in form_post mode a GET callback carries no
response at all (a code in a query string is never used), and in query mode a POST body is
ignored. CSRF: `state` still binds the response to this browser's sealed login cookie.

Hybrid flow `code id_token` (OIDC Core 3.3): the front-channel ID token is verified before the
code is exchanged (signature, iss, aud/azp, exp, nonce, and c_hash, which binds the code to it:
a code injected from another session fails here); the token endpoint's ID token must then name
the same iss and sub (3.3.3.6 / 3.1.3.7).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from kong_oidc_py.browser.checks import half_hash
from kong_oidc_py.browser.requests import single_value
from kong_oidc_py.errors import InvalidToken

if TYPE_CHECKING:
    from kong_oidc_py.gateway import RequestView
    from kong_oidc_py.verification.verify import Claims, Verifier

MAX_FORM_BODY = 64 * 1024


def response_params(req: "RequestView", response_mode: str) -> dict[str, str | None]:
    """The authorization response parameters, each a single string (None when repeated or a flag)."""
    if response_mode != "form_post":
        return {k: single_value(v) for k, v in req.query().items() if isinstance(k, str)}
    if req.method() != "POST":
        return {}
    ctype = ",".join(req.headers.get("content-type") or []).split(";", 1)[0].strip().lower()
    body = req.body()
    if ctype != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BODY:
        return {}
    try:
        form = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: single_value(v) for k, v in form.items()}


def check_id_claims(claims: "Claims", *, client_id: str | None, nonce: str) -> None:
    """azp for several audiences, and the nonce of this login (OIDC Core 3.1.3.7)."""
    data = claims.data
    aud = data.get("aud")
    audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    if len(audiences) > 1 and data.get("azp") != client_id:
        raise InvalidToken("bad_audience", "the ID token's azp is not this client")
    got_nonce = data.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(got_nonce.encode(), nonce.encode()):
        raise InvalidToken("bad_nonce", "the ID token's nonce does not match this login")


def _hash_matches(claims: "Claims", name: str, value: str) -> bool:
    got = claims.data.get(name)
    return isinstance(got, str) and hmac.compare_digest(got.encode(), half_hash(value, claims.alg).encode())


def check_front_channel_id_token(verifier: "Verifier", token: str | None, *, client_id: str | None, nonce: str,
                                 code: str, state: str) -> "Claims":
    """The hybrid flow's ID token, before the code is used. Raises InvalidToken."""
    if not token:
        raise InvalidToken("missing_id_token", "no ID token in the authorization response")
    claims = verifier.verify(token)
    check_id_claims(claims, client_id=client_id, nonce=nonce)
    if not _hash_matches(claims, "c_hash", code):
        raise InvalidToken("bad_c_hash", "the ID token's c_hash does not match the code")
    if "s_hash" in claims.data and not _hash_matches(claims, "s_hash", state):
        raise InvalidToken("bad_s_hash", "the ID token's s_hash does not match the state")
    return claims


def same_subject(front: "Claims", back: "Claims") -> None:
    for name in ("iss", "sub"):
        a: Any = front.data.get(name)
        b: Any = back.data.get(name)
        if not isinstance(a, str) or a != b:
            raise InvalidToken("subject_mismatch", f"the two ID tokens name different {name} values")
