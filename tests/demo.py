"""`make demo`: the local stack of the root kong.yml, for a person to try.

Starts the real oidc-provider (issuer http://127.0.0.1:9100), the echo upstream (:9000) and the
Kong host emulator (:8000) running the real `kong-oidc-py` plugin server, then prints commands to
copy. Ctrl-C stops everything. `--check` (`make demo-check`) runs every printed scenario once and
exits non-zero if one misbehaves. Ports come from flags; kong.yml names the default ones, so the
demo rewrites them into a copy of the file inside its temporary prefix (removed at exit).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.kong_host import Emulator
from tests.kong_host.ports import port_in_use
from tests.support.idp import DEFAULT_RESOURCE, OidcProvider, ProviderStartError
from tests.support.stack import REPO_ROOT, oidc_spec
from tests.upstream.echo import EchoUpstream

# The ports kong.yml and the README name.
KONG_PORT, ECHO_PORT, IDP_PORT = 8000, 9000, 9100


@dataclass(frozen=True)
class Case:
    """One row of the README's Quickstart table (and of the banner)."""

    method: str
    path: str
    token: str | None      # "TOKEN" (all scopes), "RTOKEN" (read only), a literal, or None
    headers: tuple[tuple[str, str], ...]
    status: int
    result: str
    in_banner: bool = True  # False: checked, but a browser step rather than a curl line

    def curl(self, kong: str) -> str:
        parts = ["curl -i"]
        if self.method != "GET":
            parts.append(f"-X {self.method}")
        if self.token:
            value = f"${self.token}" if self.token in ("TOKEN", "RTOKEN") else self.token
            parts.append(f'-H "Authorization: Bearer {value}"')
        parts += [f'-H "{k}: {v}"' for k, v in self.headers]
        return " ".join(parts) + f" {kong}{self.path}"


CASES: tuple[Case, ...] = (
    Case("GET", "/api/orders", None, (), 401, 'WWW-Authenticate: Bearer realm="kong"'),
    Case("GET", "/api/orders", "TOKEN", (), 200, "upstream sees X-Authenticated-Userid, X-Client-Id, X-Scopes"),
    Case("GET", "/api/admin", "RTOKEN", (), 403, 'insufficient_scope, scope="admin"'),
    Case("GET", "/api/admin", "TOKEN", (), 200, "scope admin, group machines"),
    Case("GET", "/catalog/public/items", None, (), 200, "no token needed (public policy)"),
    Case("POST", "/catalog/items", "RTOKEN", (), 403, "writes need scope write"),
    Case("GET", "/api/orders", "not.a.jwt", (), 401, "invalid_token"),
    Case("GET", "/app/", None, (("Accept", "application/json"),), 401, "API clients are never redirected"),
    Case("GET", "/app/hello?x=1", None, (("Accept", "text/html"), ("Sec-Fetch-Mode", "navigate")), 302,
         "a browser navigation goes to the IdP", in_banner=False),
    Case("GET", "/health", None, (), 200, "no plugin on this route", in_banner=False),
)


def token_command(var: str, scope: str, issuer: str) -> str:
    scope_arg = f"'scope={scope}'" if " " in scope else f"scope={scope}"
    return (f"{var}=$(curl -s -u m2m:m2m-secret -d grant_type=client_credentials -d {scope_arg} "
            f"-d resource={DEFAULT_RESOURCE} {issuer}/token | python3 -c 'import json,sys; "
            f"print(json.load(sys.stdin)[\"access_token\"])')")


def instructions(issuer: str, kong_port: int = KONG_PORT, echo_port: int = ECHO_PORT) -> str:
    kong = f"http://127.0.0.1:{kong_port}"
    rows = "\n".join(f"  {c.curl(kong):<78} # {c.status} {c.result}" for c in CASES if c.in_banner)
    return f"""
kong-oidc-py demo is running:
  Kong (emulated)  {kong}     config: kong.yml
  OpenID provider  {issuer}   clients m2m/m2m-secret (API), web/web-secret (browser); user alice/alice-password
  echo upstream    http://127.0.0.1:{echo_port}

Get client-credentials tokens (all scopes, and read only):
  {token_command("TOKEN", "read write admin", issuer)}
  {token_command("RTOKEN", "read", issuer)}

Call the routes:
{rows}

In a browser: open {kong}/app/hello?x=1, sign in as alice / alice-password, land back on /app/hello?x=1;
sign out at {kong}/app/logout.

Every request writes one JSON log line (Kong's serializer shape, with the plugin's "oidc" fields)
to the emulator's log file printed below. Ctrl-C stops the demo.
"""


def check(issuer: str, kong_port: int) -> int:
    """Run every scenario; return the number that misbehaved."""
    kong = f"http://127.0.0.1:{kong_port}"
    tokens = {}
    for name, scope in (("TOKEN", "read write admin"), ("RTOKEN", "read")):
        response = httpx.post(f"{issuer}/token", auth=("m2m", "m2m-secret"),
                              data={"grant_type": "client_credentials", "scope": scope, "resource": DEFAULT_RESOURCE})
        tokens[name] = response.json()["access_token"]
    failures = 0
    with httpx.Client(base_url=kong, timeout=10) as client:
        for case in CASES:
            h = dict(case.headers)
            if case.token:
                h["Authorization"] = f"Bearer {tokens.get(case.token, case.token)}"
            status = client.request(case.method, case.path, headers=h).status_code
            ok = status == case.status
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {case.method:4} {case.path:24} token={case.token or '-':9} "
                  f"-> {status} (want {case.status})", flush=True)
    return failures


def localized_config(source: Path, dest: Path, kong_port: int, echo_port: int, idp_port: int) -> Path:
    """kong.yml with the default demo ports replaced by the chosen ones."""
    text = source.read_text()
    for default, chosen in ((KONG_PORT, kong_port), (ECHO_PORT, echo_port), (IDP_PORT, idp_port)):
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{chosen}")
    dest.write_text(text)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="run the demo scenarios once and exit")
    parser.add_argument("--config", default=str(REPO_ROOT / "kong.yml"))
    parser.add_argument("--kong-port", type=int, default=KONG_PORT)
    parser.add_argument("--upstream-port", type=int, default=ECHO_PORT)
    parser.add_argument("--idp-port", type=int, default=IDP_PORT)
    args = parser.parse_args(argv)
    ports = {"--kong-port": args.kong_port, "--upstream-port": args.upstream_port, "--idp-port": args.idp_port}
    for flag, port in ports.items():
        busy = port_in_use("127.0.0.1", port)
        if busy:
            print(f"Error: {busy} (use {flag} to pick another)", file=sys.stderr)
            return 1

    # Before anything starts: a SIGTERM during start-up must still reach the cleanup below
    # (the default action would leave the IdP, the plugin server and the temp dir behind).
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="kong-oidc-demo-") as prefix:
        try:
            idp = OidcProvider(port=args.idp_port).__enter__()
        except ProviderStartError as exc:
            print(f"Error: the test IdP did not start: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        try:
            with EchoUpstream(port=args.upstream_port):
                config = localized_config(Path(args.config), Path(prefix) / "kong.yml",
                                          args.kong_port, args.upstream_port, args.idp_port)
                emu = Emulator(prefix=prefix, workers=2, read_timeout=30)
                try:
                    emu.start(str(config), [oidc_spec(prefix)], port=args.kong_port)
                    if args.check:
                        return 1 if check(idp.issuer, args.kong_port) else 0
                    print(instructions(idp.issuer, args.kong_port, args.upstream_port))
                    print(f"log file: {emu.log_path} (removed when the demo stops)", flush=True)
                    try:
                        stop.wait()
                    except KeyboardInterrupt:
                        pass
                    return 0
                finally:
                    emu.stop()
        finally:
            idp.close()


if __name__ == "__main__":
    sys.exit(main())
