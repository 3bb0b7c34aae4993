#!/usr/bin/env python3
"""`bench`: a plugin server whose access handler makes `config.calls` x kong.request.get_method,
served by our listener (default) or kong-pdk 0.36's own (`--kong-pdk-listener`), for bench/listener.py.

    listener_server.py --kong-prefix DIR --socket-name bench.socket [--kong-pdk-listener]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Plugin:
    def __init__(self, config):
        self.calls = int(config.get("calls", 0))

    def access(self, kong):
        for _ in range(self.calls):
            kong.request.get_method()


def main() -> None:
    from kong_pdk import cli

    from kong_oidc_py.edge import pdk_fixes
    from kong_oidc_py.edge.listener import listener_factory

    args = sys.argv[1:]
    if "--kong-pdk-listener" in args:
        args.remove("--kong-pdk-listener")
    else:
        cli.UnixStreamServer = listener_factory()
    sys.argv = [sys.argv[0], *args, "--no-lua-style"]
    pdk_fixes.apply()
    cli.start_dedicated_server("bench", Plugin, "0.1.0", 0, [{"calls": {"type": "integer", "default": 0}}])


if __name__ == "__main__":
    main()
