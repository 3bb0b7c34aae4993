"""Path confusion and header aliasing end to end: emulated Kong -> real plugin server -> the echo
upstream, whose `resolved_path` shows the resource a lenient upstream serves for what it got.

The attacks: a path the plugin reads as public (or as a weaker policy) that the upstream
resolves to a protected resource (`%2F`, `;params`, `\\`), and identity headers in spellings an
upstream folds together (`X_User_Id` for `X-User-Id`), and a header list too long to read whole.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.idp import DEFAULT_RESOURCE
from tests.support.stack import kong_config, oidc, route, start_stack

pytestmark = pytest.mark.integration

IDENTITY = {"upstream_headers_claims": ["sub", "scope"], "upstream_headers_names": ["X-User-Id", "X-Scopes"]}


def policies(prefix: str) -> list[dict]:
    return [
        {"name": "pub", "paths": [f"{prefix}/pub"], "public": True},
        {"name": "admin", "paths": [f"{prefix}/admin"], "scopes_required": ["admin"]},
    ]


@pytest.fixture(scope="module")
def stack(oidc_provider, echo, tmp_path_factory):
    def plugin(prefix: str, **extra):
        return oidc(oidc_provider.issuer, audience_required=[DEFAULT_RESOURCE], scopes_required=["read"],
                    policies=policies(prefix), **IDENTITY, **extra)

    cfg = kong_config(
        echo.port,
        routes=[
            route("strict", "/strict", plugin("/strict")),
            route("lax", "/lax", plugin("/lax", allow_ambiguous_paths=True)),
            route("anon", "/anon", oidc(oidc_provider.issuer, audience_required=[DEFAULT_RESOURCE],
                                        anonymous="guest", **IDENTITY)),
            route("many", "/many", plugin("/many", allow_truncated_headers=True)),
            route("open", "/open"),
        ],
        consumers=[{"username": "guest"}],
    )
    with start_stack(cfg, str(tmp_path_factory.mktemp("kong"))) as (emu, client):
        yield emu, client


def send(stack, echo, path: str, token: str | None = None, headers: dict | list | None = None):
    """(response, the request's log line, what the upstream received or None). Both are found by
    a marker header: Kong writes the log line after the response is sent."""
    emu, client = stack
    marker = uuid.uuid4().hex
    # the marker first: the long-header-list tests must not push it out of the log's headers
    h = [("X-Test-Request", marker)]
    h += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if token is not None:
        h.append(("Authorization", f"Bearer {token}"))
    response = client.get(path, headers=h)
    line = emu.log_line_for("X-Test-Request", marker)
    upstream = next((r for r in echo.requests if ["X-Test-Request", marker] in r["headers"]), None)
    return response, line, upstream


def received(upstream: dict) -> set[str]:
    return {name.lower() for name, _ in upstream["headers"]}


# -- paths, refused by default ---------------------------------------------------------------

REFUSED = [
    ("/strict/pub/..%2Fadmin/users", "path_encoded_separator"),
    ("/strict/pub/..%2fadmin/users", "path_encoded_separator"),
    ("/strict/pub/..%252Fadmin/users", "path_encoded_separator"),
    ("/strict/pub/..%5Cadmin/users", "path_backslash"),  # Kong decodes %5C to a raw backslash
    ("/strict/pub/x;jsessionid=abc", "path_parameter"),
    ("/strict/pub/x%3Bjsessionid=abc", "path_parameter"),
]


@pytest.mark.parametrize("path,reason", REFUSED)
def test_ambiguous_path_under_a_public_policy_is_400_and_never_reaches_the_upstream(stack, echo, path, reason):
    response, line, upstream = send(stack, echo, path)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert line["oidc"]["reason"] == reason
    assert upstream is None


def test_a_parameter_cannot_take_a_path_out_of_the_admin_policy(stack, echo, oidc_provider):
    # Without the rule "/strict/admin;x=1/users" misses the admin policy (segment "admin;x=1"),
    # gets the default requirement (read), and Tomcat serves /strict/admin/users.
    response, line, upstream = send(stack, echo, "/strict/admin;x=1/users", oidc_provider.client_credentials_token(scope="read"))
    assert response.status_code == 400 and line["oidc"]["reason"] == "path_parameter" and upstream is None


def test_the_attack_would_have_reached_the_admin_resource(echo):
    # What makes the rule necessary: the echo upstream resolves the refused path to /admin.
    from tests.upstream.echo import resolve_path

    assert resolve_path("/strict/pub/..%2Fadmin/users") == "/strict/admin/users"


def test_ambiguous_path_under_a_strict_policy_is_400_even_with_an_admin_token(stack, echo, oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read admin")
    response, line, upstream = send(stack, echo, "/strict/admin/a%2Fb", token)
    assert response.status_code == 400 and line["oidc"]["reason"] == "path_encoded_separator" and upstream is None


def test_a_plain_path_still_works(stack, echo, oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read")
    response, line, upstream = send(stack, echo, "/strict/data/1", token)
    assert response.status_code == 200 and upstream["resolved_path"] == "/strict/data/1"


# -- paths, allowed and evaluated under every reading -------------------------------------------


def test_allowed_path_that_resolves_to_admin_upstream_needs_the_admin_scope(stack, echo, oidc_provider):
    path = "/lax/pub/..%2Fadmin/users"
    response, line, upstream = send(stack, echo, path)
    assert response.status_code == 401 and upstream is None
    response, line, upstream = send(stack, echo, path, oidc_provider.client_credentials_token(scope="read"))
    assert response.status_code == 403 and line["oidc"]["policy"] == "pub+admin" and upstream is None
    response, line, upstream = send(stack, echo, path, oidc_provider.client_credentials_token(scope="read admin"))
    assert response.status_code == 200
    assert upstream["resolved_path"] == "/lax/admin/users"


def test_allowed_parameter_cannot_take_a_path_out_of_the_admin_policy(stack, echo, oidc_provider):
    response, line, upstream = send(stack, echo, "/lax/admin;x=1/users", oidc_provider.client_credentials_token(scope="read"))
    assert response.status_code == 403 and "admin" in line["oidc"]["policy"] and upstream is None


def test_allowed_path_stays_public_when_every_reading_is_public(stack, echo):
    response, line, upstream = send(stack, echo, "/lax/pub/doc;v=2")
    assert response.status_code == 200 and line["oidc"]["decision"] == "public"
    assert upstream["resolved_path"] == "/lax/pub/doc"


# -- identity headers in every spelling ----------------------------------------------------------

SPOOFED = [("X_User_Id", "admin"), ("x-user_id", "admin"), ("X_Scopes", "admin"), ("X-Scopes", "admin"),
           ("X_Consumer_ID", "c1"), ("X-Consumer-Username", "root"), ("X_Authenticated_Userid", "root"),
           ("X-Anonymous-Consumer", "false"), ("X_Credential_Identifier", "k")]
SPOOFED_NAMES = {name.lower() for name, _ in SPOOFED}


def test_without_the_plugin_every_spelling_reaches_the_upstream(stack, echo):
    # Kong's nginx runs with underscores_in_headers on: the spellings do arrive upstream.
    response, _, upstream = send(stack, echo, "/open/x", headers=SPOOFED)
    assert response.status_code == 200 and SPOOFED_NAMES <= received(upstream)


def test_accepted_request_reaches_the_upstream_without_any_spoofed_spelling(stack, echo, oidc_provider):
    response, _, upstream = send(stack, echo, "/strict/data", oidc_provider.client_credentials_token(scope="read"), SPOOFED)
    assert response.status_code == 200
    names = received(upstream)
    assert names.isdisjoint(SPOOFED_NAMES - {"x-scopes"})
    assert [v for n, v in upstream["headers"] if n.lower() == "x-user-id"] == ["m2m"]
    assert [v for n, v in upstream["headers"] if n.lower() == "x-scopes"] == ["read"]


def test_public_request_reaches_the_upstream_without_any_spoofed_spelling(stack, echo):
    response, line, upstream = send(stack, echo, "/strict/pub/x", headers=SPOOFED)
    assert response.status_code == 200 and line["oidc"]["decision"] == "public"
    assert received(upstream).isdisjoint(SPOOFED_NAMES)


def test_anonymous_request_reaches_the_upstream_as_the_anonymous_consumer_only(stack, echo):
    response, line, upstream = send(stack, echo, "/anon/x", headers=SPOOFED)
    assert response.status_code == 200 and line["oidc"]["decision"] == "anonymous"
    names = received(upstream)
    assert names.isdisjoint(SPOOFED_NAMES - {"x-consumer-username", "x-anonymous-consumer"})
    assert [v for n, v in upstream["headers"] if n.lower() == "x-consumer-username"] == ["guest"]
    assert [v for n, v in upstream["headers"] if n.lower() == "x-anonymous-consumer"] == ["true"]


def test_rejected_request_with_spoofed_spellings_never_reaches_the_upstream(stack, echo):
    response, line, upstream = send(stack, echo, "/strict/data", "not-a-jwt", SPOOFED)
    assert response.status_code == 401 and upstream is None


# -- truncated header lists -------------------------------------------------------------------------

def many_headers(hidden: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # 1000 junk headers first: Kong's get_headers(1000) never shows what comes after them.
    return [(f"X-Junk-{i}", "1") for i in range(1000)] + hidden


def test_a_header_list_kong_cuts_short_is_400(stack, echo, oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read")
    response, line, upstream = send(stack, echo, "/strict/data", token, many_headers([("X_User_Id", "admin")]))
    assert response.status_code == 400 and line["oidc"]["reason"] == "headers_truncated" and upstream is None


def test_allowed_truncated_list_clears_hidden_spellings_of_owned_headers(stack, echo, oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read")
    hidden = [("X_User_Id", "admin"), ("x-user_id", "admin"), ("X_Consumer_ID", "c1")]
    # the token goes first so that the plugin sees it
    headers = [("Authorization", f"Bearer {token}")] + many_headers(hidden)
    response, line, upstream = send(stack, echo, "/many/data", headers=headers)
    assert response.status_code == 200, response.text
    assert received(upstream).isdisjoint({"x_user_id", "x-user_id", "x_consumer_id"})
    assert [v for n, v in upstream["headers"] if n.lower() == "x-user-id"] == ["m2m"]


# -- PDK economy -----------------------------------------------------------------------------


def test_stripping_spoofed_spellings_costs_no_extra_pdk_call(stack, echo, oidc_provider):
    token = oidc_provider.client_credentials_token(scope="read")
    _, clean, _ = send(stack, echo, "/strict/data", token)
    response, spoofed, _ = send(stack, echo, "/strict/data", token, SPOOFED)
    assert response.status_code == 200
    # the clears ride in the one set_headers call (empty arrays), not one clear_header each
    assert spoofed["pdk_calls"]["oidc"] == clean["pdk_calls"]["oidc"] == 5
