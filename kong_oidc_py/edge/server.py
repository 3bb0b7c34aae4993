"""`kong-oidc-py`: kong-pdk's dedicated plugin server for the `oidc` plugin.

Kong runs it twice (../shared/kong-plugin-server.md 1.1-1.2):
  query command:  kong-oidc-py --dump            -> plugin info as JSON on stdout
  start command:  kong-oidc-py --kong-prefix /usr/local/kong --socket-name oidc.socket

PRIORITY 1050 is where Kong Enterprise's openid-connect runs: after Kong's other auth plugins
(jwt 1450, key-auth 1250, basic-auth 1100) and before `acl` (950), which is our fail-closed guard.
"""

from __future__ import annotations

import logging
import sys

from kong_oidc_py import PLUGIN_NAME, __version__

PRIORITY = 1050


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from kong_oidc_py.edge.metrics_server import MetricsArgsError, pop_metrics_args

    try:
        args, metrics_settings = pop_metrics_args(args)
    except MetricsArgsError as exc:
        sys.stderr.write(f"kong-oidc-py: {exc}\n")
        raise SystemExit(2) from None
    dumping = "--dump" in args or "-dump" in args
    if not dumping and ("-g" in args or "--gevent" in args):
        # kong-pdk never monkey-patches: in gevent mode one IdP fetch (httpx, blocking) would
        # stall every request of the process. Threads (default) or -m processes only.
        sys.stderr.write("kong-oidc-py: -g/--gevent is not supported (blocking IdP calls would "
                         "serialize all requests); use the default threaded mode or -m\n")
        raise SystemExit(2)
    # Python-style PDK returns (values, not (value, err) tuples); with real Kong err is never
    # set anyway (shared doc 2.7), and this silences kong-pdk's deprecation notice.
    if "--no-lua-style" not in args:
        args.append("--no-lua-style")
    sys.argv = [sys.argv[0], *args]

    from kong_oidc_py.edge import pdk_fixes
    from kong_oidc_py.edge.handler import Plugin
    from kong_oidc_py.edge.schema import SCHEMA

    if not dumping:
        # kong-pdk logs to stdout and Kong copies those lines into its error log at info level;
        # our own lines go the same way.
        logging.basicConfig(
            stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
        )
        pdk_fixes.apply()
        from kong_oidc_py.edge import kong_log

        kong_log.install()
        if metrics_settings is not None:
            from kong_oidc_py.edge import metrics_server

            multiprocess = "-m" in args or "--multiprocessing" in args
            if multiprocess:
                metrics_server.prepare_multiprocess()
            # Before kong-pdk forks its -m pool, so every process records.
            metrics_server.start(metrics_settings, multiprocess=multiprocess)

    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA)


if __name__ == "__main__":
    main()
