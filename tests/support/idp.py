"""A real OpenID Provider for tests: `oidc-provider` (node) run by tests/idp/provider.mjs on 127.0.0.1.

    with OidcProvider(config={"ttl": {"AccessToken": 5}}) as idp:
        token = idp.client_credentials_token(scope="read")
        idp.restart(new_keys=True)          # same port and issuer, new kids

Fixtures (in idp_fixtures.py, so this module needs no pytest): `oidc_provider` (session-scoped, default config) and `oidc_provider_factory`
(function-scoped; every provider it makes is stopped at teardown). Import them into the test
module, or list this module in `pytest_plugins` of the root conftest.

The Python side always generates the signing keys (RS256 + ES256, kid = RFC 7638 thumbprint) and
hands them to the provider as a private JWKS file, so `private_keys()` returns the very keys the
provider signs with (as `tests.support.keys.TestKey`, ready for `.sign(...)`).
The provider's config file format is documented in tests/idp/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from .keys import TestKey, rsa_key

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = REPO_ROOT / "tests" / "idp" / "provider.mjs"
NODE_MODULES = REPO_ROOT / "node_modules"

DEFAULT_RESOURCE = "urn:kong-oidc-py:api"  # RS256-signed access tokens
OTHER_RESOURCE = "urn:kong-oidc-py:other"  # ES256-signed access tokens (a second audience)
RESOURCE_SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    auth_method: str  # how this harness authenticates it: client_secret_basic / client_secret_post


M2M = Client("m2m", "m2m-secret", "client_secret_basic")
WEB = Client("web", "web-secret", "client_secret_basic")
WEB_POST = Client("web-post", "web-post-secret", "client_secret_post")
CLIENTS = {c.client_id: c for c in (M2M, WEB, WEB_POST)}


@dataclass(frozen=True)
class User:
    username: str
    password: str


ALICE = User("alice", "alice-password")  # groups [admins, staff], roles [admin, user]
BOB = User("bob", "bob-password")  # groups [staff], roles [user]

# Selectors of the provider's login form (tests/idp/provider.mjs).
LOGIN_USERNAME = "#username"
LOGIN_PASSWORD = "#password"
LOGIN_SUBMIT = "#login"
LOGIN_ERROR = "#error"
LOGIN_CANCEL = "#cancel"
LOGOUT_CONFIRM = "#logout-confirm"


class ProviderStartError(RuntimeError):
    pass


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict) -> str:
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def generate_keys() -> list[TestKey]:
    """Fresh RS256 + ES256 signing keys with thumbprint kids."""
    keys = [rsa_key(None, "RS256", fresh=True), TestKey(None, "ES256", ec.generate_private_key(ec.SECP256R1()))]
    for key in keys:
        key.kid = jwk_thumbprint(key.public_jwk(include_alg=False))
    return keys


def require_node_modules() -> None:
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        raise ProviderStartError(
            f"{NODE_MODULES}/oidc-provider is missing: run `make install` (npm ci) in {REPO_ROOT} first"
        )


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ProviderStartError("`node` is not on PATH (Node.js >= 20 is needed for tests/idp/provider.mjs)")
    return node


class OidcProvider:
    """One oidc-provider process. Not started until `start()` (or `with`)."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        port: int = 0,
        keys: list[TestKey] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self._requested_port = port
        self._keys = list(keys) if keys is not None else generate_keys()
        self.startup_timeout = startup_timeout
        self._dir: Path | None = None  # created by start(), removed by close()
        self._proc: subprocess.Popen | None = None
        self._issuer: str | None = None
        self._metadata: dict | None = None
        self._run = 0
        self.returncode: int | None = None  # exit status of the last stopped process

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "OidcProvider":
        if self._proc is not None:
            raise RuntimeError("provider already running")
        require_node_modules()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="kong-oidc-idp-"))
        self._run += 1
        keys_path = self._dir / "keys.json"
        keys_path.write_text(json.dumps({"keys": [k.private_jwk() for k in self._keys]}))
        keys_path.chmod(0o600)
        config_path = self._dir / "config.json"
        config_path.write_text(json.dumps(self.config))
        self._stdout_path = self._dir / f"stdout.{self._run}.log"
        self._stderr_path = self._dir / f"stderr.{self._run}.log"
        port = self.port if self._issuer else self._requested_port
        # Output goes to files, never to pipes nobody drains (a full pipe would block node).
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [_node(), str(PROVIDER_SCRIPT), "--config", str(config_path), "--keys", str(keys_path),
                 "--port", str(port)],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, "NODE_ENV": "test"},
            )
        try:
            self._issuer = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._metadata = None
        return self

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for line in self._stdout_path.read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    return line.split(" ", 1)[1].strip()
            if self._proc.poll() is not None:
                raise ProviderStartError(f"provider exited with {self._proc.returncode}:\n{self.logs()}")
            time.sleep(0.02)
        raise ProviderStartError(f"provider not READY within {self.startup_timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.returncode = proc.returncode

    def restart(self, *, new_keys: bool = False, keys: list[TestKey] | None = None,
                config: dict[str, Any] | None = None) -> None:
        """Stop and start again on the same port (same issuer). All provider state is lost."""
        self.stop()
        if keys is not None:
            self._keys = list(keys)
        elif new_keys:
            self._keys = generate_keys()
        if config is not None:
            self.config = dict(config)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "OidcProvider":
        try:
            return self.start()
        except BaseException:
            # __exit__ never runs when __enter__ raises: remove the temp dir here.
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self) -> str:
        parts = []
        for path in (getattr(self, "_stdout_path", None), getattr(self, "_stderr_path", None)):
            if path is not None and path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-8000:]}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ addresses

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise RuntimeError("provider not started")
        return self._issuer

    @property
    def port(self) -> int:
        return int(self.issuer.rsplit(":", 1)[1])

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict:
        if self._metadata is None:
            resp = httpx.get(self.discovery_url, timeout=5)
            resp.raise_for_status()
            self._metadata = resp.json()
        return self._metadata

    @property
    def jwks_uri(self) -> str:
        return self.metadata()["jwks_uri"]

    @property
    def token_endpoint(self) -> str:
        return self.metadata()["token_endpoint"]

    @property
    def authorization_endpoint(self) -> str:
        return self.metadata()["authorization_endpoint"]

    @property
    def end_session_endpoint(self) -> str:
        return self.metadata()["end_session_endpoint"]

    # ------------------------------------------------------------------ keys and tokens

    def jwks(self) -> dict:
        """The public JWKS as the provider serves it."""
        resp = httpx.get(self.jwks_uri, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def private_keys(self) -> list[TestKey]:
        """The provider's own signing keys (RS256, ES256) for minting tokens in tests."""
        return list(self._keys)

    def signing_key(self, alg: str = "RS256") -> TestKey:
        return next(k for k in self._keys if k.alg == alg)

    def token_request(self, data: dict[str, str], client: Client | str = M2M) -> httpx.Response:
        """POST to the token endpoint, authenticating as `client` (its auth_method)."""
        c = CLIENTS[client] if isinstance(client, str) else client
        data = dict(data)
        auth = None
        if c.auth_method == "client_secret_post":
            data.update(client_id=c.client_id, client_secret=c.client_secret)
        else:
            auth = (c.client_id, c.client_secret)
        return httpx.post(self.token_endpoint, data=data, auth=auth, timeout=10)

    def client_credentials(self, scope: str | None = "read", resource: str | None = DEFAULT_RESOURCE,
                           client: Client | str = M2M) -> dict:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        resp = self.token_request(data, client)
        if resp.status_code != 200:
            raise AssertionError(f"client_credentials failed: {resp.status_code} {resp.text}")
        return resp.json()

    def client_credentials_token(self, scope: str | None = "read", resource: str | None = DEFAULT_RESOURCE,
                                 client: Client | str = M2M) -> str:
        return self.client_credentials(scope, resource, client)["access_token"]
