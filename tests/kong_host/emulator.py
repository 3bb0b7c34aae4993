"""`Emulator`: the Kong host emulator as a Python object (pytest-friendly) and its state."""

from __future__ import annotations

import itertools
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import acl
from .bridge import PluginBridge
from .context import ErrorLog
from .declarative import KongConfig, gen_id, load
from .pdk import PDK
from .pdk import serialize as _serialize
from .plugin_server import PluginInfo, PluginServerProcess, PluginServerSpec, query
from .proxy import Engine, HTTPServer
from .router import Router
from .rpc import RpcClient

WS_ID = "00000000-0000-4000-8000-000000000000"  # the default workspace id of this emulated node


@dataclass
class Handler:
    name: str
    priority: int
    phases: list[str]
    kind: str  # "external" | "acl"
    no_consumer: bool = False


class State:
    """One configuration generation: router + plugin combos with their __seq__ (plugins_iterator)."""

    def __init__(self, cfg: KongConfig, handlers: list[Handler], seq_counter: Iterable[int]):
        self.cfg = cfg
        self.router = Router(cfg.routes, cfg.services)
        # kong/runloop/plugins_iterator.lua: sorted by PRIORITY descending
        self.handlers = sorted(handlers, key=lambda h: (-h.priority, h.name))
        self.combos: dict[tuple, tuple[dict, dict]] = {}
        for p in cfg.plugins:
            if not p.get("enabled", True):
                continue
            rid = (p.get("route") or {}).get("id")
            sid = (p.get("service") or {}).get("id")
            cid = (p.get("consumer") or {}).get("id")
            conf = dict(p["config"] or {})
            if rid:
                conf["route_id"] = rid
            if sid:
                conf["service_id"] = sid
            if cid:
                conf["consumer_id"] = cid
            if p.get("instance_name"):
                conf["plugin_instance_name"] = p["instance_name"]
            conf["__plugin_id"] = p["id"]
            conf["__ws_id"] = WS_ID
            conf["__key__"] = f"plugins:{p['name']}:{rid or ''}:{sid or ''}:{cid or ''}::{WS_ID}"
            conf["__seq__"] = next(seq_counter)  # any reload -> new tables -> new seq
            self.combos[(p["name"], rid or "", sid or "", cid or "")] = (p, conf)

    def lookup(self, handler: Handler, route_id, service_id, consumer_id):
        """plugins_iterator.lua `lookup_cfg` precedence."""
        r, s, c = route_id or "", service_id or "", consumer_id or ""
        order = []
        if r and s and c:
            order.append((r, s, c))
        if r and c:
            order.append((r, "", c))
        if s and c:
            order.append(("", s, c))
        if r and s:
            order.append((r, s, ""))
        if c:
            order.append(("", "", c))
        if r:
            order.append((r, "", ""))
        if s:
            order.append(("", s, ""))
        order.append(("", "", ""))
        for key in order:
            hit = self.combos.get((handler.name, *key))
            if hit:
                return hit
        return None, None


@dataclass
class Worker:
    index: int
    pdk: PDK
    bridges: dict[str, PluginBridge] = field(default_factory=dict)


class Emulator:
    def __init__(self, *, workers: int = 2, prefix: str | None = None, log_path: str | None = None,
                 read_timeout: float = 60.0, log_level: str = "notice", echo_log: bool = False,
                 upstream_override: dict[str, str] | None = None, node_id: str | None = None):
        self.n_workers = workers
        self._own_prefix = prefix is None
        self.prefix = prefix
        self.log_path = log_path
        self.read_timeout = read_timeout
        self.log_level = log_level
        self.echo_log = echo_log
        self.upstream_override = dict(upstream_override or {})
        self.node_id = node_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, "kong-host-emulator"))
        self.specs: dict[str, PluginServerSpec] = {}
        self.infos: dict[str, PluginInfo] = {}  # plugin name -> info
        self.processes: dict[str, PluginServerProcess] = {}  # server name -> process
        self.workers: list[Worker] = []
        self.state: State | None = None
        self.config: KongConfig | None = None
        self.server: HTTPServer | None = None
        self._seq = itertools.count(1)
        self._log_lock = threading.Condition()
        self._log_lines: list[dict] = []
        self.frames: list[tuple[int, str, str, Any]] = []  # (worker, plugin, "send"/"recv", frame)
        self.record_frames = False
        self.log: ErrorLog = ErrorLog(None)
        self.base_url: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, config: Any, plugin_servers: Iterable[PluginServerSpec] | dict | None = None, *,
              workers: int | None = None, log_path: str | None = None, port: int = 0,
              host: str = "127.0.0.1", wait: bool = True) -> str:
        if workers:
            self.n_workers = workers
        if log_path:
            self.log_path = log_path
        if self.prefix is None:
            self.prefix = tempfile.mkdtemp(prefix="kong-host-")
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        if self.log_path is None:
            self.log_path = os.path.join(self.prefix, "logs", "file-log.json")
        self.log = ErrorLog(os.path.join(self.prefix, "logs", "error.log"), self.log_level, self.echo_log)
        for spec in _specs(plugin_servers):
            self.specs[spec.name] = spec
            info = query(spec)
            if info.name in self.infos:
                self.log("err", f"plugin '{info.name}' already registered by another plugin server")
                continue
            self.infos[info.name] = info
        self.config = self._load(config)
        for spec in self.specs.values():
            if spec.start_cmd:
                proc = PluginServerProcess(spec, self.log)
                self.processes[spec.name] = proc
                proc.start()
            else:
                self.log("warn", f"start_command undefined for pluginserver {spec.name}; assuming external process management")
        try:
            if wait:
                for proc in self.processes.values():
                    proc.wait_socket()
            self.workers = [self._make_worker(i) for i in range(self.n_workers)]
            self.state = State(self.config, self._handlers(), self._seq)
            self.server = HTTPServer((host, port), Engine(self))
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                             name="kong-host-http", daemon=True).start()
        except BaseException:
            self.stop()
            raise
        h, p = self.server.server_address[:2]
        self.base_url = f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}"
        return self.base_url

    def check(self, config: Any, plugin_servers: Iterable[PluginServerSpec] | dict | None = None) -> KongConfig:
        """Load-only, like `kong config parse kong.yml`: query each plugin server for its schema
        (the query command, as Kong does at start) and validate the declarative config, without
        starting any server or serving traffic. Raises DeclarativeError / PluginServerError."""
        for spec in _specs(plugin_servers):
            info = query(spec)
            self.infos.setdefault(info.name, info)
        return self._load(config)

    def _load(self, config: Any) -> KongConfig:
        schemas = {name: info.schema for name, info in self.infos.items()}
        schemas["acl"] = acl.SCHEMA
        cfg = load(config, schemas)
        for w in cfg.warnings:
            self.log("warn", w)
        return cfg

    def _handlers(self) -> list[Handler]:
        hs = [Handler(i.name, i.priority, i.phases, "external") for i in self.infos.values()]
        hs.append(Handler("acl", acl.PRIORITY, ["access"], "acl", no_consumer=True))
        return hs

    def _make_worker(self, i: int) -> Worker:
        w = Worker(i, PDK(self))
        for name, info in self.infos.items():
            spec = self.specs[info.server]

            def on_frame(direction, frame, _w=i, _n=name):
                if self.record_frames:
                    self.frames.append((_w, _n, direction, frame))

            rpc = RpcClient(spec.socket, read_timeout=self.read_timeout, on_frame=on_frame,
                            log=lambda level, msg, _w=i: self.log(level, msg, worker=_w))
            w.bridges[name] = PluginBridge(name, rpc, w.pdk, self._bridge_log(name))
        return w

    def _bridge_log(self, name: str):
        def log(level, msg, ctx=None):
            self.log(level, f"[kong] [{name}] {msg}", worker=ctx.worker if ctx else None,
                     conn=ctx.conn if ctx else None)
        return log

    def reload(self, config: Any) -> None:
        """Declarative reload: new config, rebuilt router and plugin iterator (new __seq__)."""
        cfg = self._load(config)
        self.config = cfg
        self.state = State(cfg, self._handlers(), self._seq)

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for w in self.workers:
            for b in w.bridges.values():
                b.rpc.close()
        for proc in self.processes.values():
            proc.stop()
        self.processes.clear()
        self.log.close()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests
    def plugin_server(self, name: str | None = None) -> PluginServerProcess:
        if name is None:
            (name,) = self.processes.keys()
        return self.processes[name]

    def kill_plugin_server(self, name: str | None = None, sig: int = signal.SIGKILL) -> int | None:
        proc = self.plugin_server(name)
        pid = proc.proc.pid if proc.proc else None
        proc.kill(sig)
        if proc.proc:
            proc.proc.wait()
        return pid

    def wait_plugin_server(self, name: str | None = None, spawns: int = 1, timeout: float = 30.0) -> None:
        self.plugin_server(name).wait_socket(timeout, after_spawn=spawns)

    def plugin_id(self, name: str, route: str | None = None, service: str | None = None) -> str:
        for p in self.config.plugins:
            if p["name"] == name and (route is None or (p.get("route") or {}).get("id") in (route, gen_id("routes", route))) \
                    and (service is None or (p.get("service") or {}).get("id") in (service, gen_id("services", service))):
                return p["id"]
        raise KeyError(name)

    def serialize(self, ctx) -> dict:
        return _serialize(ctx, self)

    def write_log_line(self, line: dict) -> None:
        text = json.dumps(line, separators=(",", ":"))
        with self._log_lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(text + "\n")
            self._log_lines.append(line)
            self._log_lock.notify_all()

    def log_lines(self, wait_for: int = 0, timeout: float = 10.0) -> list[dict]:
        """The JSON log lines written so far; with `wait_for`, wait until there are that many."""
        deadline = time.monotonic() + timeout
        with self._log_lock:
            while len(self._log_lines) < wait_for:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._log_lines)} log lines, wanted {wait_for}")
                self._log_lock.wait(left)
            return list(self._log_lines)

    def log_line_for(self, header: str, value: str, timeout: float = 10.0) -> dict:
        """The log line of the request that carried `header: value`.

        Kong writes a request's log line in its log phase, after the response has gone out, so
        "the newest line" right after a response can still be the previous request's line.
        """
        deadline = time.monotonic() + timeout
        name = header.lower()
        with self._log_lock:
            while True:
                for line in reversed(self._log_lines):
                    headers = (line.get("request") or {}).get("headers") or {}
                    got = headers.get(name)
                    if got == value or (isinstance(got, list) and value in got):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no log line for {header}: {value}")
                self._log_lock.wait(left)

    def error_log(self) -> str:
        return self.log.text()


def _specs(plugin_servers) -> list[PluginServerSpec]:
    if not plugin_servers:
        return []
    if isinstance(plugin_servers, dict):
        return [PluginServerSpec(name=k, **v) for k, v in plugin_servers.items()]
    return list(plugin_servers)
