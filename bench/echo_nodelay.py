"""The echo upstream (tests/upstream/echo.py, same handler) with TCP_NODELAY on accepted sockets.

The echo handler writes the headers and the body in two small sends; with Nagle on, the second
waits for the peer's delayed ACK (~40 ms) whenever the client keeps the connection alive, as
Envoy does. Both gateways are measured against this same server.
    python bench/echo_nodelay.py --port 9000
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.upstream import echo  # noqa: E402


class _NoDelayServer(echo._Server):
    def get_request(self):
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _Handler(echo._Handler):
    def _any(self):
        super()._any()
        self.server.requests.clear()  # bounded memory over long runs (the bench never reads them)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = _NoDelayServer(("127.0.0.1", args.port), _Handler)
    server.requests = []  # type: ignore[attr-defined]
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
