"""`kong-oidc-py check kong.yml`: the shipped files and the documentation's recipes pass; each
lint fires on the input it exists for; exit codes, JSON shape; secrets never printed; the IdP
probe against the loopback fake IdP."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest
import yaml

from kong_oidc_py.cli import main as cli_main
from kong_oidc_py.cli import probe as idp_probe
from kong_oidc_py.cli.check import Instance
from kong_oidc_py.cli.findings import Report
from kong_oidc_py.cli.kongfile import Plugin
from kong_oidc_py.config import parse_config
from kong_oidc_py.edge import server
from tests.support.doc_blocks import kong_ymls, recipes
from tests.support.fake_idp import FakeIdP
from tests.support.keys import ec_key, rsa_key

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://idp.example.com/realms/shop"
GUARD_ACL = {"name": "acl", "config": {"allow": ["oidc:verified"], "always_use_authenticated_groups": True}}
SESSION_SECRET = "a-session-secret-that-must-never-be-printed-0123456789"
CLIENT_SECRET = "client-secret-never-printed-9876"


def oidc(**config) -> dict:
    return {"name": "oidc", "config": {"issuer": ISSUER, "audience_required": ["orders-api"], **config}}


def browser(**config) -> dict:
    base = {"auth_methods": ["authorization_code", "session", "bearer"], "client_id": "web",
            "client_secret": CLIENT_SECRET, "redirect_uri": "https://shop.example.com/app/callback",
            "session_secret": SESSION_SECRET}
    return oidc(**{**base, **config})


def kong_file(*routes: dict, service_plugins: list | None = None, **top) -> dict:
    doc = {"_format_version": "3.0",
           "services": [{"name": "orders", "url": "http://orders.internal:8080", "routes": list(routes)}]}
    if service_plugins is not None:
        doc["services"][0]["plugins"] = service_plugins
    doc.update(top)
    return doc


def route(name: str, *plugins: dict, **extra) -> dict:
    return {"name": name, "paths": [f"/{name}"], "plugins": list(plugins), **extra}


def run(tmp_path: Path, doc: dict | str, *args: str, capsys) -> tuple[int, str]:
    path = tmp_path / "kong.yml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    code = cli_main(["check", str(path), *args])
    return code, capsys.readouterr().out


def report(tmp_path: Path, doc: dict | str, capsys, *args: str) -> dict:
    code, out = run(tmp_path, doc, "--json", "--offline", *args, capsys=capsys)
    data = json.loads(out)
    assert data["exit_code"] == code
    return data


def codes(data: dict, severity: str | None = None) -> set[str]:
    return {f["code"] for f in data["findings"] if severity in (None, f["severity"])}


# -- the shipped files and the documentation -------------------------------------------------


@pytest.mark.parametrize("name", ["kong.yml", "deploy/kong/kong.yml"])
def test_shipped_kong_files_have_no_errors(name, capsys):
    code = cli_main(["check", str(ROOT / name), "--offline", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["summary"]["error"] == 0, data["findings"]
    assert data["instances"] and all(i["valid"] for i in data["instances"])


def test_demo_kong_yml_passes_strict_with_a_note_on_its_loopback_issuer(capsys):
    code = cli_main(["check", str(ROOT / "kong.yml"), "--offline", "--json", "--strict"])
    data = json.loads(capsys.readouterr().out)
    assert codes(data) == {"http_issuer"} and codes(data, "info") == {"http_issuer"} and code == 0


def test_compose_kong_yml_warns_about_its_dev_only_insecure_issuer(capsys):
    code = cli_main(["check", str(ROOT / "deploy/kong/kong.yml"), "--offline", "--json", "--strict"])
    data = json.loads(capsys.readouterr().out)
    assert codes(data) == {"http_issuer"} and {f["field"] for f in data["findings"]} == {"allow_insecure_issuer"}
    assert code == 2


@pytest.mark.parametrize("name", sorted(kong_ymls()))
def test_documented_kong_yml_examples_pass_strict(name, tmp_path, capsys):
    data = report(tmp_path, kong_ymls()[name], capsys, "--strict")
    assert data["exit_code"] == 0, data["findings"]


def _recipe_file(config: dict) -> dict:
    """A recipe as its page says to deploy it: on the service, with the acl guard next to it;
    the service has the routes the recipe's policies name."""
    names = {"orders"} | {r for p in config.get("policies", []) for r in p.get("routes", [])}
    return kong_file(*(route(n) for n in sorted(names)),
                     service_plugins=[{"name": "oidc", "config": config}, GUARD_ACL])


@pytest.mark.parametrize("name", sorted(recipes()))
def test_documented_recipes_pass_strict(name, tmp_path, capsys):
    data = report(tmp_path, _recipe_file(recipes()[name]), capsys, "--strict")
    assert data["exit_code"] == 0, data["findings"]


def test_documented_recipe_without_its_guard_is_an_error(tmp_path, capsys):
    doc = _recipe_file(recipes()["api"])
    doc["services"][0]["plugins"].pop()
    data = report(tmp_path, doc, capsys)
    assert codes(data, "error") == {"no_guard"} and data["exit_code"] == 1


# -- configuration rules come from parse_config ----------------------------------------------


def test_invalid_config_is_an_error_naming_the_field(tmp_path, capsys):
    data = report(tmp_path, kong_file(route("a", oidc(upstream_headers_names=["X-A"]), GUARD_ACL)), capsys)
    [finding] = [f for f in data["findings"] if f["code"] == "config_invalid"]
    assert finding["field"] == "upstream_headers_names"
    assert finding["location"] == "services[0].routes[0].plugins[0]"
    assert data["exit_code"] == 1 and data["instances"][0]["valid"] is False


def test_config_error_on_a_secret_never_prints_it(tmp_path, capsys):
    short = "short-secret-xyz"
    doc = kong_file(route("a", browser(session_secret=short), GUARD_ACL))
    code, out = run(tmp_path, doc, "--offline", capsys=capsys)
    assert code == 1 and "session_secret" in out and short not in out


def test_start_warnings_are_reported_without_starting_anything(tmp_path, capsys):
    cfg = oidc(allow_any_audience=True)
    del cfg["config"]["audience_required"]
    data = report(tmp_path, kong_file(route("a", cfg, GUARD_ACL)), capsys)
    [finding] = [f for f in data["findings"] if f["field"] == "allow_any_audience"]
    assert finding["code"] == "weaker_than_default" and finding["severity"] == "warning"


def test_missing_audience_is_a_config_error(tmp_path, capsys):
    cfg = oidc()
    del cfg["config"]["audience_required"]
    data = report(tmp_path, kong_file(route("a", cfg, GUARD_ACL)), capsys)
    assert codes(data) == {"config_invalid"} and data["findings"][0]["field"] == "audience_required"


def test_unreadable_yaml_is_an_error(tmp_path, capsys):
    code, out = run(tmp_path, "services: [\n  - name: x\n  bad", "--offline", capsys=capsys)
    assert code == 1 and "not valid YAML" in out


def test_missing_file_is_an_error(tmp_path, capsys):
    code = cli_main(["check", str(tmp_path / "absent.yml"), "--offline", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and codes(data) == {"file_unreadable"}


def test_a_file_without_oidc_is_a_warning(tmp_path, capsys):
    data = report(tmp_path, kong_file(route("a")), capsys)
    assert codes(data) == {"no_instances"}


# -- the fail-closed guard -------------------------------------------------------------------


def test_route_with_oidc_and_no_acl_is_an_error(tmp_path, capsys):
    data = report(tmp_path, kong_file(route("a", oidc())), capsys)
    [finding] = data["findings"]
    assert finding["code"] == "no_guard" and finding["where"] == "route a"
    assert "always_use_authenticated_groups: true" in finding["fix"]


def test_service_level_oidc_needs_the_guard_on_every_route(tmp_path, capsys):
    doc = kong_file(route("a", GUARD_ACL), route("b"), service_plugins=[oidc()])
    data = report(tmp_path, doc, capsys)
    assert [f["where"] for f in data["findings"] if f["code"] == "no_guard"] == ["route b"]


def test_service_level_acl_guards_a_route_level_oidc(tmp_path, capsys):
    doc = kong_file(route("a", oidc()), service_plugins=[GUARD_ACL])
    assert report(tmp_path, doc, capsys)["findings"] == []


def test_global_oidc_and_global_acl_as_top_level_plugins(tmp_path, capsys):
    doc = kong_file(route("a"), route("b"), plugins=[oidc(), GUARD_ACL])
    data = report(tmp_path, doc, capsys)
    assert data["findings"] == [] and data["instances"][0]["routes"] == ["a", "b"]


def test_top_level_plugin_bound_to_a_route_by_name(tmp_path, capsys):
    doc = kong_file(route("a"), route("b", GUARD_ACL), plugins=[dict(oidc(), route="a"), dict(oidc(), route="b")])
    data = report(tmp_path, doc, capsys)
    assert [f["where"] for f in data["findings"] if f["code"] == "no_guard"] == ["route a"]


def test_a_disabled_acl_is_no_guard(tmp_path, capsys):
    doc = kong_file(route("a", oidc(), dict(GUARD_ACL, enabled=False)))
    assert codes(report(tmp_path, doc, capsys)) == {"no_guard"}


def test_route_acl_overrides_the_service_guard_and_must_allow_the_marker(tmp_path, capsys):
    other = {"name": "acl", "config": {"allow": ["admins"], "always_use_authenticated_groups": True}}
    doc = kong_file(route("a", other), service_plugins=[oidc(), GUARD_ACL])
    assert codes(report(tmp_path, doc, capsys)) == {"guard_group_not_allowed"}


def test_acl_must_allow_the_instances_own_guard_group(tmp_path, capsys):
    doc = kong_file(route("a", oidc(guard_group="orders:verified"), GUARD_ACL))
    assert codes(report(tmp_path, doc, capsys)) == {"guard_group_not_allowed"}


def test_acl_with_a_deny_list_is_no_guard(tmp_path, capsys):
    deny = {"name": "acl", "config": {"deny": ["blocked"]}}
    assert codes(report(tmp_path, kong_file(route("a", oidc(), deny)), capsys)) == {"guard_deny_list"}


def test_acl_allowing_other_groups_too_is_a_warning(tmp_path, capsys):
    wide = {"name": "acl", "config": {"allow": ["oidc:verified", "partners"], "always_use_authenticated_groups": True}}
    data = report(tmp_path, kong_file(route("a", oidc(), wide)), capsys)
    assert codes(data, "warning") == {"guard_extra_groups"} and data["exit_code"] == 0


def test_acl_without_always_use_authenticated_groups_is_a_warning(tmp_path, capsys):
    plain = {"name": "acl", "config": {"allow": ["oidc:verified"]}}
    assert codes(report(tmp_path, kong_file(route("a", oidc(), plain)), capsys)) == {"guard_authenticated_groups"}


def test_acl_on_fewer_protocols_than_oidc_is_an_error(tmp_path, capsys):
    narrow = dict(GUARD_ACL, protocols=["http"])
    assert codes(report(tmp_path, kong_file(route("a", oidc(), narrow)), capsys)) == {"guard_protocols"}


def test_consumer_holding_the_guard_group_is_an_error(tmp_path, capsys):
    doc = kong_file(route("a", oidc(), GUARD_ACL),
                    consumers=[{"username": "bob", "acls": [{"group": "oidc:verified"}]}])
    data = report(tmp_path, doc, capsys)
    [finding] = data["findings"]
    assert finding["code"] == "guard_group_on_consumer" and finding["where"] == "consumer bob"


# -- lints on instances ----------------------------------------------------------------------


def test_policy_naming_an_unknown_route_is_an_error(tmp_path, capsys):
    cfg = oidc(policies=[{"name": "reports", "routes": ["order-reports"], "scopes_required": ["reports"]}])
    data = report(tmp_path, kong_file(route("a", GUARD_ACL), route("orders-reports", GUARD_ACL), service_plugins=[cfg]), capsys)
    [finding] = data["findings"]
    assert finding["code"] == "policy_route_unknown" and finding["field"] == "policies[0].routes[0]"


def test_policy_naming_a_route_the_instance_never_runs_on_is_a_warning(tmp_path, capsys):
    cfg = oidc(policies=[{"name": "b-only", "routes": ["b"], "scopes_required": ["x"]}])
    doc = kong_file(route("a", cfg, GUARD_ACL), route("b", oidc(), GUARD_ACL))
    assert codes(report(tmp_path, doc, capsys)) == {"policy_route_unreached"}


def test_policy_naming_a_route_by_id_is_found(tmp_path, capsys):
    rid = "5d7c0f3e-8a55-4c38-9a4c-3b1c2f0e9d11"
    cfg = oidc(policies=[{"name": "by-id", "routes": [rid], "scopes_required": ["x"]}])
    doc = kong_file(route("a", GUARD_ACL, id=rid), service_plugins=[cfg])
    assert report(tmp_path, doc, capsys)["findings"] == []


def test_http_issuer_on_loopback_is_a_note(tmp_path, capsys):
    doc = kong_file(route("a", oidc(issuer="http://127.0.0.1:9100"), GUARD_ACL))
    data = report(tmp_path, doc, capsys)
    assert codes(data, "info") == {"http_issuer"} and "local development" in data["findings"][0]["message"]


def test_http_issuer_allowed_off_loopback_is_a_warning(tmp_path, capsys):
    doc = kong_file(route("a", oidc(issuer="http://idp.internal/realms/x", allow_insecure_issuer=True), GUARD_ACL))
    data = report(tmp_path, doc, capsys)
    assert codes(data, "warning") == {"http_issuer"} and data["findings"][0]["field"] == "allow_insecure_issuer"


def test_query_string_tokens_are_a_warning(tmp_path, capsys):
    doc = kong_file(route("a", oidc(bearer_token_param_type=["header", "query"]), GUARD_ACL))
    data = report(tmp_path, doc, capsys)
    assert codes(data) == {"query_token"} and data["findings"][0]["field"] == "bearer_token_param_type"


def test_one_session_secret_in_two_instances_is_a_warning_and_never_printed(tmp_path, capsys):
    doc = kong_file(route("a", browser(), GUARD_ACL), route("b", browser(), GUARD_ACL))
    data = report(tmp_path, doc, capsys)
    assert [f["where"] for f in data["findings"] if f["code"] == "shared_session_secret"] == [
        "route a, plugin oidc", "route b, plugin oidc"]
    code, out = run(tmp_path, doc, "--offline", capsys=capsys)
    assert SESSION_SECRET not in out and CLIENT_SECRET not in out
    assert SESSION_SECRET not in json.dumps(data) and CLIENT_SECRET not in json.dumps(data)


def test_different_session_secrets_are_fine(tmp_path, capsys):
    doc = kong_file(route("a", browser(), GUARD_ACL), route("b", browser(session_secret=SESSION_SECRET[::-1]), GUARD_ACL))
    assert report(tmp_path, doc, capsys)["findings"] == []


def test_browser_login_without_secure_cookies_off_loopback_is_a_warning(tmp_path, capsys):
    doc = kong_file(route("a", browser(session_cookie_secure=False), GUARD_ACL))
    data = report(tmp_path, doc, capsys)
    [finding] = data["findings"]
    assert finding["code"] == "insecure_session_cookie" and finding["field"] == "session_cookie_secure"
    assert finding["severity"] == "warning"


def test_browser_login_without_secure_cookies_on_loopback_is_allowed(tmp_path, capsys):
    cfg = browser(session_cookie_secure=False, redirect_uri="http://localhost:8000/app/callback")
    assert report(tmp_path, kong_file(route("a", cfg, GUARD_ACL)), capsys)["findings"] == []


# -- output and exit codes -------------------------------------------------------------------


def test_exit_codes_clean_error_and_strict_warning(tmp_path, capsys):
    clean = kong_file(route("a", oidc(), GUARD_ACL))
    warning = kong_file(route("a", oidc(bearer_token_param_type=["query"]), GUARD_ACL))
    error = kong_file(route("a", oidc()))
    assert run(tmp_path, clean, "--offline", "--strict", capsys=capsys)[0] == 0
    assert run(tmp_path, warning, "--offline", capsys=capsys)[0] == 0
    assert run(tmp_path, warning, "--offline", "--strict", capsys=capsys)[0] == 2
    assert run(tmp_path, error, "--offline", "--strict", capsys=capsys)[0] == 1


def test_json_report_shape(tmp_path, capsys):
    data = report(tmp_path, kong_file(route("a", oidc())), capsys)
    assert set(data) == {"file", "ok", "exit_code", "summary", "instances", "issuers", "findings"}
    assert data["ok"] is False and data["summary"] == {"error": 1, "warning": 0, "info": 0}
    assert set(data["findings"][0]) == {"severity", "code", "where", "location", "field", "message", "fix"}
    assert data["instances"] == [{"where": "route a, plugin oidc", "location": "services[0].routes[0].plugins[0]",
                                  "enabled": True, "valid": True, "issuer": ISSUER, "routes": ["a"]}]


def test_human_output_is_one_line_per_finding_and_a_summary(tmp_path, capsys):
    doc = kong_file(route("a", oidc()), route("b", oidc(bearer_token_param_type=["query"]), GUARD_ACL))
    code, out = run(tmp_path, doc, "--offline", capsys=capsys)
    lines = out.splitlines()
    assert lines[0].startswith("ERROR   route a [services[0].routes[0]] ") and "Fix: " in lines[0]
    assert lines[1].startswith("WARNING route b, plugin oidc [services[0].routes[1].plugins[0]] bearer_token_param_type: ")
    assert lines[2].endswith("2 oidc instances, 1 error(s), 1 warning(s), 0 note(s)") and len(lines) == 3


def test_console_script_dispatches_check_before_kong_pdk(tmp_path, capsys):
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(kong_file(route("a", oidc()))), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        server.main(["check", str(path), "--offline"])
    assert exc.value.code == 1 and capsys.readouterr().out.startswith("ERROR   route a ")


# -- the IdP probe ---------------------------------------------------------------------------


@pytest.fixture
def idp():
    with FakeIdP() as fake:
        fake.set_keys(rsa_key("rsa-1"))
        yield fake


def probe(tmp_path, capsys, idp_issuer: str, **config) -> dict:
    doc = kong_file(route("a", oidc(issuer=idp_issuer, **config), GUARD_ACL))
    code, out = run(tmp_path, doc, "--json", capsys=capsys)
    return json.loads(out)


def test_reachable_idp_reports_its_keys_and_algorithms(tmp_path, capsys, idp):
    data = probe(tmp_path, capsys, idp.issuer)
    assert codes(data, "error") == set() and "algorithms" in codes(data, "info")
    [issuer] = data["issuers"]
    assert issuer["reachable"] is True and issuer["jwks_uri"] == idp.jwks_uri
    assert issuer["keys"] == [{"kid": "rsa-1", "kty": "RSA", "crv": None, "alg": "RS256"}]
    assert "RS256" in issuer["algorithms"] and idp.jwks_hits == 1


def test_instances_with_one_issuer_share_one_probe(tmp_path, capsys, idp):
    doc = kong_file(route("a", oidc(issuer=idp.issuer), GUARD_ACL), route("b", oidc(issuer=idp.issuer), GUARD_ACL))
    run(tmp_path, doc, "--json", capsys=capsys)
    assert idp.discovery_hits == 1 and idp.jwks_hits == 1


def test_offline_never_contacts_the_idp(tmp_path, capsys, idp):
    report(tmp_path, kong_file(route("a", oidc(issuer=idp.issuer), GUARD_ACL)), capsys)
    assert idp.discovery_hits == 0


def test_issuer_mismatch_is_an_error_naming_the_advertised_issuer(tmp_path, capsys, idp):
    idp.metadata_overrides["issuer"] = idp.issuer + "/"
    data = probe(tmp_path, capsys, idp.issuer)
    [finding] = [f for f in data["findings"] if f["code"] == "issuer_mismatch"]
    assert repr(idp.issuer + "/") in finding["fix"] and data["exit_code"] == 1


def test_unreachable_idp_is_an_error(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the probe: connection refused
    data = probe(tmp_path, capsys, f"http://127.0.0.1:{port}/realms/x", timeout=2000)
    assert codes(data, "error") == {"idp_unreachable"}
    assert data["issuers"][0]["reachable"] is False and data["issuers"][0]["cause"] == "unreachable"


def test_idp_answering_an_error_status_is_unreachable(tmp_path, capsys, idp):
    idp.fail[idp.discovery_path] = 503
    data = probe(tmp_path, capsys, idp.issuer)
    [finding] = [f for f in data["findings"] if f["code"] == "idp_unreachable"]
    assert "(http_status)" in finding["message"] and "503" in finding["message"]
    assert data["issuers"][0]["cause"] == "http_status"


def test_jwks_without_usable_keys_is_an_error(tmp_path, capsys, idp):
    idp.set_jwks({"keys": []})
    assert "jwks_unusable" in codes(probe(tmp_path, capsys, idp.issuer), "error")


def test_ignored_jwks_keys_are_reported_with_the_plugins_reason(tmp_path, capsys, idp):
    idp.set_jwks({"keys": [rsa_key("rsa-1").public_jwk(), rsa_key("weak", bits=1024).public_jwk()]})
    data = probe(tmp_path, capsys, idp.issuer)
    [finding] = [f for f in data["findings"] if f["code"] == "jwks_key_ignored"]
    assert "1024 bits" in finding["message"] and "'weak'" in finding["message"]


def test_keys_published_for_other_uses_are_not_findings(tmp_path, capsys, idp):
    # Keycloak lists its encryption key in the JWKS: the plugin logs that at info, not as a problem.
    idp.set_jwks({"keys": [rsa_key("rsa-1").public_jwk(), rsa_key("enc-1").public_jwk(use="enc", include_alg=False)]})
    data = probe(tmp_path, capsys, idp.issuer)
    assert "jwks_key_ignored" not in codes(data) and data["exit_code"] == 0


def test_signing_algs_no_key_can_verify_is_an_error(tmp_path, capsys, idp):
    idp.set_keys(ec_key("P-256", kid="ec-1"))
    data = probe(tmp_path, capsys, idp.issuer, signing_algs=["RS256", "PS256"])
    [finding] = [f for f in data["findings"] if f["code"] == "no_key_for_algs"]
    assert finding["field"] == "signing_algs" and "ES256" in finding["message"]


def test_browser_instance_whose_id_token_algs_are_not_accepted_is_an_error(tmp_path, capsys, idp):
    idp.metadata_overrides["id_token_signing_alg_values_supported"] = ["ES256"]
    cfg = copy.deepcopy(browser()["config"])
    cfg.update(issuer=idp.issuer, signing_algs=["RS256"])
    doc = kong_file(route("a", {"name": "oidc", "config": cfg}, GUARD_ACL))
    code, out = run(tmp_path, doc, "--json", capsys=capsys)
    assert "id_token_algs" in codes(json.loads(out), "error")


def test_plain_http_jwks_uri_of_an_https_issuer_is_a_warning(monkeypatch):
    # Test traffic stays on loopback, so the https IdP's answers are canned at the fetcher.
    https_issuer = "https://idp.example.com/realms/shop"
    jwks_uri = "http://keys.example.com/jwks"
    answers = {https_issuer + "/.well-known/openid-configuration": {"issuer": https_issuer, "jwks_uri": jwks_uri},
               jwks_uri: {"keys": [rsa_key("rsa-1").public_jwk()]}}

    class CannedFetcher:
        def __init__(self, **settings): pass
        def get_json(self, url, *, reason): return answers[url]
        def close(self): pass

    monkeypatch.setattr(idp_probe, "Fetcher", CannedFetcher)
    cfg = parse_config({"issuer": https_issuer, "audience_required": ["a"], "allow_insecure_issuer": True})
    result = Report("kong.yml")
    idp_probe.probe_issuers([Instance(Plugin("oidc", {}, "plugins[0]"), cfg)], result)
    assert {f.code for f in result.findings if f.severity == "warning"} == {"http_jwks_uri"}
