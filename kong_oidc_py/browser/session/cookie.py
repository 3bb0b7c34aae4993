"""Cookie parsing (RFC 6265 5.4 as a server sees it), Set-Cookie building and chunking.

Chunking scheme. Browsers keep at least 4096 bytes per cookie (name + value), so a value that
would not fit in `CHUNK_BUDGET` is split over cookies `name`, `name_2`, `name_3`, ... The first
chunk's value starts with the chunk count and a dot (`3.<first piece>`); `.` is not in the
base64url alphabet, so it cannot be confused with data. On the way back:

* a missing chunk (count says 3, `name_3` absent)            -> "missing_chunk"
* an extra chunk (`name_4`, or any `name_<digits>` not issued) -> "extra_chunk"
* a truncated or reordered chunk: the joined text changes and the AEAD tag (crypto.py) fails
* a repeated name in the Cookie header (two cookies, different Path/Domain, or injected)
                                                              -> "duplicate_cookie" (ambiguous:
                                                                 we never guess which one is ours)

At most `MAX_CHUNKS` chunks are written or read. Saving a smaller value expires the chunks that
are no longer used (Max-Age=0), so the browser never keeps a stale tail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Callable, Iterable, Iterator, Mapping

MAX_CHUNKS = 8
CHUNK_BUDGET = 4000  # name + "=" + value of one cookie, below the 4096 every browser keeps
MAX_COOKIE_CHARS = 4096  # a single incoming value longer than this was not written by us
SAMESITE_VALUES = ("Strict", "Lax", "None")

# RFC 6265 4.1.1: cookie-name is an RFC 2616 token.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Path/Domain attribute values: printable ASCII without ';' (the attribute separator).
_ATTR_VALUE_RE = re.compile(r"^[\x21-\x3a\x3c-\x7e]*$")
_COUNT_RE = re.compile(r"^([1-9])\.")


class CookieTooLarge(ValueError):
    """The value needs more than MAX_CHUNKS cookies."""


def valid_cookie_name(name: str) -> bool:
    return isinstance(name, str) and bool(_TOKEN_RE.match(name))


@dataclass(frozen=True)
class CookieAttributes:
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    samesite: str = "Lax"
    http_only: bool = True

    def __post_init__(self) -> None:
        if self.samesite not in SAMESITE_VALUES:
            raise ValueError(f"SameSite must be one of {', '.join(SAMESITE_VALUES)}")
        # Browsers drop SameSite=None cookies that are not Secure.
        if self.samesite == "None" and not self.secure:
            raise ValueError("SameSite=None requires Secure")
        if not self.path.startswith("/") or not _ATTR_VALUE_RE.match(self.path):
            raise ValueError("cookie path must start with '/' and hold no ';' or control characters")
        if self.domain is not None and (not self.domain or not _ATTR_VALUE_RE.match(self.domain)):
            raise ValueError("cookie domain holds a ';' or control characters")

    def render(self) -> str:
        parts = [f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.samesite}")
        return "; ".join(parts)


def set_cookie(name: str, value: str, attrs: CookieAttributes, *, max_age: int, now: float) -> str:
    """A Set-Cookie value. Expires is sent next to Max-Age for clients that ignore Max-Age."""
    if not valid_cookie_name(name):
        raise ValueError("invalid cookie name")
    max_age = max(0, int(max_age))
    expires = formatdate(now + max_age if max_age else 0, usegmt=True)
    return f"{name}={value}; {attrs.render()}; Max-Age={max_age}; Expires={expires}"


def expire_cookie(name: str, attrs: CookieAttributes) -> str:
    """Deletes `name`: same Path/Domain as when it was set, empty value, Max-Age=0."""
    return set_cookie(name, "", attrs, max_age=0, now=0)


# -- parsing -------------------------------------------------------------------------------


class CookieJar(Mapping[str, str]):
    """Parsed Cookie header: name -> value, plus the names that appeared more than once.

    A repeated name keeps its first value here, but `duplicates` lets callers refuse it, and
    `variants` lets them try every reading (see there).
    """

    __slots__ = ("_items", "duplicates", "_all")

    def __init__(self, items: dict[str, str], duplicates: frozenset[str] = frozenset(),
                 all_values: dict[str, list[str]] | None = None) -> None:
        self._items = items
        self.duplicates = duplicates
        self._all = all_values or {}

    def variants(self, owned: Callable[[str], bool], limit: int = 8) -> Iterator["CookieJar"]:
        """Jars without duplicates, one per choice of value for each repeated name we own.

        A stale cookie of ours with another Path or Domain cannot be deleted from here, so
        refusing the ambiguity would send the user to log in on every request. Trying each
        reading is safe because only a value we sealed decrypts; the browser lists the
        most specific Path first (RFC 6265 5.4), so that reading is tried first.
        """
        names = [n for n in self.duplicates if owned(n)]
        combos: list[dict[str, str]] = [{}]
        for name in names:
            combos = [{**c, name: v} for c in combos for v in self._all.get(name, [])][:limit]
        for combo in combos:
            yield CookieJar({**self._items, **combo})

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:  # names only: values are credentials
        return f"CookieJar(names={sorted(self._items)!r}, duplicates={sorted(self.duplicates)!r})"


def _pairs(header: str | Iterable[str] | None) -> Iterator[tuple[str, str, str]]:
    """(name, value, original piece) for each `name=value` in the header value(s)."""
    if header is None:
        return
    values = [header] if isinstance(header, str) else list(header)
    for value in values:
        if not isinstance(value, str):
            continue
        for piece in value.split(";"):
            stripped = piece.strip(" \t")
            if not stripped:
                continue
            name, eq, val = stripped.partition("=")
            if not eq:
                yield "", stripped, stripped  # nameless cookie: never one of ours
                continue
            yield name.strip(" \t"), val.strip(" \t"), stripped


def parse_cookie_header(header: str | Iterable[str] | None) -> CookieJar:
    """Parse one Cookie header value or a list of them (several Cookie headers)."""
    items: dict[str, str] = {}
    duplicates: set[str] = set()
    all_values: dict[str, list[str]] = {}
    for name, value, _ in _pairs(header):
        if not name:
            continue
        all_values.setdefault(name, []).append(value)
        if name in items:
            duplicates.add(name)
            continue
        items[name] = value
    return CookieJar(items, frozenset(duplicates), {n: v for n, v in all_values.items() if n in duplicates})


def duplicates_of(cookies: Mapping[str, str]) -> frozenset[str]:
    """Repeated names, when the mapping came from `parse_cookie_header` (a plain dict has none)."""
    dup = getattr(cookies, "duplicates", frozenset())
    return dup if isinstance(dup, frozenset) else frozenset()


# -- chunking ------------------------------------------------------------------------------


def chunk_name(name: str, index: int) -> str:
    """index 1 -> name, 2 -> name_2, ..."""
    return name if index == 1 else f"{name}_{index}"


def is_chunk_name(base: str, candidate: str) -> bool:
    """`base` itself or `base_<digits>` (any digits: a hostile `base_99` is still ours to strip)."""
    if candidate == base:
        return True
    prefix = base + "_"
    return candidate.startswith(prefix) and candidate[len(prefix) :].isdigit()


def split_value(name: str, value: str) -> list[tuple[str, str]]:
    """[(cookie name, cookie value), ...] for `value`; raises CookieTooLarge past MAX_CHUNKS."""
    pieces: list[str] = []
    rest = value
    index = 1
    while True:
        # The first chunk also carries "<count>." (2 chars; MAX_CHUNKS is one digit).
        room = CHUNK_BUDGET - len(chunk_name(name, index)) - 1 - (2 if index == 1 else 0)
        pieces.append(rest[:room])
        rest = rest[room:]
        if not rest:
            break
        index += 1
        if index > MAX_CHUNKS:
            raise CookieTooLarge(f"value needs more than {MAX_CHUNKS} cookies")
    pieces[0] = f"{len(pieces)}.{pieces[0]}"
    return [(chunk_name(name, i + 1), piece) for i, piece in enumerate(pieces)]


def join_chunks(name: str, cookies: Mapping[str, str]) -> tuple[str | None, str]:
    """(joined value, "") or (None, reason). Never raises on hostile input."""
    present = [n for n in cookies if is_chunk_name(name, n)]
    if not present:
        return None, "no_cookie"
    if any(is_chunk_name(name, n) for n in duplicates_of(cookies)):
        return None, "duplicate_cookie"
    first = cookies.get(name)
    if first is None:
        return None, "missing_chunk"
    m = _COUNT_RE.match(first)
    if m is None:
        return None, "bad_chunk_header"
    count = int(m.group(1))
    if count > MAX_CHUNKS:
        return None, "too_many_chunks"
    expected = {chunk_name(name, i) for i in range(1, count + 1)}
    if any(n not in expected for n in present):
        return None, "extra_chunk"
    parts = [first[m.end() :]]
    for i in range(2, count + 1):
        part = cookies.get(chunk_name(name, i))
        if part is None:
            return None, "missing_chunk"
        parts.append(part)
    if any(len(p) > MAX_COOKIE_CHARS for p in parts):
        return None, "oversized"
    return "".join(parts), ""


def write_chunks(
    name: str,
    value: str,
    attrs: CookieAttributes,
    existing: Mapping[str, str],
    *,
    max_age: int,
    now: float,
) -> list[str]:
    """Set-Cookie values for `value`, plus deletions for the request's chunks no longer used."""
    chunks = split_value(name, value)
    written = {n for n, _ in chunks}
    headers = [set_cookie(n, v, attrs, max_age=max_age, now=now) for n, v in chunks]
    headers += [expire_cookie(n, attrs) for n in _sorted_chunk_names(name, existing) if n not in written]
    return headers


def expire_chunks(name: str, attrs: CookieAttributes, existing: Mapping[str, str]) -> list[str]:
    """Deletions for every chunk of `name` the request carried (at least `name` itself)."""
    names = _sorted_chunk_names(name, existing)
    if name not in names:
        names.insert(0, name)
    return [expire_cookie(n, attrs) for n in names]


def _sorted_chunk_names(name: str, existing: Mapping[str, str]) -> list[str]:
    def order(n: str) -> int:
        return 1 if n == name else int(n[len(name) + 1 :])

    # Bounded: a hostile request with hundreds of `name_<n>` cookies must not make us answer
    # with hundreds of Set-Cookie headers; those past the cap are ignored (and never forwarded).
    found = sorted((n for n in existing if is_chunk_name(name, n)), key=order)
    return found[: MAX_CHUNKS * 2]


# -- upstream ------------------------------------------------------------------------------


def strip_cookies(header: str | Iterable[str] | None, is_own: Callable[[str], bool]) -> str | None:
    """The Cookie header without the cookies for which `is_own(name)` holds; None if empty.

    Other cookies are kept verbatim and in order, so the upstream sees exactly what it would
    have seen without the gateway.
    """
    kept = [piece for name, _, piece in _pairs(header) if not (name and is_own(name))]
    return "; ".join(kept) if kept else None
