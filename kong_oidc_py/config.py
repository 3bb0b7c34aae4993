"""Plugin options: the option table, typed config and its validation.

`OPTIONS` is the single source of truth: `parse_config` validates against it, `schema.py`
turns it into Kong's schema and `options_markdown()` into the tables of docs/configuration.md
(written by `config_docs.py`), so the three can never drift. Kong validates the config before
sending it, but `parse_config` checks everything again: the emulator, a direct caller or a
future Kong may not, and a bad config must fail at instance start, never half-work at request
time.

Requirement lists follow Kong Enterprise openid-connect: array items are alternatives (OR),
space-separated words inside one item must all hold (AND).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

from kong_oidc_py.claims import parse_dotted_path
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.idp.fetch import is_loopback_host
from kong_oidc_py.rules import CONFIG_RULES, POLICY_RULES, RULES_BY_NAME, Rule, first_violation, kong_policy_entity_checks


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# An OR-list of AND-sets: (frozenset({"a", "b"}), frozenset({"c"})) means "a and b, or c".
AnyOf = tuple[frozenset[str], ...]
ClaimPath = tuple[str, ...]


@dataclass(frozen=True)
class Option:
    """One field of the Kong schema. Element/key/value specs are Options with an empty name."""

    name: str
    type: str  # Kong type: string, integer, boolean, array, map, record
    description: str = ""
    default: Any = UNSET
    required: bool = False
    one_of: tuple[Any, ...] | None = None
    between: tuple[int, int] | None = None
    len_min: int | None = None
    len_max: int | None = None
    elements: "Option | None" = None
    keys: "Option | None" = None
    values: "Option | None" = None
    fields: "tuple[Option, ...] | None" = None
    ko: str | None = None  # Kong Enterprise openid-connect option of the same meaning
    secret: bool = False
    entity_checks: "tuple[dict[str, Any], ...] | None" = None  # records only (rules.py)


def _str(**kw: Any) -> Option:
    return Option("", "string", **kw)


def _strings(**kw: Any) -> Option:
    return Option("", "array", elements=_str(), **kw)


def _opt(name: str, type_: str, description: str, **kw: Any) -> Option:
    return Option(name, type_, description, **kw)


HMAC_ALGS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SIGNING_ALGS = ASYMMETRIC_ALGS + HMAC_ALGS
SECRET_MIN = 32

# Kong Enterprise's values are off/optional/strict; "required" is the same as "strict".
DPOP_MODES = ("off", "optional", "strict", "required")

POLICY_FIELDS: tuple[Option, ...] = (
    _opt("name", "string", "Policy name, unique within this plugin instance; it appears in the logs.",
         required=True, len_max=128),
    _opt("routes", "array", "Kong route names or ids this policy applies to (any of them).",
         elements=_str(), default=()),
    _opt("paths", "array", "Kong-normalized request path prefixes (segment-aware unless ending in '/'), "
         "or regexes starting with '~' anchored at the path start like Kong routes.",
         elements=_str(), default=()),
    _opt("methods", "array", "HTTP methods this policy applies to, compared case-insensitively.",
         elements=_str(), default=()),
    _opt("public", "boolean", "When true, matching requests need no token at all.", default=False),
    _opt("scopes_required", "array", "Scopes required on matching requests: items are alternatives, "
         "space-separated words in one item are all required.", elements=_str(), default=()),
    _opt("groups_required", "array", "Groups required on matching requests, with the same OR/AND "
         "semantics as scopes_required.", elements=_str(), default=()),
    _opt("roles_required", "array", "Roles required on matching requests, with the same OR/AND "
         "semantics as scopes_required.", elements=_str(), default=()),
    _opt("claims", "map", "Claim checks: dotted claim path to the allowed values; every listed claim "
         "must carry at least one allowed value.",
         keys=_str(), values=_strings(len_min=1)),
    _opt("dpop", "string", "DPoP mode on matching requests (see proof_of_possession_dpop); unset: "
         "the plugin-level mode.", one_of=DPOP_MODES),
    _opt("acr_required", "array", "Step-up (RFC 9470): accepted acr values on matching requests "
         "(any of them). Each of acr_required, amr_required, max_age a policy sets replaces the "
         "plugin-level one; unset ones keep it. A replacement asking for less is logged at start.",
         elements=_str()),
    _opt("amr_required", "array", "Step-up: required amr values, with the OR/AND semantics of "
         "scopes_required (see acr_required for inheritance).", elements=_str()),
    _opt("max_age", "integer", "Step-up: most seconds since the user authenticated (auth_time) "
         "on matching requests (see acr_required for inheritance).", between=(0, 31536000)),
)

ISSUER_FIELDS: tuple[Option, ...] = (
    _opt("issuer", "string", "Issuer URL (or its discovery URL). May contain {tenant}, replaced by "
         "each of tenants.", required=True),
    _opt("tenants", "array", "Allowed tenants for an issuer containing {tenant} (e.g. Entra ID "
         "tenant ids); each becomes one trusted issuer.", elements=_str(), default=()),
    _opt("audience_required", "array", "Accepted audiences for this issuer; unset: the "
         "plugin-level audience_required.", elements=_str()),
    _opt("audience_claim", "array", "Audience claim path for this issuer; unset: plugin-level.",
         elements=_str(), len_min=1),
    _opt("scopes_claim", "array", "Scopes claim path for this issuer (e.g. scp); unset: "
         "plugin-level.", elements=_str(), len_min=1),
    _opt("groups_claim", "array", "Groups claim path for this issuer; unset: plugin-level.",
         elements=_str(), len_min=1),
    _opt("roles_claim", "array", "Roles claim path for this issuer; unset: plugin-level.",
         elements=_str(), len_min=1),
)
# Tenants go into the issuer URL path: one URL-safe segment each, nothing that could move the
# issuer elsewhere ("/", "..", "?", "#", "@").
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

OPTIONS: tuple[Option, ...] = (
    # -- provider ---------------------------------------------------------------------------
    _opt("issuer", "string", "Issuer URL, or its discovery document URL ending in "
         "/.well-known/openid-configuration. Absolute http(s), no query or fragment.", required=True,
         ko="issuer"),
    _opt("issuers", "array", "More trusted issuers for bearer JWTs, each with its own discovery "
         "and keys and optionally its own audience and claim paths. The token's unverified iss "
         "only selects among these; any other iss is refused without a network call. Browser "
         "login and introspection use issuer only.",
         elements=Option("", "record", fields=ISSUER_FIELDS), default=(), len_max=64),
    _opt("allow_insecure_issuer", "boolean", "Allow plain http issuer and jwks_uri on non-loopback "
         "hosts. For local development only, never in production.", default=False),
    _opt("ssl_verify", "boolean", "Verify the TLS certificate of the identity provider.", default=True,
         ko="ssl_verify"),
    _opt("timeout", "integer", "Timeout in milliseconds of every call to the identity provider.",
         default=10000, between=(1, 300000), ko="timeout"),
    _opt("cache_ttl", "integer", "Seconds between two background refreshes of the discovery "
         "document and the key set (a key the IdP stops publishing stops verifying within this "
         "time, cached tokens included); also the maximum lifetime of a cached token verification.",
         default=600, between=(1, 604800), ko="cache_ttl"),
    _opt("rediscovery_lifetime", "integer", "Minimum seconds between two key set refreshes caused "
         "by tokens with an unknown key id.", default=30, between=(0, 86400), ko="rediscovery_lifetime"),
    _opt("jwks_max_stale", "integer", "Seconds the last fetched keys keep serving while the "
         "identity provider is unreachable.", default=86400, between=(0, 2592000)),
    _opt("cache_tokens", "boolean", "Cache successful token verifications (keyed by a hash of "
         "the token, never beyond its exp).", default=True, ko="cache_tokens"),
    _opt("token_cache_size", "integer", "Maximum number of cached token verifications per "
         "plugin instance.", default=10000, between=(1, 1000000)),
    # -- bearer tokens ----------------------------------------------------------------------
    _opt("auth_methods", "array", "Enabled authentication methods: bearer (JWT access tokens "
         "verified locally), introspection (opaque tokens checked at the IdP, RFC 7662), "
         "authorization_code, session.",
         elements=_str(one_of=("bearer", "introspection", "authorization_code", "session")),
         default=("bearer",), len_min=1, ko="auth_methods"),
    _opt("bearer_token_param_type", "array", "Where a bearer token may be sent: header "
         "(Authorization), cookie, query (access_token parameter).",
         elements=_str(one_of=("header", "cookie", "query")), default=("header",), len_min=1,
         ko="bearer_token_param_type"),
    _opt("bearer_token_cookie_name", "string", "Cookie carrying a bearer token; required when "
         "bearer_token_param_type contains cookie.", ko="bearer_token_cookie_name"),
    _opt("audience_required", "array", "Accepted audiences: the token's audience claim must "
         "contain at least one of them (for an introspected token, the answer's aud). Required "
         "when auth_methods contains bearer or introspection, unless allow_any_audience is set.", elements=_str(), default=(), ko="audience_required"),
    _opt("allow_any_audience", "boolean", "Accept bearer tokens for any audience when "
         "audience_required is empty (logs a warning at start). Every token of the issuer, "
         "ID tokens and tokens for other APIs included, is then good here. Kong Enterprise has "
         "no such option: its audience_required is optional."),
    _opt("audience_claim", "array", "Path of the audience claim, one array item per nesting "
         "level.", elements=_str(), default=("aud",), len_min=1, ko="audience_claim"),
    _opt("scopes_required", "array", "Required scopes: items are alternatives, space-separated "
         "words inside one item are all required.", elements=_str(), default=(), ko="scopes_required"),
    _opt("scopes_claim", "array", "Path of the scopes claim (e.g. scope, or scp for Okta and "
         "Azure), one array item per nesting level.", elements=_str(), default=("scope",), len_min=1,
         ko="scopes_claim"),
    _opt("groups_required", "array", "Required groups, with the same OR/AND semantics as "
         "scopes_required.", elements=_str(), default=(), ko="groups_required"),
    _opt("groups_claim", "array", "Path of the groups claim, one array item per nesting level.",
         elements=_str(), default=("groups",), len_min=1, ko="groups_claim"),
    _opt("roles_required", "array", "Required roles, with the same OR/AND semantics as "
         "scopes_required.", elements=_str(), default=(), ko="roles_required"),
    _opt("roles_claim", "array", "Path of the roles claim, e.g. realm_access, roles for "
         "Keycloak realm roles.", elements=_str(), default=("roles",), len_min=1, ko="roles_claim"),
    _opt("acr_required", "array", "Step-up authentication (RFC 9470): the token's (or session's) "
         "acr must be one of these. Bearer tokens that fail get 401 insufficient_user_authentication "
         "with acr_values; browsers are sent back to the IdP with acr_values.", elements=_str(),
         default=()),
    _opt("amr_required", "array", "Step-up: required authentication methods (amr), items are "
         "alternatives, space-separated words in one item are all required (e.g. \"pwd otp\").",
         elements=_str(), default=()),
    _opt("max_age", "integer", "Step-up: most seconds since the user last authenticated "
         "(auth_time); browsers are sent back to log in again (max_age, prompt=login).",
         between=(0, 31536000), ko="max_age"),
    _opt("leeway", "integer", "Clock skew in seconds tolerated for exp, nbf and iat.", default=0,
         between=(0, 600), ko="leeway"),
    _opt("signing_algs", "array", "Accepted JWS algorithms. HS256/384/512 need hmac_secret; "
         "'none' is never accepted.", elements=_str(one_of=SIGNING_ALGS), default=ASYMMETRIC_ALGS,
         len_min=1),
    _opt("hmac_secret", "string", "Shared secret for HS256/384/512 tokens, at least 32 "
         "characters.", len_min=SECRET_MIN, secret=True),
    _opt("require_exp", "boolean", "Refuse tokens without an exp claim.", default=True),
    _opt("token_types", "array", "Accepted JWT typ header values, compared case-insensitively.",
         elements=_str(), default=("at+jwt", "application/at+jwt", "jwt"), len_min=1),
    _opt("token_type_required", "boolean", "Refuse tokens without a typ header.", default=False),
    _opt("reject_id_tokens", "boolean", "Refuse bearer tokens that look like OIDC ID tokens "
         "(a nonce, at_hash or c_hash claim); false logs a warning at start.", default=True),
    _opt("max_token_size", "integer", "Largest accepted token in bytes; bigger ones are refused "
         "before parsing.", default=8192, between=(256, 65536)),
    # -- opaque tokens: introspection (RFC 7662) --------------------------------------------
    _opt("introspection_endpoint", "string", "RFC 7662 introspection endpoint; unset: the "
         "discovery document's introspection_endpoint. Used when auth_methods contains "
         "introspection.", ko="introspection_endpoint"),
    _opt("introspection_endpoint_auth_method", "string", "Client authentication at the "
         "introspection endpoint (client_id with client_secret, or client_jwk for private_key_jwt).",
         default="client_secret_basic",
         one_of=("client_secret_basic", "client_secret_post", "private_key_jwt"),
         ko="introspection_endpoint_auth_method"),
    _opt("client_jwk", "string", "Private JWK (JSON text) signing the private_key_jwt client "
         "assertion (RFC 7523). Kong Enterprise's client_jwk is an array of records; here it is "
         "one key.", secret=True),
    _opt("introspection_hint", "string", "token_type_hint sent with each introspection request.",
         default="access_token", ko="introspection_hint"),
    _opt("introspection_accept", "string", "Answer format asked for: application/json, or "
         "application/token-introspection+jwt (RFC 9701: a JWT signed by the issuer, verified "
         "with its keys; aud must be client_id).", default="application/json",
         one_of=("application/json", "application/token-introspection+jwt"), ko="introspection_accept"),
    _opt("introspect_jwt_tokens", "boolean", "Introspect JWT access tokens too, instead of "
         "verifying them locally (revocation is then seen at once, at one IdP call per token "
         "and cache_ttl).", default=False, ko="introspect_jwt_tokens"),
    _opt("cache_introspection", "boolean", "Cache introspection answers under a hash of the "
         "token: active ones until the earlier of exp and cache_ttl, inactive ones for "
         "introspection_negative_cache_ttl.", default=True, ko="cache_introspection"),
    _opt("introspection_negative_cache_ttl", "integer", "Seconds an active=false answer is "
         "remembered (0: never).", default=5, between=(0, 300)),
    _opt("introspection_headers_names", "array", "Extra header names sent to the introspection "
         "endpoint.", elements=_str(), default=(), ko="introspection_headers_names"),
    _opt("introspection_headers_values", "array", "Values of introspection_headers_names, same "
         "length and order (may hold API keys: treated as secrets).", elements=_str(), default=(),
         secret=True, ko="introspection_headers_values"),
    # -- DPoP (RFC 9449) ---------------------------------------------------------------------
    _opt("proof_of_possession_dpop", "string", "DPoP: off; optional (DPoP-bound tokens need the "
         "DPoP scheme and a valid proof, unbound tokens may still come as Bearer); strict or "
         "required (every token needs a proof). A DPoP-bound token sent as Bearer is refused in "
         "every mode.", default="off", one_of=DPOP_MODES, ko="proof_of_possession_dpop"),
    _opt("dpop_signing_algs", "array", "Accepted DPoP proof algorithms (asymmetric only).",
         elements=_str(one_of=ASYMMETRIC_ALGS),
         default=("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"),
         len_min=1),
    _opt("dpop_proof_lifetime", "integer", "Seconds a proof is accepted after its iat (and "
         "its jti remembered).", default=300, between=(1, 3600), ko="dpop_proof_lifetime"),
    _opt("dpop_use_nonce", "boolean", "Require server nonces in proofs (RFC 9449 9): a proof "
         "without the current nonce gets 401 use_dpop_nonce with a DPoP-Nonce header.",
         default=False, ko="dpop_use_nonce"),
    _opt("dpop_nonce_secret", "string", "Secret the stateless DPoP nonces are derived from, at "
         "least 32 characters; the same on every node. Required with dpop_use_nonce.",
         len_min=SECRET_MIN, secret=True),
    _opt("dpop_replay_storage", "string", "Where used proof jti values are remembered: memory "
         "(this process) or redis (shared by every node; uses the session_redis_* connection).",
         default="memory", one_of=("memory", "redis")),
    _opt("dpop_replay_cache_size", "integer", "Most jti values held in memory (oldest dropped "
         "first); size it for the proofs of one dpop_proof_lifetime.", default=100000,
         between=(1000, 10000000)),
    _opt("realm", "string", "Realm sent in WWW-Authenticate challenges.", default="kong", len_max=256),
    _opt("run_on_preflight", "boolean", "Authenticate CORS preflight requests too; false lets "
         "them pass.", default=True, ko="run_on_preflight"),
    _opt("hide_credentials", "boolean", "Remove the bearer token from the request before it is "
         "proxied upstream.", default=False, ko="hide_credentials"),
    # -- request hygiene (paths.py, headers.py) -------------------------------------------
    _opt("allow_ambiguous_paths", "boolean", "Accept paths an upstream may read differently from "
         "Kong (%2F or %5C, ';' parameters, backslashes, double encoding) instead of answering "
         "400; policies then apply to every reading (strictest wins, public only if every reading "
         "is public). Logs a warning at start.", default=False),
    _opt("keep_kong_identity_headers", "boolean", "Keep client-visible Kong identity headers "
         "(X-Consumer-*, X-Credential-*, X-Anonymous-Consumer, X-Authenticated-*) instead of "
         "stripping them in every spelling, for an auth plugin chained before this one. Logs a "
         "warning at start.", default=False),
    _opt("allow_truncated_headers", "boolean", "Proxy requests with 1000 or more headers (clearing "
         "every spelling of every owned identity header) instead of answering 400. Logs a "
         "warning at start.", default=False),
    # -- upstream identity ------------------------------------------------------------------
    _opt("upstream_headers_claims", "array", "Claims sent upstream as headers, as dotted paths "
         "(realm_access.roles; '\\.' for a literal dot).", elements=_str(), default=(),
         ko="upstream_headers_claims"),
    _opt("upstream_headers_names", "array", "Header names for upstream_headers_claims, same "
         "length and order.", elements=_str(), default=(), ko="upstream_headers_names"),
    _opt("upstream_access_token_header", "string", "Header (name, or name:scheme) carrying the "
         "session's access token upstream.", default="authorization:bearer",
         ko="upstream_access_token_header"),
    _opt("consumer_claim", "array", "Path of the claim whose value finds a Kong consumer.",
         elements=_str(), len_min=1, ko="consumer_claim"),
    _opt("consumer_by", "array", "Consumer fields searched with the consumer_claim value: id, "
         "username.", elements=_str(one_of=("id", "username")), default=("username",), len_min=1,
         ko="consumer_by"),
    _opt("consumer_optional", "boolean", "Allow requests whose consumer is not found.",
         default=False, ko="consumer_optional"),
    _opt("credential_claim", "array", "Path of the claim used as credential id for "
         "kong.client.authenticate.", elements=_str(), default=("sub",), len_min=1,
         ko="credential_claim"),
    _opt("authenticated_groups_claim", "array", "Path of the claim whose values are added to "
         "authenticated_groups.", elements=_str(), len_min=1, ko="authenticated_groups_claim"),
    _opt("guard_group", "string", "Marker put first in authenticated_groups on every allowed "
         "request, for a fail-closed acl plugin.", default="oidc:verified", len_max=256),
    _opt("anonymous", "string", "Consumer id or username used when authentication fails with "
         "401.", ko="anonymous"),
    _opt("policies", "array", "Per-route/path/method requirements; the first matching policy "
         "wins, no match uses the plugin-level requirements.",
         elements=Option("", "record", fields=POLICY_FIELDS,
                         entity_checks=tuple(kong_policy_entity_checks())), default=()),
    # -- authorization code and sessions ----------------------------------------------------
    _opt("client_id", "string", "OAuth client id for the authorization code flow.", ko="client_id"),
    _opt("client_secret", "string", "OAuth client secret for the authorization code flow.",
         secret=True, ko="client_secret"),
    _opt("redirect_uri", "string", "Absolute redirect URI registered with the identity provider.",
         ko="redirect_uri"),
    _opt("scopes", "array", "Scopes requested at login; must contain openid.", elements=_str(),
         default=("openid",), len_min=1, ko="scopes"),
    _opt("token_endpoint_auth_method", "string", "Client authentication at the token endpoint.",
         default="client_secret_basic", one_of=("client_secret_basic", "client_secret_post"),
         ko="token_endpoint_auth_method"),
    _opt("response_type", "array", "Authorization response type: [code] (default), or [code, id_token] "
         "for the hybrid flow, where the ID token from the front channel is checked (signature, "
         "nonce, c_hash) before the code is exchanged. The hybrid flow needs response_mode form_post.",
         elements=_str(one_of=("code", "id_token")), default=("code",), len_min=1, ko="response_type"),
    _opt("response_mode", "string", "How the IdP returns the authorization response: query, or "
         "form_post (a POST to redirect_uri: the code never appears in a URL or a request log; "
         "needs session_cookie_secure, as the login cookie must be SameSite=None to come with "
         "the IdP's cross-site POST).", default="query", one_of=("query", "form_post"),
         ko="response_mode"),
    _opt("require_pushed_authorization_requests", "boolean", "Send the authorization request "
         "through the IdP's pushed_authorization_request_endpoint (RFC 9126) and only a "
         "request_uri through the browser. A login fails (503) when the IdP does not advertise "
         "the endpoint.", default=False, ko="require_pushed_authorization_requests"),
    _opt("authorization_cookie_name", "string", "Cookie holding the pending login (state, nonce, "
         "PKCE verifier).", default="authorization", ko="authorization_cookie_name"),
    _opt("authorization_rolling_timeout", "integer", "Seconds a started login may take.",
         default=600, between=(1, 86400), ko="authorization_rolling_timeout"),
    _opt("session_secret", "string", "Secret the session cookies are encrypted with, at least 32 "
         "characters.", len_min=SECRET_MIN, secret=True, ko="session_secret"),
    _opt("session_storage", "string", "Where session data lives: cookie or redis.", default="cookie",
         one_of=("cookie", "redis"), ko="session_storage"),
    _opt("session_cookie_name", "string", "Session cookie name.", default="session",
         ko="session_cookie_name"),
    _opt("session_cookie_path", "string", "Session cookie Path attribute.", default="/",
         ko="session_cookie_path"),
    _opt("session_cookie_domain", "string", "Session cookie Domain attribute (unset: host-only).",
         ko="session_cookie_domain"),
    _opt("session_cookie_secure", "boolean", "Session cookie Secure attribute.", default=True,
         ko="session_cookie_secure"),
    _opt("session_cookie_samesite", "string", "Session cookie SameSite attribute: Strict, Lax or "
         "None.", default="Lax", one_of=("Strict", "Lax", "None"), ko="session_cookie_samesite"),
    _opt("session_cookie_host_prefix", "boolean", "Name the session and authorization cookies "
         "`__Host-<name>` when they are Secure with Path=/ and no Domain, so browsers refuse copies "
         "planted by other subdomains or plain http.", default=True),
    _opt("session_idling_timeout", "integer", "Seconds of inactivity ending a session (0: none).",
         default=900, between=(0, 31536000), ko="session_idling_timeout"),
    _opt("session_rolling_timeout", "integer", "Seconds after which a session must be renewed "
         "(0: none).", default=3600, between=(0, 31536000), ko="session_rolling_timeout"),
    _opt("session_absolute_timeout", "integer", "Seconds after which a session ends regardless "
         "(0: none).", default=86400, between=(0, 31536000), ko="session_absolute_timeout"),
    _opt("session_redis_host", "string", "Redis host for session_storage redis.",
         default="127.0.0.1", ko="session_redis_host"),
    _opt("session_redis_port", "integer", "Redis port for session_storage redis.", default=6379,
         between=(1, 65535), ko="session_redis_port"),
    _opt("session_redis_username", "string", "Redis ACL username.", ko="session_redis_username"),
    _opt("session_redis_password", "string", "Redis password.", secret=True,
         ko="session_redis_password"),
    _opt("session_redis_database", "integer", "Redis database number.", default=0,
         between=(0, 255), ko="session_redis_database"),
    _opt("session_redis_prefix", "string", "Prefix of the Redis keys holding sessions.",
         default="oidc", ko="session_redis_prefix"),
    _opt("session_redis_connect_timeout", "integer", "Redis connect timeout in milliseconds.",
         default=2000, between=(1, 60000), ko="session_redis_connect_timeout"),
    _opt("session_redis_read_timeout", "integer", "Redis read timeout in milliseconds.",
         default=2000, between=(1, 60000), ko="session_redis_read_timeout"),
    _opt("session_redis_ssl", "boolean", "Connect to Redis (and Sentinels) over TLS.", default=False,
         ko="session_redis_ssl"),
    _opt("session_redis_ssl_verify", "boolean", "Verify the Redis server certificate and host name "
         "against the system CA store (the plugin server's SSL_CERT_FILE). Unlike Kong Enterprise, "
         "on by default; false logs a warning.", default=True, ko="session_redis_ssl_verify"),
    _opt("session_redis_server_name", "string", "TLS server name (SNI, and the name verified) when it "
         "differs from session_redis_host. Standalone Redis only.", ko="session_redis_server_name"),
    _opt("session_redis_cluster_nodes", "array", "Redis Cluster startup nodes; setting them selects "
         "Cluster mode (database must be 0).", elements=Option("", "record", fields=(
             _opt("ip", "string", "Node host or IP address.", required=True),
             _opt("port", "integer", "Node port.", default=6379, between=(1, 65535)),
         )), len_min=1, ko="session_redis_cluster_nodes"),
    _opt("session_redis_cluster_max_redirections", "integer", "MOVED/ASK redirections followed per "
         "Redis Cluster command.", default=5, between=(1, 100), ko="session_redis_cluster_max_redirections"),
    _opt("session_redis_sentinel_master", "string", "Sentinel master name; setting it selects Sentinel "
         "mode (with session_redis_sentinel_nodes).", ko="redis.sentinel_master"),
    _opt("session_redis_sentinel_role", "string", "Sentinel role to connect to. Only master: sessions "
         "and revocations must be read where they are written.", default="master", one_of=("master",),
         ko="redis.sentinel_role"),
    _opt("session_redis_sentinel_nodes", "array", "Sentinel addresses.", elements=Option("", "record", fields=(
             _opt("host", "string", "Sentinel host or IP address.", required=True),
             _opt("port", "integer", "Sentinel port.", default=26379, between=(1, 65535)),
         )), len_min=1, ko="redis.sentinel_nodes"),
    _opt("session_redis_sentinel_username", "string", "ACL username for the Sentinels.",
         ko="redis.sentinel_username"),
    _opt("session_redis_sentinel_password", "string", "Password for the Sentinels.", secret=True,
         ko="redis.sentinel_password"),
    _opt("session_revocation_redis", "boolean", "With session_storage cookie: record logged-out "
         "sessions in Redis (session_redis_* options) and check every request against them, so a "
         "copied cookie stops working on every node. Redis storage always revokes.", default=False),
    _opt("refresh_tokens", "boolean", "Use the refresh token to renew an expired session access "
         "token.", default=True, ko="refresh_tokens"),
    _opt("logout_uri_suffix", "string", "Request path suffix that logs the session out.",
         ko="logout_uri_suffix"),
    _opt("logout_methods", "array", "HTTP methods accepted for logout.",
         elements=_str(one_of=("GET", "POST", "DELETE")), default=("POST", "DELETE"), len_min=1,
         ko="logout_methods"),
    _opt("logout_id_token_hint", "boolean", "Send the ID token as id_token_hint in the logout "
         "redirect. false keeps the ID token out of URLs (browser history, IdP and proxy logs) and "
         "sends client_id plus logout_hint (the IdP session id, when known) instead; the IdP must "
         "accept logout without id_token_hint.", default=True),
    _opt("backchannel_logout_uri_suffix", "string", "Request path suffix of the OIDC Back-Channel "
         "Logout endpoint the identity provider POSTs logout tokens to (register route URL + suffix as "
         "the client's backchannel_logout_uri). Needs Redis: session_storage redis or "
         "session_revocation_redis."),
    _opt("logout_redirect_uri", "string", "Absolute URI the identity provider sends the browser "
         "to after logout (post_logout_redirect_uri).", ko="logout_redirect_uri"),
)

OPTIONS_BY_NAME: Mapping[str, Option] = MappingProxyType({o.name: o for o in OPTIONS})
SECRET_OPTIONS = frozenset(o.name for o in OPTIONS if o.secret)

# Added by Kong to every config it sends (shared doc 3.3); not options.
KONG_METADATA_KEYS = frozenset(
    {"__plugin_id", "__key__", "__seq__", "__ws_id", "route_id", "service_id", "consumer_id",
     "plugin_instance_name"}
)

# RFC 7230 3.2.6 tchar.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Hop-by-hop (RFC 9110 7.6.1) or framing/routing headers: setting them upstream would break
# or smuggle requests.
FORBIDDEN_UPSTREAM_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
     "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
)


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    routes: tuple[str, ...]
    paths: tuple[str, ...]
    methods: tuple[str, ...]  # upper-cased
    public: bool
    scopes_required: AnyOf
    groups_required: AnyOf
    roles_required: AnyOf
    claims: tuple[tuple[ClaimPath, frozenset[str]], ...]
    scope_hint: str | None  # first scopes alternative, for WWW-Authenticate scope=
    dpop: str | None = None  # off | optional | required (strict normalized); None: plugin-level
    acr_required: tuple[str, ...] | None = None  # None: plugin-level (step-up)
    amr_required: AnyOf | None = None
    max_age: int | None = None


@dataclass(frozen=True)
class IssuerConfig:
    """One extra trusted issuer (a tenant template is expanded into one per tenant)."""

    issuer: str
    audience_required: tuple[str, ...] | None
    audience_claim: ClaimPath | None
    scopes_claim: ClaimPath | None
    groups_claim: ClaimPath | None
    roles_claim: ClaimPath | None


@dataclass(frozen=True)
class PluginConfig:
    """Option values under their option names (arrays as tuples), plus parsed forms."""

    issuer: str
    issuers: tuple[IssuerConfig, ...]
    allow_insecure_issuer: bool
    ssl_verify: bool
    timeout: int
    cache_ttl: int
    rediscovery_lifetime: int
    jwks_max_stale: int
    cache_tokens: bool
    token_cache_size: int
    auth_methods: tuple[str, ...]
    bearer_token_param_type: tuple[str, ...]
    bearer_token_cookie_name: str | None
    audience_required: tuple[str, ...]
    allow_any_audience: bool | None  # None: unset (Kong null); only True opts out
    audience_claim: ClaimPath
    scopes_required: tuple[str, ...]
    scopes_claim: ClaimPath
    groups_required: tuple[str, ...]
    groups_claim: ClaimPath
    roles_required: tuple[str, ...]
    roles_claim: ClaimPath
    acr_required: tuple[str, ...]
    amr_required: tuple[str, ...]
    max_age: int | None
    leeway: int
    signing_algs: tuple[str, ...]
    hmac_secret: str | None = field(repr=False)
    require_exp: bool
    token_types: tuple[str, ...]
    token_type_required: bool
    reject_id_tokens: bool
    max_token_size: int
    introspection_endpoint: str | None
    introspection_endpoint_auth_method: str
    client_jwk: str | None = field(repr=False)
    introspection_hint: str | None
    introspection_accept: str
    introspect_jwt_tokens: bool
    cache_introspection: bool
    introspection_negative_cache_ttl: int
    introspection_headers_names: tuple[str, ...]
    introspection_headers_values: tuple[str, ...] = field(repr=False)
    proof_of_possession_dpop: str
    dpop_signing_algs: tuple[str, ...]
    dpop_proof_lifetime: int
    dpop_use_nonce: bool
    dpop_nonce_secret: str | None = field(repr=False)
    dpop_replay_storage: str
    dpop_replay_cache_size: int
    realm: str
    run_on_preflight: bool
    hide_credentials: bool
    allow_ambiguous_paths: bool
    keep_kong_identity_headers: bool
    allow_truncated_headers: bool
    upstream_headers_claims: tuple[str, ...]
    upstream_headers_names: tuple[str, ...]
    upstream_access_token_header: str | None
    consumer_claim: ClaimPath | None
    consumer_by: tuple[str, ...]
    consumer_optional: bool
    credential_claim: ClaimPath | None
    authenticated_groups_claim: ClaimPath | None
    guard_group: str
    anonymous: str | None
    policies: tuple[PolicyConfig, ...]
    client_id: str | None
    client_secret: str | None = field(repr=False)
    redirect_uri: str | None
    scopes: tuple[str, ...]
    token_endpoint_auth_method: str
    authorization_cookie_name: str
    authorization_rolling_timeout: int
    session_secret: str | None = field(repr=False)
    session_storage: str
    session_cookie_name: str
    session_cookie_path: str
    session_cookie_domain: str | None
    session_cookie_secure: bool
    session_cookie_samesite: str
    session_cookie_host_prefix: bool
    session_idling_timeout: int
    session_rolling_timeout: int
    session_absolute_timeout: int
    session_redis_host: str
    session_redis_port: int
    session_redis_username: str | None
    session_redis_password: str | None = field(repr=False)
    session_redis_database: int
    session_redis_prefix: str
    session_redis_connect_timeout: int
    session_redis_read_timeout: int
    session_revocation_redis: bool
    session_redis_ssl: bool
    session_redis_ssl_verify: bool
    session_redis_server_name: str | None
    session_redis_cluster_nodes: tuple[Mapping[str, Any], ...] | None
    session_redis_cluster_max_redirections: int
    session_redis_sentinel_master: str | None
    session_redis_sentinel_role: str
    session_redis_sentinel_nodes: tuple[Mapping[str, Any], ...] | None
    session_redis_sentinel_username: str | None
    session_redis_sentinel_password: str | None = field(repr=False)
    refresh_tokens: bool
    logout_uri_suffix: str | None
    response_type: tuple[str, ...]
    response_mode: str
    require_pushed_authorization_requests: bool
    backchannel_logout_uri_suffix: str | None
    logout_id_token_hint: bool
    logout_methods: tuple[str, ...]
    logout_redirect_uri: str | None
    # parsed forms
    scopes_any_of: AnyOf
    groups_any_of: AnyOf
    roles_any_of: AnyOf
    amr_any_of: AnyOf
    scope_hint: str | None
    scopes_claim_paths: tuple[ClaimPath, ...]
    groups_claim_paths: tuple[ClaimPath, ...]
    roles_claim_paths: tuple[ClaimPath, ...]
    upstream_headers_claim_paths: tuple[ClaimPath, ...]


# -- generic validation against an Option ---------------------------------------------------


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check(opt: Option, value: Any, path: str) -> Any:
    """Validate one present value; arrays become tuples, maps read-only dicts, records dicts."""
    t = opt.type
    if t == "string":
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {_type_name(value)}")
        if len(value) < (1 if opt.len_min is None else opt.len_min):
            raise ConfigError(path, f"length must be at least {1 if opt.len_min is None else opt.len_min}")
        # Option strings end up in headers, cookies, URLs and logs; none has a use for controls.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ConfigError(path, "must not contain control characters")
        # Bytes that are not UTF-8 reach us as lone surrogates (edge/pdk_fixes.py); a secret or
        # name holding one could not even be encoded for HMAC, HKDF or a header.
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise ConfigError(path, "must be valid UTF-8 text")
    elif t == "integer":
        # bool is an int subclass in Python; Kong would never send true for a number.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(path, "expected an integer")
            value = int(value)
    elif t == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected a boolean, got {_type_name(value)}")
    elif t == "array":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected an array, got {_type_name(value)}")
        assert opt.elements is not None
        value = tuple(_check_present(opt.elements, v, f"{path}[{i}]") for i, v in enumerate(value))
    elif t == "map":
        # An empty Lua table may travel as [] (shared doc 2.4).
        if isinstance(value, (list, tuple)) and not value:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a map, got {_type_name(value)}")
        assert opt.keys is not None and opt.values is not None
        out = {}
        for k, v in value.items():
            key = _check_present(opt.keys, k, f"{path} key")
            out[key] = _check_present(opt.values, v, f"{path}.{key}")
        value = MappingProxyType(out)
    elif t == "record":
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a record, got {_type_name(value)}")
        assert opt.fields is not None
        value = _check_record(opt.fields, value, path, ignore=frozenset())
    else:  # pragma: no cover - the table only uses the types above
        raise ConfigError(path, f"unsupported option type {t}")
    if opt.one_of is not None and value not in opt.one_of:
        raise ConfigError(path, "expected one of: " + ", ".join(map(str, opt.one_of)))
    if opt.between is not None and not opt.between[0] <= value <= opt.between[1]:
        raise ConfigError(path, f"value should be between {opt.between[0]} and {opt.between[1]}")
    if t == "array" and opt.len_min is not None and len(value) < opt.len_min:
        raise ConfigError(path, f"length must be at least {opt.len_min}")
    if t in ("string", "array") and opt.len_max is not None and len(value) > opt.len_max:
        raise ConfigError(path, f"length must be at most {opt.len_max}")
    return value


def _check_present(opt: Option, value: Any, path: str) -> Any:
    if value is None:
        raise ConfigError(path, "must not be null")
    return _check(opt, value, path)


def _default(opt: Option) -> Any:
    return None if opt.default is UNSET else opt.default


def _check_record(options: tuple[Option, ...], raw: Mapping[str, Any], prefix: str,
                  ignore: frozenset[str]) -> dict[str, Any]:
    known = {o.name for o in options}
    for key in raw:
        if key not in known and key not in ignore:
            # The name is input: Kong logs this error at start, so anything but a short printable
            # name is shown escaped and cut (a CR/LF in a key must not forge log lines).
            shown = key if isinstance(key, str) and key and key.isprintable() and len(key) <= 64 else repr(key)[:66]
            raise ConfigError(f"{prefix}.{shown}" if prefix else str(shown), "unknown field")
    out: dict[str, Any] = {}
    for opt in options:
        path = f"{prefix}.{opt.name}" if prefix else opt.name
        value = raw.get(opt.name)
        if value is None:  # absent and null both mean unset (shared doc 3.3)
            if opt.required:
                raise ConfigError(path, "required field missing")
            value = _default(opt)
            if isinstance(value, list):
                value = tuple(value)
            if opt.type == "map" and value is None:
                value = MappingProxyType({})
        else:
            value = _check(opt, value, path)
        out[opt.name] = value
    return out


# -- semantic checks -------------------------------------------------------------------------


def parse_any_of(items: tuple[str, ...], path: str) -> AnyOf:
    """KO requirement list: OR across items, AND across space-separated words of one item."""
    out = []
    for i, item in enumerate(items):
        words = frozenset(item.split())
        if not words:
            raise ConfigError(f"{path}[{i}]", "must contain at least one non-blank word")
        out.append(words)
    return tuple(out)


def _scope_hint(items: tuple[str, ...]) -> str | None:
    return " ".join(items[0].split()) if items else None


def check_absolute_url(value: str, path: str, *, allow_query: bool) -> None:
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(path, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(path, "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(path, "must be an absolute http(s) URL")
    if not parts.hostname:
        raise ConfigError(path, "must name a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(path, "must not contain user information")
    if parts.fragment or "#" in value:
        raise ConfigError(path, "must not contain a fragment")
    if not allow_query and (parts.query or "?" in value):
        raise ConfigError(path, "must not contain a query")


def _check_issuer(issuer: str, allow_insecure: bool) -> None:
    check_absolute_url(issuer, "issuer", allow_query=False)
    parts = urlsplit(issuer)
    if parts.scheme == "http" and not allow_insecure and not is_loopback_host(parts.hostname):
        raise ConfigError("issuer", RULES_BY_NAME["issuer_https"].message)


def _header_name(value: str, path: str) -> None:
    if not _TOKEN_RE.match(value):
        raise ConfigError(path, "is not a valid header name (RFC 7230 token)")
    if value.lower() in FORBIDDEN_UPSTREAM_HEADERS:
        raise ConfigError(path, "must not be a hop-by-hop, host or content-length header")


def _dotted(value: str, path: str) -> ClaimPath:
    try:
        return parse_dotted_path(value)
    except ValueError as err:
        raise ConfigError(path, f"invalid claim path: {err}") from None


def _parse_policy(raw: Mapping[str, Any], path: str) -> PolicyConfig:
    for i, route in enumerate(raw["routes"]):
        if route.strip() != route:
            raise ConfigError(f"{path}.routes[{i}]", "must not have surrounding whitespace")
    for i, p in enumerate(raw["paths"]):
        ppath = f"{path}.paths[{i}]"
        if p.startswith("~"):
            try:
                re.compile(p[1:])
            except re.error as err:
                raise ConfigError(ppath, f"invalid regex: {err}; fix the pattern after '~' "
                                  "(Python re syntax, anchored at the path start)") from None
        elif not p.startswith("/"):
            raise ConfigError(ppath, "must start with '/' (or '~' for a regex)")
    methods = []
    for i, m in enumerate(raw["methods"]):
        if not _TOKEN_RE.match(m):
            raise ConfigError(f"{path}.methods[{i}]", "is not a valid HTTP method token")
        methods.append(m.upper())
    _check_rules(POLICY_RULES, raw, f"{path}.")
    claims = []
    for key, values in raw["claims"].items():
        claims.append((_dotted(key, f"{path}.claims.{key}"), frozenset(values)))
    requirements = {
        name: parse_any_of(raw[name], f"{path}.{name}")
        for name in ("scopes_required", "groups_required", "roles_required")
    }
    return PolicyConfig(
        name=raw["name"],
        routes=raw["routes"],
        paths=raw["paths"],
        methods=tuple(methods),
        public=raw["public"],
        scopes_required=requirements["scopes_required"],
        groups_required=requirements["groups_required"],
        roles_required=requirements["roles_required"],
        claims=tuple(claims),
        scope_hint=_scope_hint(raw["scopes_required"]),
        dpop=_dpop_mode(raw["dpop"]),
        acr_required=_acr_list(raw["acr_required"], f"{path}.acr_required"),
        amr_required=None if raw["amr_required"] is None else parse_any_of(raw["amr_required"], f"{path}.amr_required"),
        max_age=raw["max_age"],
    )


def _check_introspection(v: dict[str, Any]) -> None:
    if not v["client_id"]:
        raise ConfigError("client_id", "required when auth_methods contains introspection "
                          "(the introspection endpoint authenticates its callers)")
    method = v["introspection_endpoint_auth_method"]
    if method == "private_key_jwt":
        if not v["client_jwk"]:
            raise ConfigError("client_jwk", "required when introspection_endpoint_auth_method is private_key_jwt")
        from kong_oidc_py.verification.introspection import private_key_from_jwk

        try:
            jwk = json.loads(v["client_jwk"])
            if not isinstance(jwk, dict):
                raise ValueError("not a JSON object")
            private_key_from_jwk(jwk)
        except ValueError as err:
            # The message names what is wrong, never the key material.
            raise ConfigError("client_jwk", f"is not a private JWK: {str(err)[:120]}") from None
    elif not v["client_secret"]:
        raise ConfigError("client_secret", f"required when introspection_endpoint_auth_method is {method}")
    url = v["introspection_endpoint"]
    if url is not None:
        check_absolute_url(url, "introspection_endpoint", allow_query=True)
        parts = urlsplit(url)
        if parts.scheme == "http" and not v["allow_insecure_issuer"] and not is_loopback_host(parts.hostname):
            raise ConfigError("introspection_endpoint", "http is only allowed on loopback hosts unless "
                              "allow_insecure_issuer is set (the token travels in the request)")
    names, values = v["introspection_headers_names"], v["introspection_headers_values"]
    if len(names) != len(values):
        raise ConfigError("introspection_headers_values", "must have as many items as introspection_headers_names")
    for i, name in enumerate(names):
        _header_name(name, f"introspection_headers_names[{i}]")
        if name.lower() in ("content-type", "accept"):
            raise ConfigError(f"introspection_headers_names[{i}]", "is set by the plugin")


def _parse_issuers(v: dict[str, Any]) -> tuple[IssuerConfig, ...]:
    from kong_oidc_py.idp.discovery import split_issuer

    seen = {split_issuer(v["issuer"])[0]}
    out = []
    for i, raw in enumerate(v["issuers"]):
        path = f"issuers[{i}]"
        template, tenants = raw["issuer"], raw["tenants"]
        if ("{tenant}" in template) != bool(tenants):
            raise ConfigError(f"{path}.tenants", "an issuer with {tenant} needs tenants, and tenants need "
                              "{tenant} in the issuer")
        for j, tenant in enumerate(tenants):
            if not _TENANT_RE.match(tenant) or ".." in tenant:
                raise ConfigError(f"{path}.tenants[{j}]", "must be one URL path segment "
                                  "(letters, digits, '.', '_', '-')")
        for expanded in [template.replace("{tenant}", t) for t in tenants] or [template]:
            if "{" in expanded or "}" in expanded:
                raise ConfigError(f"{path}.issuer", "the only placeholder is {tenant}")
            check_absolute_url(expanded, f"{path}.issuer", allow_query=False)
            parts = urlsplit(expanded)
            if parts.scheme == "http" and not v["allow_insecure_issuer"] and not is_loopback_host(parts.hostname):
                raise ConfigError(f"{path}.issuer", "http is only allowed on loopback hosts unless "
                                  "allow_insecure_issuer is set")
            exact = split_issuer(expanded)[0]
            if exact in seen:
                raise ConfigError(f"{path}.issuer", f"issuer {exact} is listed twice")
            seen.add(exact)
            out.append(IssuerConfig(
                issuer=expanded,
                audience_required=raw["audience_required"],
                audience_claim=raw["audience_claim"],
                scopes_claim=raw["scopes_claim"],
                groups_claim=raw["groups_claim"],
                roles_claim=raw["roles_claim"],
            ))
    if len(out) > 256:
        raise ConfigError("issuers", "at most 256 issuers after tenant expansion")
    return tuple(out)


def _acr_list(items: tuple[str, ...] | None, path: str) -> tuple[str, ...] | None:
    """acr values go into acr_values (space-separated): each must be one non-blank word."""
    if items is None:
        return None
    for i, item in enumerate(items):
        if not item or item.split() != [item] or '"' in item or "\\" in item:
            raise ConfigError(f"{path}[{i}]", "must be one acr value without spaces or quotes")
    return tuple(items)


def _dpop_mode(value: str | None) -> str | None:
    return "required" if value == "strict" else value


def _check_rules(rules: tuple[Rule, ...], values: Mapping[str, Any], prefix: str = "") -> None:
    """The rules Kong also enforces through the dumped schema (rules.py), same data, same fix."""
    rule = first_violation(rules, values)
    if rule is not None:
        raise ConfigError(prefix + rule.field if rule.field else prefix.rstrip("."), rule.message)


def _check_cross_fields(v: dict[str, Any]) -> None:
    browser = "authorization_code" in v["auth_methods"] or "session" in v["auth_methods"]
    _check_issuer(v["issuer"], v["allow_insecure_issuer"])
    v["issuers"] = _parse_issuers(v)
    _check_rules(CONFIG_RULES, v)

    # What no Kong entity check can say (rules.START_ONLY_RULES): checked at instance start.
    names, claims = v["upstream_headers_names"], v["upstream_headers_claims"]
    if len(names) != len(claims):
        raise ConfigError("upstream_headers_names", f"has {len(names)} items but upstream_headers_claims "
                          f"has {len(claims)}: give one header name per claim, in the same order")
    seen: set[str] = set()
    for i, name in enumerate(names):
        _header_name(name, f"upstream_headers_names[{i}]")
        if name.lower() in seen:
            raise ConfigError(f"upstream_headers_names[{i}]", "duplicate header name")
        seen.add(name.lower())

    header = v["upstream_access_token_header"]
    if header is not None:
        name, _, scheme = header.partition(":")
        _header_name(name, "upstream_access_token_header")
        if scheme and not _TOKEN_RE.match(scheme):
            raise ConfigError("upstream_access_token_header", "scheme after ':' must be a token")

    for name in ("redirect_uri", "logout_redirect_uri"):
        if v[name] is not None:
            check_absolute_url(v[name], name, allow_query=True)
    if not v["session_cookie_path"].startswith("/"):
        raise ConfigError("session_cookie_path", "must start with '/'")
    for name in ("session_cookie_name", "authorization_cookie_name", "bearer_token_cookie_name"):
        if v[name] is not None and not _TOKEN_RE.match(v[name]):
            raise ConfigError(name, "is not a valid cookie name (RFC 6265 token)")

    _check_redis(v)
    kinds = set(v["response_type"])
    if len(kinds) != len(v["response_type"]) or "code" not in kinds:
        raise ConfigError("response_type", "must be [code] or [code, id_token] (the plugin always exchanges a code)")
    if "id_token" in kinds and v["response_mode"] != "form_post":
        raise ConfigError("response_mode", "must be form_post with response_type [code, id_token] (the hybrid "
                          "flow's default fragment never reaches the gateway)")
    if v["response_mode"] == "form_post" and not v["session_cookie_secure"]:
        raise ConfigError("response_mode", "form_post needs session_cookie_secure true: the login cookie must be "
                          "SameSite=None to come back with the IdP's cross-site POST, and browsers require Secure for that")
    if v["backchannel_logout_uri_suffix"] is not None:
        if not browser:
            raise ConfigError("backchannel_logout_uri_suffix", "needs auth_methods authorization_code or session")
        if v["session_storage"] != "redis" and not v["session_revocation_redis"]:
            raise ConfigError("backchannel_logout_uri_suffix", "needs Redis to reach every node: set session_storage "
                              "redis, or session_revocation_redis true with the session_redis_* options")
        if not v["backchannel_logout_uri_suffix"].startswith("/"):
            raise ConfigError("backchannel_logout_uri_suffix", "must start with '/'")
        if v["backchannel_logout_uri_suffix"] == v["logout_uri_suffix"]:
            raise ConfigError("backchannel_logout_uri_suffix", "must differ from logout_uri_suffix")
    if "introspection" in v["auth_methods"]:
        _check_introspection(v)
    v["proof_of_possession_dpop"] = _dpop_mode(v["proof_of_possession_dpop"])
    _acr_list(v["acr_required"], "acr_required")
    if v["dpop_use_nonce"] and not v["dpop_nonce_secret"]:
        raise ConfigError("dpop_nonce_secret", "required when dpop_use_nonce is true (every node must "
                          "issue and accept the same nonces)")

    policy_names: set[str] = set()
    for i, policy in enumerate(v["policies"]):
        if policy.name in policy_names:
            raise ConfigError(f"policies[{i}].name", f"duplicate policy name {policy.name!r}: "
                              "give every policy of an instance its own name (it is what the logs show)")
        policy_names.add(policy.name)


def _check_redis(v: dict[str, Any]) -> None:
    """Which Redis topology: standalone (host/port), Sentinel or Cluster, never two at once."""
    cluster, master, sentinels = (v["session_redis_cluster_nodes"], v["session_redis_sentinel_master"],
                                  v["session_redis_sentinel_nodes"])
    if cluster and (master or sentinels):
        raise ConfigError("session_redis_cluster_nodes", "Cluster and Sentinel are exclusive: set one of "
                          "session_redis_cluster_nodes or session_redis_sentinel_master/nodes")
    if bool(master) != bool(sentinels):
        missing = "session_redis_sentinel_nodes" if master else "session_redis_sentinel_master"
        raise ConfigError(missing, "Sentinel mode needs both session_redis_sentinel_master and session_redis_sentinel_nodes")
    if cluster and v["session_redis_database"] != 0:
        raise ConfigError("session_redis_database", "must be 0 with session_redis_cluster_nodes (Redis Cluster has one database)")
    if v["session_redis_server_name"] and not v["session_redis_ssl"]:
        raise ConfigError("session_redis_server_name", "only applies with session_redis_ssl true")
    if v["session_redis_server_name"] and (cluster or master):
        raise ConfigError("session_redis_server_name", "applies to a standalone Redis only (Cluster and Sentinel "
                          "verify the names the topology announces)")


def parse_config(raw: Mapping[str, Any]) -> PluginConfig:
    """Validate Kong's config dict and return the typed config; raises ConfigError naming the
    field (never echoing a secret value)."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config", f"expected a record, got {_type_name(raw)}")
    v = _check_record(OPTIONS, raw, "", ignore=KONG_METADATA_KEYS)
    v["policies"] = tuple(_parse_policy(p, f"policies[{i}]") for i, p in enumerate(v["policies"]))
    for name in ("scopes_required", "groups_required", "roles_required", "amr_required"):
        v[name.split("_")[0] + "_any_of"] = parse_any_of(v[name], name)
    v["token_types"] = tuple(t.lower() for t in v["token_types"])
    _check_cross_fields(v)
    v["scope_hint"] = _scope_hint(v["scopes_required"])
    for name in ("scopes", "groups", "roles"):
        v[f"{name}_claim_paths"] = (v[f"{name}_claim"],)
    v["upstream_headers_claim_paths"] = tuple(
        _dotted(c, f"upstream_headers_claims[{i}]") for i, c in enumerate(v["upstream_headers_claims"])
    )
    return PluginConfig(**v)


# -- documentation ---------------------------------------------------------------------------


def _md_type(opt: Option) -> str:
    if opt.type == "array" and opt.elements is not None:
        inner = opt.elements.type
        if opt.elements.one_of:
            inner = "one_of(" + ", ".join(map(str, opt.elements.one_of)) + ")"
        return f"array of {inner}"
    if opt.one_of:
        return "one_of(" + ", ".join(map(str, opt.one_of)) + ")"
    return opt.type


def _md_default(opt: Option) -> str:
    if opt.required:
        return "required"
    if opt.default is UNSET:
        return "-"
    d = opt.default
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, tuple):
        return "[" + ", ".join(f'"{x}"' for x in d) + "]"
    if isinstance(d, str):
        return f'"{d}"'
    return str(d)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options_markdown() -> str:
    """The option and `policies[]` tables of docs/configuration.md, generated from OPTIONS."""
    lines = ["| option | type | default | KO equivalent | description |", "|---|---|---|---|---|"]
    for opt in OPTIONS:
        lines.append("| " + " | ".join(_md_cell(c) for c in (
            f"`{opt.name}`", _md_type(opt), _md_default(opt), f"`{opt.ko}`" if opt.ko else "-",
            opt.description)) + " |")
    for title, fields in (("`policies[]` record:", POLICY_FIELDS), ("`issuers[]` record:", ISSUER_FIELDS)):
        lines += ["", title, "", "| field | type | default | description |", "|---|---|---|---|"]
        for opt in fields:
            default = "{}" if opt.type == "map" else _md_default(opt)
            lines.append("| " + " | ".join(_md_cell(c) for c in (
                f"`{opt.name}`", _md_type(opt), default, opt.description)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--markdown"]:
        print("usage: python -m kong_oidc_py.config --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(options_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
