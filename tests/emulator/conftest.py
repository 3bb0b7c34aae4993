"""Fixtures for the emulator's own tests (and a model for the lead's tests)."""

from __future__ import annotations

import os
import sys
import tempfile

import httpx
import pytest

from tests.kong_host import Emulator, PluginServerSpec
from tests.upstream.echo import EchoUpstream

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, "tests", "fixtures", "probe_plugin.py")


def probe_spec(prefix: str) -> PluginServerSpec:
    """The probe plugin server, started like Kong's own integration test starts py-hello."""
    sock = os.path.join(prefix, "probe.socket")
    return PluginServerSpec(
        name="probe",
        socket=sock,
        start_cmd=f"{sys.executable} {PROBE} --kong-prefix {prefix} --socket-name probe.socket --no-lua-style",
        query_cmd=f"{sys.executable} {PROBE} --dump",
    )


def config(echo_port: int, *, plugins=None, routes=None, **extra) -> dict:
    """A kong.yml dict: one service `echo` -> the echo upstream, route `r` on /."""
    cfg = {
        "_format_version": "3.0",
        "services": [{
            "name": "echo",
            "url": f"http://127.0.0.1:{echo_port}",
            "routes": routes if routes is not None else [{"name": "r", "paths": ["/"]}],
        }],
        "plugins": plugins or [],
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def echo():
    with EchoUpstream() as up:
        yield up


@pytest.fixture
def prefix():
    with tempfile.TemporaryDirectory(prefix="kh-") as d:
        yield d


@pytest.fixture
def start_emulator(prefix):
    """start_emulator(cfg, plugin_servers=[probe], **kw) -> (emulator, httpx.Client)."""
    started = []

    def _start(cfg, plugin_servers="probe", **kw):
        if plugin_servers == "probe":
            plugin_servers = [probe_spec(prefix)]
        kw.setdefault("read_timeout", 5.0)
        emu = Emulator(prefix=prefix, **{k: kw.pop(k) for k in list(kw) if k in (
            "read_timeout", "log_level", "upstream_override", "workers")})
        started.append(emu)
        url = emu.start(cfg, plugin_servers, **kw)
        client = httpx.Client(base_url=url, timeout=30)
        started.append(client)
        return emu, client

    yield _start
    for obj in reversed(started):
        obj.close() if isinstance(obj, httpx.Client) else obj.stop()
