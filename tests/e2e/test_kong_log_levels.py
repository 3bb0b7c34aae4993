"""The plugin's warnings reach Kong's error log at warn level, which Kong's default level shows."""

import pytest

from tests.support.stack import kong_config, oidc, route, start_stack
from tests.upstream.echo import EchoUpstream

pytestmark = pytest.mark.integration


def test_a_start_warning_is_replayed_through_kong_log_warn_on_the_next_request(oidc_provider, tmp_path):
    # Opting out of the audience check is allowed but warned about at instance start.
    with EchoUpstream() as echo:
        cfg = kong_config(echo.port, routes=[route("api", "/api", oidc(oidc_provider.issuer, allow_any_audience=True))])
        with start_stack(cfg, str(tmp_path)) as (emu, client):
            client.get("/api/x")
            client.get("/api/x")
            lines = [line for line in emu.error_log().splitlines() if "[kong] [oidc]" in line]
    warn = [line for line in lines if "[warn]" in line and "audience" in line]
    assert len(warn) == 1, lines
