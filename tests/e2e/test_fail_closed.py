"""Fail closed although Kong fails open: a dead, restarting or hung plugin server makes Kong's
MessagePack bridge proxy the request as if our plugin had passed it. The guard (Kong's `acl`,
allow ["oidc:verified"]) denies every request our plugin did not finish allowing."""

from __future__ import annotations

import contextlib
import signal
import threading

import httpx
import pytest

from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.stack import kong_config, oidc, route, start_stack
from tests.upstream.echo import header_values

pytestmark = pytest.mark.integration

KEY = rsa_key()
IDENTITY = {"upstream_headers_claims": ["sub"], "upstream_headers_names": ["X-User-Id"]}
AUDIENCE = {"audience_required": ["api"]}  # the fake IdP's tokens (tests/support/keys.py claims)


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as server:
        server.set_keys(KEY)
        yield server


def config(idp, echo):
    plugin = oidc(idp.issuer, **AUDIENCE, **IDENTITY)
    return kong_config(echo.port, routes=[
        route("guarded", "/guarded", plugin),
        route("unguarded", "/unguarded", plugin, guarded=False),
    ])


@pytest.fixture(scope="module")
def stack(idp, echo, tmp_path_factory):
    with start_stack(config(idp, echo), str(tmp_path_factory.mktemp("kong"))) as s:
        yield s


@pytest.fixture
def tokens(idp):
    return {"valid": KEY.sign(claims(idp.issuer, sub="user-1")),
            "invalid": rsa_key("rsa-1", fresh=True).sign(claims(idp.issuer, sub="user-1"))}


def get(client, path, token, tag, **headers):
    return client.get(path, headers={"Authorization": f"Bearer {token}", "X-Tag": tag, **headers})


def received(echo, tag):
    return [r for r in echo.requests if tag in header_values(r, "x-tag")]


def warm(emu, client, token):
    """Every simulated worker caches an instance id, as on a Kong node that has served traffic."""
    for i in range(emu.n_workers * 2):
        for path in ("/guarded/warm", "/unguarded/warm"):
            assert get(client, path, token, "warm").status_code == 200


@contextlib.contextmanager
def server_down(emu):
    """SIGKILL the plugin server and keep it down (no respawn) until the block ends."""
    proc = emu.plugin_server()
    proc._stop.set()  # the emulator's respawn loop ends after this death
    emu.kill_plugin_server()
    proc._thread.join(5)
    try:
        yield
    finally:
        spawns = proc.spawns
        proc._stop.clear()
        proc.start()
        emu.wait_plugin_server(spawns=spawns + 1)


def test_without_the_guard_a_dead_plugin_server_lets_a_request_through(stack, echo, tokens):
    emu, client = stack
    warm(emu, client, tokens["valid"])
    with server_down(emu):
        response = get(client, "/unguarded/x", tokens["invalid"], "danger", **{"X-User-Id": "spoofed"})
    assert response.status_code == 200  # Kong's fail-open: the danger the guard exists for
    (seen,) = received(echo, "danger")
    assert header_values(seen, "x-user-id") == ["spoofed"]
    assert "trying to connect" in emu.error_log()


def test_with_the_guard_a_dead_plugin_server_denies_every_request(stack, echo, tokens):
    emu, client = stack
    warm(emu, client, tokens["valid"])
    with server_down(emu):
        statuses = [get(client, "/guarded/x", tokens[kind], "dead-guarded").status_code
                    for kind in ("valid", "invalid") * emu.n_workers * 2]
    assert all(s in (401, 403, 500) for s in statuses), statuses
    assert received(echo, "dead-guarded") == []


def test_after_the_plugin_server_comes_back_requests_succeed(stack, tokens):
    emu, client = stack
    warm(emu, client, tokens["valid"])
    with server_down(emu):
        pass
    statuses = [get(client, "/guarded/x", tokens["valid"], "back").status_code for _ in range(emu.n_workers * 2)]
    assert statuses == [200] * len(statuses)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_plugin_server_killed_under_traffic_never_lets_an_unverified_request_through(stack, echo, tokens, sig):
    emu, client = stack
    warm(emu, client, tokens["valid"])
    stop = threading.Event()
    counts = {"ok": 0, "denied": 0, "sent": 0}
    lock = threading.Lock()
    base = str(client.base_url)

    def traffic(kind):
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                r = get(c, "/guarded/t", tokens[kind], f"traffic-{kind}-{sig.name}", **{"X-User-Id": "spoofed"})
                with lock:
                    counts["sent"] += 1
                    counts["ok" if r.status_code == 200 else "denied"] += 1

    def wait_for_ok(n):
        while True:
            with lock:
                if counts["ok"] >= n:
                    return
            stop.wait(0.01)

    threads = [threading.Thread(target=traffic, args=(k,)) for k in ("valid", "valid", "invalid", "invalid")]
    for t in threads:
        t.start()
    try:
        wait_for_ok(20)
        proc = emu.plugin_server()
        spawns = proc.spawns
        for _ in range(3):  # three deaths under traffic, each respawned by the emulator as Kong does
            emu.kill_plugin_server(sig=sig)  # Kong itself sends SIGTERM on worker exit
            emu.wait_plugin_server(spawns=spawns + 1)
            spawns += 1
            with lock:
                target = counts["ok"] + 20
            wait_for_ok(target)  # recovery: valid requests succeed again
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(f"\nunder traffic: sent {counts['sent']}, 200 {counts['ok']}, denied {counts['denied']}, "
          f"3 x {signal.Signals(sig).name}")
    assert received(echo, f"traffic-invalid-{sig.name}") == []
    valid = received(echo, f"traffic-valid-{sig.name}")
    assert len(valid) == counts["ok"]
    assert all(header_values(r, "x-user-id") == ["user-1"] for r in valid)


def test_hung_plugin_server_is_denied_after_the_read_timeout(idp, echo, tmp_path, tokens):
    with start_stack(config(idp, echo), str(tmp_path), read_timeout=1.5) as (emu, client):
        warm(emu, client, tokens["valid"])
        pid = emu.plugin_server().pid
        emu.plugin_server().kill(signal.SIGSTOP)
        try:
            guarded = get(client, "/guarded/h", tokens["valid"], "hung-guarded")
            unguarded = get(client, "/unguarded/h", tokens["valid"], "hung-unguarded", **{"X-User-Id": "spoofed"})
        finally:
            emu.plugin_server().kill(signal.SIGCONT)
        after = get(client, "/guarded/h", tokens["valid"], "hung-after")
        assert "no data" in emu.error_log()
        assert emu.plugin_server().pid == pid
    assert guarded.status_code in (401, 403)
    assert received(echo, "hung-guarded") == []
    assert unguarded.status_code == 200  # without the guard the hang fails open
    assert header_values(received(echo, "hung-unguarded")[0], "x-user-id") == ["spoofed"]
    assert after.status_code == 200
