"""A loopback IdP for tests: discovery + JWKS over plain HTTP on 127.0.0.1 (port 0).

Everything is adjustable while it runs: the keys (`set_keys`), the metadata, and per-path
misbehaviour (`fail`: status code, `hang`: seconds before answering, `oversize`: bytes of
padding, `non_json`: a body that is not JSON). `hits[path]` counts requests per path.

    with FakeIdP() as idp:
        idp.set_keys(key)
        provider = Provider(ProviderSettings(issuer=idp.issuer))
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .keys import TestKey

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.idp._serve(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    idp: "FakeIdP"


class FakeIdP:
    def __init__(self, *, path_prefix: str = "/realms/test") -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.idp = self
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self.issuer = self.base_url + path_prefix
        self.discovery_path = path_prefix + DISCOVERY_PATH
        self.jwks_path = path_prefix + JWKS_PATH
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jwks: dict = {"keys": []}
        self.metadata_overrides: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        # path -> behaviour; each may be set and cleared while the server runs.
        self.fail: dict[str, int] = {}
        self.hang: dict[str, float] = {}
        self.oversize: dict[str, int] = {}
        self.non_json: set[str] = set()
        self.raw_body: dict[str, bytes] = {}
        # paths answered without Content-Length (body ends when the connection closes)
        self.no_length: set[str] = set()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-idp", daemon=True
        )

    # -- control --------------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return self.base_url + self.discovery_path

    @property
    def jwks_uri(self) -> str:
        return self.base_url + self.jwks_path

    def set_keys(self, *keys: TestKey, **jwk_overrides: Any) -> None:
        self.set_jwks({"keys": [k.public_jwk(**jwk_overrides) for k in keys]})

    def set_jwks(self, jwks: dict) -> None:
        with self._lock:
            self._jwks = jwks

    def metadata(self) -> dict:
        doc = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.issuer + "/auth",
            "token_endpoint": self.issuer + "/token",
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        }
        doc.update(self.metadata_overrides)
        return {k: v for k, v in doc.items() if v is not None}

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    @property
    def jwks_hits(self) -> int:
        return self.count(self.jwks_path)

    @property
    def discovery_hits(self) -> int:
        return self.count(self.discovery_path)

    # -- serving --------------------------------------------------------------------------

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            jwks = self._jwks
        hang = self.hang.get(path)
        if hang:
            if self._stop.wait(hang):
                return
        status = self.fail.get(path)
        if path in self.raw_body:
            body = self.raw_body[path]
        elif path == self.discovery_path:
            body = json.dumps(self.metadata()).encode()
        elif path == self.jwks_path:
            body = json.dumps(jwks).encode()
        else:
            status, body = 404, b'{"error":"not found"}'
        if path in self.non_json:
            body = b"<html>not json</html>"
        pad = self.oversize.get(path)
        if pad:
            body = b'{"pad":"' + b"x" * pad + b'"}'
        req.send_response(status or 200)
        req.send_header("Content-Type", "application/json")
        if path in self.no_length:
            req.send_header("Connection", "close")
            req.close_connection = True
        else:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        try:
            req.wfile.write(body)
        except OSError:
            pass  # the client gave up (size limit, timeout): that is the point of the test

    def start(self) -> "FakeIdP":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeIdP":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
