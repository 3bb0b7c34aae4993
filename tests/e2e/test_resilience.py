"""Config lifecycle, cold-cache concurrency, hostile bytes and PDK economy, end to end through
the Kong host emulator with the real plugin server and a loopback IdP that counts fetches."""

from __future__ import annotations

import copy
import json
import socket
import threading

import httpx
import msgpack
import pytest

from tests.kong_host.declarative import DeclarativeError
from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.stack import call, kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

KEY = rsa_key()
IDENTITY = {"upstream_headers_claims": ["sub"], "upstream_headers_names": ["X-User-Id"]}
AUDIENCE = {"audience_required": ["api"]}  # the fake IdP's tokens (tests/support/keys.py claims)


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as server:
        server.set_keys(KEY)
        yield server


def base_config(idp, echo, scopes=("read",)):
    return kong_config(
        echo.port,
        routes=[
            route("api", "/api", oidc(idp.issuer, scopes_required=list(scopes), **AUDIENCE, **IDENTITY)),
            route("docs", "/docs", oidc(idp.issuer, policies=[{"name": "pub", "paths": ["/docs"], "public": True}], **AUDIENCE, **IDENTITY)),
            route("users", "/users", oidc(idp.issuer, consumer_claim=["sub"], **AUDIENCE, **IDENTITY)),
        ],
        consumers=[{"username": "user-1"}],
    )


@pytest.fixture(scope="module")
def stack(idp, echo, tmp_path_factory):
    with start_stack(base_config(idp, echo), str(tmp_path_factory.mktemp("kong"))) as s:
        # Each instance's first request also replays its start warnings through kong.log
        # (edge/kong_log.py, one PDK call each, once): the call-count tests measure steady state.
        for path in ("/api/x", "/docs/x", "/users/x"):
            s[1].get(path)
        yield s


def token(idp, **extra):
    return KEY.sign(claims(idp.issuer, sub="user-1", **extra))


# -- config lifecycle ---------------------------------------------------------------------

def test_reloaded_plugin_config_reaches_the_plugin_server(stack, idp, echo):
    emu, client = stack
    tok = token(idp, scope="read")
    assert [call(stack, "/api/x", tok)[0].status_code for _ in range(emu.n_workers)] == [200] * emu.n_workers
    try:
        emu.reload(base_config(idp, echo, scopes=("write",)))
        statuses = [call(stack, "/api/x", tok)[0].status_code for _ in range(emu.n_workers * 2)]
    finally:
        emu.reload(base_config(idp, echo))
    assert statuses == [403] * len(statuses)


def test_schema_invalid_config_is_refused_naming_the_field(stack, idp, echo):
    emu, _ = stack
    bad = base_config(idp, echo)
    bad["services"][0]["routes"][0]["plugins"][0]["config"]["scopes_required"] = "read"
    with pytest.raises(DeclarativeError) as err:
        emu.reload(bad)
    assert "scopes_required" in str(err.value)


def test_config_that_passes_the_schema_but_not_parse_config_is_logged_once_and_fails_closed(stack, idp, echo):
    emu, client = stack
    bad = copy.deepcopy(base_config(idp, echo))
    # A Python regex error: no Kong schema check can see it (rules.START_ONLY_RULES).
    bad["services"][0]["routes"][1]["plugins"][0]["config"]["policies"] = [{"name": "p", "paths": ["~[unclosed"]}]
    try:
        emu.reload(bad)
        responses = [client.get("/docs/x") for _ in range(4)]
        log = emu.error_log()
    finally:
        emu.reload(base_config(idp, echo))
    assert [r.status_code for r in responses] == [500] * 4
    assert all(r.json()["message"] == "An unexpected error occurred" for r in responses)
    assert "starting instance" not in log  # StartInstance no longer fails and retries per request
    assert log.count("policies[0].paths[0]") == 1  # one error line names the field and the fix
    line = next(line for line in log.splitlines() if "policies[0].paths[0]" in line)
    assert "[err" in line and "invalid regex" in line  # kong.log.err: error level, shown by default
    assert client.get("/docs/x").status_code == 200


def test_two_hundred_concurrent_requests_on_a_cold_cache_fetch_discovery_and_jwks_once(echo, tmp_path):
    n = 200
    with FakeIdP() as cold:
        cold.set_keys(KEY)
        tokens = [KEY.sign(claims(cold.issuer, sub=f"user-{i}", scope="read")) for i in range(n)]
        cfg = kong_config(echo.port, routes=[route("api", "/api", oidc(cold.issuer, scopes_required=["read"], **AUDIENCE, **IDENTITY))])
        with start_stack(cfg, str(tmp_path)) as (emu, client):
            assert cold.discovery_hits == 0 and cold.jwks_hits == 0  # nothing before the first request
            barrier = threading.Barrier(n)
            statuses: list[int] = []
            lock = threading.Lock()

            def one(tok):
                with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
                    barrier.wait()
                    status = c.get("/api/x", headers={"Authorization": f"Bearer {tok}"}).status_code
                with lock:
                    statuses.append(status)

            threads = [threading.Thread(target=one, args=(t,)) for t in tokens]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert statuses == [200] * n
            assert cold.discovery_hits == 1
            assert cold.jwks_hits == 1


# -- hostile bytes ------------------------------------------------------------------------

def raw_http(url: str, request: bytes) -> int:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_non_utf8_header_bytes_over_http_get_clean_answers_and_the_server_keeps_serving(stack, idp):
    emu, client = stack
    pid, spawns = emu.plugin_server().pid, emu.plugin_server().spawns
    tok = token(idp, scope="read").encode()
    url = str(client.base_url)
    ok = raw_http(url, b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-Foo: caf\xe9\r\nAuthorization: Bearer " + tok + b"\r\nConnection: close\r\n\r\n")
    bad = raw_http(url, b"GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + tok[:20] + b"\r\nConnection: close\r\n\r\n")
    assert ok == 200
    assert bad in (400, 401)
    assert call(stack, "/api/x", token(idp, scope="read"))[0].status_code == 200
    assert (emu.plugin_server().pid, emu.plugin_server().spawns) == (pid, spawns)


def kong_event(sock_path: str, config_json: str, headers: dict) -> list:
    """Kong's side of one access event with raw Lua-string bytes (str type, not UTF-8)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        msgid = 0

        def rpc(method, param):
            nonlocal msgid
            msgid += 1
            s.sendall(msgpack.packb([0, msgid, method, [param]], use_bin_type=True, unicode_errors="surrogateescape"))
            while True:
                for msg in unpacker:
                    return msg
                chunk = s.recv(65536)
                if not chunk:
                    return None
                unpacker.feed(chunk)

        iid = rpc("plugin.StartInstance", {"Name": "oidc", "Config": config_json})[3][b"Id"]
        res = rpc("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
        methods = []
        while res is not None and res[3][b"Data"] != b"ret":
            data = res[3][b"Data"]
            methods.append((data[b"Method"], data[b"Args"]))
            if data[b"Method"] == b"kong.response.exit":
                break
            step = "plugin.StepMultiMap" if data[b"Method"] == b"kong.request.get_headers" else "plugin.Step"
            res = rpc(step, {"EventId": res[3][b"EventId"], **({"Data": headers} if step.endswith("Map") else {})})
        return methods if res is not None else methods + [None]


def test_real_plugin_server_survives_non_utf8_strings_as_kong_sends_them(stack, idp):
    emu, _ = stack
    conf = next(c for (name, rid, *_), (_, c) in emu.state.combos.items() if name == "oidc" and c.get("scopes_required"))
    config_json = json.dumps(conf, separators=(",", ":"))
    sock = emu.plugin_server().spec.socket
    pid = emu.plugin_server().pid
    allowed = kong_event(sock, config_json, {"authorization": ["Bearer " + token(idp, scope="read")], "x-foo": ["caf\udce9"]})
    denied = kong_event(sock, config_json, {"authorization": ["Bearer \udcff\udcfe"]})
    assert None not in allowed and None not in denied  # no dropped connection
    assert [m for m, _ in allowed][-1] == b"kong.log.set_serialize_value"
    assert denied[-1][0] == b"kong.response.exit" and denied[-1][1][0] in (400, 401)
    assert call(stack, "/api/x", token(idp, scope="read"))[0].status_code == 200
    assert emu.plugin_server().pid == pid


# -- PDK economy --------------------------------------------------------------------------

def test_rejected_request_makes_at_most_four_pdk_calls(stack):
    # get_headers, get_path (path check), set_serialize_value, exit
    _, line = call(stack, "/api/x", "not-a-jwt")
    assert line["oidc"]["decision"] == "deny"
    assert line["pdk_calls"]["oidc"] <= 4


def test_public_route_makes_at_most_four_pdk_calls(stack):
    response, line = call(stack, "/docs/x")
    assert response.status_code == 200 and line["oidc"]["decision"] == "public"
    assert line["pdk_calls"]["oidc"] <= 4


def test_consumer_mapping_makes_at_most_seven_pdk_calls(stack, idp):
    # the six of before (headers, load_consumer, set_headers, authenticate, marker, log) + get_path
    response, line = call(stack, "/users/x", token(idp))
    assert response.status_code == 200
    assert line["oidc"]["consumer"] == "user-1"
    assert line["pdk_calls"]["oidc"] <= 7
