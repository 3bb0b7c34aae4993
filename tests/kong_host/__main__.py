"""CLI: python -m tests.kong_host --config kong.yml --port 8000 [--plugin-server NAME=START;QUERY[;SOCKET]]

`make run CONFIG=my-kong.yml PORT=8000` is the documented way in. A busy port is one line naming
it; a prefix this command made for itself (no --prefix) is removed when it stops.

`--check` validates the file and exits, like `kong config parse kong.yml`: 0 and "parse
successful", or 1 and Kong's error tree (kong/cmd/config.lua l.95-134 in 3.9.3, `parse`)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

from .declarative import DeclarativeError
from .emulator import Emulator
from .plugin_server import PluginServerError, PluginServerSpec
from .ports import port_in_use


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.kong_host", description="Kong 3.9 host emulator (loopback only)")
    ap.add_argument("--config", required=True, help="declarative kong.yml")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (loopback only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=2, help="simulated nginx workers (own instance cache, RPC client, msgids)")
    ap.add_argument("--prefix", help="Kong prefix (sockets, logs); default: a temp dir")
    ap.add_argument("--log-file", help="file-log JSON lines (default <prefix>/logs/file-log.json)")
    ap.add_argument("--log-level", default="notice", help="error log level (Kong default notice; plugin server output is info)")
    ap.add_argument("--plugin-server", action="append", default=[], metavar="NAME=START_CMD;QUERY_CMD[;SOCKET]",
                    help="pluginserver_<NAME>_start_cmd/_query_cmd/_socket (socket default <prefix>/<NAME>.socket); "
                         "the token {prefix} is replaced by the prefix. Default: this project's `oidc` plugin "
                         "server (the kong-oidc-py console script beside this Python), as the Dockerfile registers it")
    ap.add_argument("--read-timeout", type=float, default=60.0, help="RPC read timeout in seconds (Kong ~60)")
    ap.add_argument("--check", action="store_true",
                    help="only load and validate --config against the plugin schemas (like `kong config parse`), then exit")
    ap.add_argument("--upstream-override", action="append", default=[], metavar="HOST[:PORT]=127.0.0.1:PORT",
                    help="send traffic for a service host to a loopback address")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("--host must be a loopback address")
    busy = port_in_use(args.host, args.port)
    if busy:
        print(f"Error: {busy}", file=sys.stderr)
        return 1
    prefix = args.prefix
    if prefix:
        os.makedirs(prefix, exist_ok=True)
        return _run(args, prefix)
    prefix = tempfile.mkdtemp(prefix="kong-host-")
    try:
        return _run(args, prefix)
    finally:
        _remove(prefix)


def _remove(prefix: str, deadline: float = 5.0) -> None:
    """Remove our temp prefix. A plugin server still exiting may write one last file (its log,
    its socket) after a first pass, so try until the directory is gone."""
    end = time.monotonic() + deadline
    while os.path.exists(prefix):
        shutil.rmtree(prefix, ignore_errors=True)
        if time.monotonic() > end:
            break
        time.sleep(0.1)


def _run(args: argparse.Namespace, prefix: str) -> int:
    try:
        specs = [PluginServerSpec.parse(s.replace("{prefix}", prefix), prefix) for s in args.plugin_server]
        if not args.plugin_server:
            from tests.support.stack import oidc_spec

            specs = [oidc_spec(prefix)]
    except (PluginServerError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 2
    if args.check:
        try:
            Emulator(prefix=prefix, log_level=args.log_level, echo_log=True).check(args.config, specs)
        except (DeclarativeError, PluginServerError) as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        print("parse successful")
        return 0
    overrides = dict(o.split("=", 1) for o in args.upstream_override)
    # Handlers first: a SIGTERM that lands while starting (or right after the "listening" line)
    # must still stop the plugin server and remove the prefix, not kill us with the default action.
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    emu = Emulator(workers=args.workers, prefix=prefix, log_path=args.log_file, read_timeout=args.read_timeout,
                   log_level=args.log_level, echo_log=True, upstream_override=overrides)
    try:
        url = emu.start(args.config, specs, port=args.port, host=args.host)
    except (DeclarativeError, PluginServerError) as e:
        print(f"Error: {e}", file=sys.stderr)
        emu.stop()
        return 1
    except OSError as e:
        # Lost a race for the port between the probe and the bind.
        print(f"Error: {port_in_use(args.host, args.port) or e}", file=sys.stderr)
        emu.stop()
        return 1
    print(f"kong host emulator listening on {url} (prefix {prefix})", flush=True)
    done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
