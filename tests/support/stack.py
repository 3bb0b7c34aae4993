"""The local stack for end-to-end tests and the demo: emulated Kong running the real
`kong-oidc-py` plugin server, the echo upstream, and an OpenID provider.

    cfg = kong_config(echo.port, routes=[route("api", "/api", oidc(issuer, scopes_required=["read"]))])
    with start_stack(cfg, prefix) as (emu, client): ...
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx

from tests.kong_host import Emulator, PluginServerSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SCRIPT = Path(sys.executable).parent / "kong-oidc-py"
GUARD_GROUP = "oidc:verified"
MARKER_HEADER = "X-Test-Request"


def listener_args() -> str:
    """OIDC_TEST_LISTENER=kong-pdk runs every stack on kong-pdk 0.36's own listener (the
    `--kong-pdk-listener` flag) instead of ours, so the whole suite can check both."""
    choice = os.environ.get("OIDC_TEST_LISTENER", "ours")
    if choice not in ("ours", "kong-pdk"):
        raise RuntimeError(f"OIDC_TEST_LISTENER must be 'ours' or 'kong-pdk', not {choice!r}")
    return "--kong-pdk-listener" if choice == "kong-pdk" else ""


def oidc_spec(prefix: str, *, extra_args: str = "") -> PluginServerSpec:
    """Our plugin server, registered the way the Dockerfile registers it with real Kong."""
    extra_args = f"{listener_args()} {extra_args}".strip()
    if not PLUGIN_SCRIPT.exists():
        raise RuntimeError(f"{PLUGIN_SCRIPT} missing: run `make install` (pip install -e .)")
    return PluginServerSpec(
        name="oidc",
        socket=os.path.join(prefix, "oidc.socket"),
        start_cmd=f"{PLUGIN_SCRIPT} --kong-prefix {prefix} --socket-name oidc.socket {extra_args}".strip(),
        query_cmd=f"{PLUGIN_SCRIPT} --dump",
    )


def oidc(issuer: str, **config: Any) -> dict:
    """An `oidc` plugin entry; loopback issuers are http, which the plugin allows for loopback."""
    return {"name": "oidc", "config": {"issuer": issuer, **config}}


def guard() -> dict:
    """Kong's bundled acl plugin as the fail-closed guard (docs/DESIGN.md)."""
    return {"name": "acl", "config": {"allow": [GUARD_GROUP], "always_use_authenticated_groups": True}}


def route(name: str, path: str, *plugins: dict, guarded: bool = True, **extra: Any) -> dict:
    entry = {"name": name, "paths": [path], "strip_path": False, **extra}
    plugin_list = list(plugins)
    if guarded and plugins:
        plugin_list.append(guard())
    if plugin_list:
        entry["plugins"] = plugin_list
    return entry


def kong_config(echo_port: int, *, routes: list[dict], service_plugins: list[dict] | None = None,
                plugins: list[dict] | None = None, consumers: list[dict] | None = None) -> dict:
    service: dict[str, Any] = {"name": "echo", "url": f"http://127.0.0.1:{echo_port}", "routes": routes}
    if service_plugins:
        service["plugins"] = service_plugins
    cfg: dict[str, Any] = {"_format_version": "3.0", "services": [service]}
    if plugins:
        cfg["plugins"] = plugins
    if consumers:
        cfg["consumers"] = consumers
    return cfg


@contextlib.contextmanager
def start_stack(cfg: dict, prefix: str, *, workers: int = 2, read_timeout: float = 10.0,
                extra_args: str = "") -> Iterator[tuple[Emulator, httpx.Client]]:
    emu = Emulator(prefix=prefix, workers=workers, read_timeout=read_timeout)
    try:
        url = emu.start(cfg, [oidc_spec(prefix, extra_args=extra_args)])
        with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
            yield emu, client
    finally:
        emu.stop()


def call(stack: tuple[Emulator, httpx.Client], path: str, token: str | None = None, *, method: str = "GET",
         headers: dict | None = None, scheme: str = "Bearer") -> tuple[httpx.Response, dict]:
    """(response, the request's Kong log line), for a `start_stack` stack. The line is found by a
    marker header: Kong writes it in the log phase, after the response has gone out, so the
    newest line may still be the previous request's."""
    emu, client = stack
    marker = uuid.uuid4().hex
    sent = {**(headers or {}), MARKER_HEADER: marker}
    if token is not None:
        sent["Authorization"] = f"{scheme} {token}"
    response = client.request(method, path, headers=sent)
    return response, emu.log_line_for(MARKER_HEADER, marker)
