"""Where the bearer token is: Authorization header, a cookie or the access_token query
parameter (RFC 6750 section 2), and how to remove it again for hide_credentials.

Strictness (deliberate, documented): the Authorization value must be exactly
`Bearer<one SP><b64token>` (scheme case-insensitive, RFC 9110 11.1). Double spaces, tabs,
trailing text, or a second credential folded in with "," are `invalid_request` rather than
being "repaired": a lenient parser here is where request smuggling between the gateway and
an upstream with a different parser starts. Another scheme (Basic, DPoP, ...) is simply not
a bearer token (None). A token in more than one enabled place is `invalid_request`
(RFC 6750 2: clients MUST NOT use more than one method), and so is a repeated Authorization
header, token cookie or access_token parameter: which copy is "the" token would be a guess.
An empty token cookie counts as absent (browsers keep blanked cookies after logout); an
empty or value-less access_token parameter is invalid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl

from kong_oidc_py.errors import InvalidRequest

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def is_b64token(text: str) -> bool:
    """`text` is a b64token: what the regex [A-Za-z0-9-._~+/]+=* says, in a few C calls
    (a regex walks a JWT-sized value at ~1.5 ns a character; this is several times faster)."""
    core = text.rstrip("=")
    if not core or not core.isascii():
        return False
    return not core.encode("ascii").translate(None, _B64TOKEN_CHARS)
# RFC 9110 11.1 auth-scheme = token
_SCHEME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
QUERY_PARAM = "access_token"


def _auth_scheme(value: str) -> tuple[str, str]:
    """(scheme lower-cased, everything after it) of an Authorization value."""
    # Field values arrive without surrounding OWS (RFC 9110 5.5); strip in case a caller didn't.
    value = value.strip(" \t")
    m = _SCHEME.match(value)
    if m is None:
        return "", value
    return m.group(0).lower(), value[m.end():]


def _bearer_from_header(value: str) -> str | None:
    # The common spelling, answered without splitting the scheme off (same result as below).
    if value[:7].lower() == "bearer ":
        token = value[7:]
        if is_b64token(token):
            return token
    scheme, rest = _auth_scheme(value)
    if scheme != "bearer":
        return None
    if not rest.startswith(" ") or not is_b64token(rest[1:]):
        raise InvalidRequest("invalid_request", "Malformed Authorization header: expected 'Bearer <token>'")
    return rest[1:]


def _values(headers: Mapping[str, Any], name: str) -> list[str]:
    raw = headers.get(name)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    return [v for v in raw if isinstance(v, str)]


def parse_cookies(header_values: Iterable[str]) -> list[tuple[str, str]]:
    """RFC 6265 5.4 cookie-pairs in order, values as sent (duplicates kept). Pairs without
    "=" are skipped."""
    pairs: list[tuple[str, str]] = []
    for header in header_values:
        for part in header.split(";"):
            name, eq, value = part.strip(" \t").partition("=")
            name = name.strip(" \t")
            if not eq or not name:
                continue
            pairs.append((name, value.strip(" \t")))
    return pairs


def unquote_cookie_value(value: str) -> str:
    """RFC 6265 4.1.1: a cookie-value may be wrapped in DQUOTEs, which are not part of it."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _bearer_from_cookies(headers: Mapping[str, Any], cookie_name: str) -> str | None:
    found = [unquote_cookie_value(v) for n, v in parse_cookies(_values(headers, "cookie")) if n == cookie_name]
    if len(found) > 1:
        raise InvalidRequest("invalid_request", "The token cookie was sent more than once")
    if not found or found[0] == "":
        return None
    if not is_b64token(found[0]):
        raise InvalidRequest("invalid_request", "Malformed token cookie")
    return found[0]


def _bearer_from_query(query: Mapping[str, Any]) -> str | None:
    if QUERY_PARAM not in query:
        return None
    raw = query[QUERY_PARAM]
    # Kong hands a repeated parameter over as a list, a value-less `?access_token` as `true`
    # itself (ngx.req.get_uri_args), and kong-pdk may turn a flag into [] or a `True` item
    # (shared doc 2.4): anything but a list is one item, so `true` is refused, not iterated.
    items = list(raw) if isinstance(raw, list) else [raw]
    if len(items) != 1 or not isinstance(items[0], str):
        raise InvalidRequest("invalid_request", "The access_token parameter must appear exactly once with a value")
    if not is_b64token(items[0]):
        raise InvalidRequest("invalid_request", "Malformed access_token parameter")
    return items[0]


def extract(headers: Mapping[str, list[str]], cfg: Any,
            query: Mapping[str, list[str]] | None = None, trace: Any = None) -> str | None:
    """The bearer token, None when the request carries none, InvalidRequest when ambiguous or
    malformed. Only the places enabled in cfg.bearer_token_param_type are looked at; `query`
    is the parsed query (pass None to skip reading it). `trace` (kong_oidc_py.trace.Trace,
    explain only) records where the token was found."""
    places = cfg.bearer_token_param_type
    found: list[str] = []
    if "header" in places:
        values = _values(headers, "authorization")
        if len(values) > 1:
            raise InvalidRequest("invalid_request", "More than one Authorization header")
        if values:
            token = _bearer_from_header(values[0])
            if token is not None:
                found.append(token)
                if trace is not None:
                    trace.add("token", "header", True, "Authorization: Bearer <token> (RFC 6750 2.1)")
            elif trace is not None:
                trace.add("token", "header", None, f"Authorization uses scheme {_auth_scheme(values[0])[0]!r}, not Bearer: ignored")
    if "cookie" in places and cfg.bearer_token_cookie_name:
        token = _bearer_from_cookies(headers, cfg.bearer_token_cookie_name)
        if token is not None:
            found.append(token)
            if trace is not None:
                trace.add("token", "cookie", True, f"cookie {cfg.bearer_token_cookie_name!r}")
    if "query" in places and query is not None:
        token = _bearer_from_query(query)
        if token is not None:
            found.append(token)
            if trace is not None:
                trace.add("token", "query", True, f"query parameter {QUERY_PARAM!r} (RFC 6750 2.3)")
    if len(found) > 1:
        raise InvalidRequest("invalid_request", "The token was sent by more than one method")
    if trace is not None and not found:
        trace.add("token", "location", False, "no bearer token in: " + ", ".join(places))
    return found[0] if found else None


@dataclass(frozen=True)
class BearerRemoval:
    """What hide_credentials changes upstream: headers to clear, then headers to set (the
    Cookie header minus the token cookie), and whether the query must lose access_token."""

    clear: tuple[str, ...] = ()
    set: Mapping[str, str] = field(default_factory=dict)
    strip_query: bool = False


def bearer_removal(headers: Mapping[str, list[str]], cfg: Any,
                   query: Mapping[str, list[str]] | None = None) -> BearerRemoval:
    places = cfg.bearer_token_param_type
    clear: list[str] = []
    set_: dict[str, str] = {}
    if "header" in places:
        values = _values(headers, "authorization")
        if any(_auth_scheme(v)[0] == "bearer" for v in values):
            clear.append("authorization")
    name = cfg.bearer_token_cookie_name
    if "cookie" in places and name:
        pairs = parse_cookies(_values(headers, "cookie"))
        if any(n == name for n, _ in pairs):
            clear.append("cookie")
            rest = "; ".join(f"{n}={v}" for n, v in pairs if n != name)
            if rest:
                set_["cookie"] = rest
    strip_query = "query" in places and query is not None and QUERY_PARAM in query
    return BearerRemoval(tuple(clear), set_, strip_query)


def strip_bearer(headers: Mapping[str, list[str]], cfg: Any) -> tuple[str, ...]:
    """Header names to clear upstream for hide_credentials. A token cookie clears the whole
    Cookie header here (fail closed); use `bearer_removal` to keep the other cookies."""
    return bearer_removal(headers, cfg).clear


def query_without_token(raw_query: str) -> str:
    """The raw query minus every access_token parameter, other parameters byte-for-byte."""
    kept = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key = part.split("=", 1)[0]
        decoded = parse_qsl(key + "=", keep_blank_values=True)
        if decoded and decoded[0][0] == QUERY_PARAM:
            continue
        kept.append(part)
    return "&".join(kept)
