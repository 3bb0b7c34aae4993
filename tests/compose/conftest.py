"""Compose end-to-end tests: they need the stack from `make up` (docker-compose.yml).

Without a Docker engine every test here is skipped (never passed): this machine cannot run
them. With an engine but no running stack they fail and say so.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from .stack import KEYCLOAK_URL, KONG_URL, Client, realm_name, token_endpoint

HERE = Path(__file__).resolve().parent
NO_DOCKER = "no Docker engine: compose tests need `make up` on a machine with Docker"


@functools.lru_cache(maxsize=1)
def docker_engine_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not mine:
        return
    skip = None if docker_engine_available() else pytest.mark.skip(reason=NO_DOCKER)
    for item in mine:
        item.add_marker(pytest.mark.compose)
        if skip is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack() -> None:
    """Fail clearly when Docker is there but the stack is not up."""
    try:
        httpx.get(f"{KEYCLOAK_URL}/realms/{realm_name()}/.well-known/openid-configuration", timeout=5).raise_for_status()
        httpx.get(f"{KONG_URL}/public/ping", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"the compose stack is not reachable ({exc}); run `make up` first")


@pytest.fixture(scope="session")
def http(stack) -> httpx.Client:
    with httpx.Client(timeout=15, follow_redirects=False) as client:
        yield client


def fetch_token(http: httpx.Client, client: Client, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = http.post(token_endpoint(), data=data, auth=(client.client_id, client.secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
