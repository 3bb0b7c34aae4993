"""Logout that really ends a session: revocation records, the sid/sub index and logout-token
jti replay, against a real redis-server (two stores = two plugin servers)."""

from __future__ import annotations

import secrets
import time
from typing import Iterator

import pytest

from kong_oidc_py.browser.session.model import Session
from kong_oidc_py.browser.session.store import CookieStore, RedisStore, SessionRevoked, SessionSettings
from kong_oidc_py.shared_state.redis_client import RedisSettings
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

SECRET = "a-very-long-session-secret-for-tests-0001"
ISS = "https://idp.example"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@pytest.fixture
def prefix() -> str:
    return "r" + secrets.token_hex(4)


def settings(server: RedisServer, prefix: str, storage: str, **kw) -> SessionSettings:
    return SessionSettings(secrets=(SECRET,), storage=storage, revocation=(storage == "cookie"),
                           redis=RedisSettings(port=server.port, prefix=prefix, connect_timeout_ms=500,
                                               read_timeout_ms=500), **kw)


def two(server, prefix, storage, **kw):
    cls = RedisStore if storage == "redis" else CookieStore
    return cls(settings(server, prefix, storage, **kw)), cls(settings(server, prefix, storage, **kw))


def new_session(sub: str = "alice", sid: str | None = "idp-session-1", now: float | None = None) -> Session:
    now = time.time() if now is None else now
    return Session.new(subject=sub, issuer=ISS, access_token="at", id_token="it", refresh_token="rt",
                       expires_at=now + 300, now=now, sid=sid)


def cookies_from(set_cookies: list[str]) -> dict[str, str]:
    pairs = (h.split(";", 1)[0].split("=", 1) for h in set_cookies if "Max-Age=0" not in h)
    return {k: v for k, v in pairs}


@pytest.mark.parametrize("storage", ["cookie", "redis"])
def test_copied_cookie_stops_working_on_every_node_after_logout(server, prefix, storage) -> None:
    a, b = two(server, prefix, storage)
    session = new_session()
    copy = cookies_from(a.save(session, {}, time.time()))
    assert b.load(copy, time.time())[0] == session
    a.destroy(session, copy)  # logout through node A
    loaded, reason = b.load(copy, time.time())  # the copy, replayed at node B
    assert loaded is None and reason in ("session_revoked", "session_not_found")


def test_cookie_storage_without_revocation_keeps_accepting_a_copy(server, prefix) -> None:
    """What the README states for cookie storage without Redis: the copy works until it times out."""
    store = CookieStore(SessionSettings(secrets=(SECRET,), storage="cookie"))
    session = new_session()
    copy = cookies_from(store.save(session, {}, time.time()))
    store.destroy(session, copy)
    assert store.load(copy, time.time())[0] == session


def test_revocation_record_lives_until_the_absolute_timeout(server, prefix) -> None:
    a, _ = two(server, prefix, "cookie", session_absolute_timeout=3600)
    now = time.time()
    session = new_session(now=now - 600)  # logged in 10 minutes ago
    a.destroy(session, cookies_from(a.save(session, {}, now)))
    ttl = a.revocations.client.ttl(a.revocations._session_key(a.revocations.session_digest(session.id), "revoked"))
    assert 2990 <= ttl <= 3000


def test_timeouts_still_apply_to_sessions_that_are_not_revoked(server, prefix) -> None:
    a, _ = two(server, prefix, "cookie", session_idling_timeout=60)
    now = time.time()
    session = new_session(now=now)
    copy = cookies_from(a.save(session, {}, now))
    assert a.load(copy, now + 61) == (None, "idle_timeout")


def test_refresh_saved_after_a_logout_does_not_bring_the_session_back(server, prefix) -> None:
    a, b = two(server, prefix, "redis")
    session = new_session()
    cookies = cookies_from(a.save(session, {}, time.time()))
    b.destroy(session, cookies)  # logout on B while A refreshes
    refreshed = session.with_tokens(access_token="new", id_token=None, refresh_token=None,
                                    expires_at=time.time() + 300, now=time.time())
    with pytest.raises(SessionRevoked):
        a.save(refreshed, cookies, time.time())
    assert a.load(cookies, time.time()) == (None, "session_not_found")


@pytest.mark.parametrize("storage", ["cookie", "redis"])
def test_revoking_an_idp_session_ends_every_session_with_that_sid(server, prefix, storage) -> None:
    a, b = two(server, prefix, storage)
    now = time.time()
    one, other_tab, other_sid = new_session(sid="sid-1"), new_session(sid="sid-1"), new_session(sid="sid-2")
    jars = {}
    for s in (one, other_tab, other_sid):
        jars[s.id] = cookies_from(a.save(s, {}, now))
        a.revocations.register(s, now)
    assert b.revocations.revoke_all(ISS, sid="sid-1", sub=None) == 2
    assert b.load(jars[one.id], now)[0] is None
    assert b.load(jars[other_tab.id], now)[0] is None
    assert b.load(jars[other_sid.id], now)[0] == other_sid


def test_revoking_a_user_ends_all_their_sessions_only(server, prefix) -> None:
    a, b = two(server, prefix, "cookie")
    now = time.time()
    alice1, alice2, bob = new_session("alice", "s1"), new_session("alice", "s2"), new_session("bob", "s3")
    jars = {}
    for s in (alice1, alice2, bob):
        jars[s.id] = cookies_from(a.save(s, {}, now))
        a.revocations.register(s, now)
    assert b.revocations.revoke_all(ISS, sid=None, sub="alice") == 2
    assert [b.load(jars[s.id], now)[0] is None for s in (alice1, alice2, bob)] == [True, True, False]


def test_index_is_per_issuer(server, prefix) -> None:
    a, _ = two(server, prefix, "cookie")
    now = time.time()
    session = new_session(sid="shared-sid")
    jar = cookies_from(a.save(session, {}, now))
    a.revocations.register(session, now)
    assert a.revocations.revoke_all("https://other-idp.example", sid="shared-sid", sub=None) == 0
    assert a.load(jar, now)[0] == session


def test_index_keys_hold_no_session_id(server, prefix) -> None:
    a, _ = two(server, prefix, "cookie")
    session = new_session()
    a.revocations.register(session, time.time())
    client = a.revocations.client
    for key in client.keys(prefix + ":*"):
        assert session.id.encode() not in key
        if client.type(key) == b"set":
            assert all(session.id.encode() not in m for m in client.smembers(key))


def test_logout_token_jti_is_accepted_once(server, prefix) -> None:
    a, b = two(server, prefix, "cookie")
    assert a.revocations.first_use_of_jti(ISS, "jti-1", 60) is True
    assert b.revocations.first_use_of_jti(ISS, "jti-1", 60) is False
    assert b.revocations.first_use_of_jti("https://other.example", "jti-1", 60) is True
