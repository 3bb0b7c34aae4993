"""IdP failures show in Kong's error log at its default level (notice), end to end.

Kong copies the plugin server's stdout into its error log at `info` (`grab_logs` in Kong's
plugin-server process module; shared/kong-plugin-server.md section 1.3), which the default
`log_level = notice` hides; the plugin replays each IdP state change through `kong.log.err` /
`kong.log.warn` on the next request instead.
"""

from __future__ import annotations

import pytest

from tests.support.fake_idp import FakeIdP
from tests.support.keys import claims, rsa_key
from tests.support.stack import kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

KEY = rsa_key()


def test_a_failing_jwks_is_in_kongs_default_error_log_with_its_cause_and_the_deny_names_it(echo, tmp_path):
    with FakeIdP() as idp:
        idp.set_keys(KEY)
        idp.fail[idp.jwks_path] = 503
        cfg = kong_config(echo.port, routes=[route("api", "/api", oidc(idp.issuer, audience_required=["api"]))])
        with start_stack(cfg, str(tmp_path)) as (emu, client):
            assert emu.log.level == "notice"
            before = len(emu.log_lines())
            token = KEY.sign(claims(idp.issuer))
            statuses = [client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code
                        for _ in range(3)]
            lines = emu.log_lines(wait_for=before + 3)[before:]
            error_log = emu.error_log()
    assert statuses == [401, 401, 401]
    assert all(line["oidc"]["reason"] == "keys_unavailable" for line in lines)
    assert all("last IdP failure: jwks http_status" in line["oidc"]["detail"] for line in lines)
    failing = [ln for ln in error_log.splitlines() if "jwks failing (http_status)" in ln]
    assert len(failing) == 1  # once, not per request
    assert "[err]" in failing[0] and f"{idp.jwks_uri} answered HTTP 503" in failing[0]
