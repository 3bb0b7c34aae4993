"""What a browser request is: a top-level navigation, its query values, a safe way back.

Who is sent to the IdP: only top-level navigations (GET/HEAD, `Sec-Fetch-Mode: navigate`, or
`Accept: text/html` without `X-Requested-With`) that carry no Authorization header. Everyone
else gets the bearer path's 401, so an API client never follows a redirect to a login page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

if TYPE_CHECKING:
    from kong_oidc_py.gateway import RequestView


def is_navigation(req: "RequestView") -> bool:
    h = req.headers
    if "authorization" in h:
        return False
    mode = first_header(h, "sec-fetch-mode")
    if mode is not None:
        if mode.lower() != "navigate":
            return False
        dest = first_header(h, "sec-fetch-dest")
        if dest is not None and dest.lower() not in ("document", ""):
            return False
    else:
        accept = ",".join(h.get("accept") or [])
        if "text/html" not in accept.lower() or "x-requested-with" in h:
            return False
    return req.method() in ("GET", "HEAD")


def first_header(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


# Characters kept as they are in the return URL; everything else (controls, CR/LF, spaces,
# backslashes, non-ASCII) is percent-encoded, so the Location header can never be split and a
# browser can never read the path as another origin.
_PATH_SAFE = "/-._~!$&'()*+,;=:@%"
_QUERY_SAFE = _PATH_SAFE + "?"


def safe_return_path(path: str, raw_query: str) -> str:
    # Only a same-origin path may come back out of the cookie: "//evil" and "\\evil" are
    # scheme-relative URLs to a browser.
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "\\" in path:
        path = "/"
    path = quote(path, safe=_PATH_SAFE)
    query = quote(raw_query, safe=_QUERY_SAFE) if isinstance(raw_query, str) and raw_query else ""
    return path + ("?" + query if query else "")


def single_value(value: Any) -> str | None:
    """One query parameter value as kong.request.get_query gives it: a string, a list when the
    name repeats (refused: an ambiguous callback), True for a bare name (refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None
