"""Traditional router behaviour through the proxy (no plugin servers)."""

from __future__ import annotations

from .conftest import config


def service(port, routes, path=None):
    url = f"http://127.0.0.1:{port}" + (path or "")
    return {"name": "svc" + (path or "").replace("/", "-"), "url": url, "routes": routes}


def start(start_emulator, echo, services):
    return start_emulator({"_format_version": "3.0", "services": services}, None)


def test_unmatched_request_gets_kong_404_body(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "a", "paths": ["/a"]}])])
    r = client.get("/zzz")
    assert r.status_code == 404
    assert r.json() == {"message": "no Route matched with those values", "request_id": r.headers["x-kong-request-id"]}


def test_strip_path_replaces_the_matched_prefix_with_the_service_path(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "a", "paths": ["/api"]}], "/base")])
    assert client.get("/api/x?q=1").json()["path"] == "/base/x"
    assert echo.requests[-1]["query"] == "q=1"


def test_strip_path_false_keeps_the_request_path(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "a", "paths": ["/api"], "strip_path": False}], "/base")])
    assert client.get("/api/x").json()["path"] == "/base/api/x"


def test_longer_prefix_wins(echo, start_emulator):
    emu, client = start(start_emulator, echo, [
        service(echo.port, [{"name": "short", "paths": ["/a"]}], "/short"),
        service(echo.port, [{"name": "long", "paths": ["/a/b"]}], "/long"),
    ])
    assert client.get("/a/b/c").json()["path"] == "/long/c"


def test_regex_priority_orders_regex_routes(echo, start_emulator):
    emu, client = start(start_emulator, echo, [
        service(echo.port, [{"name": "low", "paths": ["~/v\\d+"], "regex_priority": 1}], "/low"),
        service(echo.port, [{"name": "high", "paths": ["~/v1"], "regex_priority": 5}], "/high"),
    ])
    assert client.get("/v1/x").json()["path"] == "/high/x"


def test_regex_path_is_anchored_at_the_start(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "r", "paths": ["~/x/\\d+$"]}])])
    assert client.get("/x/12").status_code == 200
    assert client.get("/pre/x/12").status_code == 404


def test_host_and_method_rules_must_all_match(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [
        {"name": "h", "hosts": ["*.example.com"], "methods": ["GET"], "paths": ["/"]}])])
    assert client.get("/", headers={"Host": "api.example.com"}).status_code == 200
    assert client.post("/", headers={"Host": "api.example.com"}).status_code == 404
    assert client.get("/", headers={"Host": "example.org"}).status_code == 404


def test_route_with_hosts_beats_route_with_only_paths(echo, start_emulator):
    emu, client = start(start_emulator, echo, [
        service(echo.port, [{"name": "p", "paths": ["/a"]}], "/paths"),
        service(echo.port, [{"name": "hp", "hosts": ["h.test"], "paths": ["/a"]}], "/hostpaths"),
    ])
    assert client.get("/a", headers={"Host": "h.test"}).json()["path"] == "/hostpaths"


def test_upstream_gets_kong_forwarding_headers(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "a", "paths": ["/api"]}])])
    body = client.get("/api/x", headers={"X-Forwarded-For": "10.0.0.1"}).json()
    h = {k.lower(): v for k, v in body["headers"]}
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-forwarded-prefix"] == "/api" and h["x-forwarded-path"] == "/api/x"
    assert h["via"] == "1.1 kong/3.9.3" and h["host"] == f"127.0.0.1:{echo.port}"


def test_preserve_host_sends_the_client_host(echo, start_emulator):
    emu, client = start(start_emulator, echo, [service(echo.port, [{"name": "a", "paths": ["/"], "preserve_host": True}])])
    body = client.get("/", headers={"Host": "client.test"}).json()
    assert [v for k, v in body["headers"] if k.lower() == "host"] == ["client.test"]
