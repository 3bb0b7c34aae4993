"""`make demo`: the local stack of the root kong.yml, for a person to try.

Starts the real oidc-provider (issuer http://127.0.0.1:9100), the echo upstream (:9000) and the
Kong host emulator (:8000) running the real `kong-oidc-py` plugin server, then prints commands to
copy. Ctrl-C stops everything. `--check` runs the printed scenarios once and exits (used by tests).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading

import httpx

from tests.kong_host import Emulator
from tests.support.idp import DEFAULT_RESOURCE, OidcProvider
from tests.support.stack import REPO_ROOT, oidc_spec
from tests.upstream.echo import EchoUpstream

KONG_PORT, ECHO_PORT, IDP_PORT = 8000, 9000, 9100


def instructions(issuer: str) -> str:
    kong = f"http://127.0.0.1:{KONG_PORT}"
    token = (
        f"TOKEN=$(curl -s -u m2m:m2m-secret -d grant_type=client_credentials -d 'scope=read write admin' "
        f"-d resource={DEFAULT_RESOURCE} {issuer}/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    read_only = (
        f"RTOKEN=$(curl -s -u m2m:m2m-secret -d grant_type=client_credentials -d scope=read "
        f"-d resource={DEFAULT_RESOURCE} {issuer}/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    return f"""
kong-oidc-py demo is running:
  Kong (emulated)  {kong}     config: kong.yml
  OpenID provider  {issuer}   clients m2m/m2m-secret (API), web/web-secret (browser); user alice/alice-password
  echo upstream    http://127.0.0.1:{ECHO_PORT}

Get client-credentials tokens (all scopes, and read only):
  {token}
  {read_only}

Call the routes:
  curl -i {kong}/api/orders                                      # 401, WWW-Authenticate: Bearer realm="kong"
  curl -i -H "Authorization: Bearer $TOKEN" {kong}/api/orders    # 200, upstream sees X-Authenticated-Userid, X-Client-Id, X-Scopes
  curl -i -H "Authorization: Bearer $RTOKEN" {kong}/api/admin    # 403 insufficient_scope, scope="admin"
  curl -i -H "Authorization: Bearer $TOKEN" {kong}/api/admin     # 200 (scope admin, group machines)
  curl -i {kong}/catalog/public/items                            # 200 without a token (public policy)
  curl -i -X POST -H "Authorization: Bearer $RTOKEN" {kong}/catalog/items   # 403: writes need scope write
  curl -i -H "Authorization: Bearer not.a.jwt" {kong}/api/orders  # 401 invalid_token
  curl -i -H "Accept: application/json" {kong}/app/               # 401: API clients are never redirected

In a browser: open {kong}/app/hello?x=1, sign in as alice / alice-password, land back on /app/hello?x=1;
sign out at {kong}/app/logout.

Every request writes one JSON log line (Kong's serializer shape, with the plugin's "oidc" fields)
to the emulator's log file printed below. Ctrl-C stops the demo.
"""


def check(issuer: str) -> int:
    """Run the scenarios the banner prints; return the number that misbehaved."""
    kong = f"http://127.0.0.1:{KONG_PORT}"
    tokens = {}
    for name, scope in (("all", "read write admin"), ("read", "read")):
        response = httpx.post(f"{issuer}/token", auth=("m2m", "m2m-secret"),
                              data={"grant_type": "client_credentials", "scope": scope, "resource": DEFAULT_RESOURCE})
        tokens[name] = response.json()["access_token"]
    cases = [
        ("GET", "/api/orders", None, {}, 401),
        ("GET", "/api/orders", "all", {}, 200),
        ("GET", "/api/admin", "read", {}, 403),
        ("GET", "/api/admin", "all", {}, 200),
        ("GET", "/catalog/public/items", None, {}, 200),
        ("POST", "/catalog/items", "read", {}, 403),
        ("GET", "/app/", None, {"Accept": "application/json"}, 401),
        ("GET", "/app/hello?x=1", None, {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, 302),
        ("GET", "/health", None, {}, 200),
    ]
    failures = 0
    with httpx.Client(base_url=kong, timeout=10) as client:
        for method, path, token, headers, expected in cases:
            h = dict(headers)
            if token:
                h["Authorization"] = f"Bearer {tokens[token]}"
            status = client.request(method, path, headers=h).status_code
            ok = status == expected
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {method:4} {path:24} token={token or '-':4} -> {status} (want {expected})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="run the demo scenarios once and exit")
    parser.add_argument("--config", default=str(REPO_ROOT / "kong.yml"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kong-oidc-demo-") as prefix, \
            OidcProvider(port=IDP_PORT) as idp, EchoUpstream(port=ECHO_PORT):
        emu = Emulator(prefix=prefix, workers=2, read_timeout=30)
        try:
            emu.start(args.config, [oidc_spec(prefix)], port=KONG_PORT)
            if args.check:
                return 1 if check(idp.issuer) else 0
            print(instructions(idp.issuer))
            print(f"log file: {emu.log_path}", flush=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
            return 0
        finally:
            emu.stop()


if __name__ == "__main__":
    sys.exit(main())
