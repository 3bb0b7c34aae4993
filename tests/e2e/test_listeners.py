"""Both listeners behind the emulated Kong: ours (the default) and kong-pdk 0.36's own
(`--kong-pdk-listener`), so CI keeps a smoke run on the fallback. The whole suite can also run on
kong-pdk's listener with OIDC_TEST_LISTENER=kong-pdk (tests/support/stack.py)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.kong_host.rpc import RpcClient
from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.stack import kong_config, oidc, route, start_stack
from tests.upstream.echo import header_values

pytestmark = pytest.mark.integration

KEY = rsa_key()


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as server:
        server.set_keys(KEY)
        yield server


def which_listener(emu) -> str:
    """Only our listener answers plugin.ListenerStats; kong-pdk answers it with its
    unknown-method error."""
    rpc = RpcClient(emu.plugin_server().spec.socket, read_timeout=5)
    try:
        stats = rpc.call("plugin.ListenerStats")
    except Exception as exc:  # noqa: BLE001 - RpcError carries kong-pdk's text
        assert "listener_stats" in str(exc)
        return "kong-pdk"
    finally:
        rpc.close()
    assert stats["events"] >= 1
    return "ours"


@pytest.mark.parametrize("flag,expected", [("", "ours"), ("--kong-pdk-listener", "kong-pdk"), ("-m", "kong-pdk")],
                         ids=["ours", "kong-pdk", "multiprocessing"])
def test_bearer_allow_and_deny_through_each_listener(idp, echo, tmp_path, flag, expected, monkeypatch):
    monkeypatch.delenv("OIDC_TEST_LISTENER", raising=False)
    plugin = oidc(idp.issuer, audience_required=["api"], upstream_headers_claims=["sub"],
                  upstream_headers_names=["X-User-Id"])  # no start-up warning to replay through kong.log
    cfg = kong_config(echo.port, routes=[route("api", "/api", plugin)])
    token = KEY.sign(claims(idp.issuer, sub="user-1"))
    forged = rsa_key("rsa-1", fresh=True).sign(claims(idp.issuer, sub="user-1"))
    tag = flag or "default"
    with start_stack(cfg, str(tmp_path), extra_args=flag) as (emu, client):
        # warm: instance start, key fetch, and the start-up warnings replayed through kong.log
        assert client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        ok = client.get("/api/x", headers={"Authorization": f"Bearer {token}", "X-User-Id": "spoofed",
                                           "X-Tag": f"allow-{tag}"})
        bad = client.get("/api/x", headers={"Authorization": f"Bearer {forged}", "X-Tag": f"deny-{tag}"})
        none = client.get("/api/x")
        calls = [line["pdk_calls"]["oidc"] for line in emu.log_lines(wait_for=4)[-3:]]
        assert which_listener(emu) == expected
    assert ok.status_code == 200
    (seen,) = [r for r in echo.requests if f"allow-{tag}" in header_values(r, "x-tag")]
    assert header_values(seen, "x-user-id") == ["user-1"]
    assert bad.status_code == 401 and none.status_code == 401
    # the same PDK calls on either listener: get_headers, get_path, set_headers, ctx.shared.set,
    # set_serialize_value on allow; get_headers, get_path, set_serialize_value, response.exit on deny
    assert calls == [5, 4, 4]
    assert not [r for r in echo.requests if f"deny-{tag}" in header_values(r, "x-tag")]


def test_a_hanging_idp_behind_one_route_does_not_hold_up_another(echo, tmp_path, monkeypatch):
    """The first request on route "slow" waits for a JWKS that hangs (until the plugin's
    `timeout`); requests on route "fast" meanwhile go through at their usual pace."""
    monkeypatch.delenv("OIDC_TEST_LISTENER", raising=False)
    with FakeIdP() as slow_idp, FakeIdP(path_prefix="/realms/fast") as fast_idp:
        slow_idp.set_keys(KEY)
        fast_idp.set_keys(KEY)
        cfg = kong_config(echo.port, routes=[route("slow", "/slow", oidc(slow_idp.issuer, timeout=3000, audience_required=["api"])),
                                             route("fast", "/fast", oidc(fast_idp.issuer, audience_required=["api"]))])
        fast_token = KEY.sign(claims(fast_idp.issuer))
        with start_stack(cfg, str(tmp_path)) as (emu, client):
            assert client.get("/fast/x", headers={"Authorization": f"Bearer {fast_token}"}).status_code == 200
            slow_idp.hang[slow_idp.jwks_path] = 2.5
            slow_result = {}

            def slow_request():
                t0 = time.monotonic()
                with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
                    r = c.get("/slow/x", headers={"Authorization": f"Bearer {KEY.sign(claims(slow_idp.issuer))}"})
                slow_result.update(status=r.status_code, seconds=time.monotonic() - t0)

            thread = threading.Thread(target=slow_request)
            thread.start()
            time.sleep(0.3)  # the slow request is now inside its handler, waiting for the JWKS
            t0 = time.monotonic()
            fast = [client.get("/fast/x", headers={"Authorization": f"Bearer {fast_token}"}).status_code
                    for _ in range(5)]
            fast_seconds = time.monotonic() - t0
            thread.join(30)
    assert fast == [200] * 5
    assert slow_result["seconds"] >= 2.0  # it did wait for the IdP
    assert fast_seconds < slow_result["seconds"] / 2
