"""edge/pdk_tree.py: the PDK object our listener hands to handlers sends exactly what kong-pdk's
`Kong(channel, lua_style).kong` sends, for any attribute chain."""

import threading

import pytest
from kong_pdk.exception import PDKException
from kong_pdk.pdk import FakeClasses, Kong

from kong_oidc_py.edge.pdk_tree import pdk_object


class Channel:
    def __init__(self, reply=("value", None)):
        self.sent = []
        self.gets = 0
        self.reply = reply

    def put(self, data):
        self.sent.append(data)

    def get(self):
        self.gets += 1
        return self.reply


def _both(script, reply=("value", None), lua_style=False):
    ours, theirs = Channel(reply), Channel(reply)
    a = script(pdk_object(ours, lua_style))
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
    ch = Channel()
    pdk_object(ch, False).log.warn("x", 1.5, None)
    assert ch.sent[0]["Args"] == ["x", "1.5", "None"]


@pytest.mark.parametrize("method", ["exit", "error"])
def test_terminal_methods_wait_for_no_reply(method):
    ch = Channel()
    assert getattr(pdk_object(ch, False).response, method)(500, {}) is None
    assert ch.sent[0]["Method"] == f"kong.response.{method}" and ch.gets == 0


def test_an_error_reply_raises_pdk_exception_in_python_style():
    with pytest.raises(PDKException):
        pdk_object(Channel((None, "boom")), False).request.get_path()


def test_lua_style_returns_value_and_error():
    assert pdk_object(Channel(("v", None)), True).request.get_path() == ("v", None)


def test_nodes_are_kong_pdk_fake_classes():
    kong = pdk_object(Channel(), False)
    assert isinstance(kong, FakeClasses) and isinstance(kong.service.request, FakeClasses)


def test_dunder_lookups_are_attribute_errors_not_pdk_calls():
    ch = Channel()
    with pytest.raises(AttributeError):
        pdk_object(ch, False).__wrapped__  # noqa: B018
    assert ch.sent == []


def test_each_event_object_talks_only_to_its_own_channel():
    first, second = Channel(("one", None)), Channel(("two", None))
    kong_one, kong_two = pdk_object(first, False), pdk_object(second, False)
    assert kong_two.request.get_path() == "two"
    assert kong_one.request.get_path() == "one"
    assert len(first.sent) == len(second.sent) == 1


def test_first_lookups_from_many_threads_agree():
    results = []

    def run(i):
        ch = Channel()
        getattr(pdk_object(ch, False).concurrent, f"fn{i % 3}")()
        results.append(ch.sent[0]["Method"] == f"kong.concurrent.fn{i % 3}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 24
