"""Route policies: which requirement applies to a request, and whether a token meets it.

Matching (first policy in config order wins; no match uses the plugin-level requirement,
named "default"; a matched policy's requirement replaces the plugin-level one):
* routes: the Kong route's name or id equals one of the items;
* paths: on Kong's normalized path (`kong.request.get_path()`). A prefix ending in "/" is a plain
  prefix ("/api/" matches "/api/x"); any other prefix matches on a segment boundary ("/api"
  matches "/api" and "/api/x" but not "/apix"), because for a security policy "/admin" must not
  silently cover "/administrators" or, worse, a public "/pub" cover "/publish". A path
  starting with "~" is a regex anchored at the path start like Kong route regexes (re.match);
  add "$" to anchor the end;
* methods: case-insensitive.
Kinds combine with AND; items of one kind with OR.
A path an upstream may read differently (`%2F`, `;params`, `\\`: paths.py) is refused before
matching, or, with `allow_ambiguous_paths`, matched under every reading (`match_readings`): the
requirements of all matched policies apply together, and `public` only if every reading is public.

Requirements follow Kong Enterprise openid-connect: items are alternatives (OR), the
space-separated words of one item must all be present (AND).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from kong_oidc_py.claims import claim_values
from kong_oidc_py.config import AnyOf, ClaimPath
from kong_oidc_py.errors import InsufficientScope, InsufficientUserAuthentication
from kong_oidc_py.paths import normalize_path  # noqa: F401 - re-exported: policies match normalized paths

if TYPE_CHECKING:
    from kong_oidc_py.config import PluginConfig, PolicyConfig

DEFAULT_POLICY = "default"


def _satisfied(any_of: AnyOf, have: frozenset[str]) -> bool:
    return not any_of or any(words <= have for words in any_of)


def _describe(any_of: AnyOf) -> str:
    # Requirements are configuration, not token content, so naming them is safe for logs.
    return " | ".join(" ".join(sorted(words)) for words in any_of)


# kind -> (reason, error_description) when a token lacks every alternative of that kind.
_UNMET = {
    "scopes": ("insufficient_scope", "The access token lacks a required scope"),
    "groups": ("missing_groups", "The access token lacks a required group"),
    "roles": ("missing_roles", "The access token lacks a required role"),
}


@dataclass(frozen=True)
class Requirement:
    scopes: AnyOf = ()
    groups: AnyOf = ()
    roles: AnyOf = ()
    claims: tuple[tuple[ClaimPath, frozenset[str]], ...] = ()
    public: bool = False
    scope_hint: str | None = None
    scopes_claim: tuple[ClaimPath, ...] = (("scope",),)
    groups_claim: tuple[ClaimPath, ...] = (("groups",),)
    roles_claim: tuple[ClaimPath, ...] = (("roles",),)
    dpop: str | None = None  # this policy's DPoP mode; None: the plugin-level one
    acr: tuple[str, ...] = ()  # step-up (RFC 9470): any of these acr values
    amr: AnyOf = ()
    max_age: int | None = None

    @property
    def steps_up(self) -> bool:
        return bool(self.acr or self.amr or self.max_age is not None)

    def check_authentication(self, auth: Mapping[str, Any], now: float, leeway: int = 0) -> None:
        """RFC 9470: raise InsufficientUserAuthentication when `auth` (token claims, or a
        session's ID token claims) lacks the acr, amr or freshness this requirement asks for."""
        if not self.steps_up:
            return
        hint = " ".join(self.acr) or None

        def fail(reason: str, detail: str) -> InsufficientUserAuthentication:
            return InsufficientUserAuthentication(
                reason, "A different authentication level is required", detail,
                acr_values=hint, max_age=self.max_age)

        if self.acr:
            acr = auth.get("acr")
            if type(acr) is not str or acr not in self.acr:
                raise fail("insufficient_acr", f"acr {str(acr)[:40]!r} is not one of {' '.join(self.acr)}")
        if self.amr:
            amr = auth.get("amr")
            have = frozenset(v for v in amr if type(v) is str) if type(amr) is list else frozenset()
            if not _satisfied(self.amr, have):
                raise fail("insufficient_amr", f"required amr: {_describe(self.amr)}")
        if self.max_age is not None:
            auth_time = auth.get("auth_time")
            if type(auth_time) not in (int, float) or auth_time != auth_time:
                raise fail("missing_auth_time", "auth_time absent")
            if now - auth_time > self.max_age + leeway:
                raise fail("auth_too_old", f"authenticated {int(now - auth_time)}s ago > max_age {self.max_age}")

    def _word_lists(self) -> tuple[tuple[str, AnyOf, tuple[ClaimPath, ...]], ...]:
        """(kind, required, where the token carries it), in the order evaluate checks them."""
        return (("scopes", self.scopes, self.scopes_claim), ("groups", self.groups, self.groups_claim),
                ("roles", self.roles, self.roles_claim))

    def evaluate(self, claims: Mapping[str, Any], cfg: Any = None, trace: Any = None, *, paths: Any = None) -> None:
        """Raise InsufficientScope for the first unmet requirement (scopes, groups, roles,
        claims). The claim locations are part of the Requirement (`cfg` is unused, kept for the
        DESIGN.md signature); `paths` (issuers.ClaimPaths) overrides them for a token from an
        issuer with its own claim paths. `trace` (explain only) records each one met."""
        if paths is not None:
            return replace(self, scopes_claim=paths.scopes, groups_claim=paths.groups,
                           roles_claim=paths.roles).evaluate(claims, trace=trace)
        for kind, any_of, where in self._word_lists():
            if any_of and not _satisfied(any_of, frozenset(claim_values(claims, where))):
                reason, description = _UNMET[kind]
                raise InsufficientScope(reason, description, detail=f"required {kind}: {_describe(any_of)}",
                                        scope=self.scope_hint if kind == "scopes" else None)
        for path, allowed in self.claims:
            if allowed.isdisjoint(claim_values(claims, (path,))):
                raise InsufficientScope(
                    "claim_mismatch", "A claim of the access token does not have an allowed value",
                    detail=f"claim {'.'.join(path)} must be one of the configured values",
                )
        if trace is not None:
            self._trace(claims, trace)

    def _trace(self, claims: Mapping[str, Any], trace: Any) -> None:
        """What evaluate accepted (it raised on the first unmet requirement, so each held)."""
        for kind, any_of, paths in self._word_lists():
            where = " or ".join(".".join(p) for p in paths)
            if not any_of:
                trace.add("requirement", kind, None, "none required")
                continue
            have = frozenset(claim_values(claims, paths))
            met = next(words for words in any_of if words <= have)
            trace.add("requirement", kind, True, f"required {_describe(any_of)}; {where} has {' '.join(sorted(met))}")
        for path, allowed in self.claims:
            trace.add("requirement", "claim " + ".".join(path), True, f"has one of {sorted(allowed)!r}")


def _all_of(a: AnyOf, b: AnyOf) -> AnyOf:
    """(a1 | a2) AND (b1 | b2) as one OR-list: every pairing, each pairing's words united."""
    if not a:
        return b
    if not b:
        return a
    out: list[frozenset[str]] = []
    for x in a:
        for y in b:
            words = x | y
            if words not in out:
                out.append(words)
    return tuple(out)


def all_of(requirements: "Sequence[Requirement]") -> Requirement:
    """One requirement that holds exactly when every one of `requirements` holds; public only
    when all of them are. Used when a path has several readings (paths.py): the strictest
    result applies, and requirements of different policies need not be comparable, so the
    only safe "strictest" is all of them."""
    first = requirements[0]
    if len(requirements) == 1:
        return first
    scopes, groups, roles = first.scopes, first.groups, first.roles
    claims = list(first.claims)
    hints = [first.scope_hint] if first.scope_hint else []
    for r in requirements[1:]:
        scopes, groups, roles = _all_of(scopes, r.scopes), _all_of(groups, r.groups), _all_of(roles, r.roles)
        claims.extend(c for c in r.claims if c not in claims)
        if r.scope_hint and r.scope_hint not in hints:
            hints.append(r.scope_hint)
    hint_words = list(dict.fromkeys(" ".join(hints).split()))
    return Requirement(
        scopes=scopes, groups=groups, roles=roles, claims=tuple(claims),
        public=all(r.public for r in requirements),
        scope_hint=" ".join(hint_words) or None,
        scopes_claim=first.scopes_claim, groups_claim=first.groups_claim, roles_claim=first.roles_claim,
    )


@dataclass(frozen=True)
class MatchedPolicy:
    name: str
    requirement: Requirement


@dataclass(frozen=True)
class _Matcher:
    routes: frozenset[str]
    prefixes: tuple[str, ...]
    regexes: tuple[re.Pattern[str], ...]
    methods: frozenset[str]

    @property
    def has_paths(self) -> bool:
        return bool(self.prefixes or self.regexes)

    def matches(self, route_id: str | None, route_name: str | None, path: str | None, method: str | None) -> bool:
        return self.mismatch(route_id, route_name, path, method) is None

    def mismatch(self, route_id: str | None, route_name: str | None, path: str | None, method: str | None) -> str | None:
        """None when the request matches, else the first kind that does not (for explain)."""
        if self.routes and not ((route_id is not None and route_id in self.routes)
                                or (route_name is not None and route_name in self.routes)):
            return "routes"
        if self.has_paths and (path is None or not self._path_matches(path)):
            return "paths"
        if self.methods and (method is None or method.upper() not in self.methods):
            return "methods"
        return None

    def _path_matches(self, path: str) -> bool:
        for prefix in self.prefixes:
            if prefix_matches(prefix, path):
                return True
        return any(rx.match(path) for rx in self.regexes)


def prefix_matches(prefix: str, path: str) -> bool:
    """Plain prefix when `prefix` ends with "/", segment-boundary prefix otherwise."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _plugin_requirement(cfg: "PluginConfig") -> Requirement:
    return Requirement(
        scopes=cfg.scopes_any_of,
        groups=cfg.groups_any_of,
        roles=cfg.roles_any_of,
        scope_hint=cfg.scope_hint,
        scopes_claim=cfg.scopes_claim_paths,
        groups_claim=cfg.groups_claim_paths,
        roles_claim=cfg.roles_claim_paths,
        acr=cfg.acr_required,
        amr=cfg.amr_any_of,
        max_age=cfg.max_age,
    )


def _policy_requirement(policy: "PolicyConfig", plugin: Requirement) -> Requirement:
    """The policy's own requirement on the plugin's claim locations. Each step-up field the
    policy sets replaces the plugin-level one; each it leaves unset keeps it (a policy adding
    max_age must not silently drop an MFA requirement). A replacement that asks for less is
    said at start (rules.config_warnings)."""
    return replace(plugin, scopes=policy.scopes_required, groups=policy.groups_required, roles=policy.roles_required,
                   claims=policy.claims, public=policy.public, scope_hint=policy.scope_hint, dpop=policy.dpop,
                   acr=plugin.acr if policy.acr_required is None else policy.acr_required,
                   amr=plugin.amr if policy.amr_required is None else policy.amr_required,
                   max_age=plugin.max_age if policy.max_age is None else policy.max_age)


class PolicySet:
    """Immutable after construction; shared by all request threads."""

    def __init__(self, policies: tuple[tuple[_Matcher, MatchedPolicy], ...], default: MatchedPolicy) -> None:
        self._policies = policies
        self._default = default
        self.needs_route = any(m.routes for m, _ in policies)
        self.needs_path = any(m.has_paths for m, _ in policies)
        self.needs_method = any(m.methods for m, _ in policies)

    @classmethod
    def from_config(cls, cfg: "PluginConfig") -> "PolicySet":
        default = MatchedPolicy(DEFAULT_POLICY, _plugin_requirement(cfg))
        entries = []
        for p in cfg.policies:
            matcher = _Matcher(
                routes=frozenset(p.routes),
                prefixes=tuple(x for x in p.paths if not x.startswith("~")),
                regexes=tuple(re.compile(x[1:]) for x in p.paths if x.startswith("~")),
                methods=frozenset(m.upper() for m in p.methods),
            )
            entries.append((matcher, MatchedPolicy(p.name, _policy_requirement(p, default.requirement))))
        return cls(tuple(entries), default)

    def match(self, *, route_id: str | None = None, route_name: str | None = None,
              path: str | None = None, method: str | None = None, trace: Any = None) -> MatchedPolicy:
        if path is not None:
            path = normalize_path(path)
        for matcher, policy in self._policies:
            miss = matcher.mismatch(route_id, route_name, path, method)
            if miss is None:
                if trace is not None:
                    trace.add("policy", policy.name, True, "matches " + _matched_on(matcher))
                return policy
            if trace is not None:
                trace.add("policy", policy.name, None, _why_not(miss, route_id, route_name, path, method))
        if trace is not None:
            trace.add("policy", self._default.name, True, "no policy matched: the plugin-level requirement applies")
        return self._default

    def match_readings(self, *, route_id: str | None = None, route_name: str | None = None,
                       readings: Sequence[str], method: str | None = None, trace: Any = None) -> MatchedPolicy:
        """The policy for a path with several readings (paths.path_readings): each reading is
        matched; one policy for all of them is returned as is, otherwise the result is named
        "a+b" and requires everything each of them requires (public only if all are)."""
        found: list[MatchedPolicy] = []
        for reading in readings:
            if trace is not None:
                trace.add("policy", "reading", None, f"an upstream may read the path as {reading!r}")
            policy = self.match(route_id=route_id, route_name=route_name, path=reading, method=method, trace=trace)
            if policy not in found:
                found.append(policy)
        if len(found) == 1:
            return found[0]
        combined = MatchedPolicy("+".join(p.name for p in found), all_of([p.requirement for p in found]))
        if trace is not None:
            trace.add("policy", combined.name, True, "the readings match different policies: all their requirements apply"
                      + ("" if combined.requirement.public else ", and the result is not public"))
        return combined


def _matched_on(matcher: _Matcher) -> str:
    kinds = [k for k, v in (("route", matcher.routes), ("path", matcher.has_paths), ("method", matcher.methods)) if v]
    return " and ".join(kinds)


def _why_not(kind: str, route_id: str | None, route_name: str | None, path: str | None, method: str | None) -> str:
    if kind == "routes":
        return f"route {route_name or route_id or '(none)'!r} is not in its routes"
    if kind == "paths":
        return f"path {path!r} matches none of its paths"
    return f"method {method!r} is not in its methods"
