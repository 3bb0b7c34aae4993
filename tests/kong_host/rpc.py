"""MessagePack RPC client, Kong's side (kong/runloop/plugin_servers/rpc/mp_rpc.lua `Rpc:call`).

* request `[0, msgid, method, params]`, reply `[1, msgid, err, result]`;
* msgid +1 per call, counter per Rpc object (K3.9: one per plugin per worker);
* one outstanding request per connection; each call takes an idle pooled connection or connects
  anew (`ngx.socket.connect` reuses the keepalive pool), and returns it with `setkeepalive`;
* any read failure (EOF, timeout) is the error string "no data"; a connect failure returns the
  connect error (Kong logs "trying to connect: <err>").

Pool order. nginx's cosocket pool is LIFO: `setkeepalive` puts a connection at the head of the
pool's cache queue and `connect` takes the head (lua-nginx-module src/ngx_http_lua_socket_tcp.c,
`ngx_http_lua_socket_tcp_setkeepalive` / `ngx_http_lua_get_keepalive_peer`), so an event's next
call normally gets the connection its previous call just returned. `pool="random"` is a test mode,
not Kong: it hands out a random idle connection, so with several idle connections nearly every
Step of an event arrives on a different connection than the call before it.
"""

from __future__ import annotations

import random
import select
import socket
import threading
from typing import Any, Callable

import msgpack

from .lua import LuaError


class RpcError(Exception):
    """`nil, err` from Rpc:call; str(self) is the error string Kong would see."""


class RpcClient:
    def __init__(
        self,
        socket_path: str,
        *,
        read_timeout: float = 60.0,
        pool_size: int = 256,
        pool: str = "lifo",
        on_frame: Callable[[str, Any], None] | None = None,
        log: Callable[[str, str], None] | None = None,
    ):
        self.socket_path = socket_path
        self.read_timeout = read_timeout
        self.pool_size = pool_size  # lua_socket_pool_size (kong.conf.default)
        if pool not in ("lifo", "random"):
            raise ValueError("pool must be 'lifo' (Kong) or 'random' (test mode)")
        self.pool = pool
        self._random = random.Random(0)
        self.on_frame = on_frame  # test hook: ("send"|"recv", frame)
        self.log = log or (lambda level, msg: None)
        self._msgid = 0
        self._lock = threading.Lock()
        self._idle: list[socket.socket] = []
        self._closed = False
        self.connects = 0  # how many new connections were opened (a count for tests)
        self.last_conn: socket.socket | None = None  # the connection the latest call used (tests)

    def _next_msgid(self) -> int:
        with self._lock:
            self._msgid += 1
            return self._msgid

    def _get_conn(self) -> socket.socket:
        while True:
            with self._lock:
                if not self._idle:
                    break
                if self.pool == "random":
                    s = self._idle.pop(self._random.randrange(len(self._idle)))
                else:
                    s = self._idle.pop()
            # nginx drops an idle keepalive connection as soon as the peer closes it
            # (ngx_http_lua_socket_keepalive_close_handler), so a dead one is never reused.
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                return s
            s.close()
        return self._connect()

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError as e:
            s.close()
            # ngx.socket.connect error strings: "connection refused", "no such file or directory"
            err = (e.strerror or str(e)).lower()
            self.log("err", f"trying to connect: {err}")
            raise RpcError(err) from None
        with self._lock:
            self.connects += 1
        return s

    def warm(self, n: int) -> None:
        """Open connections until n are idle in the pool (as after n concurrent calls)."""
        opened = []
        with self._lock:
            need = n - len(self._idle)
        for _ in range(max(0, need)):
            opened.append(self._connect())
        for s in opened:
            self._put_conn(s)

    def _put_conn(self, s: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(s)
                return
        s.close()

    def call(self, method: str, *params: Any) -> Any:
        msgid = self._next_msgid()
        frame = [0, msgid, method, list(params)]
        if self.on_frame:
            self.on_frame("send", frame)
        s = self._get_conn()
        self.last_conn = s
        try:
            s.settimeout(self.read_timeout)
            # Lua strings are bytes: surrogate-escaped str goes out as the original bytes, as Kong sends them.
            s.sendall(msgpack.packb(frame, use_bin_type=True, unicode_errors="surrogateescape"))
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
            while True:
                try:
                    chunk = s.recv(4096)  # receiveany(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    s.close()
                    raise RpcError("no data")
                unpacker.feed(chunk)
                try:
                    data = next(unpacker)
                    break
                except StopIteration:
                    continue
        except RpcError:
            raise
        except OSError:
            s.close()
            raise RpcError("no data") from None
        if self.on_frame:
            self.on_frame("recv", data)
        # Kong asserts both (a Lua error, not an RPC error)
        if not isinstance(data, list) or len(data) < 4 or data[0] != 1:
            s.close()
            raise LuaError("assertion failed! (RPC response type)")
        if data[1] != msgid:
            s.close()
            raise LuaError("assertion failed! (RPC msgid mismatch)")
        self._put_conn(s)
        if data[2] is not None:
            raise RpcError(str(data[2]))
        return data[3]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for s in idle:
            try:
                s.close()
            except OSError:
                pass
