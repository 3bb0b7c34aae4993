"""kong_oidc_py.metrics and the plugin server's metrics flags, without a plugin server."""

import logging
import socket

import pytest
from prometheus_client import CollectorRegistry

from kong_oidc_py import metrics
from kong_oidc_py.edge.metrics_server import MetricsArgsError, MetricsSettings, pop_metrics_args, start
from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.fetch import fetch_outcome


@pytest.fixture
def registry():
    metrics.disable()
    reg = CollectorRegistry()
    metrics.enable(reg)
    yield reg
    metrics.disable()


def value(reg, name, **labels):
    return reg.get_sample_value(name, labels) or 0.0


def test_recording_is_a_no_op_until_enabled():
    metrics.disable()
    metrics.decision("i", "r", {"decision": "allow"}, 0.001)
    metrics.idp_fetch("https://idp", "jwks", "ok", 0.01)
    metrics.token_cache(True)
    assert not metrics.enabled()


def test_a_decision_counts_once_with_its_reason_and_time(registry):
    metrics.decision("orders", "r1", {"decision": "deny", "reason": "expired"}, 0.002)
    assert value(registry, "kong_oidc_decisions_total", instance="orders", route="r1", decision="deny", reason="expired") == 1
    assert value(registry, "kong_oidc_event_seconds_count", instance="orders") == 1


def test_a_reason_that_is_not_code_shaped_is_counted_as_other(registry):
    metrics.decision("i", "", {"decision": "deny", "reason": "Bearer eyJhbGciOi"}, 0.001)
    assert value(registry, "kong_oidc_decisions_total", instance="i", route="", decision="deny", reason="other") == 1


def test_reason_labels_are_capped_so_no_input_can_grow_them():
    vocab = metrics._Vocabulary(3)
    assert [vocab(f"r{i}") for i in range(5)] == ["r0", "r1", "r2", "other", "other"]
    assert vocab("r1") == "r1"


def test_unknown_fetch_kinds_and_outcomes_are_other(registry):
    metrics.idp_fetch("https://idp", "weird", "exploded", 0.1)
    assert value(registry, "kong_oidc_idp_fetches_total", issuer="https://idp", kind="other", outcome="other") == 1


def test_instance_and_route_come_from_the_metadata_kong_adds():
    assert metrics.instance_labels({"plugin_instance_name": "orders", "__plugin_id": "p", "route_id": "r"}) == ("orders", "r")
    assert metrics.instance_labels({"__plugin_id": "p"}) == ("p", "")


@pytest.mark.parametrize("cause, outcome", [
    ("timeout", "timeout"),
    ("http_status", "status"),
    ("too_large", "too_large"),
    ("unreachable", "unreachable"),
    ("tls", "tls"),
    ("bad_json", "bad_json"),
    ("issuer_mismatch", "error"),
])
def test_fetch_failures_are_classified_for_the_outcome_label(cause, outcome):
    assert fetch_outcome(ProviderError("jwks_failed", "https://idp/jwks failed", cause=cause)) == outcome


def test_a_token_endpoint_that_cannot_be_reached_is_labelled_unreachable():
    from kong_oidc_py.browser.token_endpoint import TokenClient

    client = TokenClient(client_id="c", client_secret="s", auth_method="client_secret_basic",
                         timeout_ms=2000, ssl_verify=True)
    with pytest.raises(ProviderError) as info:
        client.refresh("http://127.0.0.1:9/token", refresh_token="r")  # port 9: nothing listens
    assert fetch_outcome(info.value) == "unreachable"


def test_token_cache_lookups_count_hits_and_misses(registry):
    from kong_oidc_py.verification.token_cache import TokenCache

    cache = TokenCache(10, 60)
    cache.get(b"k", 0)
    cache.put(b"k", "v", 0, None)
    cache.get(b"k", 1)
    assert value(registry, "kong_oidc_token_cache_total", result="miss") == 1
    assert value(registry, "kong_oidc_token_cache_total", result="hit") == 1


def test_metrics_are_off_without_flag_or_environment():
    assert pop_metrics_args(["--kong-prefix", "/k"], env={}) == (["--kong-prefix", "/k"], None)


def test_the_flags_are_taken_out_of_kong_pdks_arguments():
    rest, settings = pop_metrics_args(["--kong-prefix", "/k", "--metrics-port", "9542", "-m"], env={})
    assert rest == ["--kong-prefix", "/k", "-m"]
    assert settings == MetricsSettings(port=9542, host="127.0.0.1")


def test_the_environment_turns_metrics_on_and_the_host_defaults_to_loopback():
    _, settings = pop_metrics_args([], env={"KONG_OIDC_PY_METRICS_PORT": "9542"})
    assert settings == MetricsSettings(port=9542) and settings.loopback


@pytest.mark.parametrize("port", ["nine", "0", "70000"])
def test_a_bad_port_is_refused_naming_the_flag(port):
    with pytest.raises(MetricsArgsError, match="--metrics-port"):
        pop_metrics_args(["--metrics-port", port], env={})


def test_a_busy_metrics_port_is_logged_and_leaves_metrics_off(caplog):
    metrics.disable()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with caplog.at_level(logging.ERROR, logger="kong_oidc_py"):
            assert start(MetricsSettings(port=holder.getsockname()[1])) is None
    assert "metrics are off" in caplog.text
    assert not metrics.enabled()
