"""A plugin server in this process (ours or kong-pdk 0.36's own listener) and a bare Kong-side
connection to it, for protocol tests and benches.

Kong's framing (kong/runloop/plugin_servers/rpc/mp_rpc.lua `Rpc:call`): `[0, msgid, method, params]`
out, `[1, msgid, err, result]` back, one outstanding request per connection. `Wire` lets a test
choose which connection carries which request, which Kong's pool decides in production.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import types
from typing import Any

import msgpack
from kong_pdk import listener as kong_pdk_listener
from kong_pdk.module import Module
from kong_pdk.server import PluginServer

from kong_oidc_py.edge import pdk_fixes
from kong_oidc_py.edge.listener import Listener


def module_for(plugin_cls: type, name: str) -> Module:
    mod = types.ModuleType(name)
    mod.Plugin = plugin_cls
    mod.version, mod.priority = "0.0.1", 1
    return Module(name, module=mod)


class InProcessServer:
    """`with InProcessServer(Plugin, "probe") as srv:` serves on srv.path until the block ends."""

    def __init__(self, plugin_cls: type, name: str = "probe", *, kong_pdk: bool = False, **options: Any):
        self.dir = tempfile.mkdtemp(prefix="listener-")
        self.path = os.path.join(self.dir, "s.sock")
        self.name = name
        self.ps = PluginServer(lua_style=False)
        self.ps.logger.set_level(100)  # quiet
        self.ps.plugins[name] = module_for(plugin_cls, name)
        self.kong_pdk = kong_pdk
        self.listener: Listener | None = None
        if kong_pdk:
            kong_pdk_listener.msgpack = pdk_fixes._lenient_msgpack()
            self._server = kong_pdk_listener.tUnixStreamServer(self.path, kong_pdk_listener.Server(self.ps).handle)
            self._server.handle_error = lambda *a: None
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            daemon=True)
        else:
            self.listener = Listener(self.ps, self.dir, "s.sock", **options)

    def __enter__(self) -> "InProcessServer":
        if self.listener is not None:
            self.listener.start()
        else:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.listener is not None:
            self.listener.close()
        else:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            os.unlink(self.path)
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    def connect(self, timeout: float = 5.0) -> "Wire":
        return Wire.connect(self.path, timeout)

    def start_instance(self, config: str = "{}") -> int:
        wire = self.connect()
        try:
            err, result = wire.call("plugin.StartInstance", {"Name": self.name, "Config": config})
        finally:
            wire.close()
        assert err is None, err
        return result["Id"]


class Wire:
    """One Kong-side connection. `send` + `recv` split a call, so a test can interleave."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
        self.packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        self.msgid = 0

    @classmethod
    def connect(cls, path: str, timeout: float | None = 5.0) -> "Wire":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    def send(self, method: str, *params: Any) -> int:
        self.msgid += 1
        self.sock.sendall(self.packer.pack([0, self.msgid, method, list(params)]))
        return self.msgid

    def recv(self) -> list | None:
        """The next reply; None when the server closed the connection."""
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.unpacker.feed(chunk)

    def call(self, method: str, *params: Any) -> tuple[Any, Any]:
        """(error, result) of one call; asserts Kong's two checks on the reply."""
        msgid = self.send(method, *params)
        reply = self.recv()
        assert reply is not None, "connection closed without a reply"
        assert reply[0] == 1 and reply[1] == msgid, reply
        return reply[2], reply[3]

    def handle_event(self, iid: int, phase: str = "access") -> tuple[Any, Any]:
        return self.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": phase})

    def step(self, event_id: int, data: Any = None, method: str = "plugin.Step") -> tuple[Any, Any]:
        payload: dict = {"EventId": event_id}
        if data is not None:
            payload["Data"] = data
        return self.call(method, payload)

    def close(self) -> None:
        self.sock.close()
