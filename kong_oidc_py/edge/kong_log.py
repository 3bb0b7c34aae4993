"""Warnings and errors at a level Kong shows by default.

Kong copies every line a plugin server prints into its error log at level `info`
(ps/process.lua `grab_logs`), which Kong's default `log_level = notice` hides, so an IdP that is
down or a config the plugin refuses would stay invisible. This bridge queues the plugin's own
WARNING and ERROR records and the handler replays them through `kong.log.warn` / `kong.log.err`
during the next access event, where Kong logs them at their real level. The stdout line stays
too (for `log_level = info` and for the emulator).

Each replayed record costs one PDK call, only on the event that finds the queue non-empty; the
queue is bounded and says how many records it dropped. Records are the plugin's own messages,
which never carry a token, secret or cookie value.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

CAPACITY = 64


class KongLogBridge(logging.Handler):
    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(level=logging.WARNING)
        self._queue: deque[tuple[int, str]] = deque()
        self._capacity = capacity
        self._dropped = 0
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the request
            return
        with self._guard:
            if len(self._queue) >= self._capacity:
                self._dropped += 1
                return
            self._queue.append((record.levelno, text))

    def pending(self) -> bool:
        return bool(self._queue)

    def drain(self, kong: Any) -> None:
        """Replay queued records through the PDK; a record whose call fails is not retried."""
        with self._guard:
            records = list(self._queue)
            self._queue.clear()
            dropped, self._dropped = self._dropped, 0
        if dropped:
            records.append((logging.WARNING, f"oidc: {dropped} more warnings/errors were dropped; "
                                             "see the plugin server's own log lines (Kong log level info)"))
        for level, text in records:
            if level >= logging.ERROR:
                kong.log.err(text)
            else:
                kong.log.warn(text)


_bridge: KongLogBridge | None = None


def install(logger_name: str = "kong_oidc_py") -> KongLogBridge:
    """Attach the bridge to the plugin's logger (once per process)."""
    global _bridge
    if _bridge is None:
        _bridge = KongLogBridge()
        logging.getLogger(logger_name).addHandler(_bridge)
    return _bridge


def uninstall(logger_name: str = "kong_oidc_py") -> None:
    global _bridge
    if _bridge is not None:
        logging.getLogger(logger_name).removeHandler(_bridge)
        _bridge = None


def bridge() -> KongLogBridge | None:
    return _bridge
