"""Claim paths, claim value lists and upstream identity headers.

Everything here reads data from a verified token, which is still attacker-influenced (a user
may pick their own display name, an IdP admin may put anything in a custom claim), so values
are treated as hostile text until `sanitize_header_value` has made them header-safe.

Header value encoding (documented contract for upstreams): printable ASCII passes unchanged,
every other character (controls, DEL, non-ASCII) and "%" itself are percent-encoded from their
UTF-8 bytes, so `urllib.parse.unquote(value)` restores the claim text exactly (apart from
surrounding whitespace, which HTTP trims anyway).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kong_oidc_py.config import PluginConfig

MAX_HEADER_VALUE = 8192
LIST_SEPARATOR = ", "

# Printable ASCII except "%": "%" is encoded too so decoding is unambiguous.
_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"%"}


def parse_dotted_path(text: str) -> tuple[str, ...]:
    """`"realm_access.roles"` -> `("realm_access", "roles")`.

    `\\.` is a literal dot and `\\\\` a literal backslash, so namespaced claims such as
    Auth0's `https://example\\.com/roles` stay addressable. Raises ValueError on an empty
    segment or a dangling escape (the caller names the config field).
    """
    segments: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            if ch not in ".\\":
                raise ValueError("only '\\.' and '\\\\' escapes are allowed")
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        raise ValueError("dangling '\\' at the end")
    segments.append("".join(current))
    if any(s == "" for s in segments):
        raise ValueError("empty claim path segment")
    return tuple(segments)


def claim_at(data: Mapping[str, Any], path: Sequence[str]) -> Any | None:
    """The value at `path`, or None when any step is missing or not an object."""
    if not path:
        return None
    node: Any = data
    for segment in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment)
        if node is None:
            return None
    return node


def _scalar_text(value: Any) -> str | None:
    # JSON spelling for booleans: a policy author writes "true", not Python's "True".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def claim_values(data: Mapping[str, Any], paths: Sequence[Sequence[str]]) -> list[str]:
    """Values of the first path present: a string is split on whitespace (OAuth `scope`),
    an array contributes its scalar items, a bare number or boolean becomes one string.
    Nested objects and arrays are ignored: they cannot be compared to a configured name."""
    for path in paths:
        value = claim_at(data, path)
        if value is None:
            continue
        if isinstance(value, str):
            return value.split()
        if isinstance(value, (list, tuple)):
            out = []
            for item in value:
                text = _scalar_text(item)
                if text is not None and text != "":
                    out.append(text)
            return out
        text = _scalar_text(value)
        return [text] if text is not None else []
    return []


def _encode_text(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)


def _item_text(item: Any) -> str | None:
    if item is None:
        return None
    text = _scalar_text(item)
    if text is not None:
        return text
    try:
        return _compact_json(item)
    except (TypeError, ValueError):
        return None


def sanitize_header_value(v: Any) -> str | None:
    """A header-safe rendering of a claim value, or None when there is nothing safe to send.

    Lists are joined with ", " and only whole items are kept when the 8 KiB cap is reached;
    a single value over the cap is dropped rather than cut, because a truncated identity
    ("admin" from "administrators") could mean something else to the upstream.
    """
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        parts: list[str] = []
        size = 0
        for item in v:
            text = _item_text(item)
            if text is None:
                continue
            encoded = _encode_text(text.strip())
            extra = len(encoded) + (len(LIST_SEPARATOR) if parts else 0)
            if size + extra > MAX_HEADER_VALUE:
                break
            parts.append(encoded)
            size += extra
        return LIST_SEPARATOR.join(parts)
    if isinstance(v, Mapping):
        try:
            text = _compact_json(v)
        except (TypeError, ValueError):
            return None
    else:
        text = _scalar_text(v)
        if text is None:
            return None
    encoded = _encode_text(text.strip())
    return encoded if len(encoded) <= MAX_HEADER_VALUE else None


def build_upstream_headers(claims: Mapping[str, Any], config: "PluginConfig") -> dict[str, str]:
    """upstream_headers_names[i] -> sanitized value of upstream_headers_claims[i]; absent claims
    produce no header (the gateway still strips client-sent copies of every owned name)."""
    out: dict[str, str] = {}
    for name, path in zip(config.upstream_headers_names, config.upstream_headers_claim_paths):
        value = sanitize_header_value(claim_at(claims, path))
        if value is not None:
            out[name] = value
    return out


def identity_header_names(config: "PluginConfig") -> frozenset[str]:
    """Lower-cased names of the headers this plugin owns upstream, so spoofed client copies
    can be removed before the request is proxied."""
    return frozenset(name.lower() for name in config.upstream_headers_names)
