"""check and explain against the real oidc-provider: what operators run before and after a deploy."""

from __future__ import annotations

import json

import pytest
import yaml

from kong_oidc_py.cli import main as cli_main
from tests.support.idp import DEFAULT_RESOURCE

pytestmark = pytest.mark.integration


def kong_file(issuer: str) -> dict:
    oidc = {"name": "oidc", "config": {"issuer": issuer, "audience_required": [DEFAULT_RESOURCE],
                                       "scopes_required": ["read"]}}
    acl = {"name": "acl", "config": {"allow": ["oidc:verified"], "always_use_authenticated_groups": True}}
    return {"_format_version": "3.0", "services": [{"name": "api", "url": "http://127.0.0.1:9",
            "routes": [{"name": "api", "paths": ["/api"], "plugins": [oidc, acl]}]}]}


def test_check_probes_the_real_idp_and_explain_allows_its_token(oidc_provider, tmp_path, capsys):
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(kong_file(oidc_provider.issuer)), encoding="utf-8")

    assert cli_main(["check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [issuer] = report["issuers"]
    assert issuer["reachable"] and {"RS256", "ES256"} <= set(issuer["algorithms"])

    token_file = tmp_path / "token"
    token = oidc_provider.client_credentials_token(scope="read")
    token_file.write_text(token, encoding="utf-8")
    assert cli_main(["explain", str(path), "/api/x", "--route", "api", "--token-file", str(token_file)]) == 0
    out = capsys.readouterr().out
    assert "result: allowed (decision allow)" in out and token.split(".")[2] not in out
