"""Target: the policy matcher (policy.py) on the path and method a client chooses.

Input: text, `METHOD\\npath`. The path goes in raw (the matcher's own guard must cope) and as
Kong hands it over (kong/tools/uri.lua normalize, modelled in tests/kong_host/uri.py).

Contract: `match` always answers one of the configured policies (or "default"), never raises,
in bounded time; and the decision is the same for every equivalent spelling of the request:
dot segments added, an unreserved character percent-encoded (either hex case), the method in
another case. A policy that can be dodged by spelling the path differently is no policy.
"""

from __future__ import annotations

from typing import Iterator

from fuzz import contract
from kong_oidc_py.config import parse_config
from kong_oidc_py.policy import DEFAULT_POLICY, PolicySet
from tests.kong_host.uri import normalize

NAME = "policy_match"
CONFIG = parse_config({
    "issuer": "https://idp.example.com",
    "allow_any_audience": True,
    "policies": [
        {"name": "public", "paths": ["/public", "/docs/"], "public": True},
        {"name": "admin-write", "paths": ["/admin/"], "methods": ["POST", "DELETE"], "scopes_required": ["admin"]},
        {"name": "admin", "paths": ["/admin"], "scopes_required": ["admin read"]},
        {"name": "reports", "paths": ["~/reports/[0-9]+$"], "scopes_required": ["reports"]},
        {"name": "api", "paths": ["/api/v1"], "methods": ["GET", "HEAD"], "scopes_required": ["read"]},
    ],
})
POLICIES = PolicySet.from_config(CONFIG)
NAMES = frozenset({p.name for p in CONFIG.policies} | {DEFAULT_POLICY})
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def decide(method: str, path: str) -> str:
    return contract.bounded(lambda: POLICIES.match(path=path, method=method)).name


def spellings(path: str) -> list[str]:
    """Equivalent spellings of `path` (RFC 3986 6.2.2): a `./` or `x/../` segment after a
    slash, the first unreserved character percent-encoded in upper and in lower hex."""
    out = []
    cut = path.find("/", 1)
    if cut > 0:
        out += [path[: cut + 1] + "./" + path[cut + 1 :], path[: cut + 1] + "x/../" + path[cut + 1 :]]
    for i, ch in enumerate(path):
        if ch in _UNRESERVED and ch != ".":  # "%2E" is decoded into a dot segment by Kong
            code = f"%{ord(ch):02X}"
            out += [path[:i] + code + path[i + 1 :], path[:i] + code.lower() + path[i + 1 :]]
            break
    return out


def one_input(data: bytes) -> None:
    text = contract.text(data)
    method, _, path = text.partition("\n")
    raw = decide(method, path)
    if raw not in NAMES:
        raise contract.Violation(f"matched an unknown policy {raw!r}")
    if not path.startswith("/"):
        return  # Kong's paths always start with "/"; only the no-crash contract applies
    kong_path = normalize(path, True)
    decision = decide(method, kong_path)
    if decide(method.lower(), kong_path) != decision or decide(method.upper(), kong_path) != decision:
        raise contract.Violation("the method's case changes the decision")
    for spelling in spellings(kong_path):
        other = decide(method, normalize(spelling, True))
        if other != decision:
            raise contract.Violation(f"equivalent spelling changes the decision: {decision} vs {other}")


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
