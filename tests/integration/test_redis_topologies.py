"""Sessions on Redis as production runs it: ACL users, TLS, Sentinel and a 3-master Cluster, with
masters killed under traffic. Real redis-server processes on loopback (tests/support)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import pytest
import redis

from kong_oidc_py.browser.session.locks import StoreUnavailable
from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.browser.session.store import RedisStore, SessionSettings
from kong_oidc_py.shared_state.redis_client import RedisNode, RedisSettings
from tests.support.redis_server import RedisServer
from tests.support.redis_topology import redis_cluster, redis_sentinel, tls_files

pytestmark = pytest.mark.redis

SECRET = "a-very-long-session-secret-for-tests-0001"


def store_for(**redis_kw) -> RedisStore:
    redis_kw.setdefault("connect_timeout_ms", 300)
    redis_kw.setdefault("read_timeout_ms", 300)
    settings = SessionSettings(secrets=(SECRET,), storage="redis", redis=RedisSettings(**redis_kw),
                               refresh_lock_ttl_ms=2000, refresh_lock_wait_ms=2000)
    return RedisStore(settings)


def new_session(n: int = 0) -> Session:
    now = time.time()
    return Session.new(subject=f"user-{n}", issuer="https://idp.example", access_token=f"access-{n}",
                       id_token=None, refresh_token=None, expires_at=now + 300, now=now)


def cookies_from(set_cookies: list[str]) -> dict[str, str]:
    pairs = (h.split(";", 1)[0].split("=", 1) for h in set_cookies if "Max-Age=0" not in h)
    return {k: v for k, v in pairs}


def reason_of(store: RedisStore, cookies: dict[str, str]) -> str:
    with pytest.raises(StoreUnavailable) as caught:
        store.load(cookies, time.time())
    return caught.value.reason


# -- ACL ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    # The default user is off: only the ACL user with its password may connect.
    with RedisServer(extra_args=("--user", "default", "off", "--user", "gateway", "on", ">gateway-pw-0001",
                                 "~oidc:*", "+@all")) as server:
        yield server


def test_acl_user_with_its_password_stores_and_loads_sessions(acl_server: RedisServer) -> None:
    store = store_for(port=acl_server.port, username="gateway", password="gateway-pw-0001")
    session = new_session()
    assert store.load(cookies_from(store.save(session, {}, time.time())), time.time())[0] == session


def test_wrong_acl_password_fails_closed_naming_authentication(acl_server: RedisServer) -> None:
    good = store_for(port=acl_server.port, username="gateway", password="gateway-pw-0001")
    cookies = cookies_from(good.save(new_session(), {}, time.time()))
    bad = store_for(port=acl_server.port, username="gateway", password="not-the-password")
    assert reason_of(bad, cookies) == "redis_auth_failed"


def test_acl_that_denies_the_key_prefix_fails_closed_naming_the_acl(acl_server: RedisServer) -> None:
    store = store_for(port=acl_server.port, username="gateway", password="gateway-pw-0001", prefix="other")
    with pytest.raises(StoreUnavailable) as caught:
        store.save(new_session(), {}, time.time())
    assert caught.value.reason == "redis_acl_denied"


def test_auth_failure_is_logged_once_at_error_with_the_options_to_check(acl_server: RedisServer, caplog) -> None:
    good = store_for(port=acl_server.port, username="gateway", password="gateway-pw-0001")
    cookies = cookies_from(good.save(new_session(), {}, time.time()))
    bad = store_for(port=acl_server.port, username="gateway", password="not-the-password")
    with caplog.at_level(logging.DEBUG, logger="kong_oidc_py"):
        for _ in range(3):
            reason_of(bad, cookies)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "session_redis_username/session_redis_password" in errors[0].getMessage()
    assert "not-the-password" not in caplog.text


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[RedisServer, object]]:
    with tls_files("redis.test") as files:
        with RedisServer(tls=(files.cert, files.key, files.ca)) as server:
            yield server, files


def test_tls_with_the_servers_ca_stores_and_loads_sessions(tls_server) -> None:
    server, files = tls_server
    store = store_for(port=server.port, ssl=True, ca_file=files.ca)
    session = new_session()
    assert store.load(cookies_from(store.save(session, {}, time.time())), time.time())[0] == session


def test_tls_certificate_from_an_unknown_ca_is_refused(tls_server) -> None:
    server, files = tls_server
    store = store_for(port=server.port, ssl=True, ca_file=files.other_ca)
    with pytest.raises(StoreUnavailable) as caught:
        store.save(new_session(), {}, time.time())
    assert caught.value.reason == "redis_tls_failed"


def test_tls_server_name_is_presented_and_verified(tls_server) -> None:
    server, files = tls_server
    named = store_for(port=server.port, ssl=True, ca_file=files.ca, server_name="redis.test")
    named.save(new_session(), {}, time.time())
    wrong = store_for(port=server.port, ssl=True, ca_file=files.ca, server_name="other.test")
    with pytest.raises(StoreUnavailable) as caught:
        wrong.save(new_session(), {}, time.time())
    assert caught.value.reason == "redis_tls_failed"


def test_plaintext_client_cannot_talk_to_a_tls_redis(tls_server) -> None:
    server, _ = tls_server
    with pytest.raises(StoreUnavailable):
        store_for(port=server.port).save(new_session(), {}, time.time())


# -- traffic while a master dies -------------------------------------------------------------------


def traffic_through_failover(store: RedisStore, sessions: list[tuple[Session, dict[str, str]]], kill, *,
                             deadline_s: float = 20.0) -> dict[str, object]:
    """4 threads load every session in a loop; `kill()` runs once traffic flows. Returns what the
    threads saw: ok loads, fail-closed reasons, anything else (must stay empty), recovery time."""
    seen: dict[str, object] = {"ok": 0, "closed": {}, "wrong": [], "recovered_after": None}
    guard = threading.Lock()
    killed_at: list[float] = []
    stop = threading.Event()

    def worker(offset: int) -> None:
        i = offset
        while not stop.is_set():
            session, cookies = sessions[i % len(sessions)]
            i += 1
            try:
                loaded, reason = store.load(cookies, time.time())
            except StoreUnavailable as err:
                with guard:
                    closed = seen["closed"]
                    closed[err.reason] = closed.get(err.reason, 0) + 1  # type: ignore[union-attr]
                time.sleep(0.02)
                continue
            except Exception as err:  # noqa: BLE001 - anything else is a bug to report
                with guard:
                    seen["wrong"].append(repr(err))  # type: ignore[union-attr]
                continue
            with guard:
                if loaded != session:
                    seen["wrong"].append(f"session {i}: {reason}")  # type: ignore[union-attr]
                else:
                    seen["ok"] = int(seen["ok"]) + 1  # type: ignore[call-overload]

    threads = [threading.Thread(target=worker, args=(k * 7,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    kill()
    killed_at.append(time.monotonic())
    # Recovered = every session loads again, through the same client (nothing rebuilt by hand).
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if all(store.load(c, time.time())[0] == s for s, c in sessions):
                seen["recovered_after"] = time.monotonic() - killed_at[0]
                break
        except StoreUnavailable:
            pass
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    return seen


def save_all(store: RedisStore, n: int) -> list[tuple[Session, dict[str, str]]]:
    out = []
    for k in range(n):
        session = new_session(k)
        out.append((session, cookies_from(store.save(session, {}, time.time()))))
    return out


def wait_replicated(ports: list[int]) -> None:
    """Replication is asynchronous: let the replicas catch up before a master is killed."""
    for port in ports:
        client = redis.Redis(port=port, socket_timeout=2)
        try:
            client.execute_command("WAIT", 1, 2000)
        finally:
            client.close()


def test_cluster_keeps_sessions_through_a_master_kill_under_traffic() -> None:
    with redis_cluster(masters=3, replicas_per_master=1) as cluster:
        store = store_for(cluster_nodes=(RedisNode("127.0.0.1", cluster.masters[0].port),))
        sessions = save_all(store, 40)
        wait_replicated([m.port for m in cluster.masters])
        victim = cluster.master_for_slot(store.client.keyslot(store.redis_key(sessions[0][0].id)))
        seen = traffic_through_failover(store, sessions, victim.crash)
        print(f"cluster failover: {seen}")
        assert seen["wrong"] == []
        assert seen["recovered_after"] is not None, f"not recovered: {seen}"
        assert set(seen["closed"]) <= {"redis_unreachable", "redis_timeout", "redis_cluster_down"}  # type: ignore[arg-type]
        assert seen["closed"], "killing a master should have failed some requests closed"


def test_cluster_keeps_a_sessions_keys_in_one_slot() -> None:
    with redis_cluster(masters=3, replicas_per_master=0) as cluster:
        store = store_for(cluster_nodes=tuple(RedisNode("127.0.0.1", m.port) for m in cluster.masters))
        slots = set()
        for k in range(20):
            session = new_session(k)
            store.save(session, {}, time.time())
            pair = {store.client.keyslot(store.redis_key(session.id)), store.client.keyslot(store.lock_key(session.id))}
            assert len(pair) == 1
            slots |= pair
            with store.refresh_lock(session):  # the lock works on whichever master holds the slot
                pass
        assert len({cluster.master_for_slot(s).port for s in slots}) == 3  # sessions spread over masters


def test_sentinel_follows_the_new_master_after_a_kill_under_traffic() -> None:
    with redis_sentinel() as setup:
        store = store_for(sentinel_master=setup.name,
                          sentinel_nodes=tuple(RedisNode("127.0.0.1", s.port) for s in setup.sentinels))
        sessions = save_all(store, 20)
        wait_replicated([setup.master.port])
        seen = traffic_through_failover(store, sessions, setup.master.crash, deadline_s=30)
        print(f"sentinel failover: {seen}")
        assert seen["wrong"] == []
        assert seen["recovered_after"] is not None, f"not recovered: {seen}"
        assert setup.current_master_port() == setup.replica.port
        assert set(seen["closed"]) <= {"redis_unreachable", "redis_timeout", "redis_no_master", "redis_read_only"}  # type: ignore[arg-type]
        # Writes go to the promoted master too.
        fresh = new_session(99)
        assert store.load(cookies_from(store.save(fresh, {}, time.time())), time.time())[0] == fresh


def test_standalone_redis_restarted_is_used_again_without_a_new_client() -> None:
    with RedisServer() as server:
        store = store_for(port=server.port)
        session = new_session()
        cookies = cookies_from(store.save(session, {}, time.time()))
        server.crash()
        assert reason_of(store, cookies) == "redis_unreachable"
        server.restart()
        # Fresh data (no persistence): the session is gone, and the same client works again.
        assert store.load(cookies, time.time()) == (None, "session_not_found")
        store.save(session, {}, time.time())
        assert store.load(cookies, time.time())[0] == session
