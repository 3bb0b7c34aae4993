"""The two objects our listener (edge/listener.py) moves between threads: a Kong connection and
an event.

Wire format (Kong 3.9 `kong/runloop/plugin_servers/rpc/mp_rpc.lua` `Rpc:call` l.172-221): one
msgpack value per message, no length prefix; request `[0, msgid, method, params]`, reply
`[1, msgid, err, result]`; one outstanding request per connection (Kong sends, reads the whole
reply, then puts the connection back in its keepalive pool), so a connection never has more than
one request waiting for us.

Strings use `surrogateescape` both ways: the same codec as edge/pdk_fixes.py, so a header holding
bytes that are not UTF-8 survives as lone surrogates and goes back to Kong as the same bytes.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Any, Callable

import msgpack
from kong_pdk.exception import PDKException

# Every Step variant Kong sends but StepError (mp_rpc.lua `get_step_method`); kong-pdk maps them
# all to `step`.
STEP_METHODS = frozenset(f"plugin.{name}" for name in (
    "Step", "StepCredential", "StepConsumer", "StepRoute", "StepService", "StepPlugin", "StepMemoryStats",
    "StepMultiMap"))
# kong_pdk/pdk/__init__.py `rpc_of`: arguments of kong.log* calls of any other type go as str().
_LOG_ARG_TYPES = (str, int, list, dict)

# kong_pdk/server.py `terminal_methods` / pdk/__init__.py `non_return_methods`: Kong never answers
# them (kong/pdk/response.lua: exit/error end the phase), so the event ends when we send one.
TERMINAL_METHODS = frozenset(("kong.response.exit", "kong.response.error"))
MSG_RET = "ret"

# A handler waiting for its Step blocks in recv(2) on its own connection, with no poll(2) before
# it: under load every blocking call is one more GIL hand-off. A Step that another thread reads
# for it (Kong yielded and took another pooled connection; 0 in 130,000 events under Kong's own
# Lua, issue 15) is seen when this receive timeout (SO_RCVTIMEO, set once per connection) ends the
# recv. Between events a connection idle for longer than this waits in poll(2) instead, so idle
# connections do not wake up every MAILBOX_CHECK.
MAILBOX_CHECK = 0.002  # s
_RCVTIMEO = struct.pack("ll", 0, int(MAILBOX_CHECK * 1e6))

# Largest message we buffer from Kong. Kong's biggest payload is a raw request body, which it only
# returns when the body fits nginx's client_body_buffer_size (8k by default, shared doc 4.1).
MAX_MESSAGE = 16 * 1024 * 1024


class ProtocolError(Exception):
    """Kong's side broke the framing; the connection is closed."""


class EventEnded(PDKException):
    """A PDK call on an event that can no longer talk to Kong (after kong.response.exit, after a
    step timeout, or when the connection that carried its request is gone)."""


class StepTimeout(EventEnded):
    """Kong did not send the next Step within the step timeout."""


class Conn:
    """One accepted Kong connection. Exactly one thread reads it at a time (its owner); a reply may
    be written by another thread (the one running the event the request was for)."""

    __slots__ = ("sock", "fd", "unpacker", "_packer", "_wlock", "closed", "_idle_poll")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                                         max_buffer_size=MAX_MESSAGE)
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        self._wlock = threading.Lock()
        self.closed = False
        self._idle_poll: select.poll | None = None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _RCVTIMEO)

    def fill(self) -> bool | None:
        """One recv into the decoder; False when Kong closed the connection, None when the
        receive timeout (MAILBOX_CHECK) ran out first."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return False
        if not chunk:
            return False
        self.unpacker.feed(chunk)
        return True

    def read(self) -> Any:
        """Block until one whole message arrives; None at end of stream."""
        while True:
            for msg in self.unpacker:  # (a for loop ends without a StopIteration object)
                if msg is not None:
                    return msg
            filled = self.fill()
            if filled is False:
                return None
            if filled is None:  # idle past MAILBOX_CHECK: sleep until Kong writes or closes
                if self._idle_poll is None:
                    self._idle_poll = select.poll()
                    self._idle_poll.register(self.fd, select.POLLIN)
                self._idle_poll.poll()

    def reply(self, msgid: Any, error: Any, result: Any) -> None:
        # The lock also orders a reply against close(): a closed socket object has no fd, so a late
        # reply can never reach a newer connection that reused the number.
        with self._wlock:
            if self.closed:
                raise EventEnded("the connection to Kong is closed")
            self.sock.sendall(self._packer.pack([1, msgid, error, result]))

    def close(self) -> None:
        with self._wlock:
            if self.closed:
                return
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class Event:
    """One HandleEvent and its Steps: the channel kong-pdk's PDK object talks through
    (`kong_pdk.pdk.Kong(channel, lua_style)` only calls `put` and `get`).

    `pending` is the request we owe an answer to: (connection, msgid) of the HandleEvent or of the
    latest Step. `put` answers it; `get` waits for the next Step, which may arrive on any
    connection. A Step read by another thread is left in `slot` (a one-item mailbox) and the owner
    is woken through its doorbell.
    """

    __slots__ = ("id", "name", "phase", "owner_wake", "pending", "slot", "lock", "ended", "wait_step",
                 "on_end", "last_conn", "lua_style")

    def __init__(self, event_id: int, name: str, phase: str, pending: tuple[Conn, Any],
                 wait_step: Callable[["Event"], tuple], owner_wake: Callable[[], None],
                 on_end: Callable[["Event"], None]):
        self.id = event_id
        self.name = name
        self.phase = phase
        self.pending: tuple[Conn, Any] | None = pending
        self.slot: tuple | None = None
        self.lock = threading.Lock()
        self.ended: str | None = None  # why the event can no longer talk to Kong
        self.wait_step = wait_step  # the owner thread's wait (connection + doorbell, or doorbell only)
        self.owner_wake = owner_wake
        self.on_end = on_end
        self.last_conn: Conn | None = None  # where our latest answer went (Kong's next Step usually follows)
        self.lua_style = False  # kong-pdk's reply style for `call`: (value, err) tuples when true

    # -- one PDK call (edge/pdk_tree.py), put + get in one frame -------------------------------
    def call(self, method: str, *args: Any) -> Any:
        """What kong_pdk.pdk `rpc_of` does over `put`/`get`, without its extra frames (the
        same sends and returns, side by side in tests/unit/test_pdk_tree.py)."""
        if method.startswith("kong.log") and (len(method) == 8 or method[8] == "."):
            args = [a if type(a) in _LOG_ARG_TYPES else str(a) for a in args]
        pending = self.pending
        if self.ended or pending is None or method in TERMINAL_METHODS:
            self.put({"Method": method, "Args": args})  # the checks and endings of put
            if method in TERMINAL_METHODS:
                return None
            if self.ended:
                raise EventEnded(f"event {self.id}: no PDK call is possible {self.ended}")
        else:  # put's common case: nothing to check or end
            self.pending = None
            self._answer(pending, {"Method": method, "Args": args})
        _conn, _msgid, data, is_error = self.wait_step(self)
        if is_error:  # kong_pdk/server.py `_step`: a StepError carries the error in place of the data
            if self.lua_style:
                return None, data
            if data:
                raise PDKException("exception from %s: %s" % (method, data))
            return None
        return (data, None) if self.lua_style else data

    # -- the channel interface kong_pdk.pdk uses ------------------------------------------------
    def put(self, data: Any) -> None:
        if self.ended:
            raise EventEnded(f"event {self.id}: no PDK call is possible {self.ended}")
        pending = self.pending
        if pending is None:
            raise EventEnded(f"event {self.id}: no request from Kong to answer")
        self.pending = None
        if data == MSG_RET:
            self.end("after it returned")
        elif isinstance(data, dict) and data.get("Method") in TERMINAL_METHODS:
            # Kong runs exit/error and never sends another Step (shared doc 2.6); ending the event
            # first means a stray Step gets kong-pdk's "event id N not found", and the handler's
            # next PDK call raises instead of waiting forever (kong-pdk issue #137).
            self.end(f"after {data['Method']}")
        self._answer(pending, data)

    def _answer(self, pending: tuple[Conn, Any], data: Any) -> None:
        """Send `data` as the answer to the request `pending` (taken off the event already)."""
        conn, msgid = pending
        self.last_conn = conn
        try:
            conn.reply(msgid, None, {"Data": data, "EventId": self.id})
        except OSError as exc:
            self.end("after the connection to Kong failed")
            raise EventEnded(f"event {self.id}: the connection to Kong failed") from exc

    def get(self) -> tuple[Any, Any]:
        if self.ended:
            raise EventEnded(f"event {self.id}: no PDK call is possible {self.ended}")
        _conn, _msgid, data, is_error = self.wait_step(self)
        # kong_pdk/server.py `_step`: a StepError carries the error in place of the data
        return (None, data) if is_error else (data, None)

    # -- used by the listener -------------------------------------------------------------------
    def take(self) -> tuple | None:
        """The delivered Step, if any; it becomes the pending request."""
        if self.slot is None:  # the common case, without the lock
            return None
        with self.lock:
            item = self.slot
            if item is None:
                return None
            self.slot = None
            self.pending = (item[0], item[1])
            return item

    def accept_own(self, item: tuple) -> bool:
        """A Step the owner read itself from its own connection."""
        with self.lock:
            if self.ended or self.pending is not None or self.slot is not None:
                return False
            self.pending = (item[0], item[1])
            return True

    def deliver(self, item: tuple) -> bool:
        """Hand a Step read by another thread to the owner; False if the event is not waiting."""
        with self.lock:
            if self.ended or self.pending is not None or self.slot is not None:
                return False
            self.slot = item
        self.owner_wake()
        return True

    def end(self, why: str) -> None:
        if self.ended:
            return
        with self.lock:
            if self.ended:
                return
            self.ended = why
        self.on_end(self)
