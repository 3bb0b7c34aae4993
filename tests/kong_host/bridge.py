"""Instance cache and event loop for one external plugin in one simulated nginx worker.

K3.9 kong/runloop/plugin_servers/plugin.lua (`get_instance_id`, `reset_instances_for_plugin`) and
rpc/mp_rpc.lua (`call_start_instance`, `handle_event`, `bridge_loop`, `call_pdk_method`).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from .context import RequestCtx
from .lua import KongExit, LuaError, to_multimap, to_wire, unpack_args
from .pdk import PDK, RAW_METHODS, STEP_METHODS, TERMINAL, MethodNotFound
from .rpc import RpcClient, RpcError

MAX_RETRIES = 50  # Kong retries "no plugin instance" without limit; a cap keeps a broken test finite


class StartInstanceError(Exception):
    pass


class PluginBridge:
    def __init__(self, plugin_name: str, rpc: RpcClient, pdk: PDK, log: Callable[..., None]):
        self.plugin_name = plugin_name
        self.rpc = rpc
        self.pdk = pdk
        self.log = log
        self._lock = threading.Lock()
        self.instances: dict[str, dict] = {}  # plugin id -> {"id": instance id, "seq": seq, "conf": conf}
        self._starting: dict[str, threading.Lock] = {}

    # ---------------------------------------------------------------- instances
    def _config_json(self, conf: dict) -> str:
        # Kong cjson-encodes the config table (nulls already removed, shared doc 3.3)
        return json.dumps(conf, separators=(",", ":"))

    def get_instance_id(self, conf: dict, ctx: RequestCtx) -> int:
        key = conf["__plugin_id"]
        with self._lock:
            lock = self._starting.setdefault(key, threading.Lock())
        with lock:  # "claim" the instance: other requests of this worker wait (plugin.lua l.244-255)
            with self._lock:
                cached = self.instances.get(key)
            if cached and cached["seq"] == conf["__seq__"] and cached["conf"]["__plugin_id"] == key:
                return cached["id"]
            try:
                status = self.rpc.call("plugin.StartInstance", {"Name": self.plugin_name, "Config": self._config_json(conf)})
            except RpcError as e:
                self.log("err", f"starting instance: {e}", ctx)
                raise StartInstanceError(str(e)) from None
            new_id = status["Id"]
            with self._lock:
                self.instances[key] = {"id": new_id, "seq": conf["__seq__"], "conf": conf}
            if cached:
                try:
                    self.rpc.call("plugin.CloseInstance", cached["id"])
                except RpcError:
                    pass  # errors ignored
            return new_id

    def reset_instances(self) -> None:
        """K3.7+: drop every cached instance of this plugin in this worker."""
        with self._lock:
            self.instances.clear()

    # ---------------------------------------------------------------- events
    def handle_event(self, ctx: RequestCtx, conf: dict, phase: str, _depth: int = 0) -> None:
        """Raises KongExit (terminal PDK call), LuaError / StartInstanceError (-> 500). Any other RPC
        failure is logged and the request goes on (fail-open, mp_rpc.lua `handle_event`)."""
        instance_id = self.get_instance_id(conf, ctx)
        try:
            res = self.rpc.call("plugin.HandleEvent", {"InstanceId": instance_id, "EventName": phase})
            self._bridge_loop(ctx, res)
        except RpcError as e:
            err = str(e)
            if "no plugin instance" in err.lower() and _depth < MAX_RETRIES:
                self.log("warn", err, ctx)
                self.reset_instances()
                return self.handle_event(ctx, conf, phase, _depth + 1)
            self.log("err", err, ctx)
            return

    def _bridge_loop(self, ctx: RequestCtx, res: Any) -> None:
        while True:
            data = res.get("Data") if isinstance(res, dict) else None
            if data == "ret":
                return
            event_id = res.get("EventId")
            method = data.get("Method") if isinstance(data, dict) else None
            args = data.get("Args") if isinstance(data, dict) else None
            ctx.pdk_calls[self.plugin_name] += 1
            ret = self._call_pdk(ctx, method, args if isinstance(args, list) else [])
            step = STEP_METHODS.get(method, "plugin.Step")
            if isinstance(ret, dict) and isinstance(ret.get("_method"), str):
                step = ret["_method"]
            if step == "plugin.StepMultiMap":
                ret = to_multimap(ret) if isinstance(ret, dict) else ret
            elif method in RAW_METHODS:
                if ret is None:
                    raise LuaError("attempt to get length of local 'str' (a nil value)")
                ret = ret if isinstance(ret, bytes) else str(ret).encode()
            else:
                ret = to_wire(ret)
            payload: dict = {"EventId": event_id}
            if ret is not None:
                payload["Data"] = ret
            res = self.rpc.call(step, payload)

    def _call_pdk(self, ctx: RequestCtx, method: Any, args: list) -> Any:
        if not isinstance(method, str):
            self.log("err", f"could not find pdk method: {method}", ctx)
            return None
        lua_args = unpack_args(args, warn=lambda m: self.log("warn", f"{method}: {m}", ctx))
        try:
            return self.pdk.call(ctx, method, lua_args)
        except MethodNotFound:
            self.log("err", f"could not find pdk method: {method}", ctx)
            return None
        except TypeError as e:  # more arguments than the Lua function takes are ignored by Lua
            if "positional argument" in str(e):
                fn = self.pdk.methods.get(method)
                import inspect

                n = len(inspect.signature(fn).parameters) - 1 if fn else 0
                return self.pdk.call(ctx, method, lua_args[:n])
            raise
