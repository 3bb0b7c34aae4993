"""Soak: the real plugin server (spawned by the emulator as Kong spawns it) serves 100,000 events
that mix accepted and rejected requests; its thread count and RSS stay flat.

To reach 100,000 events within the time budget the test bypasses HTTP and speaks Kong's side of
the MessagePack RPC directly on the plugin server's socket (StartInstance once per connection,
then HandleEvent + Step per request, answering PDK calls as Kong's bridge does and never
answering a terminal `kong.response.exit`), from several connections at once.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import msgpack
import pytest

from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.stack import kong_config, oidc, route, start_stack
from tests.upstream.echo import EchoUpstream

pytestmark = pytest.mark.integration

TOTAL = int(os.environ.get("SOAK_TOTAL", "100000"))
CONNECTIONS = 4
WARMUP = 2_000
KEY = rsa_key()


class KongSide:
    """One Kong worker connection to the plugin server: Kong's framing and step loop, nothing more."""

    def __init__(self, path: str, config_json: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msgid = 0
        self.iid = self.call("plugin.StartInstance", {"Name": "oidc", "Config": config_json})["Id"]

    def call(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)], use_bin_type=True))
        while True:
            for msg in self.unpacker:
                assert msg[1] == self.msgid and msg[2] is None, msg
                return msg[3]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("no data")
            self.unpacker.feed(chunk)

    def event(self, headers: dict) -> tuple[str, int]:
        """One access event; ("allow", calls) or ("exit:<status>", calls)."""
        res = self.call("plugin.HandleEvent", {"InstanceId": self.iid, "EventName": "access"})
        calls = 0
        while True:
            data = res["Data"]
            if data == "ret":
                return "allow", calls
            calls += 1
            method = data["Method"]
            if method == "kong.response.exit":
                return f"exit:{data['Args'][0]}", calls
            if method == "kong.request.get_headers":
                res = self.call("plugin.StepMultiMap", {"EventId": res["EventId"], "Data": headers})
            else:
                res = self.call("plugin.Step", {"EventId": res["EventId"]})

    def close(self):
        self.sock.close()


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def test_threads_and_memory_stay_flat_over_100k_mixed_requests(tmp_path):
    with FakeIdP() as idp, EchoUpstream() as echo:
        idp.set_keys(KEY)
        valid = KEY.sign(claims(idp.issuer, sub="user-1", scope="read"))
        forged = rsa_key("rsa-1", fresh=True).sign(claims(idp.issuer, sub="user-1", scope="read"))
        no_scope = KEY.sign(claims(idp.issuer, sub="user-1", scope="other"))
        mix = [
            ({"authorization": [f"Bearer {valid}"], "x-user-id": ["spoofed"]}, "allow"),
            ({"authorization": [f"Bearer {valid}"]}, "allow"),
            ({}, "exit:401"),
            ({"authorization": [f"Bearer {forged}"]}, "exit:401"),
            ({"authorization": ["Bearer not-a-jwt"]}, "exit:401"),
            ({"authorization": [f"Bearer {no_scope}"]}, "exit:403"),
            ({"authorization": ["Basic x", "Bearer y"]}, "exit:400"),
            ({"authorization": [f"Bearer {valid}"], "x-foo": ["caf\u00e9"]}, "allow"),
        ]
        cfg = kong_config(echo.port, routes=[route("api", "/api", oidc(
            idp.issuer, scopes_required=["read"],
            upstream_headers_claims=["sub"], upstream_headers_names=["X-User-Id"]))])
        with start_stack(cfg, str(tmp_path)) as (emu, client):
            assert client.get("/api/x", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
            conf = next(c for (name, *_), (_, c) in emu.state.combos.items() if name == "oidc")
            config_json = json.dumps(conf, separators=(",", ":"))
            pid = emu.plugin_server().pid
            sides = [KongSide(emu.plugin_server().spec.socket, config_json) for _ in range(CONNECTIONS)]
            wrong: list = []
            counts = {"allow": 0, "deny": 0}
            lock = threading.Lock()

            def drive(side: KongSide, n: int, offset: int) -> None:
                local = {"allow": 0, "deny": 0}
                for i in range(n):
                    headers, expected = mix[(i + offset) % len(mix)]
                    got, calls = side.event(headers)
                    if got != expected or calls > 6:
                        wrong.append((expected, got, calls))
                    local["allow" if got == "allow" else "deny"] += 1
                with lock:
                    for k in local:
                        counts[k] += local[k]

            def run(total: int) -> float:
                per = total // CONNECTIONS
                threads = [threading.Thread(target=drive, args=(s, per, i)) for i, s in enumerate(sides)]
                t0 = time.monotonic()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return time.monotonic() - t0

            try:
                run(WARMUP)  # token cache, key cache, allocator arenas, kong-pdk's thread churn settle
                before = proc_status(pid)
                elapsed = run(TOTAL)
                after = proc_status(pid)
            finally:
                for s in sides:
                    s.close()
            # the server still serves real traffic afterwards, with the same process
            assert client.get("/api/x", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
            assert emu.plugin_server().pid == pid
    print(f"\nsoak: {TOTAL} events over {CONNECTIONS} connections in {elapsed:.1f}s "
          f"({TOTAL / elapsed:.0f}/s); threads {before['Threads']} -> {after['Threads']}; "
          f"RSS {before['VmRSS'] // 1024} MB -> {after['VmRSS'] // 1024} MB; "
          f"allowed {counts['allow']}, denied {counts['deny']}")
    assert wrong == []
    assert counts["allow"] + counts["deny"] == TOTAL + WARMUP
    assert counts["allow"] > 0 and counts["deny"] > 0
    assert abs(after["Threads"] - before["Threads"]) <= 2
    assert after["VmRSS"] - before["VmRSS"] < 30 * 1024
