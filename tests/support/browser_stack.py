"""The browser-login stack for end-to-end tests: chromium -> emulated Kong -> real plugin server
-> real oidc-provider, and the page helpers the browser suites share.

Every stack listens on 127.0.0.1:<port> with the port picked before start, so the plugin's
redirect_uri (http://127.0.0.1:<port>/app/callback) is known when the config is written.
Each route is its own "application": /app (main), /idle (3 s idle timeout), /post
(client_secret_post); callbacks and logout live under the route's own prefix.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, Iterator

from tests.kong_host import Emulator
from tests.support.idp import ALICE, DEFAULT_RESOURCE, LOGIN_PASSWORD, LOGIN_SUBMIT, LOGIN_USERNAME, OidcProvider
from tests.support.ports import free_port
from tests.support.stack import kong_config, oidc, oidc_spec, route
from tests.upstream.echo import EchoUpstream

SESSION_SECRET = "browser-suite-session-secret-0123456789abcdef"
IDENTITY = {
    "upstream_headers_claims": ["sub", "groups"],
    "upstream_headers_names": ["X-User-Id", "X-Groups"],
}
SHORT_TTL = 4  # provider AccessToken TTL for the refresh scenarios (seconds)
# Each route is an application with its own callback (any loopback port matches).
IDP_CONFIG = {
    "redirect_uris": [f"http://127.0.0.1/{app}/callback" for app in ("app", "idle", "post")],
    "post_logout_redirect_uris": ["http://127.0.0.1/logged-out"],
}


def app_plugin(issuer: str, base: str, prefix: str, **extra: Any) -> dict:
    conf: dict[str, Any] = {
        "auth_methods": ["authorization_code", "session", "bearer"],
        "client_id": "web",
        "client_secret": "web-secret",
        "redirect_uri": f"{base}{prefix}/callback",
        "session_secret": SESSION_SECRET,
        "session_cookie_secure": False,
        "logout_uri_suffix": "/logout",
        "logout_redirect_uri": f"{base}/logged-out",
        "audience_required": [DEFAULT_RESOURCE],  # bearer calls carry the IdP's API tokens
        **IDENTITY,
    }
    conf.update(extra)
    return oidc(issuer, **conf)


class Stack:
    """One emulated Kong (own plugin server process) on a known port."""

    def __init__(self, emu: Emulator, base: str, echo: EchoUpstream) -> None:
        self.emu, self.base, self.echo = emu, base, echo

    def url(self, path: str) -> str:
        return self.base + path

    def log_lines(self) -> list[dict]:
        return self.emu.log_lines()

    def oidc_logs(self) -> list[dict]:
        return [line["oidc"] for line in self.emu.log_lines() if isinstance(line.get("oidc"), dict)]

    def refresh_count(self) -> int:
        return sum(1 for o in self.oidc_logs() if o.get("refreshed"))


@contextlib.contextmanager
def start_on_known_port(routes_for: Callable[[str], list[dict]], echo: EchoUpstream, prefix: str, *,
                        port: int | None = None, workers: int = 2) -> Iterator[Stack]:
    """An emulated Kong whose port is picked before start: `routes_for(base_url)` builds the
    routes, so each application's redirect_uri can name the gateway's own address."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    emu = Emulator(prefix=prefix, workers=workers, read_timeout=15)
    try:
        emu.start(kong_config(echo.port, routes=routes_for(base)), [oidc_spec(prefix)], port=port)
        yield Stack(emu, base, echo)
    finally:
        emu.stop()


def start_browser_stack(issuer: str, echo: EchoUpstream, prefix: str, *, app_extra: dict | None = None,
                        port: int | None = None, workers: int = 2) -> contextlib.AbstractContextManager[Stack]:
    """The three applications (/app, /idle, /post) and the /logged-out page; `app_extra` is
    added to each application's plugin config."""
    extra = dict(app_extra or {})
    policies = {"policies": [
        {"name": "admins-area", "paths": ["/app/admin"], "groups_required": ["admins"]},
        {"name": "auditors-area", "paths": ["/app/audit"], "groups_required": ["auditors"]},
    ]}

    def routes(base: str) -> list[dict]:
        return [
            route("app", "/app", app_plugin(issuer, base, "/app", **policies, **extra)),
            route("idle", "/idle", app_plugin(issuer, base, "/idle", session_cookie_name="idle_session",
                                              session_idling_timeout=3, **extra)),
            route("post", "/post", app_plugin(issuer, base, "/post", client_id="web-post",
                                              client_secret="web-post-secret",
                                              token_endpoint_auth_method="client_secret_post",
                                              session_cookie_name="post_session", **extra)),
            route("out", "/logged-out"),
        ]

    return start_on_known_port(routes, echo, prefix, port=port, workers=workers)


# -- browser helpers --------------------------------------------------------------------------


def sign_in(page, user=ALICE) -> None:
    page.wait_for_selector(LOGIN_USERNAME)
    page.fill(LOGIN_USERNAME, user.username)
    page.fill(LOGIN_PASSWORD, user.password)
    page.click(LOGIN_SUBMIT)


def login(page, url: str, user=ALICE) -> dict:
    """Visit `url`, sign in at the provider, return the echo JSON of the page we land on."""
    page.goto(url)
    sign_in(page, user)
    page.wait_for_url(url)
    return echo_of(page)


def visit_through_login(page, url: str, idp: OidcProvider) -> list[str]:
    """Visit `url` while the provider still has its own session (silent SSO): returns the
    authorization requests the navigation went through and asserts it landed back on `url`."""
    seen: list[str] = []

    def record(request) -> None:
        if request.url.startswith(idp.authorization_endpoint + "?"):  # not the provider's own /auth/<uid> resume
            seen.append(request.url)

    page.on("request", record)
    try:
        response = page.goto(url)
        page.wait_for_url(url)
    finally:
        page.remove_listener("request", record)
    assert response.status == 200
    assert all(r.status < 500 for r in _chain(response))
    return seen


def echo_of(page) -> dict:
    return json.loads(page.inner_text("body"))


def upstream_header(echoed: dict, name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]


def page_fetch(page, url: str, **init: Any) -> dict:
    return page.evaluate(
        """async ([url, init]) => {
            const r = await fetch(url, init);
            return {status: r.status, type: r.headers.get('content-type'), body: await r.text()};
        }""",
        [url, init],
    )


def cookies_named(context, prefix: str) -> list[dict]:
    return [c for c in context.cookies() if c["name"] == prefix or c["name"].startswith(prefix + "_")]


def set_cookie_value(context, base: str, name: str, value: str) -> None:
    context.add_cookies([{"name": name, "value": value, "url": base + "/"}])


def submit_logout(page, url: str) -> None:
    page.evaluate(
        """(url) => { const f = document.createElement('form'); f.method = 'POST'; f.action = url;
                      document.body.appendChild(f); f.submit(); }""",
        url,
    )


def _chain(response) -> list:
    out, request = [], response.request
    while request is not None:
        r = request.response()
        if r is not None:
            out.append(r)
        request = request.redirected_from
    return out
