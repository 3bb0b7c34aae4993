"""Prometheus metrics from the real plugin server, read after traffic through the emulator."""

import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.idp import DEFAULT_RESOURCE
from tests.support.ports import free_port
from tests.support.stack import guard, kong_config, oidc, route, start_stack
from tests.upstream.echo import EchoUpstream

pytestmark = pytest.mark.integration


def samples(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(data, name, **labels) -> float:
    return sum(v for (n, lbl), v in data.items()
               if n == name and all(dict(lbl).get(k) == want for k, want in labels.items()))


def traffic(client, token):
    statuses = [
        client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code,
        client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code,
        client.get("/api/x").status_code,
        client.get("/api/x", headers={"Authorization": "Bearer not.a.jwt"}).status_code,
        client.get("/open/x").status_code,
    ]
    assert statuses == [200, 200, 401, 401, 200]


@pytest.fixture
def config(oidc_provider):
    with EchoUpstream() as echo:
        plugin = oidc(oidc_provider.issuer, audience_required=[DEFAULT_RESOURCE],
                      policies=[{"name": "open", "paths": ["/open"], "public": True}])
        plugin["instance_name"] = "orders-oidc"
        yield kong_config(echo.port, routes=[route("api", "/api", plugin), route("open", "/open", dict(plugin, instance_name="open-oidc"))])


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_metrics_count_decisions_fetches_and_cache_after_traffic(config, oidc_provider, tmp_path, mode):
    port = free_port()
    extra = f"--metrics-port {port}" + (" -m" if mode == "processes" else "")
    token = oidc_provider.client_credentials_token(scope="read")
    with start_stack(config, str(tmp_path), extra_args=extra) as (_emu, client):
        traffic(client, token)
        data = samples(port)
    assert total(data, "kong_oidc_decisions_total", instance="orders-oidc", decision="allow") == 2
    assert total(data, "kong_oidc_decisions_total", instance="orders-oidc", reason="missing_token") == 1
    assert total(data, "kong_oidc_decisions_total", instance="orders-oidc", reason="malformed") == 1
    assert total(data, "kong_oidc_decisions_total", instance="open-oidc", decision="public") == 1
    assert total(data, "kong_oidc_event_seconds_count") == 5
    assert total(data, "kong_oidc_idp_fetches_total", kind="discovery", outcome="ok") >= 1
    assert total(data, "kong_oidc_idp_fetches_total", kind="jwks", outcome="ok") >= 1
    assert total(data, "kong_oidc_idp_fetch_seconds_count", issuer=oidc_provider.issuer, kind="jwks") >= 1
    if mode == "threads":
        # One process, one cache: the first sight misses, the repeat hits. (Under -m each pool
        # process has its own cache, so which one serves the repeat is the pool's choice.)
        assert total(data, "kong_oidc_token_cache_total", result="hit") == 1
    assert total(data, "kong_oidc_token_cache_total") >= 2


def test_metrics_labels_carry_no_token_subject_or_path(config, oidc_provider, tmp_path):
    port = free_port()
    token = oidc_provider.client_credentials_token(scope="read")
    with start_stack(config, str(tmp_path), extra_args=f"--metrics-port {port}") as (_emu, client):
        traffic(client, token)
        client.get("/api/secret-path-123", headers={"Authorization": "Bearer " + "A" * 40})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert token not in text and token.split(".")[1][:20] not in text
    assert "m2m" not in text                    # the token's subject
    assert "secret-path-123" not in text and "AAAA" not in text


def listening_tcp_sockets(pid: int) -> set[str]:
    """Inodes of the TCP sockets process `pid` listens on (from /proc, no extra tools)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    listening.add(fields[9])
    return listening


def test_with_the_flag_the_server_listens_and_without_it_it_does_not(config, tmp_path):
    port = free_port()
    with start_stack(config, str(tmp_path / "on"), extra_args=f"--metrics-port {port}") as (emu, client):
        assert client.get("/open/x").status_code == 200
        assert len(listening_tcp_sockets(emu.plugin_server().pid)) == 1
    with start_stack(config, str(tmp_path / "off")) as (emu, client):
        assert client.get("/open/x").status_code == 200
        assert listening_tcp_sockets(emu.plugin_server().pid) == set()
