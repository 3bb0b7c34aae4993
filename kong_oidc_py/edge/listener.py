"""Our plugin-server loop: kong-pdk's wire protocol and PDK object, served at the transport floor.

kong-pdk 0.36's threaded listener (kong_pdk/listener.py + server.py) starts a thread per event,
hands every PDK call through two queues, and holds a server-wide lock until a handler's first PDK
call (so one exception before that call deadlocks the server; shared doc 3.1, 3.6). This module
replaces only that loop. kong-pdk stays the dependency: its `PluginServer` keeps the instances
(StartInstance, InstanceStatus, CloseInstance, GetStatus, GetPluginInfo, SetPluginDir are its own
methods, called with its error strings). The PDK object handed to a handler is kong-pdk's
`FakeClasses` with its attribute chain cached (edge/pdk_tree.py), and each call does kong-pdk's
`rpc_of` work (`Event.call`, edge/rpc_channel.py, tested side by side with kong-pdk's object).

Threads: the reading thread runs the handler (each PDK call one write and one read on its
connection: Kong keeps an event on the connection it started on unless a PDK function yields,
since mp_rpc.lua `Rpc:call` takes the head of nginx's LIFO keepalive pool, lua-nginx-module
ngx_http_lua_socket_tcp.c `ngx_http_lua_get_keepalive_peer`); a Step read by another thread is
handed over through the event's mailbox and the owner's doorbell (edge/listener_worker.py); a
HandleEvent on a busy connection runs on a pooled worker; no server-wide lock.

Failing closed: a handler exception is answered at once, in rewrite/access/response with
`kong.log.err` + `kong.response.exit(500)` (Kong's own "An unexpected error occurred"), so the
request fails closed with or without the acl guard; elsewhere with an error reply. A PDK call
after `kong.response.exit` raises `EventEnded`. A handler waiting longer than `step_timeout`
gets `StepTimeout`: Kong sets no timeout on the plugin socket (mp_rpc.lua `Rpc:call`), so
OpenResty's lua_socket_read_timeout default of 60 s applies, and ours (75 s) stays above it.

Bounds: at most `max_threads` workers; a connection or event beyond it is refused (the acl
guard denies). Idle workers exit after `idle_ttl`; Kong closes idle pooled connections after
lua_socket_keepalive_timeout (60 s). Contract: docs/DESIGN.md.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

from kong_pdk.exception import PDKException, PluginServerException

from kong_oidc_py.edge.listener_worker import Worker, _where
from kong_oidc_py.edge.pdk_tree import pdk_object
from kong_oidc_py.edge.rpc_channel import STEP_METHODS, Conn, Event, EventEnded, ProtocolError

log = logging.getLogger("kong_oidc_py.listener")

DEFAULT_SOCKET_NAME = "python_pluginserver.sock"  # kong_pdk.listener's default, replaced by <name>.sock
STEP_TIMEOUT = 75.0  # s; above OpenResty's lua_socket_read_timeout default (60 s), see module doc
MAX_THREADS = 1024
IDLE_TTL = 60.0  # s an idle worker waits for work before its thread ends
EXIT_PHASES = frozenset(("rewrite", "access", "response"))  # kong/pdk/response.lua exit phase checks
INTERNAL_ERROR = {"message": "An unexpected error occurred"}  # Kong's own 500 body (kong/init.lua)

_STEP, _STEP_ERROR, _HANDLE_EVENT = object(), object(), object()
_ROUTES = dict.fromkeys(STEP_METHODS, _STEP)
_ROUTES.update({"plugin.StepError": _STEP_ERROR, "plugin.HandleEvent": _HANDLE_EVENT})
_CAMEL = re.compile(r"([a-z])([A-Z])")


def _snake(cmd: str) -> str:
    """kong-pdk's method naming: StartInstance -> start_instance."""
    return cmd[:1].lower() + _CAMEL.sub(lambda m: m.group(1) + "_" + m.group(2).lower(), cmd[1:])


class Listener:
    """Drop-in for kong_pdk.listener.UnixStreamServer (same constructor and `serve_forever`)."""

    def __init__(self, plugin_server: Any, path: str, sock_name: str = DEFAULT_SOCKET_NAME,
                 use_gevent: bool = False, listen_queue_size: int = 4096, *,
                 step_timeout: float = STEP_TIMEOUT, max_threads: int = MAX_THREADS, idle_ttl: float = IDLE_TTL):
        if use_gevent:
            raise ValueError("the oidc listener is thread-based; gevent mode is not supported")
        self.ps = plugin_server
        self.path = os.path.join(path, sock_name)
        self.listen_queue_size = listen_queue_size
        self.step_timeout = step_timeout
        self.max_threads = max_threads
        self.idle_ttl = idle_ttl
        self.lua_style = bool(getattr(plugin_server, "lua_style", False))
        self.events: dict[int, Event] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._threads = 0
        self._conns = 0
        self._last_id = -1  # ids count from 0, so this + 1 events were started
        self._stats = dict.fromkeys(("connections", "events_pooled", "steps_migrated", "steps_handed_over",
                                     "connections_handed_off", "handler_errors", "step_timeouts",
                                     "refused"), 0)
        self._sock: socket.socket | None = None
        self._open: set[Conn] = set()  # so close() can end the workers reading them
        self._closing = False
        self._last_refusal_log = 0.0

    # -- workers ------------------------------------------------------------------------------------
    def _submit(self, *job: Any) -> bool:
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                new = False
            elif self._threads < self.max_threads:
                self._threads += 1
                worker = Worker(self)
                worker.job = job
                new = True
            else:
                return False
        if new:
            worker.thread.start()
        else:
            worker.ring()
        return True

    def _park(self, worker: Worker) -> bool:
        """After a job: wait to be given another; False when the thread should end."""
        while True:
            with self._lock:
                if self._closing:
                    self._threads -= 1
                    return False
                self._idle.append(worker)
            if worker.wait_job(self.idle_ttl) and worker.job is not None:
                return True
            with self._lock:
                if worker in self._idle:  # nobody picked us: retire
                    self._idle.remove(worker)
                    self._threads -= 1
                    return False
            # picked just as we timed out: the job is set before the doorbell rings
            while worker.job is None:
                if self._closing:
                    with self._lock:
                        self._threads -= 1
                    return False
                worker.wait_job(self.idle_ttl)
            return True

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _refused(self, what: str) -> None:
        self._count("refused")
        now = time.monotonic()
        if now - self._last_refusal_log > 10:
            self._last_refusal_log = now
            log.warning("listener: %d threads busy (max_threads); refused %s - the acl guard denies it",
                        self.max_threads, what)

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._stats)
            out.update(threads=self._threads, idle_threads=len(self._idle), open_connections=self._conns)
        out["events"] = self._last_id + 1
        out["events_in_flight"] = len(self.events)
        return out

    # -- connections ----------------------------------------------------------------------------
    def _serve(self, worker: Worker, conn: Conn) -> None:
        worker.own(conn)
        try:
            while worker.conn is conn:
                msg = conn.read()
                if msg is None:
                    break
                self._dispatch(worker, conn, msg, None)
        except ProtocolError as exc:
            log.warning("listener: closing a connection that broke the protocol: %s", exc)
        except ValueError as exc:  # msgpack: malformed data or a message over MAX_MESSAGE
            log.warning("listener: closing a connection that sent undecodable data (%s)", type(exc).__name__)
        except OSError:
            pass  # Kong went away while we answered; nothing to tell it
        finally:
            if worker.conn is conn:
                self._drop(worker)

    def _drop(self, worker: Worker) -> None:
        """Kong closed (or broke) the worker's connection."""
        conn = worker.release()
        if conn is not None:
            conn.close()
            with self._lock:
                self._conns -= 1
                self._open.discard(conn)

    def _migrated(self, worker: Worker) -> None:
        conn = worker.release()
        if conn is None:
            return
        if self._submit(self._serve, conn):
            self._count("connections_handed_off")
        else:  # no thread to spare: keep reading it ourselves between PDK calls
            worker.own(conn)

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch(self, worker: Worker, conn: Conn, msg: Any, busy: Event | None) -> tuple | None:
        """Serve one request read from `conn`. Returns the Step for `busy` (the event this worker
        is waiting in) when that is what arrived; every other request is answered or handed on."""
        try:
            kind, msgid, method, params = msg
        except (TypeError, ValueError):
            raise ProtocolError("expected [0, msgid, method, params]") from None
        if kind != 0:
            raise ProtocolError("expected a request [0, ...]")
        route = _ROUTES.get(method) if isinstance(method, str) else None
        try:
            if route is _STEP:
                return self._step(conn, msgid, params[0], False, busy)
            if route is _HANDLE_EVENT:
                self._handle_event(worker, conn, msgid, params[0], busy is not None)
                return None
            if route is _STEP_ERROR:
                return self._step(conn, msgid, params[0], True, busy)
            ns, _, cmd = method.partition(".") if isinstance(method, str) else ("", "", "")
            if ns != "plugin":
                conn.reply(msgid, "RPC for %s is not supported" % ns, None)  # kong_pdk/listener.py's text
                return None
            if cmd == "ListenerStats":  # ours, read-only: what the soak and the benches report
                result = self.stats()
            else:
                result = getattr(self.ps, _snake(cmd))(*(params if isinstance(params, (list, tuple)) else [params]))
        except (PluginServerException, PDKException) as exc:
            log.info("rpc: #%s %s error: %s", msgid, method, exc)  # Kong logs the reply itself
            conn.reply(msgid, str(exc), None)
            return None
        except Exception as exc:  # noqa: BLE001 - kong-pdk answers str(exception) for anything else
            log.error("rpc: #%s %s exception:\n%s", msgid, method, traceback.format_exc())
            conn.reply(msgid, str(exc), None)
            return None
        conn.reply(msgid, None, result)
        return None

    def _step(self, conn: Conn, msgid: Any, data: dict, is_error: bool, busy: Event | None) -> tuple | None:
        eid = data["EventId"]
        event = self.events.get(eid)
        if event is None:
            raise PluginServerException("event id %s not found" % eid)  # kong_pdk/server.py's text
        item = (conn, msgid, data.get("Data"), is_error)
        if conn is not event.last_conn:
            self._count("steps_migrated")  # Kong's pool gave this Step another connection
        if event is busy:
            if event.accept_own(item):
                return item
        elif event.deliver(item):
            self._count("steps_handed_over")  # read by a thread that is not the event's
            return None
        raise PluginServerException("event id %s is not waiting for a step" % eid)

    def _handle_event(self, worker: Worker, conn: Conn, msgid: Any, desc: dict, busy: bool) -> None:
        iid = desc["InstanceId"]
        instance = self.ps.instances.get(iid)
        if instance is None:
            # Kong resets its instance cache on this text and retries (mp_rpc.lua `handle_event`)
            raise PluginServerException("no plugin instance #%s" % iid)
        instance.reset_expire_ts()
        phase = desc["EventName"]
        handler = getattr(instance.cls, phase)
        eid = next(self._ids)
        self._last_id = eid
        if not busy:
            self._run_event(worker, eid, instance.name, phase, handler, conn, msgid)
        elif self._submit(self._pooled_event, eid, instance.name, phase, handler, conn, msgid):
            self._count("events_pooled")
        else:
            self._refused("an event")
            raise PluginServerException("plugin server busy: no thread free for event %s" % eid)

    # -- events ---------------------------------------------------------------------------------
    def _pooled_event(self, worker: Worker, eid: int, name: str, phase: str, handler: Callable, conn: Conn,
                      msgid: Any) -> None:
        self._run_event(worker, eid, name, phase, handler, conn, msgid)

    def _run_event(self, worker: Worker, eid: int, name: str, phase: str, handler: Callable, conn: Conn,
                   msgid: Any) -> None:
        event = Event(eid, name, phase, (conn, msgid), worker.wait_step, worker.ring, self._forget)
        self.events[eid] = event
        try:
            handler(pdk_object(event, self.lua_style))
        except Exception as exc:  # noqa: BLE001 - any handler failure is answered, never left hanging
            self._answer_failure(event, exc)
        else:
            if not event.ended and event.pending is not None:
                try:
                    event.put("ret")
                except EventEnded:
                    pass
        finally:
            event.end("after it returned")

    def _forget(self, event: Event) -> None:
        self.events.pop(event.id, None)

    def _answer_failure(self, event: Event, exc: Exception) -> None:
        self._count("handler_errors")
        if isinstance(exc, EventEnded):
            # the handler ran into an event Kong no longer drives (after exit, a timeout or a lost
            # connection): nothing left to answer
            log.warning("%s: %s handler of event %d stopped: %s", event.name, event.phase, event.id, exc)
            return
        log.error("%s: the %s handler of event %d raised:\n%s", event.name, event.phase, event.id, _where(exc))
        if event.ended or event.pending is None:
            return
        what = f"{event.name}: the {event.phase} handler raised {type(exc).__qualname__}"
        try:
            if event.phase in EXIT_PHASES:
                event.put({"Method": "kong.log.err", "Args": [what + "; answering 500"]})
                event.get()
                event.put({"Method": "kong.response.exit", "Args": [500, INTERNAL_ERROR]})
            else:
                conn, msgid = event.pending
                event.pending = None
                event.end("after a handler error")
                conn.reply(msgid, what, None)
        except Exception as again:  # noqa: BLE001 - Kong is gone or timed out; the guard denies
            log.warning("%s: could not answer the failed event %d: %s", event.name, event.id,
                        type(again).__name__)

    # -- socket ---------------------------------------------------------------------------------
    def bind(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(self.listen_queue_size)
        self._sock = sock

    def serve_forever(self) -> None:
        if self._sock is None:
            self.bind()
        log.info("oidc listener started at path %s (step timeout %gs, max threads %d)", self.path,
                 self.step_timeout, self.max_threads)
        sock = self._sock
        while not self._closing:
            try:
                client, _ = sock.accept()
            except OSError:
                if self._closing:
                    return
                raise
            conn = Conn(client)
            with self._lock:
                self._conns += 1
                self._open.add(conn)
            if self._submit(self._serve, conn):
                self._count("connections")
            else:
                self._refused("a connection")
                conn.close()
                with self._lock:
                    self._conns -= 1
                    self._open.discard(conn)

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests, benches)."""
        self.bind()
        thread = threading.Thread(target=self.serve_forever, name="oidc-listener-accept", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            self._closing = True
            idle, self._idle = self._idle, []
            conns = list(self._open)
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for worker in idle:
            worker.ring()
        for conn in conns:  # a reader blocked in recv wakes up on shutdown, not on close
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if os.path.exists(self.path):
            os.remove(self.path)


def listener_factory(**options: Any) -> Callable[..., Listener]:
    """A class-like callable with kong-pdk's UnixStreamServer signature and our options bound."""

    def make(plugin_server: Any, path: str, sock_name: str = DEFAULT_SOCKET_NAME, use_gevent: bool = False,
             listen_queue_size: int = 4096) -> Listener:
        return Listener(plugin_server, path, sock_name, use_gevent, listen_queue_size, **options)

    return make


if sys.platform != "linux":  # pragma: no cover - eventfd and poll(2) are what makes the wake-up cheap
    raise ImportError("kong_oidc_py.edge.listener needs Linux (eventfd)")
