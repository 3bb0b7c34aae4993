"""edge/pdk_tree.py and Event.call: the PDK object our listener hands to handlers sends exactly
what kong-pdk's `Kong(channel, lua_style).kong` sends, for any attribute chain."""

import threading

import pytest
from kong_pdk.exception import PDKException
from kong_pdk.pdk import FakeClasses, Kong

from kong_oidc_py.edge.pdk_tree import pdk_object
from kong_oidc_py.edge.rpc_channel import Event


class Channel:
    """kong-pdk's side of the comparison: the put/get channel its own object talks through."""

    def __init__(self, reply=("value", None)):
        self.sent = []
        self.gets = 0
        self.reply = reply

    def put(self, data):
        self.sent.append(data)

    def get(self):
        self.gets += 1
        return self.reply


class EventChannel:
    """Our listener's Event, on a connection that records the answers and a wait that returns
    the scripted Step (as accept_own does, it makes the Step the request to answer next)."""

    def __init__(self, reply=("value", None)):
        value, err = reply
        self.sent = []
        self.gets = 0

        class Conn:
            def reply(conn, msgid, error, result):  # noqa: N805 - a nested test double
                self.sent.append(result["Data"])

        conn = Conn()

        def wait_step(event):
            self.gets += 1
            event.pending = (conn, self.gets)
            return (conn, self.gets, err if err is not None else value, err is not None)

        self.event = Event(1, "oidc", "access", (conn, 0), wait_step, lambda: None, lambda event: None)


def _ours(reply=("value", None), lua_style=False):
    ch = EventChannel(reply)
    return ch, pdk_object(ch.event, lua_style)


def _both(script, reply=("value", None), lua_style=False):
    ours, kong = _ours(reply, lua_style)
    theirs = Channel(reply)
    a = script(kong)
    b = script(Kong(theirs, lua_style).kong)
    return (a, ours), (b, theirs)


@pytest.mark.parametrize("script", [
    lambda k: k.request.get_headers(1000),
    lambda k: k.service.request.set_headers({"X-User-Id": "u"}),
    lambda k: k.ctx.shared.set("authenticated_groups", ["g"]),
    lambda k: k.log.set_serialize_value("oidc", {"decision": "allow"}),
    lambda k: k.log("plain"),
    lambda k: k.log.err("bad", 3, object),
    lambda k: k.some.future.namespace.fn(1, [2], {"x": None}),
    lambda k: str(k.request.get_path),
])
def test_every_chain_sends_what_kong_pdk_sends_and_returns_the_same(script):
    (a, ours), (b, theirs) = _both(script)
    assert a == b
    assert [(m["Method"], list(m["Args"])) for m in ours.sent] == [(m["Method"], list(m["Args"])) for m in theirs.sent]
    assert ours.gets == theirs.gets == 1


def test_log_arguments_are_sanitized_as_kong_pdk_does():
    ch, kong = _ours()
    kong.log.warn("x", 1.5, None)
    assert list(ch.sent[0]["Args"]) == ["x", "1.5", "None"]


def test_a_method_merely_starting_with_kong_log_is_not_sanitized():
    ch, kong = _ours()
    kong.logger.warn(1.5)
    assert list(ch.sent[0]["Args"]) == [1.5]


@pytest.mark.parametrize("method", ["exit", "error"])
def test_terminal_methods_wait_for_no_reply(method):
    ch, kong = _ours()
    assert getattr(kong.response, method)(500, {}) is None
    assert ch.sent[0]["Method"] == f"kong.response.{method}" and ch.gets == 0


def test_an_error_reply_raises_pdk_exception_in_python_style():
    with pytest.raises(PDKException, match="exception from kong.request.get_path: boom"):
        _ours((None, "boom"))[1].request.get_path()


@pytest.mark.parametrize("reply", [("v", None), (None, "boom")])
def test_lua_style_returns_value_and_error(reply):
    assert _ours(reply, lua_style=True)[1].request.get_path() == reply


def test_a_call_after_exit_raises_instead_of_waiting():
    ch = EventChannel()
    kong = pdk_object(ch.event, False)
    kong.response.exit(403, {})
    with pytest.raises(PDKException):
        kong.request.get_path()


def test_nodes_are_kong_pdk_fake_classes():
    kong = _ours()[1]
    assert isinstance(kong, FakeClasses) and isinstance(kong.service.request, FakeClasses)


def test_dunder_lookups_are_attribute_errors_not_pdk_calls():
    ch, kong = _ours()
    with pytest.raises(AttributeError):
        kong.__wrapped__  # noqa: B018
    assert ch.sent == []


def test_each_event_object_talks_only_to_its_own_channel():
    (first, kong_one), (second, kong_two) = _ours(("one", None)), _ours(("two", None))
    assert kong_two.request.get_path() == "two"
    assert kong_one.request.get_path() == "one"
    assert len(first.sent) == len(second.sent) == 1


def test_first_lookups_from_many_threads_agree():
    results = []

    def run(i):
        ch, kong = _ours()
        getattr(kong.concurrent, f"fn{i % 3}")()
        results.append(ch.sent[0]["Method"] == f"kong.concurrent.fn{i % 3}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 24
