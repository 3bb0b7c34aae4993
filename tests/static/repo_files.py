"""Readers for the deployment files, shared by the static checks."""

from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SCHEMAS = SHARED / "schemas"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
STACK_KONG_YML = REPO / "deploy" / "kong" / "kong.yml"
REALM_EXPORT = REPO / "deploy" / "keycloak" / "realm-export.json"
DESIGN = REPO / "docs" / "DESIGN.md"

EXCLUDED_DIRS = {".venv", "node_modules", ".git", ".pytest_cache", "__pycache__", "build", "dist"}


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=1)
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@lru_cache(maxsize=1)
def realm() -> dict:
    return load_json(REALM_EXPORT)


def kong_yml_files() -> list[Path]:
    """Every kong.yml in the repo plus every YAML file under deploy/ that is a Kong declarative config."""
    found: set[Path] = set()
    for path in REPO.rglob("kong.yml"):
        if not EXCLUDED_DIRS & set(path.relative_to(REPO).parts):
            found.add(path)
    deploy = REPO / "deploy"
    if deploy.is_dir():
        for pattern in ("*.yml", "*.yaml"):
            for path in deploy.rglob(pattern):
                if EXCLUDED_DIRS & set(path.relative_to(REPO).parts):
                    continue
                doc = load_yaml(path)
                if isinstance(doc, dict) and "_format_version" in doc:
                    found.add(path)
    return sorted(found)


# -- Kong declarative config: which plugin instances apply where ---------------------------------


def routes_with_service(cfg: dict) -> list[tuple[dict, dict | None]]:
    """(route, service) pairs for nested and top-level routes."""
    services = {s.get("name") or s.get("id"): s for s in cfg.get("services") or []}
    pairs: list[tuple[dict, dict | None]] = []
    for service in cfg.get("services") or []:
        for r in service.get("routes") or []:
            pairs.append((r, service))
    for r in cfg.get("routes") or []:
        ref = r.get("service")
        key = ref.get("name") or ref.get("id") if isinstance(ref, dict) else ref
        pairs.append((r, services.get(key)))
    return pairs


def _top_level_plugins(cfg: dict, kind: str, key: str | None) -> list[dict]:
    out = []
    for p in cfg.get("plugins") or []:
        ref = p.get(kind)
        if ref is None:
            continue
        name = ref.get("name") or ref.get("id") if isinstance(ref, dict) else ref
        if name == key:
            out.append(p)
    return out


def effective_plugin(cfg: dict, route: dict, service: dict | None, name: str) -> dict | None:
    """The instance of plugin `name` Kong runs for a request on `route` (no consumer scoping):
    route-level beats service-level beats global."""
    route_key = route.get("name") or route.get("id")
    candidates = [p for p in (route.get("plugins") or []) + _top_level_plugins(cfg, "route", route_key)
                  if p.get("name") == name and p.get("enabled", True)]
    if candidates:
        return candidates[0]
    if service is not None:
        service_key = service.get("name") or service.get("id")
        candidates = [p for p in (service.get("plugins") or []) + _top_level_plugins(cfg, "service", service_key)
                      if p.get("name") == name and p.get("enabled", True)]
        if candidates:
            return candidates[0]
    candidates = [p for p in cfg.get("plugins") or []
                  if p.get("name") == name and p.get("enabled", True)
                  and not any(k in p for k in ("route", "service", "consumer"))]
    return candidates[0] if candidates else None


def all_plugins(cfg: dict) -> list[dict]:
    out = list(cfg.get("plugins") or [])
    for service in cfg.get("services") or []:
        out += service.get("plugins") or []
        for r in service.get("routes") or []:
            out += r.get("plugins") or []
    for r in cfg.get("routes") or []:
        out += r.get("plugins") or []
    for c in cfg.get("consumers") or []:
        out += c.get("plugins") or []
    return out


def oidc_configs(cfg: dict) -> list[dict]:
    return [p.get("config") or {} for p in all_plugins(cfg) if p.get("name") == "oidc"]


# -- docs/DESIGN.md option table -------------------------------------------------------------------


@lru_cache(maxsize=1)
def design_options() -> tuple[frozenset[str], frozenset[str]]:
    """(plugin option names, policies[] record field names) from docs/DESIGN.md."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("## Options", 1)[1]
    options: set[str] = set()
    for line in section.splitlines():
        m = re.match(r"^\|\s*([a-z_][a-z0-9_ ,/]*?)\s*\|", line)
        if not m or m.group(1) in ("option",):
            continue
        cell = m.group(1)
        if "/" in cell:  # session_redis_host/port/username/... shorthand
            first, *rest = [c.strip() for c in cell.split("/")]
            prefix = first.rsplit("_", 1)[0] + "_"
            options.add(first)
            options.update(r if "_" in r else prefix + r for r in rest)
        else:
            options.update(c.strip() for c in cell.split(","))
    record = section.split("`policies[]` record:", 1)[1].split("\n\n", 1)[0]
    policy_fields = set(re.findall(r"`([a-z_]+)`", record))
    return frozenset(options), frozenset(policy_fields)


# -- Dockerfile -------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            instr, _, args = buf.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile_instructions():
        if instr != "ENV":
            continue
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"ENV {token!r}: use the KEY=value form"
            env[key] = value
    return env


def dockerfile_from() -> list[str]:
    return [args.split()[0] for instr, args in dockerfile_instructions() if instr == "FROM"]
