"""Lua-side value semantics the emulator needs (errors, table shapes, LuaJIT argument unpacking).

Nothing here talks to the network; every other module uses these helpers so that values cross the
wire the way lua-MessagePack (LMP) and cjson would shape them (shared doc 2.4, 2.5).
"""

from __future__ import annotations

import math
from typing import Any


class LuaError(Exception):
    """A Lua `error()` raised by a PDK function (bad argument, wrong phase, ...).

    Kong does not catch these in the bridge (kong/runloop/plugin_servers/rpc/mp_rpc.lua
    `call_pdk_method`): in the access phase the plugin coroutine dies and Kong answers 500
    (kong/init.lua `execute_collecting_plugins_iterator`).
    """


class KongExit(Exception):
    """Raised by kong.response.exit/error in a delayed-response phase: the coroutine yields and
    never comes back to the bridge loop (kong/pdk/response.lua `exit`, `error`)."""

    def __init__(self, status: int, body: bytes | None, headers: list[tuple[str, str]]):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def to_wire(value: Any) -> Any:
    """Shape a Lua value the way LMP packs it (mp_rpc.lua uses LMP defaults):

    * an empty table is packed as an empty array `[]` (LMP cannot tell it from a map);
    * a table with keys 1..n is an array; other tables are maps;
    * integral floats within +-2^53 become integers;
    * ngx.null / cjson.null / None become nil.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) <= 2**53:
            return int(value)
        return value
    if isinstance(value, dict):
        if not value:
            return []
        keys = list(value.keys())
        if all(isinstance(k, int) and not isinstance(k, bool) for k in keys) and sorted(keys) == list(
            range(1, len(keys) + 1)
        ):
            return [to_wire(value[i]) for i in range(1, len(keys) + 1)]
        return {k: to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return value


def to_multimap(value: dict | None) -> dict:
    """mp_rpc.lua `fix_mmap`: every value becomes a list; `true` (query flag) becomes `[]`;
    an empty result is an empty *map*."""
    out: dict[str, list] = {}
    for k, v in (value or {}).items():
        if isinstance(v, list):
            out[k] = [x for x in v]
        elif v is True:
            out[k] = []
        else:
            out[k] = [v]
    return out


# Measured LuaJIT 2.1 + lua-MessagePack 0.5.2 results of `unpack(args)` for arrays with nil holes
# (shared doc 2.5): key = tuple of "is None" per position, value = number of arguments passed.
_MEASURED_HOLES = {
    (False, True, False): 1,
    (True, False): 2,
    (False, True, True, False): 4,
}


def unpack_args(args: list, warn=None) -> list:
    """Apply `method(unpack(args))` semantics to the positional Args from Python.

    Trailing nils are always dropped (the border never counts them). For nil holes the exact
    LuaJIT border depends on table internals; the shapes measured in the shared doc (2.5) are
    reproduced exactly, any other shape is truncated at the first hole (the conservative choice:
    `kong.response.exit(403, None, headers)` loses its headers on real Kong) and reported through
    `warn`.
    """
    args = list(args or [])
    while args and args[-1] is None:
        args.pop()
    if None not in args:
        return args
    mask = tuple(a is None for a in args)
    if mask in _MEASURED_HOLES:
        n = _MEASURED_HOLES[mask]
    else:
        n = args.index(None)
    if warn is not None:
        warn(f"nil hole in PDK Args {mask!r}: LuaJIT passes only the first {n} argument(s)")
    return args[:n]


def lua_tostring(value: Any) -> str:
    """tostring() of a Lua value for log concatenation (kong/pdk/log.lua gen_log_func)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dict, list)):
        return "table: 0x%08x" % (id(value) & 0xFFFFFFFF)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def lua_len(value: Any) -> int:
    """`#t` for tables coming from Python: lists have their length, maps with keys 1..n too."""
    if isinstance(value, list):
        n = 0
        for v in value:
            if v is None:
                break
            n += 1
        return n
    if isinstance(value, dict):
        n = 0
        while (n + 1) in value:
            n += 1
        return n
    return 0
