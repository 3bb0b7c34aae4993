"""`kong-oidc-py explain`: the trace comes from the real decision, agrees with Gateway.handle,
covers the documented recipes, and never shows the token, its signature or a secret."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong_oidc_py.cli import main as cli_main
from kong_oidc_py.config import parse_config
from kong_oidc_py.gateway import Gateway
from kong_oidc_py.idp.discovery import split_issuer
from kong_oidc_py.idp.provider import Provider
from tests.support.doc_blocks import recipes
from tests.support.fake_idp import FakeIdP
from tests.support.keys import b64url, encode_part, jwks, rsa_key

ROOT = Path(__file__).resolve().parents[2]
KONG_YML = str(ROOT / "kong.yml")
DEMO_ISSUER = "http://127.0.0.1:9100"
DEMO_AUDIENCE = "urn:kong-oidc-py:api"
KEY = rsa_key("explain-rsa-1")


@pytest.fixture
def jwks_file(tmp_path) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(KEY)), encoding="utf-8")
    return str(path)


def token(issuer: str = DEMO_ISSUER, *, key=KEY, lifetime: int = 300, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": issuer, "aud": DEMO_AUDIENCE, "sub": "alice", "client_id": "shop", "iat": now,
               "exp": now + lifetime, **claims}
    return key.sign({k: v for k, v in payload.items() if v is not None})


def explain(capsys, *args: str, as_json: bool = True) -> tuple[int, Any]:
    code = cli_main(["explain", *args, *(["--json"] if as_json else [])])
    out = capsys.readouterr()
    if code != 0:
        return code, out.err
    return code, json.loads(out.out) if as_json else out.out


def write_token(tmp_path: Path, value: str) -> str:
    path = tmp_path / "token"
    path.write_text(value + "\n", encoding="utf-8")
    return str(path)


# -- the request Gateway.handle sees directly (not through the CLI) --------------------------


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, list[str]], route: dict | None):
        self.headers = headers
        self.headers_truncated = False
        self._method = method
        self._path, _, self._raw_query = target.partition("?")
        self._route = route

    def path(self): return self._path
    def method(self): return self._method
    def route(self): return self._route
    def raw_query(self): return self._raw_query
    def query(self):
        out: dict = {}
        for part in filter(None, self._raw_query.split("&")):
            k, _, v = part.partition("=")
            out.setdefault(k, []).append(v)
        return out
    def scheme(self): return "https"
    def host(self): return "localhost"
    def port(self): return 443
    def body(self): return b""
    def credential(self): return None
    def load_consumer(self, value, by_username): return None


def gateway_outcome(config: dict, method: str, target: str, headers: dict[str, list[str]],
                    route: dict | None) -> dict:
    cfg = parse_config(config)
    outcome = Gateway(cfg, Provider.from_jwks(cfg.issuer, jwks(KEY))).handle(Request(method, target, headers, route))
    fields = dataclasses.asdict(outcome)
    fields["status"] = outcome.status if outcome.status is not None else 200
    fields["allowed"] = outcome.allowed
    fields.pop("consumer"), fields.pop("credential")
    return json.loads(json.dumps(fields, default=str))


def catalog_config() -> dict:
    doc = yaml.safe_load(Path(KONG_YML).read_text(encoding="utf-8"))
    [service] = [s for s in doc["services"] if s["name"] == "catalog"]
    return service["plugins"][0]["config"]


# -- agreement with the real gateway ---------------------------------------------------------

AGREEMENT_CASES = {
    "allowed by the plugin-level scope": ("GET", "/catalog/items", lambda: token(scope="read")),
    "encoded slash in the path": ("GET", "/catalog/public%2F..%2Fadmin", lambda: token(scope="read")),
    "path parameter": ("GET", "/catalog/public;x=1", lambda: None),
    "write without the write scope": ("POST", "/catalog/items", lambda: token(scope="read")),
    "public policy without a token": ("GET", "/catalog/public/list", lambda: None),
    "no token": ("GET", "/catalog/items", lambda: None),
    "expired": ("GET", "/catalog/items", lambda: token(scope="read", lifetime=-60)),
    "another audience": ("GET", "/catalog/items", lambda: token(scope="read", aud="other-api")),
    "another issuer": ("GET", "/catalog/items", lambda: token("https://evil.example", scope="read")),
    "unknown key": ("GET", "/catalog/items", lambda: token(scope="read", key=rsa_key("not-published"))),
    "admin regex policy": ("GET", "/catalog/admin/x", lambda: token(scope="read admin")),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_explain_outcome_is_what_gateway_handle_returns(case, capsys, jwks_file, tmp_path):
    method, target, make = AGREEMENT_CASES[case]
    tok = make()
    args = [KONG_YML, target, "--route", "catalog", "-X", method, "--jwks", jwks_file,
            "-H", "X-Scopes: spoofed", "-H", "X_Authenticated_Userid: spoofed", "-H", "X-Consumer-Username: spoofed"]
    if tok:
        args += ["--token-file", write_token(tmp_path, tok)]
    code, data = explain(capsys, *args)
    assert code == 0, data
    headers = {"x-scopes": ["spoofed"], "x_authenticated_userid": ["spoofed"], "x-consumer-username": ["spoofed"]}
    if tok:
        headers["authorization"] = [f"Bearer {tok}"]
    route = {"id": None, "name": "catalog"}
    assert data["outcome"] == gateway_outcome(catalog_config(), method, target, headers, route)


def test_agreement_with_a_query_token_and_hide_credentials(capsys, jwks_file, tmp_path):
    config = {"issuer": DEMO_ISSUER, "audience_required": [DEMO_AUDIENCE], "hide_credentials": True,
              "bearer_token_param_type": ["query"]}
    tok = token()
    code, data = explain(capsys, "--config", json.dumps(config), "/orders?a=1", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, tok))
    expected = gateway_outcome(config, "GET", f"/orders?a=1&access_token={tok}", {}, None)
    assert data["outcome"] == expected and expected["upstream_raw_query"] == "a=1"
    assert [s["detail"] for s in steps(data, "token") if s["check"] != "size"] == ["query parameter 'access_token' (RFC 6750 2.3)"]


# -- the documented recipes ------------------------------------------------------------------


def _at(path: tuple[str, ...] | list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(list(path)):
        out = {part: out}
    return out


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a


def recipe_token(config: dict, *, drop_requirements: bool = False, audience: str | None = None) -> str:
    """A token the recipe accepts on GET /orders: its issuer, audience and the first alternative
    of each plugin-level requirement, in the claims the recipe reads them from."""
    cfg = parse_config(config)
    now = int(time.time())
    payload: dict = {"iss": split_issuer(cfg.issuer)[0], "sub": "user-1", "iat": now, "exp": now + 300}
    _merge(payload, _at(cfg.audience_claim, audience or cfg.audience_required[0]))
    if not drop_requirements:
        for any_of, path in ((cfg.scopes_any_of, cfg.scopes_claim), (cfg.groups_any_of, cfg.groups_claim),
                             (cfg.roles_any_of, cfg.roles_claim)):
            if any_of:
                _merge(payload, _at(path, sorted(any_of[0])))
    return KEY.sign(payload)


def has_requirement(config: dict) -> bool:
    cfg = parse_config(config)
    return bool(cfg.scopes_any_of or cfg.groups_any_of or cfg.roles_any_of)


@pytest.mark.parametrize("name", sorted(recipes()))
def test_recipe_accepts_a_token_shaped_for_it(name, capsys, jwks_file, tmp_path):
    config = recipes()[name]
    tok = recipe_token(config)
    code, data = explain(capsys, "--config", json.dumps(config), "/orders", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, tok))
    assert data["outcome"]["allowed"] is True, data["steps"]
    assert data["outcome"] == gateway_outcome(config, "GET", "/orders", {"authorization": [f"Bearer {tok}"]}, None)
    assert [s["check"] for s in data["steps"] if s["stage"] == "decision"] == ["allow"]


@pytest.mark.parametrize("name", sorted(n for n, c in recipes().items() if has_requirement(c)))
def test_recipe_refuses_a_token_missing_its_requirement(name, capsys, jwks_file, tmp_path):
    config = recipes()[name]
    code, data = explain(capsys, "--config", json.dumps(config), "/orders", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, recipe_token(config, drop_requirements=True)))
    assert data["outcome"]["status"] == 403
    [decision] = [s for s in data["steps"] if s["stage"] == "decision"]
    assert decision["ok"] is False and decision["check"] in {"insufficient_scope", "missing_groups", "missing_roles"}


@pytest.mark.parametrize("name", sorted(recipes()))
def test_recipe_refuses_another_audience(name, capsys, jwks_file, tmp_path):
    config = recipes()[name]
    code, data = explain(capsys, "--config", json.dumps(config), "/orders", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, recipe_token(config, audience="someone-else")))
    assert data["outcome"]["status"] == 401
    assert 'error="invalid_token"' in data["outcome"]["response_headers"]["WWW-Authenticate"]
    assert data["outcome"]["log"]["reason"] == "bad_audience"


# -- the trace: what each step says ----------------------------------------------------------


def steps(data: dict, stage: str) -> list[dict]:
    return [s for s in data["steps"] if s["stage"] == stage]


def test_trace_names_the_policy_that_matched_and_why_the_others_did_not(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/catalog/items", "--route", "catalog", "-X", "PUT", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token(scope="write")))
    policy = steps(data, "policy")
    assert [(s["check"], s["ok"]) for s in policy] == [("public-listing", None), ("catalog-writes", True)]
    assert policy[0]["detail"] == "path '/catalog/items' matches none of its paths"
    assert policy[1]["detail"] == "matches path and method"
    assert data["outcome"]["log"]["policy"] == "catalog-writes" and data["outcome"]["allowed"]


def test_trace_names_the_key_and_why_it_was_chosen(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token(scope="read")))
    [key] = steps(data, "key")
    assert key["detail"].startswith("kid='explain-rsa-1' alg=RS256 -> RSA key kid='explain-rsa-1' thumbprint=")
    assert key["detail"].endswith(" from the issuer's JWKS (by kid and alg)")


def test_trace_lists_header_claim_and_requirement_checks_in_order(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token(scope="read")))
    order = [(s["stage"], s["check"]) for s in data["steps"]]
    assert order == [
        ("path", "path"), ("policy", "default"), ("token", "header"), ("token", "size"),
        ("header", "header"), ("key", "key"), ("signature", "signature"),
        ("claim", "claim_types"), ("claim", "id_token"), ("claim", "iss"), ("claim", "aud"), ("claim", "exp"), ("claim", "nbf"), ("claim", "iat"),
        ("requirement", "scopes"), ("requirement", "groups"), ("requirement", "roles"),
        ("decision", "allow"),
    ]


def test_failed_check_is_the_last_step_with_its_reason(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token(scope="read", lifetime=-30)))
    last = data["steps"][-1]
    assert (last["stage"], last["check"], last["ok"]) == ("decision", "expired", False)
    assert last["detail"].startswith("exp ")
    # The checks before it passed; nothing after the failed one ran.
    assert [s["check"] for s in steps(data, "claim")] == ["claim_types", "id_token", "iss", "aud"]
    assert not steps(data, "requirement")


def test_missing_token_names_the_places_looked_at(capsys, jwks_file):
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file)
    assert steps(data, "token") == [{"stage": "token", "check": "location", "ok": False,
                                     "detail": "no bearer token in: header"}]
    assert data["outcome"]["status"] == 401
    assert data["outcome"]["response_headers"]["WWW-Authenticate"] == 'Bearer realm="kong"'


def test_cookie_token_location(capsys, jwks_file, tmp_path):
    config = {"issuer": DEMO_ISSUER, "audience_required": [DEMO_AUDIENCE], "bearer_token_param_type": ["cookie"],
              "bearer_token_cookie_name": "at"}
    code, data = explain(capsys, "--config", json.dumps(config), "/x", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token()))
    assert [s["detail"] for s in steps(data, "token") if s["check"] != "size"] == ["cookie 'at'"]
    assert data["outcome"]["allowed"]


def test_guard_verdict_for_a_route_from_the_file(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token(scope="read")))
    assert data["guard"] == "acl at services[0].routes[0].plugins[1]: allow ['oidc:verified'] sees 'oidc:verified' -> passes"


def test_start_warnings_show_as_plugin_log(capsys, jwks_file):
    code, data = explain(capsys, "--config", json.dumps({"issuer": DEMO_ISSUER, "allow_any_audience": True}), "/x",
                         "--jwks", jwks_file)
    assert any("allow_any_audience" in entry["message"] for entry in data["plugin_log"])


def test_human_output_shows_steps_result_and_upstream_headers(capsys, jwks_file, tmp_path):
    code, out = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                        "--token-file", write_token(tmp_path, token(scope="read")), as_json=False)
    assert code == 0
    assert "  ok   decision    allow: policy 'default' satisfied" in out
    assert "result: allowed (decision allow), proxied upstream" in out
    assert "  upstream set    X-Authenticated-Userid: alice" in out


def test_human_output_of_a_denial_shows_the_challenge(capsys, jwks_file, tmp_path):
    code, out = explain(capsys, KONG_YML, "/api/admin", "--route", "orders-admin", "--jwks", jwks_file,
                        "--token-file", write_token(tmp_path, token(scope="read")), as_json=False)
    assert "result: 403 (decision deny, reason insufficient_scope)" in out
    assert '  WWW-Authenticate: Bearer realm="kong", error="insufficient_scope"' in out


# -- never the token, its signature or a secret ----------------------------------------------


def _forbidden(tok: str) -> list[str]:
    header, payload, signature = tok.split(".")
    return [tok, header, payload, signature]


@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize("scope", ["read", "none"])
def test_output_never_contains_the_token_or_its_signature(scope, as_json, capsys, jwks_file, tmp_path):
    tok = token(scope=scope)
    code, out = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                        "--token-file", write_token(tmp_path, tok), as_json=as_json)
    text = out if isinstance(out, str) else json.dumps(out)
    assert code == 0 and not [part for part in _forbidden(tok) if part in text]


def test_token_given_as_a_header_is_never_echoed_either(capsys, jwks_file):
    tok = token(scope="read")
    code, out = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file,
                        "-H", f"Authorization: Bearer {tok}", as_json=False)
    assert code == 0 and not [part for part in _forbidden(tok) if part in out]
    assert "result: allowed" in out


def test_a_token_the_upstream_would_receive_is_redacted(capsys, jwks_file, tmp_path):
    # Without hide_credentials the query keeps access_token: explain shows the query, not the token.
    config = {"issuer": DEMO_ISSUER, "audience_required": [DEMO_AUDIENCE], "bearer_token_param_type": ["query"]}
    tok = token()
    code, out = explain(capsys, "--config", json.dumps(config), "/orders", "--jwks", jwks_file,
                        "--token-file", write_token(tmp_path, tok), as_json=False)
    assert "access_token=<redacted>" in out and not [p for p in _forbidden(tok) if p in out]


def test_secrets_of_the_config_are_never_printed(capsys, jwks_file, tmp_path):
    secret = "hmac-secret-that-must-never-appear-0123456789"
    config = {"issuer": DEMO_ISSUER, "audience_required": [DEMO_AUDIENCE], "signing_algs": ["HS256"], "hmac_secret": secret}
    now = int(time.time())
    signing_input = encode_part({"alg": "HS256", "typ": "at+jwt"}) + "." + encode_part(
        {"iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "exp": now + 60})
    tok = signing_input + "." + b64url(hmac.digest(secret.encode(), signing_input.encode(), hashlib.sha256))
    code, out = explain(capsys, "--config", json.dumps(config), "/x", "--jwks", jwks_file,
                        "--token-file", write_token(tmp_path, tok), as_json=False)
    assert "result: allowed" in out and secret not in out
    assert "alg HS256: the configured hmac_secret (never a JWKS key)" in out


# -- inputs ----------------------------------------------------------------------------------


def test_token_from_stdin(capsys, jwks_file, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(token(scope="read") + "\n"))
    code, data = explain(capsys, KONG_YML, "/api/orders", "--route", "orders-read", "--jwks", jwks_file, "--token", "-")
    assert code == 0 and data["outcome"]["allowed"]


def test_recipe_block_with_its_config_key_is_accepted_inline(capsys, jwks_file, tmp_path):
    config = recipes()["api"]
    code, data = explain(capsys, "--config", yaml.safe_dump({"config": config}), "/orders", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, recipe_token(config)))
    assert data["outcome"]["allowed"]


def test_service_selects_the_service_level_instance(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/catalog/public/x", "--service", "catalog", "--jwks", jwks_file)
    assert data["instance"] == "service catalog, plugin oidc [services[1].plugins[0]]"
    assert data["outcome"]["log"]["decision"] == "public"


@pytest.mark.parametrize("args, message", [
    (["--route", "nope"], "no route 'nope'"),
    (["--route", "health"], "no oidc plugin runs on route 'health'"),
    (["--service", "orders"], "service 'orders' has no enabled service-level oidc plugin"),
    ([], "has 4 oidc instances: name one with --route or --service"),
])
def test_unusable_selection_exits_1_with_a_reason(args, message, capsys, jwks_file):
    code, err = explain(capsys, KONG_YML, "/x", "--jwks", jwks_file, *args)
    assert code == 1 and message in err


def test_invalid_config_exits_1_naming_the_field(capsys, jwks_file):
    code, err = explain(capsys, "--config", json.dumps({"issuer": DEMO_ISSUER, "audience_required": [DEMO_AUDIENCE],
                                                   "upstream_headers_names": ["X"]}),
                        "/x", "--jwks", jwks_file)
    assert code == 1 and "upstream_headers_names" in err


def test_discovery_file_with_keys_from_the_network(capsys, tmp_path):
    with FakeIdP() as idp:
        idp.set_keys(KEY)
        metadata = tmp_path / "discovery.json"
        metadata.write_text(json.dumps(idp.metadata()), encoding="utf-8")
        config = {"issuer": idp.issuer, "audience_required": [DEMO_AUDIENCE]}
        code, data = explain(capsys, "--config", json.dumps(config), "/x", "--discovery", str(metadata),
                             "--token-file", write_token(tmp_path, token(idp.issuer)))
        assert data["outcome"]["allowed"] and idp.discovery_hits == 0 and idp.jwks_hits == 1


def test_without_files_explain_fetches_from_the_idp(capsys, tmp_path):
    with FakeIdP() as idp:
        idp.set_keys(KEY)
        config = {"issuer": idp.issuer, "audience_required": [DEMO_AUDIENCE]}
        code, data = explain(capsys, "--config", json.dumps(config), "/x",
                             "--token-file", write_token(tmp_path, token(idp.issuer)))
        assert data["outcome"]["allowed"] and idp.discovery_hits == 1


# -- browser routes ------------------------------------------------------------------------

BROWSER_SECRET = "browser-session-secret-never-printed-0123456789"


def browser_config(issuer: str) -> dict:
    return {"issuer": issuer, "audience_required": [DEMO_AUDIENCE], "auth_methods": ["authorization_code", "session", "bearer"],
            "client_id": "web", "client_secret": "web-client-secret-never-printed", "redirect_uri": "https://app.example.com/cb",
            "session_secret": BROWSER_SECRET}


NAVIGATION = ["-H", "Sec-Fetch-Mode: navigate", "-H", "Sec-Fetch-Dest: document", "-H", "Accept: text/html"]


def test_browser_navigation_is_explained_as_a_login_redirect(capsys, tmp_path):
    with FakeIdP() as idp:
        idp.set_keys(KEY)
        metadata = tmp_path / "discovery.json"
        metadata.write_text(json.dumps(idp.metadata()), encoding="utf-8")
        code, out = explain(capsys, "--config", json.dumps(browser_config(idp.issuer)), "/app", "--discovery",
                            str(metadata), *NAVIGATION, as_json=False)
    assert "  --   browser     flow: browser flow decided: redirect login_required" in out
    assert f"  Location: {idp.issuer}/auth?response_type=code&client_id=web" in out
    assert BROWSER_SECRET not in out and "web-client-secret-never-printed" not in out


def test_jwks_alone_cannot_explain_a_login_and_says_so(capsys, jwks_file):
    code, data = explain(capsys, "--config", json.dumps(browser_config(DEMO_ISSUER)), "/app", "--jwks", jwks_file, *NAVIGATION)
    assert data["outcome"]["status"] == 503
    assert data["notes"] == ["--jwks gives keys but no discovery document: add --discovery FILE to explain browser logins"]


def test_bearer_call_on_a_browser_route_takes_the_bearer_path(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, "--config", json.dumps(browser_config(DEMO_ISSUER)), "/app/api", "--jwks", jwks_file,
                         "--token-file", write_token(tmp_path, token()))
    assert steps(data, "browser") == [{"stage": "browser", "check": "flow", "ok": None,
                                       "detail": "not a browser request: bearer path"}]
    assert data["outcome"]["allowed"]


# -- paths an upstream may read differently ------------------------------------------------


def test_an_ambiguous_path_is_refused_before_any_policy(capsys, jwks_file):
    code, data = explain(capsys, KONG_YML, "/catalog/public%2F..%2Fadmin", "--route", "catalog", "--jwks", jwks_file)
    first, last = data["steps"][0], data["steps"][-1]
    assert (first["stage"], first["ok"]) == ("path", False) and "refused" in first["detail"]
    assert (last["stage"], last["ok"]) == ("decision", False) and data["outcome"]["status"] == 400
    assert not steps(data, "policy")


def test_with_ambiguous_paths_allowed_every_reading_is_matched(capsys, jwks_file):
    config = catalog_config() | {"allow_ambiguous_paths": True}
    code, data = explain(capsys, "--config", json.dumps(config), "/catalog/public/a%2F..%2F..%2Fadmin", "--jwks", jwks_file)
    [path] = steps(data, "path")
    assert path["ok"] is None and "every reading" in path["detail"]
    policies = [(s["check"], s["ok"]) for s in steps(data, "policy") if s["ok"]]
    assert {name for name, _ in policies[:-1]} == {"public-listing", "catalog-admin"}
    assert policies[-1] == ("public-listing+catalog-admin", True)
    assert data["outcome"]["status"] == 401  # not public: one reading is the admin path


def test_allowed_requests_strip_every_spelling_of_identity_headers(capsys, jwks_file, tmp_path):
    code, data = explain(capsys, KONG_YML, "/catalog/public/x", "--route", "catalog", "--jwks", jwks_file,
                         "-H", "X_Authenticated_Userid: spoofed")
    assert data["outcome"]["allowed"] and "x_authenticated_userid" in data["outcome"]["upstream_clear"]
