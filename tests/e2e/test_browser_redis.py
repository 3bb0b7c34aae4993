"""Browser login with session_storage redis: chromium -> two emulated Kongs (each with its own
plugin server process) sharing one redis-server -> real oidc-provider.

Cookies are per host, not per port, so a session cookie set through Kong A is also sent to
Kong B on the same 127.0.0.1: exactly the "several gateways behind one hostname" case.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import pytest
import redis

from tests.support.browser_stack import (
    IDP_CONFIG,
    SHORT_TTL,
    Stack,
    cookies_named,
    echo_of,
    login,
    set_cookie_value,
    start_browser_stack,
    submit_logout,
    upstream_header,
    visit_through_login,
)
from tests.support.idp import LOGOUT_CONFIRM, OidcProvider
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.redis]


@pytest.fixture(scope="module")
def rdb(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def two_gateways(issuer: str, echo, redis_server: RedisServer, tmp_path_factory,
                 name: str) -> Iterator[tuple[Stack, Stack]]:
    """Two emulated Kongs, each with its own plugin server, storing sessions in one Redis."""
    extra = {"session_storage": "redis", "session_redis_host": redis_server.host,
             "session_redis_port": redis_server.port}
    with start_browser_stack(issuer, echo, str(tmp_path_factory.mktemp(f"{name}-a")), app_extra=extra) as a, \
            start_browser_stack(issuer, echo, str(tmp_path_factory.mktemp(f"{name}-b")), app_extra=extra) as b:
        yield a, b


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(IDP_CONFIG) as provider:
        yield provider


@pytest.fixture(scope="module")
def stacks(idp, echo, redis_server, tmp_path_factory) -> Iterator[tuple[Stack, Stack]]:
    with two_gateways(idp.issuer, echo, redis_server, tmp_path_factory, "kong") as pair:
        yield pair


@pytest.fixture(scope="module")
def short_idp() -> Iterator[OidcProvider]:
    with OidcProvider({**IDP_CONFIG, "ttl": {"AccessToken": SHORT_TTL}}) as provider:
        yield provider


@pytest.fixture(scope="module")
def short_stacks(short_idp, echo, redis_server, tmp_path_factory) -> Iterator[tuple[Stack, Stack]]:
    with two_gateways(short_idp.issuer, echo, redis_server, tmp_path_factory, "kong-short") as pair:
        yield pair


def session_keys(rdb: redis.Redis) -> set[bytes]:
    return set(rdb.scan_iter(match="oidc:{s:*}:session"))


def test_redis_login_stores_the_session_in_redis_and_only_a_handle_in_the_cookie(stacks, rdb, page, context):
    a, _ = stacks
    before = session_keys(rdb)
    echoed = login(page, a.url("/app/home?x=1"))
    assert echoed["query"] == "x=1"
    assert len(session_keys(rdb) - before) == 1
    (session,) = cookies_named(context, "session")
    assert len(session["value"]) < 300  # {id, key} sealed, no tokens
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"


def test_redis_reload_keeps_the_session(stacks, idp, page):
    a, _ = stacks
    login(page, a.url("/app/reload"))
    assert visit_through_login(page, a.url("/app/reload"), idp) == []


def test_session_created_through_one_plugin_server_is_used_through_another(stacks, idp, page):
    a, b = stacks
    login(page, a.url("/app/from-a"))
    assert visit_through_login(page, b.url("/app/on-b"), idp) == []
    assert upstream_header(echo_of(page), "X-User-Id") == ["alice"]


def test_tampered_redis_cookie_sends_the_browser_back_to_login(stacks, idp, page, context):
    a, _ = stacks
    login(page, a.url("/app/t"))
    (session,) = cookies_named(context, "session")
    value = session["value"]
    set_cookie_value(context, a.base, "session", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    assert len(visit_through_login(page, a.url("/app/t"), idp)) == 1


def test_logout_deletes_the_session_from_redis(stacks, rdb, page, context):
    a, b = stacks
    before = session_keys(rdb)
    login(page, a.url("/app/out"))
    (mine,) = session_keys(rdb) - before
    (old_cookie,) = [c["value"] for c in cookies_named(context, "session")]
    submit_logout(page, a.url("/app/logout"))
    page.wait_for_selector(LOGOUT_CONFIRM)
    assert not rdb.exists(mine)
    # The old cookie is worthless everywhere now, also through the other plugin server.
    response = httpx.get(b.url("/app/out"), headers={"Cookie": f"session={old_cookie}"})
    assert response.status_code == 401


def test_concurrent_requests_at_expiry_across_two_plugin_servers_make_one_refresh(short_stacks, page, context):
    a, b = short_stacks
    first = upstream_header(login(page, a.url("/app/c")), "Authorization")
    (cookie,) = [c["value"] for c in cookies_named(context, "session")]
    before = a.refresh_count() + b.refresh_count()
    time.sleep(SHORT_TTL)
    urls = [(a if i % 2 else b).url(f"/app/c/{i}") for i in range(8)]
    with ThreadPoolExecutor(len(urls)) as pool:
        responses = list(pool.map(lambda u: httpx.get(u, headers={"Cookie": f"session={cookie}"}, timeout=20), urls))
    assert [r.status_code for r in responses] == [200] * len(urls)
    tokens = {upstream_header(r.json(), "Authorization")[0] for r in responses}
    assert len(tokens) == 1 and tokens != set(first)
    assert a.refresh_count() + b.refresh_count() == before + 1
