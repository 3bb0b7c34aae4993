"""Our one small layer over kong-pdk 0.36's defects that cannot be avoided from plugin code.

Each fix is applied once, by `server.main()`, before the plugin server starts. Plugin-side
defects (exceptions escaping a handler, work after `kong.response.exit`, exit as the first
PDK call) are avoided in `handler.py` instead; see ../shared/kong-plugin-server.md 3.6.

1. Non-UTF-8 strings from Kong. Lua strings are bytes; Kong packs every one of them as a
   msgpack *str*. kong-pdk decodes str strictly, so one client header holding byte 0xE9
   raises inside the listener: the connection closes without a reply (Kong fails open on
   "no data") and the plugin thread is leaked. We decode with `surrogateescape` so the bytes
   survive as lone surrogates (our extractor rejects them like any malformed token), and we
   encode the same way so any such string we hand back reaches Kong as the original bytes.

2. The watchdog. kong-pdk's watchdog only ends its own thread in threading mode, so a plugin
   server orphaned by a dead Kong keeps running and keeps its socket. Ours exits the process.

3. Log timestamps. kong-pdk's logger stamps every line with a hard-coded GMT+8 clock
   (kong_pdk/logger.py `tz_GMT8`), and Kong copies those lines next to its own UTC ones. We
   swap the zone for UTC.
"""

from __future__ import annotations

import datetime
import functools
import os
import threading
import time
import types
from typing import Any

import msgpack

_applied = False
_lock = threading.Lock()


def _lenient_msgpack() -> types.ModuleType:
    """A stand-in for the `msgpack` module as kong_pdk.listener uses it."""
    shim = types.ModuleType("msgpack_surrogateescape")

    def unpacker(*args: Any, **kwargs: Any) -> msgpack.Unpacker:
        kwargs.setdefault("unicode_errors", "surrogateescape")
        return msgpack.Unpacker(*args, **kwargs)

    shim.Unpacker = unpacker  # type: ignore[attr-defined]
    shim.packb = functools.partial(msgpack.packb, unicode_errors="surrogateescape")  # type: ignore[attr-defined]
    return shim


def _watchdog(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            # Kong (our parent) is gone: nothing will ever call us again.
            os._exit(0)
        time.sleep(interval)


def _utc() -> datetime.tzinfo:
    return datetime.timezone.utc


def _utc_log_timestamps() -> None:
    from kong_pdk import logger

    # logger.Logger.log looks the name up at each call, so replacing it is enough.
    logger.tz_GMT8 = _utc


def apply(watch_parent: bool = True, interval: float = 1.0) -> None:
    """Apply every fix once; safe to call again."""
    global _applied
    with _lock:
        if _applied:
            return
        from kong_pdk import listener

        listener.msgpack = _lenient_msgpack()
        _utc_log_timestamps()
        if watch_parent and os.getppid() != 1:
            threading.Thread(
                target=_watchdog, args=(os.getppid(), interval), name="oidc-watchdog", daemon=True
            ).start()
        _applied = True
