"""Target: reading the session and authorization cookies (browser/session: parse, chunk
reassembly, stale duplicates, unseal, payload shape).

Input: first byte picks the mode, the rest is
* mode 0 (any other byte): Cookie header values, one per line, as the browser sent them;
* mode 1: a JSON text that the harness seals with the session key and chunks like the plugin
  does, then reads back: the part after decryption can only be reached this way (the AEAD tag
  stops every mutation of a sealed value, which is the point), and it must hold up too;
* mode 2: the same for the authorization (pending-login) cookie.

Contract: `load`/`pending` never raise; they answer (None, reason) with a short code; a loaded
session has the typed fields; the Cookie header stripped for the upstream holds none of our
cookies; bounded time. The two stores take turns: cookie storage, and Redis storage over an
in-memory stand-in for the Redis client (the store only calls get/set/delete).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from fuzz import contract
from kong_oidc_py.browser.session.cookie import is_chunk_name, parse_cookie_header, write_chunks
from kong_oidc_py.browser.session.model import AuthorizationState, Session
from kong_oidc_py.browser.session.store import AuthorizationStore, CookieStore, RedisStore, SessionSettings

NAME = "session_cookie"
SECRET = "fuzz-session-secret-0123456789-abcdef"
OLD_SECRET = "fuzz-old-session-secret-0123456789-xyz"
NOW = 1_800_000_000
_REASON = re.compile(r"[a-z0-9_]{1,40}")


class MemoryRedis:
    """The three redis-py calls RedisStore makes, on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ex: int | None = None) -> bool:
        self.data[key] = bytes(value)
        return True

    def delete(self, key: str) -> int:
        return 1 if self.data.pop(key, None) is not None else 0

    def exists(self, *keys: str) -> int:
        return sum(key in self.data for key in keys)

    def register_script(self, source: str):
        """RedisStore registers its write scripts at construction; this target only reads
        sessions, so running one would be a harness bug."""
        def run(*args, **kwargs):
            raise AssertionError("the session_cookie target reads; it never runs a Redis script")
        return run


SETTINGS = SessionSettings(secrets=(SECRET, OLD_SECRET), cookie_name="session", authorization_cookie_name="authorization")
COOKIES = CookieStore(SETTINGS)
REDIS = RedisStore(SessionSettings(secrets=(SECRET,), storage="redis", cookie_name="session",
                                                    authorization_cookie_name="authorization"), MemoryRedis())
AUTHZ = AuthorizationStore(SETTINGS)
_OURS = ("session", "authorization")


def _check_reason(label: str, reason: Any, sources: list[str]) -> None:
    if not isinstance(reason, str) or not (reason == "" or _REASON.fullmatch(reason)):
        raise contract.Violation(f"{label}: reason {str(reason)[:60]!r} is not a short code")
    contract.check_message(label, reason, sources)


def _read_all(headers: list[str], sources: list[str]) -> None:
    jar = contract.bounded(lambda: parse_cookie_header(headers))
    # One store per input (by parity of the header text, so a replay takes the same one): both
    # open the same cookie with the same key, and running both halves the executions per second.
    for store in ((REDIS,) if sum(map(len, headers)) & 1 else (COOKIES,)):
        session, reason = contract.bounded(lambda: store.load(jar, NOW))
        _check_reason("session", reason, sources)
        if session is not None and not isinstance(session, Session):
            raise contract.Violation("load returned something that is not a Session")
        if session is None and reason == "":
            raise contract.Violation("no session and no reason")
    states, reason = contract.bounded(lambda: AUTHZ.pending(jar, NOW))
    _check_reason("authorization", reason, sources)
    if not all(isinstance(s, AuthorizationState) for s in states):
        raise contract.Violation("pending returned something that is not an AuthorizationState")
    stripped = contract.bounded(lambda: COOKIES.strip_own_cookies(headers))
    if stripped is not None:
        left = parse_cookie_header(stripped)
        if any(is_chunk_name(base, n) for base in _OURS for n in left):
            raise contract.Violation("a cookie of ours would reach the upstream")


def _sealed(box_owner: Any, name: str, plaintext: bytes, compress: bool) -> list[str]:
    value = contract.bounded(lambda: box_owner._box.seal(plaintext, name, compress=compress))
    from kong_oidc_py.browser.session.crypto import b64url_encode

    try:
        headers = write_chunks(name, b64url_encode(value), SETTINGS.attributes, {}, max_age=60, now=NOW)
    except ValueError:  # CookieTooLarge: more than MAX_CHUNKS cookies, never written by us
        return []
    return [h.split(";", 1)[0] for h in headers]


def one_input(data: bytes) -> None:
    mode, rest = (data[0], data[1:]) if data else (0, b"")
    if mode == 1 or mode == 2:
        pairs = _sealed(COOKIES if mode == 1 else AUTHZ, "session" if mode == 1 else "authorization", rest, mode == 1)
        _read_all(["; ".join(pairs)] if pairs else [], [contract.text(rest)])
        return
    text = contract.text(rest)
    _read_all(text.split("\n"), [text])


def make_seeds(tokens: list[str]) -> list[bytes]:
    """Real cookies: sessions sealed by both stores around the IdP's tokens, chunked, with a
    stale duplicate next to a good one, and an authorization cookie with two pending logins."""
    import json

    seeds: list[bytes] = []
    small = Session.new(subject="alice", issuer="http://127.0.0.1", access_token=tokens[0], id_token=None,
                        refresh_token="r" * 40, expires_at=NOW + 300, now=NOW - 5)
    big = Session.new(subject="bob", issuer="http://127.0.0.1", access_token=".".join(tokens) * 3,
                      id_token=tokens[-1], refresh_token=None, expires_at=NOW + 300, now=NOW - 5)
    for store in (COOKIES, REDIS):
        for session in (small, big):
            pairs = [h.split(";", 1)[0] for h in store.save(session, {}, NOW)]
            seeds.append(b"\x00" + "; ".join(pairs).encode())
            seeds.append(b"\x00theme=dark; " + "; ".join(pairs).encode() + b"\nlang=en")
    stale = [h.split(";", 1)[0] for h in COOKIES.save(small, {}, NOW)]
    fresh = [h.split(";", 1)[0] for h in COOKIES.save(small.touched(NOW), {}, NOW)]
    seeds.append(b"\x00" + "; ".join(fresh + stale).encode())
    state = AuthorizationState(state="s" * 32, nonce="n" * 32, code_verifier="v" * 43, original_url="/app?x=1",
                               created_at=NOW - 1)
    pending = AUTHZ.push(state, {}, NOW)
    seeds.append(b"\x00" + "; ".join(h.split(";", 1)[0] for h in pending).encode())
    seeds.append(b"\x01" + json.dumps({"t": "c", **small.to_dict()}).encode())
    seeds.append(b"\x02" + json.dumps({"p": [state.to_dict()]}).encode())
    return seeds


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
