"""A worker thread of our listener (edge/listener.py): a thread with a doorbell.

It runs jobs the listener gives it (reading one connection, or one event on a pooled thread)
and, inside a PDK call, waits for the event's next Step. The Step comes either on the
connection this thread reads (always, unless Kong yielded inside a PDK function) or through
the event's mailbox, left there by the thread that read it. A thread with a connection blocks
in recv on it, bounded by a short receive timeout after which it looks at the mailbox
(rpc_channel.MAILBOX_CHECK); one without (a pooled event) poll(2)s its eventfd, which a
mailbox delivery writes (`ring`).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import traceback
from typing import TYPE_CHECKING

from kong_oidc_py.edge.rpc_channel import STEP_METHODS, Conn, Event, ProtocolError, StepTimeout

if TYPE_CHECKING:
    from kong_oidc_py.edge.listener import Listener

log = logging.getLogger("kong_oidc_py.listener")


def _where(exc: BaseException) -> str:
    """The stack and the exception type, never its message: it may quote a header or a token."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"{frames}{type(exc).__module__}.{type(exc).__qualname__} (message withheld)"


class Worker:
    """A thread with a doorbell. It runs jobs: reading a connection, or one pooled event."""

    def __init__(self, listener: "Listener"):
        self.listener = listener
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.poller = select.poll()
        self.poller.register(self.wake_fd, select.POLLIN)
        self.conn: Conn | None = None
        self.job: tuple | None = None
        self._fd_lock = threading.Lock()  # a late ring must never write into a reused fd number
        self.thread = threading.Thread(target=self._main, name="oidc-listener-worker", daemon=True)

    def ring(self) -> None:
        with self._fd_lock:
            if self.wake_fd >= 0:
                os.eventfd_write(self.wake_fd, 1)

    def _drain(self) -> None:
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass

    def _main(self) -> None:
        pool = self.listener
        try:
            while True:
                job, self.job = self.job, None
                if job is not None:
                    try:
                        job[0](self, *job[1:])
                    except Exception as exc:  # noqa: BLE001 - a worker must survive any job
                        log.error("listener: job failed:\n%s", _where(exc))
                if not pool._park(self):
                    return
        finally:
            with self._fd_lock:
                fd, self.wake_fd = self.wake_fd, -1
            os.close(fd)

    def wait_job(self, ttl: float) -> bool:
        """Idle: wait for the doorbell; False when nothing came within `ttl`."""
        ready = self.poller.poll(ttl * 1000)
        if ready:
            self._drain()
        return bool(ready)

    # -- connection ownership -------------------------------------------------------------------
    def own(self, conn: Conn) -> None:
        self.conn = conn

    def release(self) -> Conn | None:
        conn, self.conn = self.conn, None
        return conn

    # -- the wait inside a PDK call ---------------------------------------------------------------
    def wait_step(self, event: Event) -> tuple:
        """Event.get's wait: the next Step for `event`, from our connection or our mailbox.

        With a connection: a blocking recv on it, ended every MAILBOX_CHECK by its receive
        timeout to look at the mailbox (rpc_channel.py says why not poll). Without one (a pooled
        event): poll(2) on the doorbell. No complete message is ever left buffered here: Kong
        has one request per connection outstanding, and the serve loop reads exactly that one
        before a handler runs."""
        listener = self.listener
        deadline = None  # taken after the first wait that brought no Step of ours (rarely reached)
        while True:
            if event.slot is not None:
                item = event.take()
                if item is not None:
                    if self.conn is not None and item[0] is not self.conn:
                        # Kong sent this Step over another connection, so ours is back in its
                        # pool: let another worker read it while this thread runs handler code.
                        listener._migrated(self)
                    return item
            conn = self.conn
            if conn is not None:
                filled = conn.fill()
                if filled:
                    try:
                        for msg in conn.unpacker:
                            # Our own Step on our own connection (nearly always): taken here; any
                            # other message, or one accept_own refuses, goes through _dispatch,
                            # which answers it (or the error) as the protocol says.
                            if (type(msg) is list and len(msg) == 4 and msg[0] == 0 and msg[2] in STEP_METHODS
                                    and conn is event.last_conn and type(msg[3]) is list and msg[3]
                                    and type(msg[3][0]) is dict and msg[3][0].get("EventId") == event.id):
                                item = (conn, msg[1], msg[3][0].get("Data"), False)
                                if event.accept_own(item):
                                    return item
                            own = listener._dispatch(self, conn, msg, event)
                            if own is not None:
                                return own
                    except (ProtocolError, ValueError, OSError) as exc:
                        # the connection broke, not this event: stop reading it and keep waiting
                        log.warning("listener: dropping a connection (%s)", type(exc).__name__)
                        listener._drop(self)
                elif filled is False:
                    listener._drop(self)
                else:
                    self._drain()  # a ring while we were in recv: the slot is checked next
            if deadline is None:
                deadline = time.monotonic() + listener.step_timeout
            if conn is None:
                remaining = deadline - time.monotonic()
                if remaining > 0 and self.poller.poll(remaining * 1000):
                    self._drain()
            if time.monotonic() >= deadline and event.slot is None:
                listener._count("step_timeouts")
                event.end("after a step timeout")
                raise StepTimeout(f"event {event.id}: no step from Kong within {listener.step_timeout:g}s")
