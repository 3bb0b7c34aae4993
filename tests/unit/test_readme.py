"""The README and docs/ must not drift from the code: option reference, recipes, Kong settings,
reason codes, and the links between the pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kong_oidc_py import config_docs
from kong_oidc_py.edge import server
from kong_oidc_py.config import OPTIONS, POLICY_FIELDS, parse_config
from kong_oidc_py.errors import SCOPE_REASONS, TOKEN_REASONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
RECIPES = (DOCS / "recipes.md").read_text(encoding="utf-8")
TROUBLESHOOTING = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
GUARD = "oidc:verified"
# The front door stays short: everything past the quickstarts, installation and the guard lives in docs/.
README_MAX_BYTES = 15 * 1024

# `<!-- kind:name -->` directly followed by a ```yaml fence.
_BLOCK = re.compile(r"<!-- (recipe|kong\.yml):([a-z0-9-]+) -->\n```yaml\n(.*?)\n```", re.S)


def blocks(kind: str, *pages: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in pages or (README, RECIPES):
        for k, name, body in _BLOCK.findall(page):
            if k == kind:
                assert name not in found, f"duplicate {kind} marker {name}"
                found[name] = body
    return found


def recipe(name: str) -> dict:
    """The `config:` mapping of the docs/recipes.md recipe `<!-- recipe:name -->`."""
    return yaml.safe_load(blocks("recipe", RECIPES)[name])["config"]


# -- configuration reference -------------------------------------------------------------

def test_configuration_page_is_the_generated_one():
    assert CONFIGURATION == config_docs.configuration_markdown(), (
        "docs/configuration.md is stale: regenerate it with `make docs` (python -m kong_oidc_py.config_docs)"
    )


@pytest.mark.parametrize("name", [o.name for o in OPTIONS + POLICY_FIELDS])
def test_every_option_is_documented(name):
    assert f"`{name}`" in CONFIGURATION


# -- recipes -----------------------------------------------------------------------------

EXPECTED_RECIPES = {"api", "browser", "policies", "keycloak", "okta", "auth0", "cognito", "azure", "okta-opaque", "two-issuers", "dpop", "admin-mfa"}


def test_all_recipes_are_present():
    assert EXPECTED_RECIPES <= set(blocks("recipe", RECIPES))


@pytest.mark.parametrize("name", sorted(EXPECTED_RECIPES))
def test_recipe_is_a_valid_config(name):
    doc = yaml.safe_load(blocks("recipe", RECIPES)[name])
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
    assert "guard" in blocks("kong.yml", README)
    assert "per-route" in blocks("kong.yml", RECIPES)


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


@pytest.mark.parametrize("target", [
    "test", "demo", "demo-check", "docs", "up", "down", "compose-test", "bench", "install", "clean",
])
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
    assert f"`{reason}`" in TROUBLESHOOTING


# -- the front door and its links ----------------------------------------------------------

def test_readme_stays_a_short_front_door():
    size = len(README.encode("utf-8"))
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_readme_links_every_docs_page(page):
    assert f"](docs/{page})" in README


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    fenced = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", fenced, re.M)}


_LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # external URL
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: broken link {target}"
        if anchor:
            assert anchor in _anchors(dest.read_text(encoding="utf-8")), f"{page.name}: no heading for {target}"
