"""The plugin server's Prometheus listener: off unless asked for, loopback unless told otherwise.

Kong starts the plugin server with `pluginserver_oidc_start_cmd`, so the flags ride on that
command line (or the environment Kong passes through):

    pluginserver_oidc_start_cmd = /usr/local/bin/kong-oidc-py --metrics-port 9542
    KONG_OIDC_PY_METRICS_PORT=9542  KONG_OIDC_PY_METRICS_HOST=127.0.0.1

A metrics listener that cannot bind is logged at error level and left off: authentication
never stops because of metrics.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kong_oidc_py")

PORT_ENV = "KONG_OIDC_PY_METRICS_PORT"
HOST_ENV = "KONG_OIDC_PY_METRICS_HOST"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsArgsError(ValueError):
    """A bad --metrics-* flag or environment value; the message names it."""


@dataclass(frozen=True)
class MetricsSettings:
    port: int
    host: str = "127.0.0.1"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def pop_metrics_args(args: list[str], env: dict[str, str] | None = None) -> tuple[list[str], MetricsSettings | None]:
    """Take our --metrics-port/--metrics-host out of `args` (kong-pdk's parser would refuse
    them) and return the rest with the settings, or None when metrics are off."""
    env = os.environ if env is None else env
    values = {"--metrics-port": env.get(PORT_ENV), "--metrics-host": env.get(HOST_ENV)}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in values:
            if not eq:
                value = next(it, "")
            values[name] = value
        else:
            rest.append(arg)
    port_text, host = values["--metrics-port"], values["--metrics-host"] or "127.0.0.1"
    if not port_text:
        return rest, None
    try:
        port = int(port_text)
    except ValueError:
        raise MetricsArgsError(f"--metrics-port/{PORT_ENV}: {port_text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise MetricsArgsError(f"--metrics-port/{PORT_ENV}: {port} is not between 1 and 65535")
    return rest, MetricsSettings(port=port, host=host)


def prepare_multiprocess() -> str:
    """kong-pdk -m: every pool process writes its samples under one directory, which must be
    set before any process imports prometheus_client. Returns the directory (removed at exit
    when we made it)."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        os.makedirs(existing, exist_ok=True)
        return existing
    path = tempfile.mkdtemp(prefix="kong-oidc-py-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path


def start(settings: MetricsSettings, *, multiprocess: bool = False) -> Any:
    """Enable recording and serve /metrics; returns the HTTP server, or None if it could not bind."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    from kong_oidc_py import metrics

    metrics.enable()
    registry = REGISTRY
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
    if not settings.loopback:
        log.warning("oidc: the metrics listener binds %s, which is not a loopback address: "
                    "anyone who reaches it reads decision counts", settings.host)
    try:
        server, _thread = start_http_server(settings.port, addr=settings.host, registry=registry)
    except OSError as exc:
        log.error("oidc: metrics listener on %s:%d could not start (%s); metrics are off. "
                  "Fix --metrics-port/%s.", settings.host, settings.port, exc.strerror or exc, PORT_ENV)
        metrics.disable()
        return None
    log.info("oidc: metrics on http://%s:%d/metrics", settings.host, settings.port)
    return server
