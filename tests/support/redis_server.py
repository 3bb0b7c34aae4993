"""A throwaway redis-server on loopback for tests: free port, own temp dir, no persistence.

Missing redis-server is a test FAILURE, not a skip: CI installs it (Debian package `redis-server`),
and a silently skipped Redis suite would hide regressions in the shared-session code.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from .ports import free_port

CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("redis-server")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A Cluster node also listens on port + 10000 (its bus), so redis refuses ports above
    55535: pick a port at most that high whose bus port is free too (the kernel's ephemeral
    range often starts above it)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    """`extra_args` go after ours (later wins in redis-server), e.g. ACL users, TLS, cluster mode.
    `tls` = (cert, key, ca) files: the server then listens with TLS only on `port`.
    `sentinel_of` = (master name, master port): run as a Sentinel monitoring that master."""

    def __init__(self, extra_args: tuple[str, ...] = (), tls: tuple[str, str, str] | None = None,
                 sentinel_of: tuple[str, int] | None = None) -> None:
        self.extra_args = tuple(extra_args)
        self.tls = tls
        self.sentinel_of = sentinel_of
        binary = find_redis_server()
        if binary is None:
            pytest.fail(
                "redis-server not found: CI installs it (apt-get install redis-server); "
                "install it locally to run the Redis session tests",
                pytrace=False,
            )
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self._dir = tempfile.mkdtemp(prefix="kong-oidc-redis-")
        last_error = ""
        for _ in range(3):  # a port picked as free can be taken before redis binds it
            self.port = free_cluster_port() if "--cluster-enabled" in self.extra_args else free_port()
            head: list[str] = [self.binary]
            if self.sentinel_of is not None:
                # A Sentinel rewrites its config file: it needs its own writable one.
                conf = os.path.join(self._dir, "sentinel.conf")
                name, master_port = self.sentinel_of
                with open(conf, "w", encoding="utf-8") as f:
                    f.write(f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
                            f"sentinel down-after-milliseconds {name} 1000\n"
                            f"sentinel failover-timeout {name} 4000\n")
                head += [conf, "--sentinel"]
            ports = ["--port", str(self.port)]
            if self.tls is not None:
                cert, key, ca = self.tls
                ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                         "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
            self._argv = [
                    *head,
                    "--bind", self.host,
                    *ports,
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--daemonize", "no",
                    "--protected-mode", "yes",
                    "--loglevel", "warning",
                    "--logfile", os.path.join(self._dir, "redis.log"),
                    *self.extra_args,
                ]
            self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            last_error = self._log_tail()
            self._kill()
        self.stop()
        pytest.fail(f"redis-server did not start: {last_error}", pytrace=False)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as raw:
                    s = raw
                    if self.tls is not None:
                        ctx = ssl.create_default_context(cafile=self.tls[2])
                        ctx.check_hostname = False
                        s = ctx.wrap_socket(raw)
                    s.sendall(b"PING\r\n")
                    # -NOAUTH: up, and protected by a password (ACL tests).
                    if s.recv(16)[:6] in (b"+PONG\r", b"-NOAUT"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self._dir or "", "redis.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-500:]
        except OSError:
            return "(no log)"

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Start again on the same port (empty: no persistence), after `crash` or `stop`."""
        self._kill()
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self._wait_ready(timeout):
            pytest.fail(f"redis-server did not restart: {self._log_tail()}", pytrace=False)

    def crash(self) -> None:
        """SIGKILL, as a machine loss looks to clients (no goodbye, no save)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=5)

    def stop(self) -> None:
        self._kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
