"""Echo upstream: answers every request with JSON {method, path, query, headers, body, resolved_path}.

`headers` is a list of [name, value] pairs as received (repeats kept, order kept).
`resolved_path` is the resource a lenient upstream serves for `path`: `;params` dropped (Tomcat,
before decoding), percent-decoded once (nginx, most frameworks), `;params` dropped again
(Spring, after decoding), `\\` read as `/` (IIS, ASP.NET), dot segments resolved and `//` merged.
CLI: python -m tests.upstream.echo --port 9000. Tests: `with EchoUpstream() as up: up.port`.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote


_PARAMS = re.compile(r";[^/]*")


def resolve_path(path: str) -> str:
    """What a lenient upstream makes of `path` (see the module doc); kept independent of the
    plugin's own paths.py on purpose."""
    decoded = unquote(_PARAMS.sub("", path), errors="surrogateescape")
    decoded = _PARAMS.sub("", decoded).replace("\\", "/")
    resolved = posixpath.normpath("/" + decoded.lstrip("/"))
    return "/" + resolved.lstrip("/")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"

    def log_message(self, *a):
        pass

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path, _, query = self.path.partition("?")
        out = {
            "method": self.command,
            "path": path,
            "query": query if "?" in self.path else None,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "resolved_path": resolve_path(path),
        }
        self.server.requests.append(out)  # type: ignore[attr-defined]
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Echo", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class EchoUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.server = _Server((host, port), _Handler)
        self.server.requests = []  # type: ignore[attr-defined]
        self.host, self.port = self.server.server_address[:2]
        self._t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.server.requests  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "EchoUpstream":
        self._t.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "EchoUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def header_values(echo: dict, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    a = ap.parse_args()
    up = EchoUpstream(a.host, a.port)
    print(f"echo upstream on {up.url}", flush=True)
    try:
        up.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
