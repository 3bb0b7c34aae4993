"""External plugin server discovery and process management, as Kong 3.9 does it.

* discovery: kong/runloop/plugin_servers/process.lua `query_external_plugin_info` (popen the query
  command, cjson-decode all of stdout, take `(dump.Plugins or dump)[1]`), then
  kong/db/dao/plugins.lua `load_plugin_handler` (PRIORITY integral, VERSION "x.y.z");
* process: process.lua `pluginserver_timer` / `grab_logs` (spawn "exec <cmd>" with merged stderr,
  log every line as "[<name>:<pid>] ", respawn at most once per second, stop after status 127,
  SIGTERM on worker exit).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .entity_checks import SchemaError, check_plugin_schema as check_schema_entity_checks


class PluginServerError(Exception):
    pass


@dataclass
class PluginInfo:
    name: str
    priority: int
    version: str
    schema: dict
    phases: list[str]
    server: str
    protocol: str = "MsgPack:1"


@dataclass
class PluginServerSpec:
    """One `pluginserver_names` entry: pluginserver_<name>_socket / _start_cmd / _query_cmd.

    `info` (a dump object or list) replaces the query command, for fake servers in tests.
    """

    name: str
    socket: str
    start_cmd: str | None = None
    query_cmd: str | None = None
    info: Any = None
    env: dict[str, str] | None = None

    @classmethod
    def parse(cls, text: str, prefix: str) -> "PluginServerSpec":
        """CLI form NAME=START_CMD;QUERY_CMD[;SOCKET] (socket default <prefix>/<NAME>.socket)."""
        name, _, rest = text.partition("=")
        parts = rest.split(";")
        if not name or len(parts) < 2:
            raise PluginServerError(f"bad --plugin-server value {text!r}: expected NAME=START_CMD;QUERY_CMD[;SOCKET]")
        sock = parts[2] if len(parts) > 2 and parts[2] else os.path.join(prefix, f"{name}.socket")
        return cls(name=name.lower(), socket=sock, start_cmd=parts[0] or None, query_cmd=parts[1])


_VERSION_RE = re.compile(r"^\d+(\.\d+)?(\.\d+)?$")  # "x.y.z" at most (kong/db/dao/plugins.lua)


def parse_info(spec: PluginServerSpec, dump: Any) -> PluginInfo:
    protocol = "MsgPack:1"
    if isinstance(dump, dict):
        protocol = dump.get("Protocol") or protocol
        plugins = dump.get("Plugins")
    else:
        plugins = dump
    if not isinstance(plugins, list) or not plugins or not isinstance(plugins[0], dict):
        raise PluginServerError(f"failed loading external plugins: not a plugin info table from {spec.name}")
    p = plugins[0]  # K3.9 ps/process.lua: only the first entry is registered
    name = p.get("Name")
    prio = p.get("Priority")
    version = p.get("Version")
    if not isinstance(prio, (int, float)) or isinstance(prio, bool) or prio != int(prio) or not (
        abs(prio) < float("inf")
    ):
        raise PluginServerError(f'Plugin "{name}" cannot be loaded because its PRIORITY field is not a valid integer number, got: "{prio}"')
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise PluginServerError(f'Plugin "{name}" cannot be loaded because its VERSION field does not follow the "x.y.z" format, got: "{version}"')
    schema = p.get("Schema") or {"name": name, "fields": [{"config": {"type": "record", "fields": []}}]}
    try:
        check_schema_entity_checks(schema)
    except SchemaError as e:
        # kong/db/schema/plugin_loader.lua l.31-34: a schema Kong cannot use stops Kong
        raise PluginServerError(f'error loading plugin schemas: on plugin "{name}": {e}') from None
    return PluginInfo(
        name=name,
        priority=int(prio),
        version=version,
        schema=schema,
        phases=list(p.get("Phases") or []),
        server=spec.name,
        protocol=protocol,
    )


def query(spec: PluginServerSpec) -> PluginInfo:
    if spec.info is not None:
        return parse_info(spec, spec.info)
    if not spec.query_cmd:
        raise PluginServerError(f"query_command undefined for pluginserver {spec.name}")
    env = dict(os.environ, **(spec.env or {}))
    proc = subprocess.run(["/bin/sh", "-c", spec.query_cmd], capture_output=True, env=env, timeout=120)
    try:
        dump = json.loads(proc.stdout.decode("utf-8", "replace"))
    except ValueError as e:
        raise PluginServerError(
            f"failed loading external plugins: failed decoding plugin info from {spec.name}: {e}; "
            f"stdout={proc.stdout[:200]!r} stderr={proc.stderr[-500:]!r}"
        ) from None
    return parse_info(spec, dump)


class PluginServerProcess:
    """Owns one plugin server process the way Kong's worker 0 does."""

    def __init__(self, spec: PluginServerSpec, log: Callable[[str, str], None]):
        self.spec = spec
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.spawns = 0  # number of spawns (first start + respawns)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"pluginserver-{self.spec.name}", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        env = dict(os.environ, **(self.spec.env or {}))
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + self.spec.start_cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # merge_stderr = true
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        with self._cond:
            self.proc = proc
            self.spawns += 1
            self._cond.notify_all()
        return proc

    def _grab_logs(self, proc: subprocess.Popen) -> None:
        prefix = f"[{self.spec.name}:{proc.pid}] "
        for raw in proc.stdout:  # type: ignore[union-attr]
            self.log("info", prefix + raw.decode("utf-8", "replace").rstrip("\n"))

    def _loop(self) -> None:
        next_spawn = 0.0
        while not self._stop.is_set():
            delay = next_spawn - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_spawn = time.monotonic() + 1  # respawn at most once per second
            proc = self._spawn()
            self._grab_logs(proc)
            status = proc.wait()
            if self._stop.is_set():
                break
            reason = f"signal {-status}" if status < 0 else f"exit {status}"
            self.log("notice", f"external pluginserver '{self.spec.name}' terminated: {reason}")
            if status == 127:
                self.log("err", f"external pluginserver '{self.spec.name}' start command not found; not respawning")
                break

    def wait_socket(self, timeout: float = 30.0, after_spawn: int = 1) -> None:
        """Wait until the socket accepts connections from spawn number `after_spawn` on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                proc = self.proc
                ok_spawn = self.spawns >= after_spawn
            if ok_spawn and proc is not None and proc.poll() is None and socket_ready(self.spec.socket):
                return
            time.sleep(0.02)
        raise PluginServerError(f"plugin server {self.spec.name} socket {self.spec.socket} not ready after {timeout}s")

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        proc = self.proc
        if proc and proc.poll() is None:
            os.kill(proc.pid, sig)
            return proc.pid
        return None

    def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        proc = self.proc
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread:
            self._thread.join(grace + 2)
        if proc and proc.stdout:
            proc.stdout.close()


def socket_ready(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
