"""The README must not drift from the code: option table, recipes, Kong settings, reason codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kong_oidc_py.edge import server
from kong_oidc_py.config import OPTIONS, POLICY_FIELDS, options_markdown, parse_config
from kong_oidc_py.errors import SCOPE_REASONS, TOKEN_REASONS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUARD = "oidc:verified"

# `<!-- kind:name -->` directly followed by a ```yaml fence.
_BLOCK = re.compile(r"<!-- (recipe|kong\.yml):([a-z0-9-]+) -->\n```yaml\n(.*?)\n```", re.S)


def blocks(kind: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for k, name, body in _BLOCK.findall(README):
        if k == kind:
            assert name not in found, f"duplicate {kind} marker {name}"
            found[name] = body
    return found


def recipe(name: str) -> dict:
    """The `config:` mapping of the README recipe `<!-- recipe:name -->`."""
    return yaml.safe_load(blocks("recipe")[name])["config"]


# -- configuration table -----------------------------------------------------------------

def test_options_block_is_the_generated_table():
    start, end = "<!-- options:start -->", "<!-- options:end -->"
    assert README.count(start) == 1 and README.count(end) == 1
    block = README.split(start, 1)[1].split(end, 1)[0]
    assert block.strip("\n") == options_markdown().strip("\n"), (
        "README option table is stale: regenerate it with `python -m kong_oidc_py.config --markdown`"
    )


@pytest.mark.parametrize("name", [o.name for o in OPTIONS + POLICY_FIELDS])
def test_every_option_is_documented(name):
    assert f"`{name}`" in README


# -- recipes -----------------------------------------------------------------------------

EXPECTED_RECIPES = {"api", "browser", "policies", "keycloak", "okta", "auth0", "cognito", "azure"}


def test_all_recipes_are_present():
    assert EXPECTED_RECIPES <= set(blocks("recipe"))


@pytest.mark.parametrize("name", sorted(EXPECTED_RECIPES))
def test_recipe_is_a_valid_config(name):
    doc = yaml.safe_load(blocks("recipe")[name])
    assert set(doc) == {"config"}, "a recipe is exactly one `config:` block"
    parse_config(doc["config"])


def _entities_with_plugins(doc: dict):
    for service in doc.get("services") or []:
        yield f"service {service['name']}", service.get("plugins") or []
        for route in service.get("routes") or []:
            yield f"route {route['name']}", route.get("plugins") or []
    for route in doc.get("routes") or []:
        yield f"route {route['name']}", route.get("plugins") or []


@pytest.mark.parametrize("name", sorted(blocks("kong.yml")))
def test_kong_yml_examples_validate_and_carry_the_acl_guard(name):
    doc = yaml.safe_load(blocks("kong.yml")[name])
    seen = 0
    for where, plugins in _entities_with_plugins(doc):
        names = [p["name"] for p in plugins]
        for plugin in plugins:
            if plugin["name"] == "oidc":
                seen += 1
                parse_config(plugin["config"])
                assert "acl" in names, f"{where}: oidc without the acl guard"
        for plugin in plugins:
            if plugin["name"] == "acl":
                assert GUARD in plugin["config"]["allow"], where
                assert plugin["config"].get("always_use_authenticated_groups") is True, where
    assert seen, "example without an oidc plugin"


def test_there_are_kong_yml_examples():
    assert {"guard", "per-route"} <= set(blocks("kong.yml"))


# -- installation facts ------------------------------------------------------------------

def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", "\n")
    env = {}
    for key, value in re.findall(r'^\s*(KONG_[A-Z_]+)=("[^"]*"|\S+)', text, re.M):
        env[key] = value
    return env


@pytest.mark.parametrize("key", [
    "KONG_PLUGINS", "KONG_PLUGINSERVER_NAMES", "KONG_PLUGINSERVER_OIDC_SOCKET",
    "KONG_PLUGINSERVER_OIDC_START_CMD", "KONG_PLUGINSERVER_OIDC_QUERY_CMD",
])
def test_kong_settings_match_the_dockerfile(key):
    value = _dockerfile_env()[key]
    assert f"{key}={value}" in README


def test_priority_matches_the_plugin_server():
    assert server.PRIORITY == 1050
    assert f"**Priority {server.PRIORITY}**" in README


@pytest.mark.parametrize("target", ["test", "demo", "up", "down", "compose-test", "bench", "install", "clean"])
def test_make_targets_exist(target):
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M)
    assert f"make {target}" in README


def test_demo_commands_are_the_ones_the_demo_prints():
    from tests.demo import instructions

    banner = instructions("http://127.0.0.1:9100")
    section = README.split("## Quickstart: local demo", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for line in section.splitlines():
        if line.startswith(("TOKEN=$(curl", "RTOKEN=$(curl")):
            assert line in banner
            checked += 1
        m = re.match(r"\| `(curl [^`]+)` \|", line)
        if m and "127.0.0.1:8000" in m.group(1):
            assert m.group(1) in banner, m.group(1)
            checked += 1
    assert checked == 10


# -- troubleshooting ---------------------------------------------------------------------

@pytest.mark.parametrize("reason", sorted(TOKEN_REASONS | SCOPE_REASONS | {"missing_token", "invalid_request"}))
def test_every_reason_code_is_explained(reason):
    assert f"`{reason}`" in README
