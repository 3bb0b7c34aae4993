"""The plugin's contract towards hostile input, as checks a fuzz target can call.

1. Only the plugin's own exception types leave a parser (errors.py tree, or the module's
   documented rejection type), or a clean `(None, reason)` answer.
2. A rejection never carries the input: client-visible descriptions come from a fixed set, and
   log-only details hold no run of input characters long enough to matter (`ECHO_LEN`), except
   values the design lets logs name (kid, alg, typ, iss of a token; see errors.py).
3. Every input is answered in bounded time (`MAX_SECONDS` of CPU; CPU rather than wall clock,
   because the machine is shared and another process' load must not look like our blow-up).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import httpx

from kong_oidc_py.errors import ProviderError

MAX_SECONDS = 0.05
# A run this long of input text inside a message is an echo, not a coincidence.
ECHO_LEN = 12
MAX_MESSAGE = 600
MAX_LOG_LINES = 16
CORPUS = Path(__file__).resolve().parent / "corpus"
_PACKAGE = Path(__file__).resolve().parents[1] / "kong_oidc_py"

T = TypeVar("T")


class Violation(AssertionError):
    """The plugin broke its contract for this input (a finding)."""


@functools.lru_cache(maxsize=1)
def _source_text() -> str:
    # Message templates are written in the package's source: a window of the message that is
    # also in the source is our own wording that the fuzzer happened to copy into its input.
    return "\n".join(p.read_text() for p in sorted(_PACKAGE.rglob("*.py")))


def echoed(message: str, sources: Iterable[str], allowed: Iterable[str] | Callable[[], Iterable[str]] = ()) -> str | None:
    """The first run of >= ECHO_LEN characters of `message` found in one of `sources` (and not
    in `allowed` values nor in the package's own text), or None. `allowed` may be a callable,
    called only when a window matches (it is costly to compute and rarely needed)."""
    if not message or len(message) < ECHO_LEN:
        return None
    texts = [s for s in sources if s and len(s) >= ECHO_LEN]
    if not texts:
        return None
    permitted: list[str] | None = None
    for i in range(len(message) - ECHO_LEN + 1):
        window = message[i : i + ECHO_LEN]
        if any(window in t for t in texts):
            if permitted is None:
                permitted = [a for a in (allowed() if callable(allowed) else allowed) if a]
            if any(window in a for a in permitted) or window in _source_text():
                continue
            return window
    return None


def check_message(label: str, message: object, sources: Iterable[str],
                  allowed: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
    if message is None:
        return
    if not isinstance(message, str):
        raise Violation(f"{label} is {type(message).__name__}, not str")
    if len(message) > MAX_MESSAGE:
        raise Violation(f"{label} is {len(message)} characters long")
    if any(c < " " or c == "\x7f" for c in message):
        # Messages reach logs and headers: a raw CR/LF forges log lines or splits a header.
        raise Violation(f"{label} holds a control character")
    hit = echoed(message, list(sources), allowed)
    if hit is not None:
        raise Violation(f"{label} echoes input: {hit!r}")


def check_error(err: BaseException, sources: Iterable[str], descriptions: frozenset[str] | None = None,
                allowed: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
    """An OIDCError-like rejection: fixed description (when `descriptions` is given, which
    also makes the echo check of the description moot), no echo in description or detail."""
    sources = list(sources)
    description = getattr(err, "description", None)
    if descriptions is not None:
        if description not in descriptions:
            raise Violation(f"unexpected description {str(description)[:80]!r} for reason {getattr(err, 'reason', None)!r}")
    else:
        check_message("description", description, sources, allowed)
    check_message("detail", getattr(err, "detail", None), sources, allowed)


def bounded(fn: Callable[[], T]) -> T:
    """Run `fn`; a Violation when it takes more than MAX_SECONDS.

    The wall clock is cheap to read and screens every call; a call over the limit runs again
    under the CPU clock, and only CPU time over the limit is a finding (the machine is shared,
    and a garbage collection or a page fault can land inside any single call). Targets disable
    caches so the second run takes the same path.
    """
    start = time.perf_counter()
    try:
        return fn()
    finally:
        if time.perf_counter() - start > MAX_SECONDS:
            again = time.process_time()
            try:
                fn()
            except Exception:  # noqa: BLE001 - only the time of the second run matters here
                pass
            spent = time.process_time() - again
            if spent > MAX_SECONDS:
                raise Violation(f"took {spent * 1000:.1f} ms of CPU (limit {MAX_SECONDS * 1000:.0f} ms)")


def fetched_or_refused(fetch: Callable[[], T], body: str, reason: str, allowed: list[str]) -> T | None:
    """Fetch and parse an IdP answer whose text is `body`, its log lines held to the message
    rules: the result, or None for a refusal, which must be ProviderError(`reason`) not
    echoing the body beyond the `allowed` values."""
    with watched_logs([body], allowed=allowed):
        try:
            return bounded(fetch)
        except ProviderError as err:
            if err.reason != reason:
                raise Violation(f"reason {err.reason!r}") from None
            check_error(err, [body], allowed=allowed)
            return None


class CannedAnswer:
    """A target's HTTP peer: every request gets `status` and `body` back in-process
    (httpx.MockTransport), so the real client code runs without a network."""

    def __init__(self, content_type: str) -> None:
        self.status = 200
        self.body = b""
        self._content_type = content_type

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self._answer), follow_redirects=False)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.status, content=self.body, headers={"Content-Type": self._content_type})


def seeds(name: str) -> Iterator[bytes]:
    """The committed seed corpus of one target."""
    folder = CORPUS / name
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                yield path.read_bytes()


@contextlib.contextmanager
def watched_logs(sources: list[str], allowed: Iterable[str] = ()) -> Iterator[None]:
    """Hold every record the plugin logs meanwhile to the message rules (bounded, no control
    characters, no echo of `sources`); the logger is restored afterwards (pytest shares it)."""
    allowed = list(allowed)

    checked = [0]

    class _Check(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # The first lines are checked in full: a parser logs the same template per item,
            # and checking thousands of them would make the harness quadratic, not the parser.
            checked[0] += 1
            if checked[0] <= MAX_LOG_LINES:
                check_message("log line", record.getMessage(), sources, allowed)

    logger = logging.getLogger("kong_oidc_py")
    handler, level, propagate = _Check(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def text(data: bytes) -> str:
    """Fuzzer bytes as the str a Kong-facing parser receives: pdk_fixes decodes Kong's strings
    with surrogateescape, so any byte sequence arrives, non-UTF-8 bytes as lone surrogates."""
    return data.decode("utf-8", "surrogateescape")
