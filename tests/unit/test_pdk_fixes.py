"""pdk_fixes.py: kong-pdk 0.36's own listener run in-process over a Unix socket, with and without
our surrogateescape shim, fed the bytes Kong really sends (Lua strings are bytes, packed as str)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import types

import msgpack
import pytest
from kong_pdk import listener
from kong_pdk.module import Module
from kong_pdk.server import PluginServer

from kong_oidc_py.edge import pdk_fixes


class ProbePlugin:
    """Reads the headers and echoes one value back to Kong through a PDK call."""

    def __init__(self, config):
        self.config = config

    def access(self, kong):
        headers = kong.request.get_headers(100)
        kong.service.request.set_header("X-Seen", headers["x-foo"][0])


def _module(plugin_cls) -> Module:
    mod = types.ModuleType("probe")
    mod.Plugin = plugin_cls
    mod.version, mod.priority = "0.0.1", 1
    return Module("probe", module=mod)


class InProcessListener:
    """kong-pdk's threaded UnixStreamServer + Server.handle, exactly as `start_dedicated_server` wires them."""

    def __init__(self, plugin_cls=ProbePlugin, name="probe"):
        self.dir = tempfile.mkdtemp(prefix="pdkfix-")
        self.path = os.path.join(self.dir, "s.sock")
        ps = PluginServer(lua_style=False)
        ps.logger.set_level(100)  # quiet
        ps.plugins[name] = _module(plugin_cls)
        self.name = name
        self.server = listener.tUnixStreamServer(self.path, listener.Server(ps).handle)
        self.server.handle_error = lambda *a: None  # socketserver prints the traceback otherwise
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.msgid = 0

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        os.unlink(self.path)
        os.rmdir(self.dir)

    def connect(self) -> "Conn":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.path)
        return Conn(s)


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.msgid = 0
        self.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)

    def call(self, method, *params):
        """Send like Kong (str for every Lua string, whatever its bytes); None means the server hung up."""
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)], use_bin_type=True,
                                        unicode_errors="surrogateescape"))
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.unpacker.feed(chunk)

    def close(self):
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc):
        self.close()


def run_event(conn: Conn, name: str, config: str, headers: dict) -> list:
    """StartInstance, HandleEvent, answer get_headers with `headers`; the replies after that."""
    started = conn.call("plugin.StartInstance", {"Name": name, "Config": config})
    assert started is not None and started[2] is None, started
    iid = started[3][b"Id"]
    first = conn.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    assert first[3][b"Data"][b"Method"] == b"kong.request.get_headers"
    return [conn.call("plugin.StepMultiMap", {"EventId": first[3][b"EventId"], "Data": headers})]


NON_UTF8 = {"x-foo": ["caf\udce9"]}  # the bytes b"caf\xe9", sent as a msgpack str like Kong does


def test_without_the_shim_non_utf8_header_drops_the_connection(monkeypatch):
    monkeypatch.setattr(listener, "msgpack", msgpack)
    with InProcessListener() as srv, srv.connect() as conn:
        (reply,) = run_event(conn, "probe", "{}", NON_UTF8)
    assert reply is None  # Kong reads "no data" and fails open: the defect we guard against


def test_with_the_shim_non_utf8_header_survives_and_round_trips_as_the_same_bytes(monkeypatch):
    monkeypatch.setattr(listener, "msgpack", pdk_fixes._lenient_msgpack())
    with InProcessListener() as srv, srv.connect() as conn:
        (reply,) = run_event(conn, "probe", "{}", NON_UTF8)
    call = reply[3][b"Data"]
    assert call[b"Method"] == b"kong.service.request.set_header"
    assert call[b"Args"] == [b"X-Seen", b"caf\xe9"]


def test_with_the_shim_the_connection_keeps_serving_after_non_utf8(monkeypatch):
    monkeypatch.setattr(listener, "msgpack", pdk_fixes._lenient_msgpack())
    with InProcessListener() as srv, srv.connect() as conn:
        run_event(conn, "probe", "{}", NON_UTF8)
        (reply,) = run_event(conn, "probe", "{}", {"x-foo": ["plain"]})
    assert reply[3][b"Data"][b"Args"] == [b"X-Seen", b"plain"]


def test_shim_keeps_valid_utf8_unchanged():
    shim = pdk_fixes._lenient_msgpack()
    packed = shim.packb(["caf\u00e9", "\udce9"])
    assert packed == msgpack.packb(["caf\u00e9", "x"])[:-2] + b"\xa1\xe9"
    unpacker = shim.Unpacker(strict_map_key=False)
    unpacker.feed(packed)
    assert next(unpacker) == ["caf\u00e9", "\udce9"]


def test_apply_installs_the_shim_once(monkeypatch):
    monkeypatch.setattr(listener, "msgpack", msgpack)
    monkeypatch.setattr(pdk_fixes, "_applied", False)
    pdk_fixes.apply(watch_parent=False)
    installed = listener.msgpack
    assert installed is not msgpack
    pdk_fixes.apply(watch_parent=False)
    assert listener.msgpack is installed


@pytest.fixture
def real_plugin(monkeypatch):
    from kong_oidc_py import gateway as gateway_mod
    from kong_oidc_py.edge.handler import Plugin
    from kong_oidc_py.idp.provider import Provider
    from tests.support.keys import jwks, rsa_key

    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, s: Provider.from_jwks(issuer, jwks(rsa_key())))
    monkeypatch.setattr(listener, "msgpack", pdk_fixes._lenient_msgpack())
    return Plugin


def test_our_plugin_answers_a_clean_400_invalid_request_to_a_non_utf8_bearer_token(real_plugin):
    with InProcessListener(real_plugin, name="oidc") as srv, srv.connect() as conn:
        config = '{"issuer":"http://127.0.0.1:1/realms/t","audience_required":["api"]}'
        (reply,) = run_event(conn, "oidc", config, {"authorization": ["Bearer \udcff\udcfe.abc"], "x-foo": ["caf\udce9"]})
        calls = [reply[3][b"Data"]]
        while calls[-1][b"Method"] != b"kong.response.exit":
            nxt = conn.call("plugin.Step", {"EventId": reply[3][b"EventId"]})
            calls.append(nxt[3][b"Data"])
    # get_path: ambiguous paths are refused before the token is looked at (paths.py)
    assert [c[b"Method"] for c in calls] == [b"kong.request.get_path", b"kong.log.set_serialize_value", b"kong.response.exit"]
    status, body, headers = calls[-1][b"Args"]
    assert status == 400  # RFC 6750: bytes outside b64token make the Authorization header malformed
    assert b'error="invalid_request"' in headers[b"WWW-Authenticate"]
    assert b"\xff" not in msgpack.packb(calls)


def test_kong_pdk_log_lines_carry_utc_timestamps(capsys):
    import datetime

    from kong_pdk.logger import Logger

    pdk_fixes.apply(watch_parent=False)
    Logger().info("hello")
    stamp = capsys.readouterr().out.split("[", 1)[1].split("]", 1)[0]
    logged = datetime.datetime.strptime(stamp, "%X").time()
    now = datetime.datetime.now(datetime.timezone.utc)
    seconds = lambda t: t.hour * 3600 + t.minute * 60 + t.second  # noqa: E731
    # Within a minute of UTC (kong-pdk's own clock is UTC+8, hours away).
    assert min(abs(seconds(logged) - seconds(now.time())), 86400 - abs(seconds(logged) - seconds(now.time()))) < 60
