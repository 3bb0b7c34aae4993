from __future__ import annotations

import random
from dataclasses import replace
from types import SimpleNamespace

import pytest

from kong_oidc_py.errors import ConfigError
from kong_oidc_py.browser.session import crypto
from kong_oidc_py.browser.session.cookie import CookieAttributes, parse_cookie_header
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.session.store import (
    AuthorizationStore,
    CookieStore,
    SessionSettings,
    SessionTooLarge,
    build_session_store,
)

SECRET = "a-very-long-session-secret-for-tests-0001"
OLD_SECRET = "the-previous-session-secret-for-tests-0002"
T0 = 1_700_000_000
ACCESS = "eyJhbGciOi.access-token-value.sig"


def settings(**kw) -> SessionSettings:
    base = dict(secrets=(SECRET,), session_idling_timeout=900, session_rolling_timeout=3600, session_absolute_timeout=86400)
    base.update(kw)
    return SessionSettings(**base)


def new_session(now: float = T0, access: str = ACCESS, refresh: str | None = "refresh-token-value") -> Session:
    return Session.new(subject="alice", issuer="https://idp.example", access_token=access, id_token="id.token.value",
                       refresh_token=refresh, expires_at=now + 300, now=now)


def cookies_from(set_cookies: list[str], jar: dict[str, str] | None = None) -> dict[str, str]:
    """What a browser would send back after applying `set_cookies` to `jar`."""
    jar = dict(jar or {})
    for header in set_cookies:
        pair = header.split(";", 1)[0]
        name, _, value = pair.partition("=")
        if "Max-Age=0" in header:
            jar.pop(name, None)
        else:
            jar[name] = value
    return jar


def saved(store: CookieStore, session: Session, now: float = T0) -> dict[str, str]:
    return cookies_from(store.save(session, {}, now))


@pytest.fixture
def store() -> CookieStore:
    return CookieStore(settings())


# -- round trip ------------------------------------------------------------------------------


def test_saved_session_loads_back_equal(store: CookieStore) -> None:
    session = new_session()
    loaded, reason = store.load(saved(store, session), T0 + 1)
    assert (loaded, reason) == (session, "")


def test_cookie_does_not_contain_the_token(store: CookieStore) -> None:
    assert all(ACCESS not in v and "alice" not in v for v in saved(store, new_session()).values())


def test_big_session_round_trips_over_several_chunks(store: CookieStore) -> None:
    session = new_session(access=random.Random(1).randbytes(6000).hex())
    cookies = saved(store, session)
    assert len(cookies) >= 3
    assert store.load(cookies, T0)[0] == session


def test_session_too_large_for_the_chunk_cap_raises(store: CookieStore) -> None:
    with pytest.raises(SessionTooLarge):
        store.save(new_session(access=random.Random(2).randbytes(30_000).hex()), {}, T0)


# -- hostile cookies -------------------------------------------------------------------------


def test_tampered_byte_gives_no_session(store: CookieStore) -> None:
    cookies = saved(store, new_session())
    value = cookies["session"]
    i = len(value) // 2
    cookies["session"] = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
    assert store.load(cookies, T0) == (None, "bad_tag")


def test_truncated_chunk_gives_no_session(store: CookieStore) -> None:
    cookies = saved(store, new_session(access=random.Random(7).randbytes(6000).hex()))
    cookies["session_2"] = cookies["session_2"][:-10]
    assert store.load(cookies, T0)[0] is None


def test_reordered_chunks_give_no_session(store: CookieStore) -> None:
    cookies = saved(store, new_session(access=random.Random(3).randbytes(6000).hex()))
    cookies["session_2"], cookies["session_3"] = cookies["session_3"], cookies["session_2"]
    assert store.load(cookies, T0)[0] is None


def test_missing_chunk_gives_no_session(store: CookieStore) -> None:
    cookies = saved(store, new_session(access=random.Random(4).randbytes(6000).hex()))
    del cookies["session_2"]
    assert store.load(cookies, T0) == (None, "missing_chunk")


def test_extra_chunk_gives_no_session(store: CookieStore) -> None:
    cookies = saved(store, new_session())
    cookies["session_2"] = "AAAA"
    assert store.load(cookies, T0) == (None, "extra_chunk")


def test_value_moved_to_another_cookie_name_gives_no_session(store: CookieStore) -> None:
    value = saved(store, new_session())["session"]
    other = CookieStore(settings(cookie_name="sess2"))
    assert other.load({"sess2": value}, T0) == (None, "bad_tag")


def test_non_base64_cookie_gives_no_session(store: CookieStore) -> None:
    assert store.load({"session": "1.%%%not-base64%%%"}, T0) == (None, "not_base64")


@pytest.mark.parametrize("stale_first", [True, False])
def test_a_stale_duplicate_session_cookie_does_not_hide_the_real_one(store: CookieStore, stale_first: bool) -> None:
    # A leftover cookie of ours with another Path or Domain cannot be deleted by us; refusing
    # the ambiguity would send the user to log in on every request (a loop).
    session = new_session()
    value = saved(store, session)["session"]
    stale = "1." + "A" * 40
    pair = [f"session={stale}", f"session={value}"]
    jar = parse_cookie_header("; ".join(pair if stale_first else pair[::-1]))
    loaded, reason = store.load(jar, T0)
    assert reason == ""
    assert loaded is not None and loaded.id == session.id


def test_duplicate_session_cookies_none_authentic_give_no_session(store: CookieStore) -> None:
    jar = parse_cookie_header(f"session=1.{'A' * 40}; session=1.{'B' * 40}")
    assert store.load(jar, T0) == (None, "duplicate_cookie")


def test_oversized_cookie_gives_no_session(store: CookieStore) -> None:
    assert store.load({"session": "1." + "A" * 10_000}, T0) == (None, "oversized")


def test_redis_handle_cookie_is_refused_by_cookie_storage(store: CookieStore) -> None:
    value = store._box.seal_json({"t": "r", "i": "x" * 24, "k": "AAAA"}, "session")
    assert store.load({"session": "1." + value}, T0) == (None, "bad_payload")


def test_random_mutations_never_load_and_never_raise(store: CookieStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixed nonce and session id: the same 500 mutated cookies on every run.
    monkeypatch.setattr(crypto, "os", SimpleNamespace(urandom=lambda n: b"\x07" * n))
    value = saved(store, replace(new_session(), id="fixed-session-id-0123456"))["session"]
    rng = random.Random(5)
    alphabet = "ABCxyz019-_.=;% \x00é"
    for _ in range(500):
        chars = list(value)
        for _ in range(rng.randint(1, 5)):
            op = rng.randrange(3)
            pos = rng.randrange(len(chars))
            if op == 0:
                chars[pos] = rng.choice(alphabet)
            elif op == 1:
                del chars[pos]
            else:
                chars.insert(pos, rng.choice(alphabet))
        mutated = "".join(chars)
        if mutated == value:
            continue
        session, reason = store.load({"session": mutated}, T0)
        assert session is None and reason


# -- rotation ---------------------------------------------------------------------------------


def test_cookie_from_old_secret_loads_after_rotation() -> None:
    old = CookieStore(settings(secrets=(OLD_SECRET,)))
    session = new_session()
    rotated = CookieStore(settings(secrets=(SECRET, OLD_SECRET)))
    assert rotated.load(saved(old, session), T0)[0] == session


def test_cookie_from_removed_secret_is_refused() -> None:
    old = CookieStore(settings(secrets=(OLD_SECRET,)))
    assert CookieStore(settings()).load(saved(old, new_session()), T0) == (None, "bad_tag")


# -- timeouts -----------------------------------------------------------------------------------


def test_idle_session_expires_with_reason(store: CookieStore) -> None:
    s = CookieStore(settings(session_idling_timeout=100, session_rolling_timeout=1000))
    assert s.load(saved(s, new_session()), T0 + 100) == (None, "idle_timeout")


def test_rolling_timeout_expires_a_session_not_reissued() -> None:
    s = CookieStore(settings(session_idling_timeout=0, session_rolling_timeout=100))
    assert s.load(saved(s, new_session()), T0 + 100) == (None, "rolling_timeout")


def test_absolute_timeout_is_not_extended_by_touching() -> None:
    s = CookieStore(settings(session_idling_timeout=100, session_rolling_timeout=100, session_absolute_timeout=150))
    touched = new_session().touched(T0 + 90)
    assert s.load(saved(s, touched, T0 + 90), T0 + 150) == (None, "absolute_timeout")


def test_touching_restarts_idle_timer() -> None:
    s = CookieStore(settings(session_idling_timeout=100))
    touched = new_session().touched(T0 + 90)
    assert s.load(saved(s, touched, T0 + 90), T0 + 150)[0] == touched


def test_ignore_expiry_loads_an_expired_session(store: CookieStore) -> None:
    cookies = saved(store, new_session())
    assert store.load(cookies, T0 + 10**6, ignore_expiry=True)[0] is not None


def test_max_age_is_time_to_the_first_timeout() -> None:
    s = CookieStore(settings(session_idling_timeout=900, session_absolute_timeout=1000))
    headers = s.save(new_session().touched(T0 + 500), {}, T0 + 500)
    assert "Max-Age=500" in headers[0]


def test_saving_an_expired_session_only_clears_cookies() -> None:
    s = CookieStore(settings(session_absolute_timeout=100))
    headers = s.save(new_session(), {"session": "1.x"}, T0 + 100)
    assert headers and all("Max-Age=0" in h for h in headers)


def test_needs_touch_after_the_interval(store: CookieStore) -> None:
    session = new_session()
    assert not store.needs_touch(session, T0 + 59)
    assert store.needs_touch(session, T0 + 60)


def test_needs_touch_sooner_for_short_idle_timeouts() -> None:
    s = CookieStore(settings(session_idling_timeout=20))
    assert s.needs_touch(new_session(), T0 + 5)


# -- cookies on the wire ----------------------------------------------------------------------


def test_set_cookie_attributes_follow_settings() -> None:
    s = CookieStore(settings(attributes=CookieAttributes(path="/app", samesite="Strict", domain="example.com")))
    header = s.save(new_session(), {}, T0)[0]
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/app", "Domain=example.com", "Max-Age=900"):
        assert attr in header


def test_shrinking_session_expires_unused_chunks(store: CookieStore) -> None:
    big = saved(store, new_session(access=random.Random(6).randbytes(6000).hex()))
    assert {"session_2", "session_3"} <= set(big)
    headers = store.save(new_session(), big, T0)
    expired = {h.split("=", 1)[0] for h in headers if "Max-Age=0" in h}
    assert expired == set(big) - {"session"}


def test_destroy_expires_every_chunk(store: CookieStore) -> None:
    cookies = saved(store, new_session(access=random.Random(8).randbytes(6000).hex()))
    headers = store.destroy(None, cookies)
    assert {h.split("=", 1)[0] for h in headers} == set(cookies)
    assert all("Max-Age=0" in h for h in headers)


def test_gateway_cookies_are_stripped_from_upstream_header(store: CookieStore) -> None:
    header = "theme=dark; session=1.abc; session_2=def; authorization=1.xyz; lang=en"
    assert store.strip_own_cookies([header]) == "theme=dark; lang=en"


def test_upstream_cookie_header_is_none_when_only_gateway_cookies(store: CookieStore) -> None:
    assert store.strip_own_cookies(["session=1.abc", "authorization=1.x"]) is None


def test_owns_any_sees_a_lone_chunk(store: CookieStore) -> None:
    assert store.owns_any({"session_2": "x"}) and not store.owns_any({"other": "x"})


def test_reload_of_cookie_storage_returns_the_same_session(store: CookieStore) -> None:
    session = new_session()
    assert store.reload(session, {}, T0)[0] is session


# -- model ------------------------------------------------------------------------------------


def test_session_repr_hides_tokens() -> None:
    text = repr(new_session())
    assert ACCESS not in text and "refresh-token-value" not in text


def test_with_tokens_keeps_id_and_restarts_timers() -> None:
    session = new_session()
    refreshed = session.with_tokens(access_token="new", id_token=None, refresh_token="r2", expires_at=T0 + 900, now=T0 + 50)
    assert (refreshed.id, refreshed.access_token, refreshed.last_seen_at, refreshed.rotated_at, refreshed.created_at) == (
        session.id, "new", T0 + 50, T0 + 50, T0)


def test_session_ids_are_random_and_long() -> None:
    a, b = new_session(), new_session()
    assert a.id != b.id and len(a.id) >= 22


# -- settings ---------------------------------------------------------------------------------


def test_short_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        SessionSettings(secrets=("short",))
    assert err.value.field == "session_secret"


def test_authorization_cookie_name_colliding_with_a_chunk_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        SessionSettings(secrets=(SECRET,), cookie_name="session", authorization_cookie_name="session_2")


def test_build_from_plugin_config_options() -> None:
    config = SimpleNamespace(session_secret=SECRET, session_storage="cookie", session_cookie_name="sid",
                             session_cookie_samesite="Strict", session_cookie_secure=True, session_cookie_path="/",
                             session_idling_timeout=300)
    store = build_session_store(config)
    assert isinstance(store, CookieStore)
    assert (store.settings.cookie_name, store.settings.attributes.samesite, store.settings.session_idling_timeout) == ("__Host-sid", "Strict", 300)


# -- __Host- cookie names (RFC 6265bis 4.1.3.2) ---------------------------------------------------


def settings_from(**options) -> SessionSettings:
    return SessionSettings.from_config(SimpleNamespace(session_secret=SECRET, **options))


def test_secure_host_only_root_cookies_get_the_host_prefix_by_default() -> None:
    s = settings_from()
    assert (s.cookie_name, s.authorization_cookie_name) == ("__Host-session", "__Host-authorization")


def test_host_prefixed_cookie_is_written_secure_at_root_without_domain() -> None:
    store = CookieStore(settings_from())
    headers = store.save(new_session(), {}, T0)
    assert headers and all(h.startswith("__Host-session") for h in headers)
    assert all("; Secure" in h and "; Path=/" in h and "Domain" not in h for h in headers)


@pytest.mark.parametrize("options", [
    {"session_cookie_secure": False},
    {"session_cookie_path": "/app"},
    {"session_cookie_domain": "example.com"},
    {"session_cookie_host_prefix": False},
])
def test_cookies_that_cannot_or_should_not_carry_the_prefix_keep_their_name(options) -> None:
    assert settings_from(**options).cookie_name == "session"


def test_a_name_already_prefixed_is_not_prefixed_twice() -> None:
    assert settings_from(session_cookie_name="__Host-sid").cookie_name == "__Host-sid"


# -- authorization cookies ----------------------------------------------------------------------


def auth_state(n: int, now: float = T0) -> AuthorizationState:
    return AuthorizationState(state=f"state-{n}", nonce=f"nonce-{n}", code_verifier=f"verifier-{n}" * 4,
                              original_url=f"/page/{n}", created_at=now)


@pytest.fixture
def auth() -> AuthorizationStore:
    return AuthorizationStore(settings(max_pending_logins=3))


def test_pushed_state_pops_back(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    state, _ = auth.pop("state-1", cookies, T0 + 5)
    assert state == auth_state(1)


def test_popped_state_is_single_use(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    _, after = auth.pop("state-1", cookies, T0)
    assert auth.pop("state-1", cookies_from(after, cookies), T0)[0] is None


def test_parallel_logins_each_pop_their_own_state(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    cookies = cookies_from(auth.push(auth_state(2, T0 + 1), cookies, T0 + 1), cookies)
    state2, after = auth.pop("state-2", cookies, T0 + 2)
    state1, _ = auth.pop("state-1", cookies_from(after, cookies), T0 + 3)
    assert (state1, state2) == (auth_state(1), auth_state(2, T0 + 1))


def test_oldest_pending_login_is_evicted_past_the_cap(auth: AuthorizationStore) -> None:
    cookies: dict[str, str] = {}
    for n in range(4):
        cookies = cookies_from(auth.push(auth_state(n, T0 + n), cookies, T0 + n), cookies)
    states, _ = auth.pending(cookies, T0 + 4)
    assert [s.state for s in states] == ["state-1", "state-2", "state-3"]


def test_expired_authorization_state_does_not_pop(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    assert auth.pop("state-1", cookies, T0 + 600)[0] is None


def test_wrong_state_does_not_pop_and_keeps_the_cookie(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    assert auth.pop("state-X", cookies, T0) == (None, [])


def test_tampered_authorization_cookie_is_refused_and_cleared(auth: AuthorizationStore) -> None:
    cookies = cookies_from(auth.push(auth_state(1), {}, T0))
    cookies["authorization"] = cookies["authorization"][:-3] + "AAA"
    state, clear = auth.pop("state-1", cookies, T0)
    assert state is None and clear and all("Max-Age=0" in h for h in clear)


def test_session_cookie_value_is_not_an_authorization_cookie(store: CookieStore, auth: AuthorizationStore) -> None:
    value = saved(store, new_session())["session"]
    assert auth.pending({"authorization": value}, T0) == ([], "bad_tag")


def test_authorization_cookie_is_lax_when_sessions_are_strict() -> None:
    a = AuthorizationStore(settings(attributes=CookieAttributes(samesite="Strict")))
    header = a.push(auth_state(1), {}, T0)[0]
    assert "SameSite=Lax" in header and "HttpOnly" in header


def test_authorization_cookie_lives_for_the_rolling_timeout(auth: AuthorizationStore) -> None:
    assert "Max-Age=600" in auth.push(auth_state(1), {}, T0)[0]


def test_overlong_return_url_falls_back_to_root(auth: AuthorizationStore) -> None:
    long_state = replace(auth_state(1), original_url="/" + "a" * 5000)
    cookies = cookies_from(auth.push(long_state, {}, T0))
    assert auth.pop("state-1", cookies, T0)[0].original_url == "/"
