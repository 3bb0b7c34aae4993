"""Rules across several options, written once as Kong entity checks.

Each `Rule` is a Kong `entity_checks` entry (kong/db/schema/init.lua `Schema.entity_checkers`)
plus the option it is reported on and a message that says how to fix it. The same data serves
twice, so the two can never disagree:

* `edge/schema.py` puts the checks into the schema the plugin server dumps; Kong validates every
  plugin entity against them (`kong config parse`, DB-less start, the Admin API, deck), so a
  bad kong.yml is refused before any traffic;
* `config.parse_config` evaluates the same dicts (`first_violation`) at instance start, for the
  hosts that did not (the emulator, a direct caller).

Only checkers that survive the trip through JSON are used. Kong reads the dumped schema with
`cjson.decode` (kong/runloop/plugin_servers/process.lua l.46-84 in 3.9.3; `ask_info` l.133-160
and `schema = plugin_info.Schema` l.128 in 3.4.2), validates it with `MetaSchema.MetaSubSchema`
(kong/db/schema/metaschema.lua l.998-1036 in 3.9.3, l.817 in 3.4.2; l.326-374 in 3.9.3 list
the checkers and their argument shapes) via kong/db/schema/plugin_loader.lua l.31, and runs the subschema's
checks on every plugin entity (kong/db/schema/init.lua l.1435-1456 in 3.9.3, l.1355 in
3.4.2), after defaults are filled (init.lua l.956). Plain data, so JSON-safe: at_least_one_of,
only_one_of, distinct, conditional, conditional_at_least_one_of, mutually_required,
mutually_exclusive, mutually_exclusive_sets. Not usable: custom_entity_check (its `fn` is a Lua
function, init.lua l.771-779) and the `custom_validator` field validator. Field validators
inside if_match/then_match are those of metaschema.lua l.315-323 (eq, len_min, contains,
match_any, ...); `match_any` patterns are Lua patterns, not regexes.

Fields are named from the plugin entity, as Kong's bundled plugins do ("config.client_id");
checks on the `policies[]` record name the record's own fields.

What a Kong check cannot say (equal lengths, unique names inside an array, Python regexes, the
exact loopback rule) is listed in `START_ONLY_RULES` and checked by `parse_config` when an
instance starts; such an instance fails closed (edge/handler.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Rule:
    """One cross-field rule: the Kong entity check, the option blamed, the fix.

    `exact` is False when the Kong form is only a looser first line (a Lua pattern cannot say
    everything Python checks); parse_config then relies on its own, precise check.
    """

    name: str
    field: str  # option reported in ConfigError, relative to the rule's record ("": the record)
    message: str  # what is wrong and how to fix it; reads after "<field>: "
    check: Mapping[str, Any]  # Kong entity check: {checker_name: argument}
    exact: bool = True

    def kong(self, prefix: str) -> dict[str, Any]:
        """The entity check as Kong reads it, with `then_err` carrying our message."""
        (checker, arg), = self.check.items()
        arg = dict(arg) if isinstance(arg, Mapping) else list(arg)
        if checker in ("conditional", "conditional_at_least_one_of"):
            # Kong formats then_err with string.format (init.lua l.666, l.761): no '%' inside.
            arg["then_err"] = f"{prefix}{self.field}: {self.message}" if self.field else self.message
        return {checker: _prefixed(checker, arg, prefix)}


def _prefixed(checker: str, arg: Any, prefix: str) -> Any:
    if not prefix:
        return arg
    if isinstance(arg, list):
        return [prefix + f for f in arg]
    out = dict(arg)
    for key in ("if_field", "then_field"):
        if key in out:
            out[key] = prefix + out[key]
    for key in ("then_at_least_one_of", "else_then_at_least_one_of"):
        if key in out:
            out[key] = [prefix + f for f in out[key]]
    return out


def _when_contains(array: str, value: str, then_field: str, then_match: dict) -> dict:
    return {"conditional": {"if_field": array, "if_match": {"contains": value},
                            "then_field": then_field, "then_match": then_match}}


def _required_with_code(name: str) -> Rule:
    return Rule(f"{name}_with_authorization_code", name,
                "required when auth_methods contains authorization_code: set it to the value "
                "registered for this client at the identity provider",
                _when_contains("auth_methods", "authorization_code", name, {"required": True}))


def _audience_rule(method: str, why: str) -> Rule:
    return Rule(f"audience_for_{method}", "audience_required",
                f"required when auth_methods contains {method} ({why}): list the audiences this API "
                "accepts, or set allow_any_audience: true to accept every audience (not recommended)",
                {"conditional_at_least_one_of": {"if_field": "auth_methods", "if_match": {"contains": method},
                                                 "then_at_least_one_of": ["audience_required", "allow_any_audience"]}})


def _hmac_rule(alg: str) -> Rule:
    return Rule(f"hmac_secret_for_{alg}", "hmac_secret",
                f"required when signing_algs contains {alg}: set hmac_secret (at least 32 "
                f"characters) or remove {alg} from signing_algs",
                _when_contains("signing_algs", alg, "hmac_secret", {"required": True}))


# Lua patterns (Kong's `match_any`, init.lua l.297-306): an http issuer must be on a loopback
# host. Looser than config._check_issuer (any bracketed IPv6 of zeros and colons ending in 1,
# any 127.x.y.z spelling); never stricter, so Kong refuses nothing parse_config accepts.
_HTTP = "^[Hh][Tt][Tt][Pp]://"
_LOCALHOST = "[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]"
ISSUER_PATTERNS = (
    "^[Hh][Tt][Tt][Pp][Ss]://",
    _HTTP + _LOCALHOST + "[:/]",
    _HTTP + _LOCALHOST + "$",
    _HTTP + "127%.%d+%.%d+%.%d+[:/]",
    _HTTP + "127%.%d+%.%d+%.%d+$",
    _HTTP + "%[[0:]*1%]",
)

CONFIG_RULES: tuple[Rule, ...] = (
    Rule("issuer_https", "issuer",
         "http is only allowed on loopback hosts: use https, or set allow_insecure_issuer "
         "(local development only)",
         {"conditional": {"if_field": "allow_insecure_issuer", "if_match": {"eq": False},
                          "then_field": "issuer",
                          "then_match": {"match_any": {"patterns": list(ISSUER_PATTERNS),
                                                       "err": "http is only allowed on loopback hosts"}}}},
         exact=False),
    _audience_rule("bearer", "RFC 9068 4: a resource server checks that a token was issued for it"),
    _audience_rule("introspection", "RFC 7662 4: an active answer says the IdP issued the token, "
                   "not that it was issued for this API"),
    Rule("audience_when_not_any", "audience_required",
         "must not be empty when allow_any_audience is false: list the accepted audiences, "
         "or remove allow_any_audience",
         {"conditional": {"if_field": "allow_any_audience", "if_match": {"eq": False},
                          "then_field": "audience_required", "then_match": {"len_min": 1}}}),
    *(_hmac_rule(alg) for alg in ("HS256", "HS384", "HS512")),
    Rule("cookie_name_for_cookie_tokens", "bearer_token_cookie_name",
         "required when bearer_token_param_type contains cookie: name the cookie that carries "
         "the token, or remove cookie from bearer_token_param_type",
         _when_contains("bearer_token_param_type", "cookie", "bearer_token_cookie_name", {"required": True})),
    Rule("upstream_headers_pairs", "upstream_headers_names",
         "upstream_headers_claims and upstream_headers_names go together: give both lists, "
         "same length and order, or neither",
         {"mutually_required": ["upstream_headers_claims", "upstream_headers_names"]}),
    *(_required_with_code(name) for name in ("client_id", "client_secret", "redirect_uri")),
    Rule("openid_scope_with_authorization_code", "scopes",
         "must contain openid when auth_methods contains authorization_code: add openid to scopes",
         _when_contains("auth_methods", "authorization_code", "scopes", {"contains": "openid"})),
    *(Rule(f"session_secret_with_{method}", "session_secret",
           f"required when auth_methods contains {method}: set a random secret of at least 32 "
           "characters, the same on every Kong node",
           _when_contains("auth_methods", method, "session_secret", {"required": True}))
      for method in ("authorization_code", "session")),
    Rule("samesite_none_needs_secure", "session_cookie_samesite",
         "None requires session_cookie_secure: true (browsers drop SameSite=None cookies "
         "without Secure); use Lax, or keep session_cookie_secure on",
         {"conditional": {"if_field": "session_cookie_samesite", "if_match": {"eq": "None"},
                          "then_field": "session_cookie_secure", "then_match": {"eq": True}}}),
)

POLICY_RULES: tuple[Rule, ...] = (
    Rule("policy_has_matcher", "",
         "a policy needs at least one of routes, paths or methods; a policy without matchers "
         "would match every request",
         {"at_least_one_of": ["routes", "paths", "methods"]}),
    *(Rule(f"public_policy_without_{name}", "public",
           f"a public policy cannot also require {name.split('_')[0]}: remove {name} or "
           "set public to false",
           {"conditional": {"if_field": "public", "if_match": {"eq": True},
                            "then_field": name, "then_match": {"len_eq": 0}}})
      for name in ("scopes_required", "groups_required", "roles_required", "claims")),
)

RULES_BY_NAME: Mapping[str, Rule] = {r.name: r for r in CONFIG_RULES + POLICY_RULES}

# Checked only when an instance starts (parse_config): what no JSON-safe Kong check can express.
START_ONLY_RULES: tuple[tuple[str, str], ...] = (
    ("upstream_headers_names", "as many items as upstream_headers_claims (Kong checks only that "
     "both or neither are set)"),
    ("upstream_headers_names[i]", "valid, distinct header names; no hop-by-hop, Host or Content-Length"),
    ("upstream_access_token_header", "a valid header name, optionally ':' and a token scheme"),
    ("policies[i].name", "unique within the instance"),
    ("policies[i].paths[i]", "starts with '/', or '~' and a valid (Python) regex"),
    ("policies[i].methods[i]", "HTTP method tokens"),
    ("policies[i].claims / upstream_headers_claims[i]", "valid dotted claim paths"),
    ("issuer", "an absolute http(s) URL without user info, query or fragment; http only on "
     "loopback hosts (exact rule; Kong's pattern check is looser)"),
    ("redirect_uri, logout_redirect_uri", "absolute http(s) URLs without user info or fragment"),
    ("session_cookie_name, authorization_cookie_name, bearer_token_cookie_name", "cookie-name tokens"),
    ("session_cookie_path", "starts with '/'"),
    ("scopes_required, groups_required, roles_required (and in policies)", "no blank items"),
)


# -- evaluation, with Kong's semantics (kong/db/schema/init.lua, 3.9.3 line numbers) -----------


def _nonempty(value: Any) -> bool:
    # init.lua l.429-438 `is_nonempty`: nil/null, empty tables and "" are empty; false is not.
    if value is None:
        return False
    if isinstance(value, (str, tuple, list, Mapping)) and len(value) == 0:
        return False
    return True


def _field_ok(match: Mapping[str, Any], value: Any) -> bool:
    """Schema.validate_field for the validators our rules use (init.lua l.874-1030)."""
    if value is None:  # null: only `eq` and `required` fail it (l.877-888)
        return not (match.get("required") or ("eq" in match and match["eq"] is not None))
    for key, arg in match.items():
        if key == "required":
            continue
        if key == "eq" and not (value == arg and type(value) is type(arg)):
            return False
        if key == "contains" and arg not in value:
            return False
        if key == "len_min" and len(value) < arg:
            return False
        if key == "len_eq" and len(value) != arg:
            return False
        if key not in ("eq", "contains", "len_min", "len_eq"):
            raise NotImplementedError(f"validator {key} is not evaluated in Python")
    return True


def holds(rule: Rule, values: Mapping[str, Any]) -> bool:
    """Whether `values` (option name -> parsed value, None when unset) satisfies the rule."""
    if not rule.exact:
        return True
    (checker, arg), = rule.check.items()
    get = values.get
    if checker == "conditional":  # l.725-769
        if not _field_ok(arg["if_match"], get(arg["if_field"])):
            return True
        then_value = get(arg["then_field"])
        if arg["then_match"].get("required") and then_value is None:
            return False
        return _field_ok(arg["then_match"], then_value)
    if checker == "conditional_at_least_one_of":  # l.607-672 (no else branch used)
        # Only a Lua nil skips it (l.617); a null if_field is matched like any value.
        if not _field_ok(arg["if_match"], get(arg["if_field"])):
            return True
        return any(_nonempty(get(f)) for f in arg["then_at_least_one_of"])
    if checker == "at_least_one_of":  # l.592-605
        return any(_nonempty(get(f)) for f in arg)
    if checker == "mutually_required":  # l.520-535
        present = sum(1 for f in arg if _nonempty(get(f)))
        return present in (0, len(arg))
    raise NotImplementedError(f"entity check {checker} is not evaluated in Python")


def first_violation(rules: tuple[Rule, ...], values: Mapping[str, Any]) -> Rule | None:
    for rule in rules:
        if not holds(rule, values):
            return rule
    return None


def kong_entity_checks() -> list[dict[str, Any]]:
    """The plugin schema's top-level entity_checks (fields as config.<option>)."""
    return [rule.kong("config.") for rule in CONFIG_RULES]


def kong_policy_entity_checks() -> list[dict[str, Any]]:
    """The policies[] record's entity_checks (fields relative to the record)."""
    return [rule.kong("") for rule in POLICY_RULES]


# -- weaker-than-default choices: allowed, but said out loud at start ---------------------------


def _loopback_url(url: str | None) -> bool:
    from urllib.parse import urlsplit

    from kong_oidc_py.idp.fetch import is_loopback_host

    try:
        return bool(url) and is_loopback_host(urlsplit(url).hostname)
    except ValueError:
        return False


def _step_up_relaxations(cfg: Any) -> list[tuple[str, str]]:
    """A policy step-up field that replaces a plugin-level one and asks for less: an acr the
    plugin would refuse, amr values a login can meet without the plugin's, a longer max_age."""
    out: list[tuple[str, str]] = []
    for i, policy in enumerate(cfg.policies):
        where = f"policies[{i}] ({policy.name!r})"
        if cfg.acr_required and policy.acr_required is not None \
                and not set(policy.acr_required) <= set(cfg.acr_required):
            accepted = " ".join(policy.acr_required) or "any acr"
            out.append((f"policies[{i}].acr_required", f"{where} accepts {accepted} where the plugin-level "
                        f"acr_required asks for {' '.join(cfg.acr_required)}"))
        # Weaker when some way to meet the policy's amr_required (an alternative, or none at all
        # when it is empty) does not include a way to meet the plugin's.
        amr = policy.amr_required
        if cfg.amr_any_of and amr is not None \
                and (not amr or any(not any(need <= alt for need in cfg.amr_any_of) for alt in amr)):
            out.append((f"policies[{i}].amr_required", f"{where} replaces the plugin-level amr_required with one "
                        "that a login without the plugin-level methods can meet"))
        if cfg.max_age is not None and policy.max_age is not None and policy.max_age > cfg.max_age:
            out.append((f"policies[{i}].max_age", f"{where} accepts logins up to {policy.max_age}s old where "
                        f"the plugin-level max_age is {cfg.max_age}s"))
    return out


def config_warnings(cfg: Any) -> list[tuple[str, str]]:
    """(option, message) for every explicit choice weaker than the default, in option order.
    The Gateway logs each once at warn level (Kong sees it through edge/kong_log.py);
    `kong-oidc-py check` lists them."""
    out: list[tuple[str, str]] = []
    bearer = "bearer" in cfg.auth_methods
    if cfg.allow_insecure_issuer:
        out.append(("allow_insecure_issuer", "plain http to the identity provider is allowed: keys and "
                    "discovery can be tampered with on the network; for local development only"))
    if not cfg.ssl_verify:
        out.append(("ssl_verify", "TLS certificates of the identity provider are not verified: anyone "
                    "on the network path can serve keys"))
    if bearer and "query" in cfg.bearer_token_param_type:
        out.append(("bearer_token_param_type", "tokens are accepted in the query string, where "
                    "access logs and Referer headers keep them (RFC 6750 5.3)"))
    if (bearer or "introspection" in cfg.auth_methods) and cfg.allow_any_audience and not cfg.audience_required:
        out.append(("allow_any_audience", "no audience is checked: every token of this issuer, "
                    "issued for any client or API, is accepted here (RFC 9068 4)"))
    if bearer and not cfg.reject_id_tokens:
        out.append(("reject_id_tokens", "ID tokens (nonce, at_hash or c_hash claims) are accepted "
                    "as bearer tokens"))
    if bearer and not cfg.require_exp:
        out.append(("require_exp", "tokens without exp are accepted and never expire"))
    for option, effect in (
        ("allow_ambiguous_paths", "paths with %2F, %5C, ';' or '\\' are proxied (policies apply to every reading)"),
        ("keep_kong_identity_headers", "client-sent Kong identity headers (X-Consumer-*, ...) reach the upstream"),
        ("allow_truncated_headers", "requests with 1000+ headers are proxied"),
    ):
        if getattr(cfg, option, False):
            out.append((option, effect))
    out.extend(_step_up_relaxations(cfg))
    browser = "authorization_code" in cfg.auth_methods or "session" in cfg.auth_methods
    if browser and not cfg.session_cookie_secure and not _loopback_url(cfg.redirect_uri):
        # On a loopback redirect_uri (local development over http) there is nothing to say.
        out.append(("session_cookie_secure", "session cookies are sent over plain http too"))
    return out
