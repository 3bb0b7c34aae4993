"""The shared Redis client layer: options -> settings, topology rules, key names, failure reasons."""

from __future__ import annotations

import logging
import socket

import pytest
from redis import exceptions as rx
from redis.crc import key_slot

from kong_oidc_py.config import parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.shared_state.redis_client import (
    KeySpace,
    RedisGuard,
    RedisNode,
    RedisSettings,
    RedisUnavailable,
    classify,
)
from tests.unit.test_config import browser


def cfg(**kw):
    return parse_config(browser(session_storage="redis", **kw))


def config_error(**kw) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        cfg(**kw)
    return caught.value


# -- options ------------------------------------------------------------------------------------


def test_cluster_nodes_select_cluster_mode_with_kong_record_shape():
    settings = RedisSettings.from_config(cfg(session_redis_cluster_nodes=[{"ip": "10.0.0.1", "port": 7000}, {"ip": "10.0.0.2"}]))
    assert settings.mode == "cluster"
    assert settings.cluster_nodes == (RedisNode("10.0.0.1", 7000), RedisNode("10.0.0.2", 6379))


def test_sentinel_options_select_sentinel_mode():
    settings = RedisSettings.from_config(cfg(session_redis_sentinel_master="mymaster",
                                             session_redis_sentinel_nodes=[{"host": "s1", "port": 26379}],
                                             session_redis_sentinel_password="sentinel-pw"))
    assert settings.mode == "sentinel" and settings.sentinel_nodes == (RedisNode("s1", 26379),)
    assert "sentinel-pw" not in repr(settings)


def test_plain_options_stay_standalone_with_tls_verified_by_default():
    settings = RedisSettings.from_config(cfg(session_redis_ssl=True))
    assert settings.mode == "standalone" and settings.ssl and settings.ssl_verify


def test_cluster_and_sentinel_together_are_refused():
    err = config_error(session_redis_cluster_nodes=[{"ip": "a"}], session_redis_sentinel_master="m",
                       session_redis_sentinel_nodes=[{"host": "s"}])
    assert err.field == "session_redis_cluster_nodes"


def test_sentinel_master_without_nodes_is_refused():
    assert config_error(session_redis_sentinel_master="m").field == "session_redis_sentinel_nodes"


def test_sentinel_nodes_without_master_is_refused():
    assert config_error(session_redis_sentinel_nodes=[{"host": "s"}]).field == "session_redis_sentinel_master"


def test_cluster_with_a_database_other_than_0_is_refused():
    assert config_error(session_redis_cluster_nodes=[{"ip": "a"}], session_redis_database=2).field == "session_redis_database"


def test_server_name_without_tls_is_refused():
    assert config_error(session_redis_server_name="redis.internal").field == "session_redis_server_name"


def test_sentinel_role_other_than_master_is_refused():
    err = config_error(session_redis_sentinel_master="m", session_redis_sentinel_nodes=[{"host": "s"}],
                       session_redis_sentinel_role="slave")
    assert err.field == "session_redis_sentinel_role"


def test_cluster_node_without_ip_is_refused():
    assert config_error(session_redis_cluster_nodes=[{"port": 7000}]).field == "session_redis_cluster_nodes[0].ip"


# -- key names ------------------------------------------------------------------------------------


def test_keys_of_one_owner_share_a_cluster_slot():
    keys = KeySpace("oidc", b"k" * 32)
    assert key_slot(keys.key("s", "id-1", "session").encode()) == key_slot(keys.key("s", "id-1", "lock").encode())


def test_keys_of_different_owners_spread_over_slots():
    keys = KeySpace("oidc", b"k" * 32)
    assert len({key_slot(keys.key("s", f"id-{i}", "session").encode()) for i in range(50)}) > 40


def test_key_names_do_not_contain_the_owner_id():
    keys = KeySpace("oidc", b"k" * 32)
    name = keys.key("s", "session-id-value", "session")
    assert "session-id-value" not in name and name.startswith("oidc:{s:")


def test_key_digest_depends_on_the_secret():
    assert KeySpace("p", b"a" * 32).digest("s", "x") != KeySpace("p", b"b" * 32).digest("s", "x")


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("err,reason", [
    (rx.TimeoutError("Timeout reading from socket"), "redis_timeout"),
    (rx.ConnectionError("Connection refused"), "redis_unreachable"),
    (ConnectionRefusedError(111, "refused"), "redis_unreachable"),
    (rx.AuthenticationError("invalid password"), "redis_auth_failed"),
    (rx.ResponseError("WRONGPASS invalid username-password pair"), "redis_auth_failed"),
    (rx.NoPermissionError("NOPERM no permissions to access a key"), "redis_acl_denied"),
    (rx.ReadOnlyError("READONLY You can't write against a read only replica."), "redis_read_only"),
    (rx.ClusterDownError("CLUSTERDOWN"), "redis_cluster_down"),
    (rx.ConnectionError("Error 1 connecting: [SSL: CERTIFICATE_VERIFY_FAILED]"), "redis_tls_failed"),
    (rx.ResponseError("ERR something"), "redis_error"),
])
def test_failures_get_a_stable_reason(err, reason):
    assert classify(err) == reason


def failing(*_a, **_k):
    raise rx.ConnectionError("Connection refused")


def test_guard_turns_failures_into_redis_unavailable_with_the_reason():
    guard = RedisGuard(None, RedisSettings())
    with pytest.raises(RedisUnavailable) as caught:
        guard.call("get", failing)
    assert caught.value.reason == "redis_unreachable"


def test_guard_logs_an_outage_once_and_its_end_once(caplog):
    guard = RedisGuard(None, RedisSettings(host="10.1.2.3", password="redis-pw-secret"))
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        for _ in range(5):
            with pytest.raises(RedisUnavailable):
                guard.call("get", failing)
        assert guard.call("get", lambda: "ok") == "ok"
        guard.call("get", lambda: "ok")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "redis_unreachable" in messages[0] and "10.1.2.3:6379" in messages[0]
    assert "answers again" in messages[1]
    assert "redis-pw-secret" not in caplog.text


def test_guard_accepts_the_callers_error_type():
    class StoreDown(Exception):
        def __init__(self, reason, detail):
            super().__init__(reason)
            self.reason = reason

    guard = RedisGuard(None, RedisSettings(), error=StoreDown)
    with pytest.raises(StoreDown) as caught:
        guard.call("get", failing)
    assert caught.value.reason == "redis_unreachable"


def test_client_for_a_closed_port_fails_within_the_connect_timeout():
    from kong_oidc_py.shared_state.redis_client import make_redis_client
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = RedisSettings(port=port, connect_timeout_ms=200, read_timeout_ms=200)
    guard = RedisGuard(make_redis_client(settings), settings)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        guard.call("get", guard.client.get, "k")
    assert time.monotonic() - started < 1.5


def test_tls_without_verification_warns_at_start(caplog):
    from kong_oidc_py.browser.session.store import RedisStore, SessionSettings

    settings = SessionSettings(secrets=("s" * 40,), storage="redis", redis=RedisSettings(ssl=True, ssl_verify=False))
    with caplog.at_level(logging.WARNING, logger="kong_oidc_py"):
        RedisStore(settings)
    assert "session_redis_ssl_verify is false" in caplog.text
