"""The decision: one request in, one Outcome out. Plain Python; the handler owns the PDK.

Paths, in order:
1. CORS preflight when `run_on_preflight` is off -> allowed without a token.
2. Route policy: a `public` policy needs no token.
3. Browser endpoints (callback, logout) and sessions, when `authorization_code`/`session` is on.
4. Bearer token -> verify -> policy -> identity headers.
5. No usable credential: browser navigations go to the IdP, everyone else gets RFC 6750 401,
   unless `anonymous` is configured.

Before any of them: a header list Kong cut short (1000 headers) and a path an upstream may read
differently (paths.py) get 400 `invalid_request`, unless `allow_truncated_headers` /
`allow_ambiguous_paths` say otherwise.

Identity headers the client sent are removed on every allowed outcome, in every spelling an
upstream reads as the same name (headers.py); the denied outcomes never reach the upstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from cachetools import LRUCache

from kong_oidc_py.claims import build_upstream_headers, claim_values, sanitize_header_value
from kong_oidc_py.config import PluginConfig, parse_config
from kong_oidc_py.rules import config_warnings
from kong_oidc_py.errors import AuthError, InvalidRequest, InvalidToken, MissingToken, render_error
from kong_oidc_py.headers import KONG_CONSUMER_HEADERS, KONG_IDENTITY_HEADERS, header_key, spellings, spoofed_spellings
from kong_oidc_py.paths import PATH_DESCRIPTIONS, judge_path
from kong_oidc_py.verification.extractor import bearer_removal, extract, query_without_token
from kong_oidc_py.policy import MatchedPolicy, PolicySet
from kong_oidc_py.idp.provider import Provider, ProviderSettings, get_provider
from kong_oidc_py.trace import Trace
from kong_oidc_py.verification.access import AccessTokens
from kong_oidc_py.verification.dpop import build_binding, dpop_token, request_htu
from kong_oidc_py.verification.verify import Claims, Verifier, VerifyOptions

log = logging.getLogger("kong_oidc_py")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class RequestView(Protocol):
    headers: Mapping[str, list[str]]
    headers_truncated: bool

    def path(self) -> str: ...
    def method(self) -> str: ...
    def route(self) -> dict | None: ...
    def query(self) -> Mapping[str, list[str]]: ...
    def raw_query(self) -> str: ...
    def scheme(self) -> str: ...
    def host(self) -> str: ...
    def port(self) -> int: ...
    def body(self) -> bytes: ...
    def credential(self) -> dict | None: ...
    def load_consumer(self, value: str, by_username: bool) -> dict | None: ...


@dataclass
class Outcome:
    status: int | None = None
    body: str | dict | None = None
    response_headers: dict[str, str | list[str]] = field(default_factory=dict)
    upstream_set: dict[str, str] = field(default_factory=dict)
    upstream_clear: list[str] = field(default_factory=list)
    upstream_raw_query: str | None = None   # kong.service.request.set_raw_query (hide_credentials)
    authenticated_groups: list[str] | None = None
    consumer: dict | None = None
    credential: dict | None = None
    log: dict = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.status is None


def consumer_headers(consumer: Mapping[str, Any], credential: Mapping[str, Any] | None) -> dict[str, str]:
    """The consumer headers with a value; the others are cleared by the spoofed-header rule."""
    out: dict[str, str] = {}
    for name, key in (("X-Consumer-ID", "id"), ("X-Consumer-Custom-ID", "custom_id"), ("X-Consumer-Username", "username")):
        value = consumer.get(key)
        if isinstance(value, str) and value:
            out[name] = sanitize_header_value(value) or ""
    if credential is not None:
        ident = credential.get("id")
        if isinstance(ident, str) and ident:
            out["X-Credential-Identifier"] = sanitize_header_value(ident) or ""
    else:
        out["X-Anonymous-Consumer"] = "true"
    return {k: v for k, v in out.items() if v}


# Verifier.explain step names -> explain's stages (anything else is a claim check).
_VERIFY_STAGES = {"size": "token", "header": "header", "key": "key", "signature": "signature"}


def first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if isinstance(values, list):
        return values[0] if values and isinstance(values[0], str) else None
    return values if isinstance(values, str) else None


class Gateway:
    """Everything one plugin config needs, built once at instance start and shared by threads."""

    def __init__(self, config: PluginConfig, provider: Provider | None = None) -> None:
        self.config = config
        self.policies = PolicySet.from_config(config)
        # With consumer mapping or anonymous access we speak for the consumer like Kong's own
        # auth plugins, so their consumer headers are ours to set and to strip when spoofed.
        self.sets_consumer = bool(config.consumer_claim or config.anonymous)
        # When another auth plugin already authenticated (anonymous = logical OR), its
        # set_consumer has just set or cleared these exact names, so they are not the client's.
        self._set_by_other_plugin = frozenset(name.lower() for name in KONG_CONSUMER_HEADERS)
        # `provider` is for callers with their own key source (explain --jwks); Kong never passes one.
        self.provider: Provider = provider or get_provider(config.issuer, ProviderSettings.from_config(config))
        self.verifier = Verifier(self.provider, VerifyOptions.from_config(config))
        self.binding = build_binding(config)
        self.dpop_algs = self.binding.checker.algs_text if self.binding.checker is not None else None
        self.tokens = AccessTokens.from_config(config, self.provider, self.verifier,
                                               lambda issuer, settings: get_provider(issuer, settings))
        self._claims_memo: dict[str, tuple] = {}  # _claim_outputs
        self.browser = None
        if "authorization_code" in config.auth_methods or "session" in config.auth_methods:
            from kong_oidc_py.browser.login import BrowserFlow

            self.browser = BrowserFlow(config, self.provider, self.verifier)
        self.owned_headers = self._owned_headers(config)
        self._owned_spellings = tuple(sorted({s for key in self.owned_headers for s in spellings(key)}))
        self._alias_hits: dict[tuple[str, ...], tuple[str, ...]] = {}  # headers_to_strip
        # Weaker-than-default choices, said once per instance config (edge/kong_log.py replays
        # these WARNING records through kong.log.warn, at a level Kong shows by default).
        for option, effect in config_warnings(config):
            log.warning("oidc: weaker than the default: %s (issuer %s): %s", option, config.issuer, effect)
        self.provider.warm_start()

    def _owned_headers(self, config: PluginConfig) -> frozenset[str]:
        """Header keys (headers.header_key) this instance strips from client requests."""
        owned = {header_key(name) for name in config.upstream_headers_names}
        if self.sets_consumer:
            owned.update(header_key(name) for name in KONG_CONSUMER_HEADERS)
        if not config.keep_kong_identity_headers:
            # Whether or not we set them: an upstream behind Kong trusts them.
            owned.update(header_key(name) for name in KONG_IDENTITY_HEADERS)
        if self.browser is not None and config.upstream_access_token_header:
            name = config.upstream_access_token_header.partition(":")[0]
            if header_key(name) != "authorization":  # the bearer path passes the client's own
                owned.add(header_key(name))
        return frozenset(owned)

    # -- the decision ---------------------------------------------------------------------

    def handle(self, req: RequestView, trace: Trace | None = None) -> Outcome:
        """`trace` (explain only) records each decision step; None costs nothing."""
        cfg = self.config
        if req.headers_truncated and not cfg.allow_truncated_headers:
            # We cannot see the whole request: a second Authorization or a spoofed identity
            # header may sit after the first 1000 headers.
            if trace is not None:
                trace.add("decision", "headers_truncated", False, "1000 headers or more and allow_truncated_headers is false")
            return self.deny(InvalidRequest("headers_truncated", "The request has too many headers"), "-")
        # One PDK call on routes whose policies do not need the path; it buys the guarantee
        # that what the policy matched is what the upstream serves (paths.py).
        verdict = judge_path(req.path(), cfg.allow_ambiguous_paths)
        if trace is not None:
            trace.add("path", "path", None if verdict.problems and verdict.refused is None else verdict.refused is None,
                      "no encoded separator, ';' parameter or backslash" if not verdict.problems
                      else f"{', '.join(verdict.problems)}: " + (f"refused ({verdict.refused})" if verdict.refused
                      else f"allow_ambiguous_paths: policies see every reading {list(verdict.readings)!r}"))
        if verdict.refused is not None:
            err = InvalidRequest(verdict.refused, PATH_DESCRIPTIONS[verdict.refused],
                                 detail="path checks failed: " + ", ".join(verdict.problems))
            if trace is not None:
                trace.add("decision", verdict.refused, False, err.detail or "")
            return self.deny(err, "-")

        if not cfg.run_on_preflight and self._is_preflight(req):
            if trace is not None:
                trace.add("decision", "preflight", True, "CORS preflight and run_on_preflight is false")
            return self._allow(req, None, policy_name="preflight", decision="preflight")

        if cfg.anonymous and req.credential() is not None:
            # Kong's auth plugins with `anonymous` form a logical OR: a credential another auth
            # plugin (higher priority) already established stands, and we step aside.
            if trace is not None:
                trace.add("decision", "already_authenticated", True, "another auth plugin set a credential and anonymous is set")
            return self._allow(req, None, policy_name="-", decision="already_authenticated")

        policy = self._match_policy(req, verdict.readings, trace)
        if policy.requirement.public:
            if trace is not None:
                trace.add("decision", "public", True, f"policy {policy.name!r} is public: no token needed")
            return self._allow(req, None, policy_name=policy.name, decision="public")

        if self.browser is not None:
            outcome = self.browser.handle(req, policy, self)
            if trace is not None:
                trace.add("browser", "flow", None if outcome is None or outcome.status in (302, 303) else outcome.allowed,
                          "not a browser request: bearer path" if outcome is None
                          else f"browser flow decided: {outcome.log.get('decision')} {outcome.log.get('reason') or ''}".rstrip())
            if outcome is not None:
                return outcome

        mode = policy.requirement.dpop or cfg.proof_of_possession_dpop
        scheme = "bearer"
        try:
            query = req.query() if "query" in cfg.bearer_token_param_type else None
            token = extract(req.headers, cfg, query, trace)
            bound = dpop_token(req.headers) if "header" in cfg.bearer_token_param_type else None
            if bound is not None:
                if token is not None:
                    raise InvalidRequest("invalid_request", "The token was sent by more than one method")
                token, scheme = bound, "dpop"
            if token is None:
                raise MissingToken()
            claims, how, paths = self.tokens.check(token) if trace is None else self._check_traced(token, trace)
            self.binding.enforce(mode=mode, scheme=scheme, token=token, claims=claims.data, headers=req.headers,
                                 method=req.method, htu=lambda: request_htu(req.scheme(), req.host(), req.port(),
                                                                            req.path()),
                                 token_digest=claims.token_digest)
            policy.requirement.check_authentication(claims.data, time.time(), cfg.leeway)
            policy.requirement.evaluate(claims.data, trace=trace, paths=paths)
            consumer, credential = self.consumer_for(req, claims)
        except AuthError as err:
            if trace is not None:
                trace.add("decision", err.reason, False, getattr(err, "detail", None) or err.description)
            if scheme == "dpop" or mode == "required":
                err.dpop_challenge = True
            return self._deny_or_anonymous(req, err, policy)
        if trace is not None:
            trace.add("decision", "allow", True, f"policy {policy.name!r} satisfied"
                      + (f"; consumer {consumer.get('username') or consumer.get('id')!r}" if consumer else ""))
        outcome = self._allow(
            req, claims, policy_name=policy.name, decision="allow", auth_method=how,
            consumer=consumer, credential=credential, claim_paths=paths,
        )
        if scheme == "dpop":
            outcome.log["token_binding"] = "dpop"
        if cfg.hide_credentials:
            self._hide_credentials(req, outcome, query)
            if scheme == "dpop":
                outcome.upstream_clear = sorted(set(outcome.upstream_clear) | {"authorization", "dpop"})
        return outcome

    def _check_traced(self, token: str, trace: Trace) -> tuple[Claims, str, Any]:
        """AccessTokens.check with each step reported (explain only)."""
        how, verifier, paths = self.tokens.route(token)
        if verifier is None:
            claims = self.tokens.introspector.introspect(token)
            trace.add("token", "introspection", True, "active per the IdP's introspection endpoint")
            return claims, how, paths
        return self._verify_traced(token, trace, verifier), how, paths

    def _verify_traced(self, token: str, trace: Trace, verifier: Verifier | None = None) -> Claims:
        """Verifier.explain: the checks verify() makes, each one reported (explain only; the
        token cache is bypassed, and a cached answer came from these same checks)."""
        result = (verifier or self.verifier).explain(token)
        for step in result.steps:
            if step.ok:  # the failed check is the decision step Gateway.handle records
                trace.add(_VERIFY_STAGES.get(step.check, "claim"), step.check, True, step.detail)
        if result.error is not None:
            raise result.error
        assert result.claims is not None
        return result.claims

    # -- helpers shared with the browser flow --------------------------------------------

    def _hide_credentials(self, req: RequestView, outcome: "Outcome", query: Mapping[str, list[str]] | None) -> None:
        """KO hide_credentials: the upstream never sees the bearer token, wherever it came in."""
        removal = bearer_removal(req.headers, self.config, query)
        for name, value in removal.set.items():
            outcome.upstream_set[name] = value
        kept = {name.lower() for name in removal.set}
        outcome.upstream_clear = sorted(set(outcome.upstream_clear) | {n for n in removal.clear if n not in kept})
        if removal.strip_query:
            outcome.upstream_raw_query = query_without_token(req.raw_query())

    def _is_preflight(self, req: RequestView) -> bool:
        h = req.headers
        return "origin" in h and "access-control-request-method" in h and req.method() == "OPTIONS"

    def _match_policy(self, req: RequestView, readings: tuple[str, ...], trace: Trace | None = None) -> MatchedPolicy:
        """`readings`: the path, or every reading of it when ambiguous paths are allowed."""
        p = self.policies
        route = req.route() if p.needs_route else None
        route_id = route.get("id") if route else None
        route_name = route.get("name") if route else None
        method = req.method() if p.needs_method else None
        if p.needs_path and len(readings) > 1:
            return p.match_readings(route_id=route_id, route_name=route_name, readings=readings, method=method,
                                    trace=trace)
        return p.match(route_id=route_id, route_name=route_name,
                       path=readings[0] if p.needs_path else None, method=method, trace=trace)

    def identity(self, claims: Claims | None) -> dict[str, str]:
        return dict(self._claim_outputs(claims, None)[0]) if claims is not None else {}

    def _claim_outputs(self, claims: Claims, claim_paths: Any) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
        """What a verified token gives every request it is allowed on: identity headers, groups
        from `authenticated_groups_claim`, claim log fields. Remembered for the Claims object the
        token cache hands out again on a repeat token (so never past its exp), keyed by the
        token's hash; callers copy before changing them."""
        memo = self._claims_memo.get(claims.token_hash)
        if memo is not None and memo[0] is claims and memo[1] is claim_paths:
            return memo[2]
        cfg = self.config
        groups: tuple[str, ...] = ()
        if cfg.authenticated_groups_claim:
            groups = tuple(v for v in claim_values(claims.data, [cfg.authenticated_groups_claim]) if v != cfg.guard_group)
        outputs = (build_upstream_headers(claims.data, cfg), groups, self._claim_log_fields(claims, claim_paths))
        if len(self._claims_memo) >= _MAX_CLAIMS_MEMO:
            self._claims_memo.clear()
        self._claims_memo[claims.token_hash] = (claims, claim_paths, outputs)
        return outputs

    def _allow(
        self,
        req: RequestView,
        claims: Claims | None,
        *,
        policy_name: str,
        decision: str,
        auth_method: str | None = None,
        extra_set: Mapping[str, str] | None = None,
        extra_clear: list[str] | None = None,
        response_headers: Mapping[str, str | list[str]] | None = None,
        consumer: dict | None = None,
        credential: dict | None = None,
        claim_paths: Any = None,
    ) -> Outcome:
        cfg = self.config
        log_fields = self._log_fields(None, policy_name, decision, auth_method=auth_method)
        if claims is not None:
            identity, claim_groups, claim_log = self._claim_outputs(claims, claim_paths)
            upstream_set = dict(identity)
            groups = [cfg.guard_group, *claim_groups]
            log_fields.update(claim_log)
        else:
            upstream_set = {}
            groups = [cfg.guard_group]
        if extra_set:
            upstream_set.update(extra_set)
        if self.sets_consumer and consumer is not None:
            upstream_set.update(consumer_headers(consumer, credential))
        spoofed = self.headers_to_strip(req.headers, req.headers_truncated, upstream_set, decision)
        clear = sorted(set(spoofed).union(extra_clear)) if extra_clear else spoofed
        if consumer is not None:
            log_fields["consumer"] = consumer.get("username") or consumer.get("custom_id") or consumer.get("id")
        return Outcome(
            response_headers=dict(response_headers or {}),
            upstream_set=upstream_set,
            upstream_clear=clear,
            authenticated_groups=groups,
            consumer=consumer,
            credential=credential,
            log=log_fields,
        )

    def headers_to_strip(self, headers: Mapping[str, Any], truncated: bool, upstream_set: Mapping[str, str],
                         decision: str) -> list[str]:
        """The client's headers to remove before an allowed request is proxied (also for
        `explain`): every received spelling of an owned header (headers.py). A name we set
        replaces the client's copy of that exact name (nginx compares names case-insensitively),
        and after another auth plugin (`already_authenticated`) its consumer headers stand."""
        if truncated:
            # allow_truncated_headers: we may not have seen every header the client sent, so
            # clear every spelling of every header we own.
            keep = self._keep(upstream_set, decision)
            return [n for n in self._owned_spellings if n not in keep]
        # Which received names alias an owned header depends only on the names: clients send
        # the same set again and again, so the answer is remembered per set (bounded in sets and
        # in names per set, so a client cannot make the table hold much).
        names = tuple(headers)
        hits = self._alias_hits.get(names) if len(names) <= _MAX_ALIAS_NAMES else None
        if hits is None:
            hits = tuple(spoofed_spellings(names, self.owned_headers, frozenset()))
            if len(names) <= _MAX_ALIAS_NAMES:
                if len(self._alias_hits) >= _MAX_ALIAS_HITS:
                    self._alias_hits.clear()
                self._alias_hits[names] = hits
        if not hits:
            return []
        keep = self._keep(upstream_set, decision)
        return [n for n in hits if n.lower() not in keep]

    def _keep(self, upstream_set: Mapping[str, str], decision: str) -> set[str]:
        keep = {name.lower() for name in upstream_set}
        if decision == "already_authenticated":
            keep |= self._set_by_other_plugin
        return keep

    def consumer_for(self, req: RequestView, claims: Claims) -> tuple[dict | None, dict | None]:
        """KO consumer mapping: the first `consumer_by` lookup that finds the claim's value."""
        cfg = self.config
        if not cfg.consumer_claim:
            return None, None
        values = claim_values(claims.data, [cfg.consumer_claim])
        found = None
        if values:
            value = values[0]
            for by in cfg.consumer_by:
                if by == "id":
                    # load_consumer raises a Lua error for a non-UUID id (kong/pdk/client.lua).
                    candidate = req.load_consumer(value, False) if _UUID.fullmatch(value) else None
                    if candidate is not None and candidate.get("id") == value:
                        found = candidate
                elif by == "username":
                    candidate = req.load_consumer(value, True)
                    if candidate is not None and candidate.get("username") == value:
                        found = candidate
                if found is not None:
                    break
        if found is None:
            if cfg.consumer_optional:
                return None, None
            raise InvalidToken("consumer_not_found", "the token does not map to a known consumer")
        ids = claim_values(claims.data, [cfg.credential_claim]) if cfg.credential_claim else []
        credential = {"id": ids[0] if ids else claims.token_hash, "consumer_id": found.get("id")}
        return found, credential

    def _deny_or_anonymous(self, req: RequestView, err: AuthError, policy: MatchedPolicy) -> Outcome:
        cfg = self.config
        fields = self._log_fields(None, policy.name, "deny", reason=err.reason)
        detail = getattr(err, "detail", None)
        if detail:
            fields["detail"] = detail
        if cfg.anonymous and err.status == 401:
            anonymous = req.load_consumer(cfg.anonymous, True)
            if anonymous is not None:
                outcome = self._allow(req, None, policy_name=policy.name, decision="anonymous", consumer=anonymous)
                outcome.log["reason"] = err.reason
                outcome.log["consumer"] = anonymous.get("username") or anonymous.get("id")
                return outcome
            fields["reason"] = "anonymous_not_found"
            return Outcome(status=500, body={"message": "An unexpected error occurred"}, log=fields)
        response = render_error(err, cfg.realm, dpop_algs=self.dpop_algs)
        return Outcome(status=response.status, body=response.body, response_headers=dict(response.headers), log=fields)

    def deny(self, err: AuthError, policy_name: str) -> Outcome:
        response = render_error(err, self.config.realm)
        fields = self._log_fields(None, policy_name, "deny", reason=err.reason)
        if err.detail:
            fields["detail"] = err.detail
        return Outcome(status=response.status, body=response.body, response_headers=dict(response.headers), log=fields)

    def _log_fields(
        self,
        claims: Claims | None,
        policy_name: str,
        decision: str,
        *,
        reason: str | None = None,
        auth_method: str | None = None,
        claim_paths: Any = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"decision": decision, "policy": policy_name}
        if reason:
            fields["reason"] = reason
        if auth_method:
            fields["auth_method"] = auth_method
        if claims is not None:
            fields.update(self._claim_log_fields(claims, claim_paths))
        return fields

    def _claim_log_fields(self, claims: Claims, claim_paths: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        data = claims.data
        for key in ("sub", "iss"):
            value = data.get(key)
            if isinstance(value, str):
                fields["subject" if key == "sub" else "issuer"] = value[:256]
        client = data.get("client_id") or data.get("azp")
        if isinstance(client, str):
            fields["client_id"] = client[:256]
        scopes = claim_values(data, claim_paths.scopes if claim_paths else self.config.scopes_claim_paths)
        if scopes:
            fields["scopes"] = " ".join(scopes)[:1024]
        fields["token_hash"] = claims.token_hash
        return fields


# Distinct received header-name sets whose aliases of owned headers are remembered.
_MAX_ALIAS_HITS = 1024
_MAX_ALIAS_NAMES = 64
# Distinct verified tokens whose request outputs a Gateway remembers (_claim_outputs).
_MAX_CLAIMS_MEMO = 4096


# -- one Gateway per config per process ---------------------------------------------------

# Bounded: every config change makes a new Gateway (Kong restarts instances on any change).
_GATEWAYS: LRUCache = LRUCache(maxsize=64)
_GATEWAYS_LOCK = threading.Lock()
# Kong stamps these on every config; they change without the config changing.
_VOLATILE_KEYS = ("__seq__", "__key__")


def config_fingerprint(raw: Mapping[str, Any]) -> str:
    stable = {k: v for k, v in raw.items() if k not in _VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def gateway_for(raw: Mapping[str, Any]) -> Gateway:
    """Parse and build once per distinct config; raises ConfigError naming the field."""
    key = config_fingerprint(raw)
    with _GATEWAYS_LOCK:
        gateway = _GATEWAYS.get(key)
        if gateway is not None:
            return gateway
    gateway = Gateway(parse_config(raw))
    with _GATEWAYS_LOCK:
        return _GATEWAYS.setdefault(key, gateway)
