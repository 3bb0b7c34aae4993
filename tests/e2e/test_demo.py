"""`make demo` must keep working: the root kong.yml, served by the demo stack, behaves as the banner says."""

import subprocess
import sys

import pytest

from tests.support.ports import free_port
from tests.support.stack import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_scenarios_behave_as_printed():
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--check"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BAD" not in result.stdout


def test_emulator_runs_on_its_own_with_the_root_kong_yml(tmp_path):
    # `python -m tests.kong_host --config kong.yml --port N` registers this project's plugin server.
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kong_host", "--config", "kong.yml", "--port", str(port), "--prefix", str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert "listening on" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/orders", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer realm=")
    finally:
        proc.terminate()
        proc.wait(20)


def test_bearer_call_on_a_browser_route_costs_no_extra_pdk_call(tmp_path):
    # On a route that also does browser login, an API client with a token must not pay for
    # the browser flow's path lookup: same call count as a bearer-only route (4: headers,
    # path check, guard marker, log; this route maps identity headers, so 5).
    from tests.kong_host import Emulator
    from tests.support.idp import DEFAULT_RESOURCE, OidcProvider
    from tests.support.stack import oidc_spec
    from tests.upstream.echo import EchoUpstream
    import httpx

    with OidcProvider() as idp, EchoUpstream() as echo:
        cfg = {
            "_format_version": "3.0",
            "services": [{"name": "s", "url": f"http://127.0.0.1:{echo.port}", "routes": [{
                "name": "app", "paths": ["/app", "/callback"], "strip_path": False,
                "plugins": [{"name": "oidc", "config": {
                    "issuer": idp.issuer, "auth_methods": ["authorization_code", "session", "bearer"],
                    "client_id": "web", "client_secret": "web-secret",
                    "redirect_uri": "http://127.0.0.1:8000/callback",
                    "session_secret": "s" * 40, "session_cookie_secure": False,
                    "audience_required": [DEFAULT_RESOURCE],
                    "upstream_headers_claims": ["sub"], "upstream_headers_names": ["X-User"],
                }}],
            }]}],
        }
        emu = Emulator(prefix=str(tmp_path), workers=1)
        try:
            url = emu.start(cfg, [oidc_spec(str(tmp_path))])
            token = idp.client_credentials_token()
            # The instance's first request also replays its start warnings through kong.log
            # (edge/kong_log.py: cookie sessions without revocation warn): measure the second.
            httpx.get(url + "/app/x", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            response = httpx.get(url + "/app/x", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert response.status_code == 200
            assert emu.log_lines(wait_for=2)[-1]["pdk_calls"]["oidc"] == 5
        finally:
            emu.stop()
