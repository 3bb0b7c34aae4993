"""RedisStore and the refresh lock against a real redis-server (loopback, no persistence)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import Iterator

import pytest

from kong_oidc_py.browser.session.locks import LockTimeout, RedisLock, StoreUnavailable
from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.browser.session.store import RedisSettings, RedisStore, SessionSettings, make_redis_client
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

SECRET = "a-very-long-session-secret-for-tests-0001"
T0 = time.time()  # Redis TTLs run on Redis' clock, so sessions are created "now"
ACCESS = "access-token-value-that-must-not-leak"
REFRESH = "refresh-token-value-that-must-not-leak"


def make_settings(server_port: int, prefix: str, **redis_kw) -> SessionSettings:
    redis = RedisSettings(port=server_port, prefix=prefix, connect_timeout_ms=500, read_timeout_ms=500, **redis_kw)
    return SessionSettings(secrets=(SECRET,), storage="redis", redis=redis, refresh_lock_ttl_ms=5000, refresh_lock_wait_ms=5000)


@pytest.fixture
def prefix() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
def stores(redis_server: RedisServer, prefix: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two stores with their own pools: two plugin servers sharing one Redis."""
    a = RedisStore(make_settings(redis_server.port, prefix))
    b = RedisStore(make_settings(redis_server.port, prefix))
    yield a, b
    a.client.close()
    b.client.close()


def new_session(access: str = ACCESS) -> Session:
    return Session.new(subject="alice", issuer="https://idp.example", access_token=access, id_token="id.token",
                       refresh_token=REFRESH, expires_at=T0 + 300, now=T0)


def cookies_from(set_cookies: list[str]) -> dict[str, str]:
    return {h.split(";", 1)[0].split("=", 1)[0]: h.split(";", 1)[0].split("=", 1)[1] for h in set_cookies if "Max-Age=0" not in h}


def test_session_saved_by_one_server_loads_on_another(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    session = new_session()
    loaded, reason = b.load(cookies_from(a.save(session, {}, T0)), T0 + 1)
    assert reason == "" and loaded == session


def test_cookie_carries_only_a_small_handle(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    cookies = cookies_from(a.save(new_session(access="x" * 5000), {}, T0))
    assert list(cookies) == ["session"] and len(cookies["session"]) < 200


def test_redis_value_is_not_plaintext(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    session = new_session()
    a.save(session, {}, T0)
    raw = a.client.get(a.redis_key(session.id))
    assert ACCESS.encode() not in raw and REFRESH.encode() not in raw and b"alice" not in raw


def test_redis_key_name_does_not_reveal_the_session_id(stores: tuple[RedisStore, RedisStore], prefix: str) -> None:
    a, _ = stores
    session = new_session()
    a.save(session, {}, T0)
    keys = [k.decode() for k in a.client.keys(prefix + ":*")]
    assert keys == [a.redis_key(session.id)] and session.id not in keys[0]


def test_ttl_is_the_time_left_before_the_first_timeout(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    session = new_session()
    a.save(session, {}, T0)
    ttl = a.client.ttl(a.redis_key(session.id))
    assert 850 <= ttl <= 900  # idling timeout 900 s is the nearest limit


def test_destroy_deletes_the_redis_key(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    session = new_session()
    cookies = cookies_from(a.save(session, {}, T0))
    headers = b.destroy(None, cookies)
    assert a.client.exists(a.redis_key(session.id)) == 0
    assert all("Max-Age=0" in h for h in headers)


def test_session_gone_from_redis_is_no_session(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    session = new_session()
    cookies = cookies_from(a.save(session, {}, T0))
    a.client.delete(a.redis_key(session.id))
    assert a.load(cookies, T0) == (None, "session_not_found")


def test_record_moved_to_another_session_key_is_refused(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    one, two = new_session(), new_session()
    cookies_one = cookies_from(a.save(one, {}, T0))
    a.save(two, {}, T0)
    a.client.set(a.redis_key(one.id), a.client.get(a.redis_key(two.id)))
    assert a.load(cookies_one, T0) == (None, "bad_record")


def test_tampered_handle_cookie_is_no_session(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    cookies = cookies_from(a.save(new_session(), {}, T0))
    cookies["session"] = cookies["session"][:-2] + ("AA" if not cookies["session"].endswith("AA") else "BB")
    assert a.load(cookies, T0) == (None, "bad_tag")


def test_refresh_by_one_server_is_seen_by_the_others_reload(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    session = new_session()
    a.save(session, {}, T0)
    refreshed = session.with_tokens(access_token="new-access", id_token=None, refresh_token="r2", expires_at=T0 + 900, now=T0 + 1)
    b.save(refreshed, {}, T0 + 1)
    latest, _ = a.reload(session, {}, T0 + 1)
    assert latest is not None and latest.access_token == "new-access"


# -- the refresh lock ---------------------------------------------------------------------------


def test_redis_lock_has_one_winner_among_concurrent_contenders(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    name = a.lock_key("contended")
    barrier = threading.Barrier(16)
    wins: list[bool] = []

    def contend(i: int) -> None:
        lock = RedisLock((a if i % 2 else b).client, name, ttl_ms=5000, wait_ms=0)
        barrier.wait()
        wins.append(lock.try_acquire())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and len(wins) == 16


def test_refresh_single_flight_across_two_servers(stores: tuple[RedisStore, RedisStore]) -> None:
    """8 threads on two "plugin servers" find the session expiring: exactly one refreshes."""
    a, b = stores
    session = new_session()
    cookies = cookies_from(a.save(session, {}, T0))
    refreshes: list[int] = []
    results: list[str] = []
    barrier = threading.Barrier(8)

    def request(i: int) -> None:
        store = a if i % 2 else b
        current, _ = store.load(cookies, T0)
        barrier.wait()
        with store.refresh_lock(current):
            latest, _ = store.reload(current, cookies, T0)
            if latest.access_token == ACCESS:  # still the old token: we are the refresher
                refreshes.append(i)
                time.sleep(0.05)  # the token endpoint call, so that others really wait
                latest = latest.with_tokens(access_token=f"refreshed-by-{i}", id_token=None, refresh_token="r2",
                                            expires_at=T0 + 900, now=T0)
                store.save(latest, cookies, T0)
            results.append(latest.access_token)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refreshes) == 1
    assert results == [f"refreshed-by-{refreshes[0]}"] * 8


def test_release_does_not_delete_a_lock_taken_over_after_expiry(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    name = a.lock_key("takeover")
    first = RedisLock(a.client, name, ttl_ms=5000, wait_ms=0)
    assert first.try_acquire()
    a.client.delete(name)  # as if first's TTL ran out
    second = RedisLock(a.client, name, ttl_ms=5000, wait_ms=0)
    assert second.try_acquire()
    assert first.release() is False and a.client.exists(name) == 1


def test_waiting_for_a_held_lock_times_out(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    name = a.lock_key("held")
    assert RedisLock(a.client, name, ttl_ms=5000, wait_ms=0).try_acquire()
    clock = [0.0]
    waiter = RedisLock(a.client, name, ttl_ms=5000, wait_ms=200, poll_ms=50, clock=lambda: clock[0],
                       sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(LockTimeout):
        waiter.acquire()
    assert clock[0] == pytest.approx(0.2)


def test_waiter_gets_the_lock_once_released(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    name = a.lock_key("handover")
    holder = RedisLock(a.client, name, ttl_ms=5000, wait_ms=0)
    assert holder.try_acquire()
    waiter = RedisLock(a.client, name, ttl_ms=5000, wait_ms=1000, poll_ms=10, sleep=lambda s: holder.release())
    waiter.acquire()
    assert waiter.held


# -- outages ------------------------------------------------------------------------------------


def test_redis_down_raises_store_unavailable_quickly(prefix: str) -> None:
    store = RedisStore(make_settings(free_port(), prefix))
    cookies = cookies_from(store._write_payload({"i": "x" * 24, "k": "A" * 43}, {}, T0, 60, compress=False))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.load(cookies, T0)
    assert time.monotonic() - started < 2


def test_save_with_redis_down_raises_store_unavailable(prefix: str) -> None:
    store = RedisStore(make_settings(free_port(), prefix))
    with pytest.raises(StoreUnavailable):
        store.save(new_session(), {}, T0)


def test_silent_redis_times_out_instead_of_hanging(prefix: str) -> None:
    """A peer that accepts connections and never answers (a hung Redis) hits the read timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        store = RedisStore(make_settings(listener.getsockname()[1], prefix))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.save(new_session(), {}, T0)
        assert time.monotonic() - started < 3


def test_lock_with_redis_down_raises_store_unavailable(prefix: str) -> None:
    client = make_redis_client(RedisSettings(port=free_port(), connect_timeout_ms=200, read_timeout_ms=200))
    with pytest.raises(StoreUnavailable):
        RedisLock(client, prefix + ":lock", ttl_ms=1000, wait_ms=1000).acquire()


def test_password_protected_redis_needs_the_configured_password(prefix: str) -> None:
    server = RedisServer()
    server.start()
    try:
        store = RedisStore(make_settings(server.port, prefix))
        store.client.config_set("requirepass", "pw-for-tests")
        authed = RedisStore(make_settings(server.port, prefix, password="pw-for-tests"))
        session = new_session()
        cookies = cookies_from(authed.save(session, {}, T0))
        assert authed.load(cookies, T0)[0] == session
        with pytest.raises(StoreUnavailable):
            RedisStore(make_settings(server.port, prefix)).load(cookies, T0)
    finally:
        server.stop()
