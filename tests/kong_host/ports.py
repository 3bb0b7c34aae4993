"""Whether a listen address is free, as a one-line reason a person can act on."""

from __future__ import annotations

import errno
import socket


def port_in_use(host: str, port: int) -> str | None:
    """A one-line reason when `host:port` cannot be bound, else None (port 0 is always free)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option the HTTP server sets (socketserver allow_reuse_address), so a port in
        # TIME_WAIT is not reported busy while a listening one is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; stop what holds it or choose another port"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None
