"""`kong-oidc-py`: kong-pdk's dedicated plugin server for the `oidc` plugin.

Kong runs it twice (../shared/kong-plugin-server.md 1.1-1.2):
  query command:  kong-oidc-py --dump            -> plugin info as JSON on stdout
  start command:  kong-oidc-py --kong-prefix /usr/local/kong --socket-name oidc.socket

Operators also run `kong-oidc-py check kong.yml` and `kong-oidc-py explain ...` (kong_oidc_py/cli):
a first argument naming one of those commands goes there, before kong-pdk parses anything.

PRIORITY 1050 is where Kong Enterprise's openid-connect runs: after Kong's other auth plugins
(jwt 1450, key-auth 1250, basic-auth 1100) and before `acl` (950), which is our fail-closed guard.

Listener (the loop that reads Kong's socket): in the default threaded mode, ours
(edge/listener.py), put in place of kong-pdk's `UnixStreamServer`; kong-pdk still parses the
command line, keeps the instances and answers `--dump`. Our options, removed before kong-pdk
parses the rest:
  --kong-pdk-listener     kong-pdk 0.36's own threaded listener instead (with pdk_fixes applied)
  --step-timeout SECONDS  how long a handler waits for Kong's next Step (default 75)
  --max-threads N         threads reading connections or running events (default 1024)
`-m` (multiprocessing) always runs kong-pdk's listener and its process pool: our listener runs
handlers on its own threads, which -m replaces by pickling each event to a pool process.
"""

from __future__ import annotations

import logging
import sys

from kong_oidc_py import PLUGIN_NAME, __version__

PRIORITY = 1050


def _take_option(args: list[str], name: str, with_value: bool) -> str | bool | None:
    """Remove `name` (and its value: `--x v` or `--x=v`) from args; the value, True, or None."""
    for i, arg in enumerate(args):
        if arg == name:
            del args[i]
            if not with_value:
                return True
            if i >= len(args):
                raise SystemExit(f"kong-oidc-py: {name} needs a value")
            return args.pop(i)
        if with_value and arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def _listener_options(args: list[str]) -> dict | None:
    """Our listener's options, or None when kong-pdk's own listener must run."""
    kong_pdk_listener = _take_option(args, "--kong-pdk-listener", False)
    step_timeout = _take_option(args, "--step-timeout", True)
    max_threads = _take_option(args, "--max-threads", True)
    options: dict = {}
    try:
        if step_timeout is not None:
            options["step_timeout"] = float(step_timeout)  # type: ignore[arg-type]
            if not options["step_timeout"] > 0:
                raise ValueError
        if max_threads is not None:
            options["max_threads"] = int(max_threads)  # type: ignore[arg-type]
            if options["max_threads"] < 2:
                raise ValueError
    except ValueError:
        raise SystemExit("kong-oidc-py: --step-timeout must be a positive number of seconds and "
                         "--max-threads an integer >= 2") from None
    if kong_pdk_listener or "-m" in args or "--multiprocessing" in args:
        return None
    return options


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("check", "explain"):
        from kong_oidc_py.cli import main as cli_main

        raise SystemExit(cli_main(args))
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
    listener_options = _listener_options(args)
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

    from kong_pdk import cli

    if listener_options is not None and not dumping:
        from kong_oidc_py.edge.listener import listener_factory

        cli.UnixStreamServer = listener_factory(**listener_options)
    elif not dumping:
        multiprocess = "-m" in args or "--multiprocessing" in args
        # -m is a mode of its own (info); --kong-pdk-listener is the weaker choice (a warning,
        # replayed to Kong once). At info under -m also because the pool processes fork after
        # this line and would each replay a queued warning.
        logging.getLogger("kong_oidc_py").log(
            logging.INFO if multiprocess else logging.WARNING,
            "kong-oidc-py: serving with kong-pdk's own listener (%s): a thread per event and a "
            "server-wide lock until each handler's first PDK call",
            "-m" if multiprocess else "--kong-pdk-listener")

    if dumping:
        _dump(lambda: cli.start_dedicated_server(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA))
        return
    cli.start_dedicated_server(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA)


def _dump(run_kong_pdk_dump) -> None:
    """Let kong-pdk write its plugin info, then add the schema's entity checks (edge/schema.py):
    the phases and envelope stay kong-pdk's own, only the rules are ours."""
    import contextlib
    import io
    import json

    from kong_oidc_py.edge.schema import with_entity_checks

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            run_kong_pdk_dump()
        except SystemExit as done:  # kong-pdk exits after printing the dump
            if done.code not in (None, 0):
                raise
    sys.stdout.write(json.dumps(with_entity_checks(json.loads(buffer.getvalue()))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
