"""handler.py against a fake `kong` object: the PDK call order that makes the plugin fail closed
and survive kong-pdk 0.36's defects (docs/DESIGN.md "Handler PDK order")."""

from __future__ import annotations

import logging
import threading

import pytest

from kong_oidc_py.edge import handler as handler_mod
from kong_oidc_py.gateway import Outcome
from kong_oidc_py.edge.handler import MAX_HEADERS, Plugin

GUARD = "oidc:verified"
EXIT = "kong.response.exit"
MARKER = "kong.ctx.shared.set"
SERIALIZE = "kong.log.set_serialize_value"


class FakeKong:
    """Records every PDK call as (method, args); any dotted chain is callable like kong-pdk's."""

    def __init__(self, headers: dict | None = None, *, fail_on: str | None = None, answers: dict | None = None):
        self.calls: list[tuple[str, tuple]] = []
        self.headers = headers if headers is not None else {"authorization": ["Bearer x"]}
        self.fail_on = fail_on
        self.answers = {"kong.request.get_headers": self.headers, "kong.request.get_path": "/p",
                        "kong.request.get_method": "GET", **(answers or {})}
        self.first_call = threading.Event()

    def _call(self, method: str, *args):
        self.calls.append((method, args))
        self.first_call.set()
        if method == self.fail_on:
            raise RuntimeError(f"boom in {method}")
        return self.answers.get(method)

    def __getattr__(self, name):
        return _Chain(self, "kong." + name)

    @property
    def names(self) -> list[str]:
        return [m for m, _ in self.calls]


class _Chain:
    def __init__(self, kong: FakeKong, prefix: str):
        self._kong, self._prefix = kong, prefix

    def __getattr__(self, name):
        return _Chain(self._kong, self._prefix + "." + name)

    def __call__(self, *args):
        return self._kong._call(self._prefix, *args)


class StubGateway:
    def __init__(self, outcome: Outcome | None = None, exc: BaseException | None = None, block: threading.Event | None = None):
        self.outcome, self.exc, self.block = outcome, exc, block
        self.calls_seen_on_entry: int | None = None
        self.kong: FakeKong | None = None

    def handle(self, request):
        if self.kong is not None:
            self.calls_seen_on_entry = len(self.kong.calls)
        if self.block is not None:
            assert self.block.wait(10)
        if self.exc is not None:
            raise self.exc
        return self.outcome


def plugin_with(gateway) -> Plugin:
    plugin = Plugin.__new__(Plugin)
    plugin._raw = {}
    plugin.gateway = gateway
    return plugin


def allow_outcome(**kw) -> Outcome:
    base = dict(upstream_set={"X-User-Id": "u1"}, upstream_clear=["x-groups"], authenticated_groups=[GUARD],
                log={"decision": "allow"})
    base.update(kw)
    return Outcome(**base)


OUTCOMES = {
    "allow": allow_outcome(),
    "allow_with_cookie_and_consumer": allow_outcome(
        response_headers={"Set-Cookie": "s=1"}, consumer={"id": "c1", "username": "alice"},
        credential={"id": "sub", "consumer_id": "c1"}, authenticated_groups=[GUARD, "admins"]),
    "public": Outcome(upstream_clear=["x-user-id"], authenticated_groups=[GUARD], log={"decision": "public"}),
    "preflight": Outcome(authenticated_groups=[GUARD], log={"decision": "preflight"}),
    "anonymous": Outcome(consumer={"id": "anon"}, authenticated_groups=[GUARD], log={"decision": "anonymous"}),
    "deny_400": Outcome(status=400, body={"message": "bad"}, response_headers={"WWW-Authenticate": "Bearer"}, log={"decision": "deny"}),
    "deny_401": Outcome(status=401, body={"message": "no"}, response_headers={"WWW-Authenticate": "Bearer"}, log={"decision": "deny"}),
    "deny_403": Outcome(status=403, body={"message": "scope"}, response_headers={"WWW-Authenticate": "Bearer"}, log={"decision": "deny"}),
    "redirect_302": Outcome(status=302, body=None, response_headers={"Location": "https://idp/auth"}, log={"decision": "redirect"}),
    "anonymous_not_found_500": Outcome(status=500, body={"message": "An unexpected error occurred"}, log={"decision": "deny"}),
}


@pytest.mark.parametrize("kind", sorted(OUTCOMES))
def test_first_pdk_call_is_get_headers_for_every_outcome_kind(kind):
    kong = FakeKong()
    plugin_with(StubGateway(OUTCOMES[kind])).access(kong)
    assert kong.calls[0] == ("kong.request.get_headers", (MAX_HEADERS,))


@pytest.mark.parametrize("kind", sorted(k for k, o in OUTCOMES.items() if o.status is not None))
def test_exit_is_the_last_and_only_terminal_call_on_every_denial(kind):
    kong = FakeKong()
    plugin_with(StubGateway(OUTCOMES[kind])).access(kong)
    assert kong.names.count(EXIT) == 1
    assert kong.names[-1] == EXIT
    assert kong.names.index(EXIT) > 0
    assert MARKER not in kong.names
    assert kong.calls[-1][1][0] == OUTCOMES[kind].status


@pytest.mark.parametrize("kind", sorted(k for k, o in OUTCOMES.items() if o.status is None))
def test_guard_marker_follows_every_upstream_change_on_every_allow(kind):
    kong = FakeKong()
    plugin_with(StubGateway(OUTCOMES[kind])).access(kong)
    names = kong.names
    assert EXIT not in names
    assert names.count(MARKER) == 1
    marker = names.index(MARKER)
    changes = [i for i, n in enumerate(names)
               if n.startswith("kong.service.request.") or n in ("kong.response.set_headers", "kong.client.authenticate")]
    assert all(i < marker for i in changes)
    assert kong.calls[marker][1] == ("authenticated_groups", OUTCOMES[kind].authenticated_groups)
    assert names[-1] == SERIALIZE


def test_allow_applies_clears_and_sets_in_one_set_headers_call():
    # an empty array removes every header of that name (Kong t/01-pdk/06-service-request/12-set_headers.t TEST 16)
    kong = FakeKong()
    plugin_with(StubGateway(allow_outcome(upstream_clear=["a", "x_user_id"]))).access(kong)
    assert kong.names[1] == "kong.service.request.set_headers"
    assert "kong.service.request.clear_header" not in kong.names
    assert kong.calls[1][1] == ({"a": [], "x_user_id": [], "X-User-Id": "u1"},)


def test_a_name_both_cleared_and_set_is_only_set():
    # nginx matches names case-insensitively and Lua's pairs order is unspecified
    kong = FakeKong()
    plugin_with(StubGateway(allow_outcome(upstream_clear=["x-user-id"]))).access(kong)
    assert kong.calls[1][1] == ({"X-User-Id": "u1"},)


def test_clears_alone_still_make_one_set_headers_call():
    kong = FakeKong()
    plugin_with(StubGateway(Outcome(upstream_clear=["x_a", "x-b"], authenticated_groups=[GUARD]))).access(kong)
    assert kong.calls[1] == ("kong.service.request.set_headers", ({"x_a": [], "x-b": []},))


def test_gateway_bug_becomes_a_logged_500(caplog):
    kong = FakeKong()
    with caplog.at_level(logging.ERROR, logger="kong_oidc_py"):
        plugin_with(StubGateway(exc=KeyError("injected bug"))).access(kong)
    assert kong.names == ["kong.request.get_headers", SERIALIZE, EXIT]
    assert kong.calls[-1][1][0] == 500
    assert kong.calls[1][1][1]["decision"] == "error"
    assert "KeyError" in caplog.text and "test_handler.py" in caplog.text


def test_a_bug_s_message_never_reaches_the_log(caplog):
    # An exception message may quote the request; the log gets the stack and the type only.
    secret = "eyJhbGciOiJSUzI1NiJ9.secret-token-body.sig"
    with caplog.at_level(logging.ERROR, logger="kong_oidc_py"):
        plugin_with(StubGateway(exc=ValueError(f"bad header {secret}"))).access(FakeKong())
    assert "ValueError" in caplog.text
    assert secret not in caplog.text


def test_gateway_bug_never_escapes_access():
    for exc in (ValueError("x"), TypeError("y"), RecursionError(), AttributeError("z"), UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates")):
        plugin_with(StubGateway(exc=exc)).access(FakeKong())  # must not raise


def test_real_gateway_with_monkeypatched_bug_answers_500_then_next_request_works(monkeypatch):
    from kong_oidc_py import gateway as gateway_mod

    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: _static_provider(issuer))
    plugin = Plugin({"issuer": "http://127.0.0.1:1/realms/bug", "audience_required": ["api"], "policies": [{"name": "pub", "paths": ["/pub"], "public": True}]})
    original = plugin.gateway._match_policy
    monkeypatch.setattr(plugin.gateway, "_match_policy", lambda req, readings: (_ for _ in ()).throw(IndexError("bug")))
    broken = FakeKong()
    plugin.access(broken)
    assert broken.names[-1] == EXIT and broken.calls[-1][1][0] == 500
    monkeypatch.setattr(plugin.gateway, "_match_policy", original)
    healthy = FakeKong(headers={}, answers={"kong.request.get_path": "/pub/x"})
    plugin.access(healthy)
    assert EXIT not in healthy.names
    assert MARKER in healthy.names


def test_failure_reading_headers_sends_nothing_more_so_the_guard_denies():
    kong = FakeKong(fail_on="kong.request.get_headers")
    plugin_with(StubGateway(allow_outcome())).access(kong)
    assert kong.names == ["kong.request.get_headers"]


def test_failure_while_applying_an_allow_becomes_500_without_the_marker():
    kong = FakeKong(fail_on="kong.service.request.set_headers")
    plugin_with(StubGateway(allow_outcome())).access(kong)
    assert MARKER not in kong.names
    assert kong.names[-1] == EXIT
    assert kong.calls[-1][1][0] == 500


def test_failure_of_exit_itself_does_not_escape():
    kong = FakeKong(fail_on=EXIT)
    plugin_with(StubGateway(OUTCOMES["deny_401"])).access(kong)
    assert kong.names.count(EXIT) == 1


def test_first_pdk_call_happens_before_the_gateway_blocks():
    release = threading.Event()
    gateway = StubGateway(allow_outcome(), block=release)
    kong = FakeKong()
    gateway.kong = kong
    worker = threading.Thread(target=plugin_with(gateway).access, args=(kong,))
    worker.start()
    try:
        # kong-pdk releases its server-wide lock at the first PDK call: it must come while we block
        assert kong.first_call.wait(10)
        assert worker.is_alive()
        assert kong.names == ["kong.request.get_headers"]
    finally:
        release.set()
        worker.join(10)
    assert gateway.calls_seen_on_entry == 1
    assert not worker.is_alive()


def test_full_header_table_is_treated_as_truncated():
    kong = FakeKong(headers={f"h{i}": ["v"] for i in range(MAX_HEADERS)})
    request = handler_mod.PdkRequest(kong)
    assert request.headers_truncated


def test_headers_below_the_limit_are_not_truncated():
    request = handler_mod.PdkRequest(FakeKong(headers={"a": ["1", "2"]}))
    assert not request.headers_truncated


def test_lazy_getters_cost_one_pdk_call_each_at_most_once():
    kong = FakeKong()
    request = handler_mod.PdkRequest(kong)
    request.path(), request.path(), request.method(), request.method()
    assert kong.names == ["kong.request.get_headers", "kong.request.get_path", "kong.request.get_method"]
    assert request.calls == 3


def test_plugin_reduces_to_its_raw_config_for_multiprocessing_mode(monkeypatch):
    from kong_oidc_py import gateway as gateway_mod

    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: _static_provider(issuer))
    raw = {"issuer": "http://127.0.0.1:1/realms/pickle", "audience_required": ["api"]}
    fn, args = Plugin(raw).__reduce__()
    assert fn is Plugin and args == (raw,)


def _static_provider(issuer: str):
    from kong_oidc_py.idp.provider import Provider
    from tests.support.keys import jwks, rsa_key

    return Provider.from_jwks(issuer, jwks(rsa_key()))


def test_server_refuses_gevent_mode_with_a_clear_message(capsys):
    from kong_oidc_py.edge.server import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--kong-prefix", "/tmp", "-g"])
    assert exit_info.value.code == 2
    assert "gevent" in capsys.readouterr().err


# -- a config only instance start can refuse: one clear error, then fail closed -------------------

def _broken_config(**extra) -> dict:
    # Two claims, one header name: Kong's schema only checks that both lists are given
    # (rules.START_ONLY_RULES), so this reaches StartInstance.
    return {"issuer": "https://idp.example.com/broken", "audience_required": ["api"],
            "upstream_headers_claims": ["sub", "email"], "upstream_headers_names": ["X-Sub"], **extra}


@pytest.fixture
def kong_log_bridge():
    """A fresh edge/kong_log.py bridge, as the plugin server installs it."""
    from kong_oidc_py.edge import kong_log

    kong_log.uninstall()
    yield kong_log.install()
    kong_log.uninstall()


def test_instance_with_invalid_config_starts_broken_instead_of_failing_start_instance():
    plugin = Plugin(_broken_config(realm="start"))
    assert plugin.broken is not None and plugin.gateway is None
    assert "upstream_headers_names" in plugin.broken.message


def test_broken_instance_logs_the_field_once_through_kong_log_err_then_refuses_with_500(kong_log_bridge):
    plugin = Plugin(_broken_config(realm="once"))
    first, second = FakeKong(), FakeKong()
    plugin.access(first)
    Plugin(_broken_config(realm="once")).access(second)  # another worker's instance, same config
    assert first.names == ["kong.log.err", SERIALIZE, EXIT]
    assert "upstream_headers_names" in first.calls[0][1][0] and "500" in first.calls[0][1][0]
    assert second.names == [SERIALIZE, EXIT]
    for kong in (first, second):
        status, body, _headers = kong.calls[-1][1]
        assert status == 500 and body == handler_mod.INTERNAL_ERROR_BODY
        assert MARKER not in kong.names
        assert kong.calls[-2][1][1]["reason"] == "config_error"


def test_broken_instance_never_parses_or_reads_the_request_again(monkeypatch):
    plugin = Plugin(_broken_config(realm="noparse"))
    monkeypatch.setattr(handler_mod, "gateway_for", lambda raw: pytest.fail("re-parsed"))
    kong = FakeKong()
    plugin.access(kong)
    assert "kong.request.get_headers" not in kong.names


def test_broken_instance_message_never_carries_a_secret_value():
    secret = "client-secret-that-must-stay-out-of-logs"
    plugin = Plugin(_broken_config(realm="secret", client_secret=secret))
    kong = FakeKong()
    plugin.access(kong)
    assert secret not in plugin.broken.message
    assert all(secret not in repr(args) for _, args in kong.calls)


def test_start_warnings_reach_kong_log_warn_once_on_the_first_request(monkeypatch, kong_log_bridge):
    from kong_oidc_py import gateway as gateway_mod

    monkeypatch.setattr(gateway_mod, "get_provider", lambda issuer, settings: _static_provider(issuer))
    raw = {"issuer": "http://127.0.0.1:1/realms/warn", "allow_any_audience": True}
    first, second = FakeKong(headers={}), FakeKong(headers={})
    Plugin(raw).access(first)
    Plugin(raw).access(second)
    warned = [args[0] for name, args in first.calls if name == "kong.log.warn"]
    assert len(warned) == 1 and "allow_any_audience" in warned[0]
    assert first.names[0] == "kong.request.get_headers"
    assert "kong.log.warn" not in second.names  # the Gateway (and its warning) is shared per config
