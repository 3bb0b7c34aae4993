"""Identity headers: which names the plugin owns upstream, and every spelling to strip.

Kong runs nginx with `underscores_in_headers on` (kong/templates/nginx_kong.lua), so a client
can send `X_Consumer_ID` and nginx passes it upstream untouched, and CGI/WSGI, PHP, Rack and
several Java stacks map `-` and `_` to the same variable (`HTTP_X_CONSUMER_ID`). For an
upstream, then, every spelling that is equal ignoring case and `-`/`_` is the same header
(`header_key`).

What Kong hands us: `kong.request.get_headers` is `ngx.req.get_headers(max)`, whose names are
nginx's `lowcase_key` (lua-nginx-module `ngx_http_lua_ffi_req_get_headers`, raw = 0): lower-cased
with `_` kept (lua-resty-core's `req_headers_mt` only maps `_` to `-` on *lookup*). What removes
one: `kong.service.request.set_headers({name = {}})` (an empty array removes every header of
that name: Kong's t/01-pdk/06-service-request/12-set_headers.t TEST 16) ends in lua-nginx-module
`ngx_http_set_header_helper`, which compares names with `ngx_strncasecmp` over the same length:
case-insensitive, but `_` and `-` differ. So each spelling the client sent is removed by its
own name, exactly as it arrived.
"""

from __future__ import annotations

from itertools import product
from typing import Iterable, Mapping

# kong/constants.lua HEADERS (Kong 3.4-3.9) that carry identity. Each bundled auth plugin's
# set_consumer sets or clears the first five (kong/plugins/{key-auth,basic-auth,jwt,hmac-auth,
# ldap-auth,oauth2,session}); acl sets X-Consumer-Groups / X-Authenticated-Groups, session
# X-Authenticated-Groups.
KONG_CONSUMER_HEADERS: tuple[str, ...] = (
    "X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username", "X-Credential-Identifier",
    "X-Anonymous-Consumer",
)
KONG_IDENTITY_HEADERS: tuple[str, ...] = KONG_CONSUMER_HEADERS + (
    "X-Consumer-Groups", "X-Authenticated-Groups",
    # kong/plugins/oauth2/access.lua set_consumer (not in constants.lua).
    "X-Authenticated-Scope", "X-Authenticated-Userid",
    # constants.lua CREDENTIAL_USERNAME until Kong 2.0 (removed by commit 0291c3c590); upstreams
    # written for older Kong may still read it.
    "X-Credential-Username",
)

# 2**10 spellings: beyond that only the all-dash and all-underscore ones are listed (used only
# for a truncated header list, where the client's spellings are unknown).
_MAX_SEPARATORS = 10


def header_key(name: str) -> str:
    """The name as an upstream that folds case and `-`/`_` reads it."""
    return name.lower().replace("_", "-")


def spellings(name: str) -> tuple[str, ...]:
    """Every lower-case spelling of `name` an upstream reads as the same header."""
    key = header_key(name)
    parts = key.split("-")
    if len(parts) - 1 > _MAX_SEPARATORS:
        return (key, key.replace("-", "_"))
    return tuple(parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:]))
                 for seps in product("-_", repeat=len(parts) - 1))


def spoofed_spellings(received: Iterable[str], owned: frozenset[str], keep: frozenset[str]) -> list[str]:
    """The names in `received` (as the client sent them, lower-cased by nginx) that an upstream
    reads as one of the `owned` header keys, minus the exact names in `keep` (lower-case: the
    names the plugin sets, which replace the client's copy, and trusted ones)."""
    return sorted({n for n in received if header_key(n) in owned and n.lower() not in keep})


def identity_header_report(headers: Mapping[str, object], owned: frozenset[str],
                           keep: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """For `explain`: (name as received, the owned header it aliases) for each header the plugin
    strips from this request."""
    return [(n, header_key(n)) for n in spoofed_spellings(headers, owned, keep)]
