"""The emulator against a real kong-pdk 0.36 plugin server (tests/fixtures/probe_plugin.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.upstream.echo import header_values

from .conftest import config


def probe(actions=(), log_actions=(), **extra):
    return {"name": "probe", "config": {"actions": json.dumps(list(actions)),
                                        "log_actions": json.dumps(list(log_actions)), **extra}}


def results_of(echo_response: dict):
    return json.loads(header_values(echo_response, "X-Probe-Results")[0])


def test_get_headers_returns_lower_cased_multimap(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"call": "kong.request.get_headers"}, {"report": "upstream"}])]))
    r = client.get("/", headers=[("X-Multi", "a"), ("x-multi", "b"), ("X-One", "1")])
    headers = results_of(r.json())[0]
    assert headers["x-multi"] == ["a", "b"] and headers["x-one"] == ["1"]


def test_get_header_returns_the_first_value_and_accepts_underscores(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"call": "kong.request.get_header", "args": ["x_multi"]}, {"report": "upstream"}])]))
    r = client.get("/", headers=[("X-Multi", "a"), ("X-Multi", "b")])
    assert results_of(r.json()) == ["a"]


def test_get_path_is_normalized_and_raw_path_is_not(echo, start_emulator):
    acts = [{"call": "kong.request.get_path"}, {"call": "kong.request.get_raw_path"}, {"report": "upstream"}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    with httpx.Client() as c:
        r = c.send(httpx.Request("GET", client.base_url.join("/a/%7e//b"), extensions={}))
    assert results_of(r.json()) == ["/a/~/b", "/a/%7e//b"]


def test_get_query_is_a_multimap_with_flags_as_empty_lists(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"call": "kong.request.get_query"}, {"report": "upstream"}])]))
    r = client.get("/?a=1&a=2&flag&e=")
    assert results_of(r.json())[0] == {"a": ["1", "2"], "flag": [], "e": [""]}


def test_numbers_are_stringified_in_upstream_headers(echo, start_emulator):
    acts = [{"call": "kong.service.request.set_header", "args": ["X-Num", 5]},
            {"call": "kong.service.request.set_header", "args": ["X-List", ["a", "b"]]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    body = client.get("/").json()
    assert header_values(body, "X-Num") == ["5"] and header_values(body, "X-List") == ["a", "b"]


def test_clear_header_removes_every_occurrence(echo, start_emulator):
    acts = [{"call": "kong.service.request.clear_header", "args": ["x-multi"]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    body = client.get("/", headers=[("X-Multi", "a"), ("X-Multi", "b")]).json()
    assert header_values(body, "x-multi") == []


def test_response_headers_set_in_access_reach_the_proxied_response(echo, start_emulator):
    acts = [{"call": "kong.response.add_header", "args": ["Set-Cookie", "a=1"]},
            {"call": "kong.response.add_header", "args": ["Set-Cookie", "b=2"]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    r = client.get("/")
    assert r.status_code == 200 and r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_exit_sends_body_and_headers_and_skips_the_upstream(echo, start_emulator):
    acts = [{"exit": [418, {"message": "teapot"}, {"X-Why": "probe"}]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    r = client.get("/")
    assert (r.status_code, r.json(), r.headers["x-why"]) == (418, {"message": "teapot"}, "probe")
    assert echo.requests == []


def test_set_serialize_value_nests_on_dots_in_the_log_line(echo, start_emulator):
    acts = [{"call": "kong.log.set_serialize_value", "args": ["probe.a.b", "x"]},
            {"call": "kong.log.set_serialize_value", "args": ["request.headers.x-extra", "y"]},
            {"call": "kong.log.set_serialize_value", "args": ["missing.leaf", "z", {"mode": "replace"}]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    client.get("/")
    (line,) = emu.log_lines(wait_for=1)
    assert line["probe"] == {"a": {"b": "x"}}
    assert line["request"]["headers"]["x-extra"] == "y"
    assert "missing" not in line


def test_log_line_has_kong_serializer_shape_and_pdk_call_count(echo, start_emulator):
    acts = [{"call": "kong.request.get_headers"}, {"call": "kong.request.get_path"}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]))
    client.get("/x?q=1", headers={"Authorization": "Bearer secret"})
    (line,) = emu.log_lines(wait_for=1)
    assert {"request", "response", "route", "service", "latencies", "client_ip", "started_at", "upstream_uri"} <= set(line)
    assert line["request"]["headers"]["authorization"] == "REDACTED"
    assert line["request"]["querystring"] == {"q": "1"} and line["upstream_uri"] == "/x?q=1"
    assert line["response"]["status"] == 200 and line["route"]["name"] == "r"
    assert line["pdk_calls"] == {"probe": 2}


def test_log_phase_runs_after_the_response_with_the_serialize_wrapper(echo, start_emulator):
    log_acts = [{"call": "kong.log.serialize"}, {"report": "log"}]
    emu, client = start_emulator(config(echo.port, plugins=[probe([], log_acts)]))
    client.get("/")
    (line,) = emu.log_lines(wait_for=1)
    assert json.loads(json.loads(line["probe"]["results"])[0])["response"]["status"] == 200


def test_ctx_shared_is_seen_by_the_bundled_acl(echo, start_emulator):
    acts = [{"call": "kong.ctx.shared.set", "args": ["authenticated_groups", ["g1"]]}]
    plugins = [probe(acts), {"name": "acl", "config": {"allow": ["g1"]}}]
    emu, client = start_emulator(config(echo.port, plugins=plugins))
    r = client.get("/")
    assert r.status_code == 200
    assert header_values(r.json(), "X-Authenticated-Groups") == ["g1"]


def test_acl_denies_groups_not_allowed_with_kong_body(echo, start_emulator):
    acts = [{"call": "kong.ctx.shared.set", "args": ["authenticated_groups", ["other"]]}]
    plugins = [probe(acts), {"name": "acl", "config": {"allow": ["g1"]}}]
    emu, client = start_emulator(config(echo.port, plugins=plugins))
    r = client.get("/")
    assert r.status_code == 403
    assert r.json()["message"] == "You cannot consume this service"


def test_acl_uses_consumer_acls_after_authenticate(echo, start_emulator):
    cid = "5f7c3c1e-8a4b-4d39-9a52-8b1e6f4a0c11"
    acts = [{"call": "kong.client.authenticate", "args": [{"id": cid, "username": "alice"}, None]}]
    plugins = [probe(acts), {"name": "acl", "config": {"allow": ["admins"]}}]
    cfg = config(echo.port, plugins=plugins, consumers=[{"id": cid, "username": "alice", "acls": [{"group": "admins"}]}])
    emu, client = start_emulator(cfg)
    r = client.get("/")
    assert r.status_code == 200 and header_values(r.json(), "X-Consumer-Groups") == ["admins"]


def test_load_consumer_by_username_needs_the_flag(echo, start_emulator):
    acts = [{"call": "kong.client.load_consumer", "args": ["alice", True]}, {"report": "upstream"}]
    cfg = config(echo.port, plugins=[probe(acts)], consumers=[{"username": "alice"}])
    emu, client = start_emulator(cfg)
    assert results_of(client.get("/").json())[0]["username"] == "alice"


def test_load_consumer_with_non_uuid_without_flag_is_a_500(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"call": "kong.client.load_consumer", "args": ["alice"]}])]))
    assert client.get("/").status_code == 500


def test_config_change_on_reload_gives_the_new_config_to_a_new_instance(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"config": "upstream"}], label="one")]), workers=1)
    first = json.loads(header_values(client.get("/").json(), "X-Probe-Config")[0])
    emu.reload(config(echo.port, plugins=[probe([{"config": "upstream"}], label="two")]))
    second = json.loads(header_values(client.get("/").json(), "X-Probe-Config")[0])
    assert (first["label"], second["label"]) == ("one", "two")
    assert second["__seq__"] > first["__seq__"]


def test_instance_state_is_kept_between_requests(echo, start_emulator):
    emu, client = start_emulator(config(echo.port, plugins=[probe([{"counter": True}, {"report": "upstream"}])]), workers=1)
    counts = [results_of(client.get("/").json())[0]["counter"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_killed_plugin_server_fails_open_for_a_worker_with_a_cached_instance(echo, start_emulator):
    acts = [{"call": "kong.service.request.set_header", "args": ["X-Probe", "1"]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]), workers=1)
    assert header_values(client.get("/").json(), "X-Probe") == ["1"]
    emu.kill_plugin_server()
    r = client.get("/")
    assert r.status_code == 200 and header_values(r.json(), "X-Probe") == []


def test_acl_guard_denies_when_the_plugin_server_is_down(echo, start_emulator):
    acts = [{"call": "kong.ctx.shared.set", "args": ["authenticated_groups", ["oidc:verified"]]}]
    plugins = [probe(acts), {"name": "acl", "config": {"allow": ["oidc:verified"]}}]
    emu, client = start_emulator(config(echo.port, plugins=plugins), workers=1)
    assert client.get("/").status_code == 200
    emu.kill_plugin_server()
    r = client.get("/")
    assert r.status_code == 401 and r.json()["message"] == "Unauthorized"
    assert len(echo.requests) == 1


def test_plugin_server_is_respawned_and_instances_recover(echo, start_emulator):
    acts = [{"call": "kong.service.request.set_header", "args": ["X-Probe", "1"]}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]), workers=1)
    client.get("/")
    old_pid = emu.kill_plugin_server()
    emu.wait_plugin_server(spawns=2)
    assert emu.plugin_server().pid != old_pid
    r = client.get("/")
    assert header_values(r.json(), "X-Probe") == ["1"]
    assert "no plugin instance" in emu.error_log()


def test_handler_exception_fails_open_after_the_read_timeout(echo, start_emulator):
    acts = [{"call": "kong.request.get_method"}, {"raise": "bug"}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]), read_timeout=1.0)
    r = client.get("/")
    assert r.status_code == 200 and len(echo.requests) == 1
    assert "no data" in emu.error_log()


def test_fifty_parallel_requests_all_reach_the_upstream_with_the_plugin_effect(echo, start_emulator):
    acts = [{"call": "kong.request.get_header", "args": ["x-n"]}, {"report": "upstream"}]
    emu, client = start_emulator(config(echo.port, plugins=[probe(acts)]), workers=4)

    def one(i):
        with httpx.Client(base_url=client.base_url, timeout=60) as c:
            return results_of(c.get("/", headers={"X-N": str(i)}).json())

    with ThreadPoolExecutor(50) as pool:
        got = list(pool.map(one, range(50)))
    assert got == [[str(i)] for i in range(50)]
    assert len(emu.log_lines(wait_for=50)) == 50
