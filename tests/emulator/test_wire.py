"""The frames the emulator sends, pinned to Kong 3.9's shapes (shared doc 2.1-2.8)."""

from __future__ import annotations

import json
import os

import pytest

from tests.kong_host import PluginServerSpec
from tests.upstream.echo import header_values

from .conftest import config
from .fake_server import DUMP, FakePluginServer


def flow(*calls, fake_ref=None):
    """Script: HandleEvent answers with calls[0], each Step with the next one, then "ret"."""
    state = {"i": 0}

    def script(method, params):
        if method in ("plugin.StartInstance", "plugin.CloseInstance"):
            return None, fake_ref[0].default(method, params)
        if method == "plugin.HandleEvent":
            state["i"] = 0
        i = state["i"]
        state["i"] += 1
        if i < len(calls):
            m, args = calls[i]
            return None, {"Data": {"Method": m, "Args": args}, "EventId": 5}
        return None, {"Data": "ret", "EventId": 5}

    return script


@pytest.fixture
def fake_env(prefix, echo, start_emulator):
    made = []

    def _make(script=None, plugin_config=None, plugins=None, **kw):
        ref = []
        sock = os.path.join(prefix, "fake.socket")
        if callable(script) and getattr(script, "__name__", "") == "_needs_ref":
            script = script(ref)
        fake = FakePluginServer(sock, script)
        ref.append(fake)
        made.append(fake)
        spec = PluginServerSpec(name="fake", socket=sock, info=DUMP)
        plugins = plugins if plugins is not None else [{"name": "fake", "config": plugin_config or {}}]
        emu, client = start_emulator(config(echo.port, plugins=plugins), [spec], **kw)
        return fake, emu, client

    yield _make
    for f in made:
        f.close()


def scripted(*calls):
    def _needs_ref(ref):
        return flow(*calls, fake_ref=ref)

    return _needs_ref


def test_start_instance_sends_name_and_config_as_json_string(fake_env):
    fake, emu, client = fake_env()
    client.get("/")
    (params,) = fake.params("plugin.StartInstance")
    assert list(params[0].keys()) == ["Name", "Config"] and params[0]["Name"] == "fake"
    assert isinstance(params[0]["Config"], str)


def test_config_has_defaults_and_metadata_and_no_unset_fields(fake_env):
    fake, emu, client = fake_env(plugin_config={"message": "yo"})
    client.get("/")
    conf = json.loads(fake.params("plugin.StartInstance")[0][0]["Config"])
    assert conf["message"] == "yo" and conf["sub"] == {"n": 3} and conf["list"] == []
    assert "opt" not in conf and "route_id" not in conf
    assert conf["__plugin_id"] == emu.plugin_id("fake")
    assert conf["__key__"].startswith("plugins:fake::::") and isinstance(conf["__seq__"], int)


def test_route_scoped_plugin_config_carries_route_id(fake_env):
    fake, emu, client = fake_env(plugins=[{"name": "fake", "route": "r"}])
    client.get("/")
    conf = json.loads(fake.params("plugin.StartInstance")[0][0]["Config"])
    assert conf["route_id"] == emu.config.routes[0]["id"]


def test_handle_event_params_shape(fake_env):
    fake, emu, client = fake_env()
    client.get("/")
    assert fake.params("plugin.HandleEvent") == [[{"InstanceId": 0, "EventName": "access"}]]


def test_request_frames_are_rpc_requests_with_increasing_msgids_per_worker(fake_env):
    fake, emu, client = fake_env(workers=1)
    client.get("/")
    client.get("/")
    assert all(f[0] == 0 for f in fake.frames)
    assert [f[1] for f in fake.frames] == list(range(1, len(fake.frames) + 1))


def test_instance_is_started_once_per_worker(fake_env):
    fake, emu, client = fake_env(workers=2)
    for _ in range(4):
        with __import__("httpx").Client(base_url=client.base_url) as c:  # new connection -> next worker
            c.get("/")
    assert len(fake.params("plugin.StartInstance")) == 2
    assert len(fake.params("plugin.HandleEvent")) == 4


def test_step_omits_data_when_pdk_returns_nil(fake_env):
    fake, emu, client = fake_env(scripted(("kong.request.get_header", ["x-missing"])))
    client.get("/")
    assert fake.params("plugin.Step") == [[{"EventId": 5}]]


def test_get_headers_is_answered_with_step_multi_map_of_lists(fake_env):
    fake, emu, client = fake_env(scripted(("kong.request.get_headers", [])))
    client.get("/", headers={"X-A": "1"})
    (params,) = fake.params("plugin.StepMultiMap")
    assert params[0]["Data"]["x-a"] == ["1"] and params[0]["EventId"] == 5


def test_step_variant_for_get_route_is_step_route(fake_env):
    fake, emu, client = fake_env(scripted(("kong.router.get_route", [])))
    client.get("/")
    (params,) = fake.params("plugin.StepRoute")
    assert params[0]["Data"]["name"] == "r"


def test_raw_body_is_sent_as_bytes(fake_env):
    fake, emu, client = fake_env(scripted(("kong.request.get_raw_body", [])))
    client.post("/", content=b"abc")
    assert fake.params("plugin.Step")[0][0]["Data"] == b"abc"


def test_no_step_is_sent_after_response_exit(fake_env):
    fake, emu, client = fake_env(scripted(("kong.response.exit", [403, "nope", {"X-A": "b"}]),
                                          ("kong.log.err", ["never"])))
    r = client.get("/")
    assert (r.status_code, r.text, r.headers["x-a"]) == (403, "nope", "b")
    assert fake.methods() == ["plugin.StartInstance", "plugin.HandleEvent"]


def test_exit_with_table_body_is_json(fake_env):
    fake, emu, client = fake_env(scripted(("kong.response.exit", [401, {"message": "x/y"}])))
    r = client.get("/")
    assert r.status_code == 401 and r.json() == {"message": "x/y"}
    assert r.headers["content-type"] == "application/json; charset=utf-8"


def test_unknown_pdk_method_is_logged_and_answered_with_nil(fake_env):
    fake, emu, client = fake_env(scripted(("kong.no.such", [])))
    assert client.get("/").status_code == 200
    assert fake.params("plugin.Step") == [[{"EventId": 5}]]
    assert "could not find pdk method: kong.no.such" in emu.error_log()


def test_lua_error_in_pdk_call_gives_500_and_no_step(fake_env):
    fake, emu, client = fake_env(scripted(("kong.service.request.set_header", ["x-a", {"k": 1}])))
    r = client.get("/")
    assert r.status_code == 500
    assert r.json() == {"message": "An unexpected error occurred", "request_id": r.headers["x-kong-request-id"]}
    assert "plugin.Step" not in fake.methods()


def test_error_reply_to_handle_event_fails_open(fake_env, echo):
    def script(method, params):
        if method == "plugin.StartInstance":
            return None, {"Id": 1}
        return "boom", None

    fake, emu, client = fake_env(script)
    assert client.get("/").status_code == 200
    assert len(echo.requests) == 1
    assert "boom" in emu.error_log()


def test_no_plugin_instance_error_restarts_the_instance_and_retries_the_event(fake_env):
    seen = {"n": 0}

    def script(method, params):
        if method == "plugin.StartInstance":
            seen["n"] += 1
            return None, {"Id": 10 + seen["n"]}
        if params[0]["InstanceId"] == 11:
            return "no plugin instance #11", None
        return None, {"Data": "ret", "EventId": 1}

    fake, emu, client = fake_env(script, workers=1)
    assert client.get("/").status_code == 200
    assert fake.methods() == ["plugin.StartInstance", "plugin.HandleEvent", "plugin.StartInstance", "plugin.HandleEvent"]


def test_start_instance_failure_is_a_500(fake_env, echo):
    fake, emu, client = fake_env(lambda m, p: ("Config invalid", None))
    assert client.get("/").status_code == 500
    assert echo.requests == []
    assert "starting instance: Config invalid" in emu.error_log()


def test_missing_socket_on_first_event_is_a_500(prefix, echo, start_emulator):
    spec = PluginServerSpec(name="fake", socket=os.path.join(prefix, "nobody.socket"), info=DUMP)
    emu, client = start_emulator(config(echo.port, plugins=[{"name": "fake"}]), [spec])
    assert client.get("/").status_code == 500


def test_nil_hole_before_headers_drops_the_headers_like_luajit(fake_env):
    fake, emu, client = fake_env(scripted(("kong.response.exit", [403, None, {"X-A": "b"}])))
    r = client.get("/")
    assert r.status_code == 403 and "x-a" not in r.headers


def test_reload_starts_a_new_instance_then_closes_the_old(fake_env, echo):
    fake, emu, client = fake_env(workers=1)
    client.get("/")
    emu.reload(config(echo.port, plugins=[{"name": "fake", "config": {"message": "new"}}]))
    client.get("/")
    assert fake.methods() == ["plugin.StartInstance", "plugin.HandleEvent",
                              "plugin.StartInstance", "plugin.CloseInstance", "plugin.HandleEvent"]
    assert fake.params("plugin.CloseInstance") == [[0]]
    assert json.loads(fake.params("plugin.StartInstance")[1][0]["Config"])["message"] == "new"
