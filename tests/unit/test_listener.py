"""edge/listener.py against Kong's side of the protocol (tests/support/wire.py, tests/kong_host/rpc.py).

Kong sends every call on a connection from its per-worker keepalive pool (mp_rpc.lua `Rpc:call`),
so a Step may arrive on another connection than the event started on, and a HandleEvent may
arrive on a connection whose thread is inside another event. These tests drive exactly that.
"""

from __future__ import annotations

import json
import threading
import time

import msgpack
import pytest

from kong_oidc_py.edge.listener import Listener
from kong_oidc_py.edge.rpc_channel import EventEnded, StepTimeout
from tests.kong_host.rpc import RpcClient
from tests.support.wire import InProcessServer, Wire

SEEN: dict[str, list] = {}  # what handlers observed, per test script


def _calls(n):
    def script(kong):
        for _ in range(n):
            kong.request.get_method()
    return script


def _echo_id(kong):
    ident = kong.request.get_header("x-id")
    kong.request.get_method()
    kong.service.request.set_header("x-echo", ident)
    kong.request.get_path()


def _raise_before(kong):
    raise RuntimeError("secret-token-value")


def _raise_after(kong):
    kong.request.get_method()
    raise KeyError("secret-token-value")


def _exit_then_call(kong):
    kong.response.exit(403, "no")
    try:
        kong.request.get_method()
    except EventEnded as exc:
        SEEN.setdefault("after_exit", []).append(type(exc).__name__)
        raise


SLOW = 2.0  # seconds a "slow IdP" holds a handler; the checks below allow half of it for others


def _slow_then_call(kong):
    time.sleep(SLOW)  # an IdP fetch before the first PDK call
    kong.request.get_method()


def _call_then_slow(kong):
    kong.request.get_method()
    time.sleep(SLOW)  # an IdP fetch between PDK calls
    kong.request.get_path()


def _wait_forever(kong):
    try:
        kong.request.get_method()
    except StepTimeout:
        SEEN.setdefault("timeout", []).append(True)
        raise


SCRIPTS = {
    "empty": lambda kong: None,
    "calls3": _calls(3),
    "calls5": _calls(5),
    "echo_id": _echo_id,
    "raise_before": _raise_before,
    "raise_after": _raise_after,
    "exit_then_call": _exit_then_call,
    "slow_then_call": _slow_then_call,
    "call_then_slow": _call_then_slow,
    "wait_forever": _wait_forever,
}


class ScriptPlugin:
    def __init__(self, config):
        self.script = SCRIPTS[config["script"]]

    def access(self, kong):
        self.script(kong)

    def log(self, kong):
        self.script(kong)


def cfg(script: str) -> str:
    return json.dumps({"script": script})


@pytest.fixture
def srv():
    SEEN.clear()
    with InProcessServer(ScriptPlugin, "script") as server:
        yield server


def data(reply):
    err, result = reply
    assert err is None, err
    return result["Data"], result["EventId"]


def method(d):
    return d["Method"] if isinstance(d, dict) else d


def run_to_end(wire: Wire, first, answers=None):
    """Answer every PDK call on `wire` until "ret" or a terminal call; the methods seen."""
    d, eid = first
    seen = []
    while d != "ret":
        seen.append(d["Method"])
        if d["Method"] in ("kong.response.exit", "kong.response.error"):
            break
        d, _ = data(wire.step(eid, (answers or {}).get(d["Method"], "GET")))
    return seen


# -- the fast path ----------------------------------------------------------------------------------

def test_an_event_runs_on_the_connection_thread_with_one_write_and_one_read_per_call(srv):
    iid = srv.start_instance(cfg("calls3"))
    wire = srv.connect()
    for _ in range(20):
        assert run_to_end(wire, data(wire.handle_event(iid))) == ["kong.request.get_method"] * 3
    stats = srv.listener.stats()
    assert stats["events"] == 20 and stats["events_pooled"] == 0 and stats["steps_migrated"] == 0
    assert stats["threads"] <= 2  # this connection's reader (+ the StartInstance one): no thread per event
    wire.close()


def test_an_event_with_no_pdk_call_answers_ret_to_handle_event(srv):
    iid = srv.start_instance(cfg("empty"))
    wire = srv.connect()
    d, _ = data(wire.handle_event(iid))
    assert d == "ret"


def test_event_ids_are_unique_and_ended_events_are_forgotten(srv):
    iid = srv.start_instance(cfg("calls3"))
    wire = srv.connect()
    ids = set()
    for _ in range(5):
        first = data(wire.handle_event(iid))
        ids.add(first[1])
        run_to_end(wire, first)
    assert len(ids) == 5
    assert srv.listener.stats()["events_in_flight"] == 0
    assert wire.step(min(ids)) == (f"event id {min(ids)} not found", None)


# -- Kong's pool moves calls between connections ----------------------------------------------------

def test_a_step_on_another_connection_reaches_the_event(srv):
    iid = srv.start_instance(cfg("echo_id"))
    a, b = srv.connect(), srv.connect()
    d, eid = data(a.handle_event(iid))
    assert d == {"Method": "kong.request.get_header", "Args": ["x-id"]}
    d, _ = data(b.step(eid, "abc"))  # Kong's pool handed out another connection
    assert d["Method"] == "kong.request.get_method"
    d, _ = data(a.step(eid, "GET"))  # and back
    assert d == {"Method": "kong.service.request.set_header", "Args": ["x-echo", "abc"]}
    d, _ = data(b.step(eid))
    assert d["Method"] == "kong.request.get_path"
    assert data(b.step(eid, "/"))[0] == "ret"
    assert srv.listener.stats()["steps_migrated"] >= 2


def test_the_connection_an_event_left_is_served_while_its_handler_works(srv):
    slow, quick = srv.start_instance(cfg("call_then_slow")), srv.start_instance(cfg("calls3"))
    a, b = srv.connect(), srv.connect()
    d, eid = data(a.handle_event(slow))
    b.send("plugin.Step", {"EventId": eid, "Data": "GET"})  # the handler now sleeps SLOW s
    time.sleep(0.1)
    t0 = time.monotonic()
    assert run_to_end(a, data(a.handle_event(quick))) == ["kong.request.get_method"] * 3
    assert time.monotonic() - t0 < SLOW / 2
    reply = b.recv()
    assert reply[3]["Data"]["Method"] == "kong.request.get_path"


def test_a_handle_event_on_a_busy_connection_runs_on_a_pooled_thread(srv):
    iid = srv.start_instance(cfg("calls3"))
    a = srv.connect()
    first = data(a.handle_event(iid))  # this connection's thread now waits inside event 1
    second = data(a.handle_event(iid))  # Kong reused the connection for another request
    assert first[1] != second[1]
    assert run_to_end(a, second) == ["kong.request.get_method"] * 3
    assert run_to_end(a, first) == ["kong.request.get_method"] * 3
    assert srv.listener.stats()["events_pooled"] == 1


def test_64_concurrent_connections_each_get_their_own_answers(srv):
    iid = srv.start_instance(cfg("echo_id"))
    results: dict[int, tuple] = {}
    errors: list = []
    barrier = threading.Barrier(64)

    def kong_worker(n: int) -> None:
        try:
            wire = srv.connect(timeout=30)
            barrier.wait()
            for round_ in range(5):
                d, eid = data(wire.handle_event(iid))
                ident = f"id-{n}-{round_}"
                d, _ = data(wire.step(eid, ident))
                d, _ = data(wire.step(eid, "GET"))
                assert d["Args"] == ["x-echo", ident], (n, d)
                d, _ = data(wire.step(eid))
                assert data(wire.step(eid, "/"))[0] == "ret"
                results[(n, round_)] = eid
            wire.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((n, repr(exc)))

    threads = [threading.Thread(target=kong_worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 320 and len(set(results.values())) == 320


def test_a_random_pool_migrates_nearly_every_step_and_every_event_completes(srv):
    iid = srv.start_instance(cfg("calls5"))
    rpc = RpcClient(srv.path, read_timeout=10, pool="random")
    rpc.warm(16)
    moved = steps = 0
    for _ in range(200):
        res = rpc.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
        prev = rpc.last_conn
        while res["Data"] != "ret":
            res = rpc.call("plugin.Step", {"EventId": res["EventId"], "Data": "GET"})
            steps += 1
            moved += rpc.last_conn is not prev
            prev = rpc.last_conn
    rpc.close()
    assert steps == 200 * 5
    assert moved >= 0.8 * steps  # 15 of 16 idle connections are "another" one
    stats = srv.listener.stats()
    assert stats["steps_migrated"] >= 0.8 * steps
    assert stats["events_in_flight"] == 0
    assert stats["threads"] <= 16 + 2


# -- failures are answered at once and fail closed ------------------------------------------------

@pytest.mark.parametrize("script", ["raise_before", "raise_after"])
def test_a_handler_exception_is_answered_with_a_logged_500(srv, script):
    iid = srv.start_instance(cfg(script))
    wire = srv.connect()
    d, eid = data(wire.handle_event(iid))
    if script == "raise_after":
        assert d["Method"] == "kong.request.get_method"
        d, _ = data(wire.step(eid, "GET"))
    assert d["Method"] == "kong.log.err"
    assert d["Args"][0].startswith("script: the access handler raised ")
    assert "secret-token-value" not in json.dumps(d)
    d, _ = data(wire.step(eid))
    assert d == {"Method": "kong.response.exit", "Args": [500, {"message": "An unexpected error occurred"}]}
    assert srv.listener.stats()["handler_errors"] == 1


def test_an_exception_before_the_first_pdk_call_does_not_block_later_events(srv):
    bad, good = srv.start_instance(cfg("raise_before")), srv.start_instance(cfg("calls3"))
    wire = srv.connect()
    for _ in range(3):
        run_to_end(wire, data(wire.handle_event(bad)))
    assert run_to_end(wire, data(wire.handle_event(good))) == ["kong.request.get_method"] * 3


def test_a_log_phase_exception_is_an_error_reply(srv):
    iid = srv.start_instance(cfg("raise_after"))
    wire = srv.connect()
    _, eid = data(wire.handle_event(iid, "log"))
    err, result = wire.step(eid, "GET")
    assert result is None and err == "script: the log handler raised KeyError"


def test_a_pdk_call_after_exit_raises_in_the_handler_and_kong_hears_nothing_more(srv):
    iid = srv.start_instance(cfg("exit_then_call"))
    wire = srv.connect()
    d, eid = data(wire.handle_event(iid))
    assert d == {"Method": "kong.response.exit", "Args": [403, "no"]}
    deadline = time.monotonic() + 5
    while not SEEN.get("after_exit") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert SEEN["after_exit"] == ["EventEnded"]
    assert wire.step(eid) == (f"event id {eid} not found", None)


def test_a_handler_waiting_past_the_step_timeout_is_released():
    SEEN.clear()
    with InProcessServer(ScriptPlugin, "script", step_timeout=0.3) as server:
        iid = server.start_instance(cfg("wait_forever"))
        wire = server.connect()
        _, eid = data(wire.handle_event(iid))
        deadline = time.monotonic() + 10
        while not SEEN.get("timeout") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert SEEN["timeout"] == [True]
        assert wire.step(eid, "GET") == (f"event id {eid} not found", None)
        assert server.listener.stats()["step_timeouts"] == 1


def test_a_slow_handler_does_not_block_other_events(srv):
    slow, quick = srv.start_instance(cfg("slow_then_call")), srv.start_instance(cfg("calls3"))
    a, b = srv.connect(), srv.connect()
    a.send("plugin.HandleEvent", {"InstanceId": slow, "EventName": "access"})
    time.sleep(0.05)
    t0 = time.monotonic()
    for _ in range(5):
        run_to_end(b, data(b.handle_event(quick)))
    assert time.monotonic() - t0 < SLOW / 2
    assert a.recv()[3]["Data"]["Method"] == "kong.request.get_method"


# -- kong-pdk's answers for everything that is not an event ---------------------------------------

def test_instance_management_and_errors_are_kong_pdks(srv):
    wire = srv.connect()
    err, started = wire.call("plugin.StartInstance", {"Name": "script", "Config": cfg("empty")})
    assert err is None and set(started) == {"Name", "Id", "Config", "StartTime"}
    assert wire.call("plugin.InstanceStatus", started["Id"])[1]["Id"] == started["Id"]
    assert wire.call("plugin.HandleEvent", {"InstanceId": 999, "EventName": "access"}) == ("no plugin instance #999", None)
    assert wire.call("plugin.StartInstance", {"Name": "nope", "Config": "{}"}) == ("nope not initizlied", None)
    assert wire.call("other.Thing") == ("RPC for other is not supported", None)
    assert wire.call("plugin.NoSuchThing")[0] == "'PluginServer' object has no attribute 'no_such_thing'"
    assert wire.call("plugin.CloseInstance", started["Id"])[1]["Id"] == started["Id"]
    assert wire.call("plugin.CloseInstance", started["Id"]) == (f"no plugin instance #{started['Id']}", None)


def test_non_utf8_strings_from_kong_survive_and_go_back_as_the_same_bytes(srv):
    iid = srv.start_instance(cfg("echo_id"))
    wire = srv.connect()
    _, eid = data(wire.handle_event(iid))
    data(wire.step(eid, "caf\udce9"))  # b"caf\xe9" packed as str, as Kong packs every Lua string
    wire.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)  # read the bytes as they are
    _, msgid = wire.send("plugin.Step", {"EventId": eid, "Data": "GET"}), wire.msgid
    reply = wire.recv()
    assert reply[1] == msgid
    assert reply[3][b"Data"] == {b"Method": b"kong.service.request.set_header", b"Args": [b"x-echo", b"caf\xe9"]}


def test_threads_are_bounded_and_a_refused_connection_is_closed():
    with InProcessServer(ScriptPlugin, "script", max_threads=2) as server:
        a, b = server.connect(), server.connect()
        a.call("plugin.GetStatus")
        b.call("plugin.GetStatus")
        c = server.connect()
        try:
            c.send("plugin.GetStatus")
            answer = c.recv()
        except BrokenPipeError:  # closed before our request went out
            answer = None
        assert answer is None
        assert server.listener.stats()["refused"] == 1
        a.close()
        deadline = time.monotonic() + 5
        while server.listener.stats()["open_connections"] > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        d = server.connect()
        assert d.call("plugin.GetStatus")[0] is None


def test_gevent_mode_is_refused():
    with pytest.raises(ValueError):
        Listener(object(), "/tmp", use_gevent=True)
