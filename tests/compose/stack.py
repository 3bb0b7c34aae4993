"""What the compose tests use from the stack: one place, read by tests/static too.

Issuer and routes come from deploy/kong/kong.yml; the identities below must exist in
deploy/keycloak/realm-export.json (tests/static/test_realm_export.py checks that they do).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
KONG_YML = REPO / "deploy" / "kong" / "kong.yml"
REALM_EXPORT = REPO / "deploy" / "keycloak" / "realm-export.json"

# Published on the host (docker-compose.yml binds both to 127.0.0.1 only).
KONG_URL = "http://127.0.0.1:8000"
KEYCLOAK_URL = "http://127.0.0.1:8080"
# The browser uses the name in the realm's redirect URIs and the plugin's redirect_uri.
BROWSER_KONG_URL = "http://localhost:8000"
# Keycloak's KC_HOSTNAME host; the test browser maps it to 127.0.0.1.
KEYCLOAK_HOST = "keycloak"

GUARD_GROUP = "oidc:verified"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    scopes: tuple[str, ...] = ()        # client scopes the tests expect in its tokens by default
    optional_scopes: tuple[str, ...] = ()  # client scopes the tests request explicitly
    realm_roles: tuple[str, ...] = ()   # realm roles its service account must have


@dataclass(frozen=True)
class User:
    username: str
    password: str
    groups: tuple[str, ...]
    realm_roles: tuple[str, ...]


# M2M client that may call the orders, reports and catalog routes.
ORDERS_SERVICE = Client(
    "orders-service", "dev-only-orders-service-secret",
    scopes=("orders.read",), optional_scopes=("orders.write",), realm_roles=("reports-viewer",),
)
# M2M client with neither the orders scopes nor the reports role.
INVENTORY_SERVICE = Client("inventory-service", "dev-only-inventory-service-secret")
# Browser test user.
ALICE = User("alice", "dev-only-alice-password", groups=("order-managers",), realm_roles=("orders-admin",))

M2M_CLIENTS = (ORDERS_SERVICE, INVENTORY_SERVICE)
USERS = (ALICE,)


def kong_config() -> dict:
    with open(KONG_YML, encoding="utf-8") as f:
        return yaml.safe_load(f)


def route(name: str) -> dict:
    for service in kong_config().get("services") or []:
        for r in service.get("routes") or []:
            if r.get("name") == name:
                return r
    raise KeyError(f"route {name!r} not in {KONG_YML}")


def route_plugin_config(route_name: str, plugin: str = "oidc") -> dict:
    for p in route(route_name).get("plugins") or []:
        if p["name"] == plugin:
            return p.get("config") or {}
    raise KeyError(f"route {route_name!r} has no {plugin} plugin")


def issuer() -> str:
    """The issuer every oidc instance in kong.yml is configured with (they all share one)."""
    found = set()
    cfg = kong_config()

    def visit(plugins):
        for p in plugins or []:
            if p.get("name") == "oidc":
                found.add(p["config"]["issuer"])

    visit(cfg.get("plugins"))
    for service in cfg.get("services") or []:
        visit(service.get("plugins"))
        for r in service.get("routes") or []:
            visit(r.get("plugins"))
    for r in cfg.get("routes") or []:
        visit(r.get("plugins"))
    if len(found) != 1:
        raise AssertionError(f"expected one issuer in {KONG_YML}, found {sorted(found)}")
    return found.pop().removesuffix("/.well-known/openid-configuration")


def realm_name() -> str:
    return issuer().rstrip("/").rsplit("/realms/", 1)[1]


def token_endpoint() -> str:
    return f"{KEYCLOAK_URL}/realms/{realm_name()}/protocol/openid-connect/token"


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (the tests only read what Keycloak put there)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
