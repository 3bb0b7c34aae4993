"""A scripted fake plugin server on a Unix socket: records every frame the emulator sends."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable

import msgpack

DUMP = [{
    "Name": "fake", "Phases": ["access"], "Priority": 1000, "Version": "0.1.0",
    "Schema": {"name": "fake", "fields": [{"config": {"type": "record", "fields": [
        {"message": {"type": "string", "default": "hi"}},
        {"opt": {"type": "string"}},
        {"sub": {"type": "record", "fields": [{"n": {"type": "integer", "default": 3}}]}},
        {"list": {"type": "array", "elements": {"type": "string"}, "default": []}},
    ]}}]},
}]


class FakePluginServer:
    """`script(method, params) -> (error, result)`; default: instances start, events return "ret"."""

    def __init__(self, path: str, script: Callable[[str, list], tuple[Any, Any]] | None = None):
        self.path = path
        self.script = script or (lambda m, p: (None, self.default(m, p)))
        self.frames: list[list] = []  # requests as received: [0, msgid, method, params]
        self.connections = 0
        self._lock = threading.Lock()
        self._next_instance = 0
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stop = False
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def default(self, method: str, params: list) -> Any:
        if method == "plugin.StartInstance":
            with self._lock:
                iid = self._next_instance
                self._next_instance += 1
            return {"Name": params[0]["Name"], "Id": iid, "Config": {}, "StartTime": 0.0}
        if method == "plugin.CloseInstance":
            return {"Name": "fake", "Id": params[0], "Config": {}}
        return {"Data": "ret", "EventId": 0}

    def methods(self) -> list[str]:
        return [f[2] for f in self.frames]

    def params(self, method: str) -> list[list]:
        return [f[3] for f in self.frames if f[2] == method]

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                conn.close()
                return
            unpacker.feed(data)
            for frame in unpacker:
                with self._lock:
                    self.frames.append(frame)
                err, result = self.script(frame[2], frame[3])
                if err == "__no_reply__":
                    continue
                try:
                    conn.sendall(msgpack.packb([1, frame[1], err, result], use_bin_type=True))
                except OSError:
                    return

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        if os.path.exists(self.path):
            os.unlink(self.path)
