"""Operator commands of the `kong-oidc-py` console script (edge/server.py dispatches here when
the first argument is one of them; Kong's own `--dump` / `--kong-prefix` calls never are):

  kong-oidc-py check kong.yml [--offline] [--json] [--strict]
  kong-oidc-py explain [kong.yml] [--route R | --service S | --config JSON] [-X METHOD] PATH
                       [-H 'Name: value'] [--token T | --token-file F] [--jwks F] [--discovery F] [--json]

check exits 0 (clean), 1 (errors) or 2 (warnings, with --strict); explain exits 0 when it
could explain the request (whatever the decision) and 1 when it could not.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

COMMANDS = ("check", "explain")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kong-oidc-py", description="kong-oidc-py operator commands")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate every oidc instance of a declarative kong.yml",
                           description="Validate every oidc plugin instance of a Kong declarative file "
                                       "(all config rules, the acl guard, lints) and probe each issuer.")
    check.add_argument("file", help="kong.yml or kong.json")
    check.add_argument("--offline", action="store_true", help="do not fetch discovery and JWKS")
    check.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    check.add_argument("--strict", action="store_true", help="exit 2 when there are warnings (and no errors)")

    ex = sub.add_parser("explain", help="trace the plugin's decision for one request",
                        description="Run one request through the real decision code and print every step.")
    ex.add_argument("file", nargs="?", help="kong.yml holding the instance (or use --config)")
    ex.add_argument("path", help="request path, optionally with ?query")
    ex.add_argument("--route", help="route name or id: the oidc instance Kong runs on it (route > service > global)")
    ex.add_argument("--service", help="service name or id: its service-level oidc instance")
    ex.add_argument("--config", help="inline plugin config as JSON/YAML, or @FILE")
    ex.add_argument("-X", "--method", default="GET")
    ex.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    ex.add_argument("--token", help="the access token, or - to read it from stdin (prefer --token-file)")
    ex.add_argument("--token-file", help="file holding the access token, or - for stdin")
    ex.add_argument("--scheme", default="https", choices=("http", "https"))
    ex.add_argument("--jwks", help="JWKS JSON file: use these keys instead of fetching them (offline)")
    ex.add_argument("--discovery", help="discovery JSON file: use this metadata instead of fetching it")
    ex.add_argument("--json", action="store_true")
    return parser


def _check(args: argparse.Namespace) -> int:
    from kong_oidc_py.cli.check import check_file
    from kong_oidc_py.cli.findings import Report
    from kong_oidc_py.cli.kongfile import KongFileError, load

    report = Report(args.file)
    try:
        kf = load(args.file)
    except KongFileError as err:
        report.add("error", "file_unreadable", "file", str(err))
    else:
        check_file(kf, report, offline=args.offline)
    sys.stdout.write(report.dumps(args.strict) if args.json else report.render(args.strict))
    return report.exit_code(args.strict)


def _inline_config(value: str) -> dict[str, Any]:
    import yaml

    from kong_oidc_py.cli.explain import ExplainError

    text = value
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as err:
            raise ExplainError(f"{value[1:]}: cannot read ({err.strerror or type(err).__name__})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ExplainError("--config is not valid JSON/YAML") from None
    if not isinstance(doc, dict):
        raise ExplainError("--config must be a mapping (the plugin's config)")
    return doc


def _explain(args: argparse.Namespace) -> int:
    from kong_oidc_py.cli import explain as ex
    from kong_oidc_py.cli.kongfile import KongFileError, load

    secrets: list[str] = []
    try:
        token = ex.read_token(args.token, args.token_file)
        if args.file is None and args.config is None:
            raise ex.ExplainError("give a kong.yml (with --route/--service) or --config")
        kf = load(args.file) if args.file else None
        inline = _inline_config(args.config) if args.config else None
        selected = ex.select_instance(kf, inline, args.route, args.service)
        shown = token or _token_in_headers(args.header)
        secrets = sorted(set(ex.secrets_of(shown, selected.raw) + _header_secrets(args.header)), key=len, reverse=True)
        result = ex.explain(
            selected,
            {"method": args.method, "target": args.path, "headers": args.header, "token": token, "scheme": args.scheme},
            jwks_file=args.jwks, discovery_file=args.discovery, kongfile=kf,
        )
        if result.token_hash is None and shown:
            import hashlib

            result.token_hash = hashlib.sha256(shown.encode()).hexdigest()[:12]
            result.token_claims = ex._unverified_claims(shown)
    except (ex.ExplainError, KongFileError) as err:
        sys.stderr.write(ex.redact(f"kong-oidc-py explain: {err}\n", secrets))
        return 1
    text = json.dumps(ex.to_json(result), indent=2, sort_keys=True, default=str) + "\n" if args.json else ex.render(result)
    sys.stdout.write(ex.redact(text, secrets))
    return 0


def _token_in_headers(headers: list[str]) -> str | None:
    for h in headers:
        name, _, value = h.partition(":")
        scheme, _, credential = value.strip().partition(" ")
        if name.strip().lower() == "authorization" and scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    return None


def _header_secrets(headers: list[str]) -> list[str]:
    """Credentials given with -H (any Authorization credential, cookie values): never echoed."""
    out = []
    for h in headers:
        name, _, value = h.partition(":")
        name = name.strip().lower()
        if name in ("authorization", "proxy-authorization", "dpop"):
            cred = value.strip().partition(" ")[2].strip()
            if len(cred) >= 4:
                out.append(cred)
                out.extend(seg for seg in cred.split(".") if len(seg) >= 8)
        elif name == "cookie":
            for pair in value.split(";"):
                v = pair.partition("=")[2].strip()
                if len(v) >= 8:
                    out.append(v)
    return sorted(set(out), key=len, reverse=True)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
    return _explain(args)
