"""The PDK object our listener hands to handlers: kong-pdk's, with its attribute chain made cheap.

kong-pdk's `kong_pdk.pdk.Kong(channel, lua_style).kong` is a `FakeClasses` whose every attribute
makes a new `FakeClasses` through `__getattr__` (after a failed normal lookup, so each level
costs an AttributeError): `kong.service.request.set_headers(h)` builds three objects and two
exceptions, ~3 us per call, as much as a third of a msgpack round trip (bench/listener.py).

Here each prefix ("kong.service.request") gets its own subclass of `FakeClasses`, made once per
process, whose children are class-level properties: a lookup is one property call and one slot
store. The behaviour is kong-pdk's: any attribute chain names the Lua function, calling a node
sends `{"Method": prefix, "Args": args}` as kong-pdk's `rpc_of` does (log-argument sanitizing,
terminal methods, lua_style replies; our Event.call does that work in one frame), and
`isinstance(node, FakeClasses)` holds. A node holds only its event's call function, so a handler
that keeps `kong` past its event reaches that event (which raises), never another one.
"""

from __future__ import annotations

import builtins
import threading
from typing import Any, Callable

from kong_pdk.pdk import FakeClasses

from kong_oidc_py.edge.rpc_channel import Event

_classes: dict[str, type] = {}
_lock = threading.Lock()


class PdkNode(FakeClasses):
    """One level of the PDK namespace; `prefix` is a class attribute of each generated subclass.
    `call(name, *args)` makes one PDK call by its full name ("kong.request.get_path"): what
    edge/handler.py uses on the hot path, with no chain to walk."""

    __slots__ = ("call",)
    prefix = "kong"

    def __init__(self, call: Callable[..., Any]) -> None:
        # FakeClasses.__init__ is not called: its prefix is this class's attribute
        self.call = call

    def __call__(self, *args: Any) -> Any:
        return self.call(self.prefix, *args)

    def __str__(self) -> str:  # FakeClasses: str(node) calls the function with no arguments
        return self.call(self.prefix)

    def __getattr__(self, name: str) -> Any:
        # Only on the first lookup of `name` under this prefix in the process: afterwards the
        # class property answers. Dunder names stay real AttributeErrors (copy, pickle, repr).
        if name.startswith("__"):
            raise AttributeError(name)
        child = node_class(f"{self.prefix}.{name}")
        with _lock:
            if name not in type(self).__dict__:
                setattr(type(self), name, builtins.property(_child_of(child)))
        return child(self.call)


def node_class(prefix: str) -> type:
    cls = _classes.get(prefix)
    if cls is None:
        with _lock:
            cls = _classes.get(prefix)
            if cls is None:
                cls = type("PdkNode", (PdkNode,), {"__slots__": (), "prefix": prefix})
                _classes[prefix] = cls
    return cls


def _child_of(cls: type) -> Callable[[PdkNode], PdkNode]:
    """The property getter of a child level: a node of `cls` on the parent's call function."""
    return lambda node: cls(node.call)


_ROOT = node_class("kong")


def pdk_object(event: Event, lua_style: bool) -> PdkNode:
    """What `kong_pdk.pdk.Kong(event, lua_style).kong` is, for one event: calls go through
    `Event.call` (kong-pdk's rpc_of work in one frame)."""
    event.lua_style = lua_style
    return _ROOT(event.call)
