"""Lua 5.1 patterns (string.match) translated to Python regexes.

Kong's `match`, `not_match`, `match_all`, `match_none` and `match_any` validators call
`value:match(pattern)` (kong/db/schema/init.lua l.256-306 in 3.9.3), so schema patterns are Lua
patterns, not regexes. Covered (Lua 5.1 manual 5.4.1): single characters, `.`, `%a %c %d %l %p
%s %u %w %x` and their upper-case complements, `%` escapes, sets `[...]` / `[^...]` with ranges
and classes, the quantifiers `* + - ?`, and `^`/`$` anchors. `%b`, `%f` and captures are
refused: no schema here uses them, and guessing would make the emulator lie.
"""

from __future__ import annotations

import re

_CLASSES = {
    "a": "A-Za-z", "c": "\\x00-\\x1f\\x7f", "d": "0-9", "l": "a-z",
    "p": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "s": " \\t\\n\\r\\f\\v", "u": "A-Z",
    "w": "A-Za-z0-9", "x": "0-9A-Fa-f",
}


def _class(letter: str) -> str | None:
    inner = _CLASSES.get(letter.lower())
    if inner is None:
        return None
    return f"[{'^' if letter.isupper() else ''}{inner}]"


def _set(p: str, i: int) -> tuple[str, int]:
    """Translate the set starting at p[i] == '['; returns (regex, index after ']')."""
    i += 1
    out = "["
    if i < len(p) and p[i] == "^":
        out += "^"
        i += 1
    first = True
    while i < len(p) and (p[i] != "]" or first):
        first = False
        c = p[i]
        if c == "%" and i + 1 < len(p):
            cls = _class(p[i + 1])
            if cls is not None:
                # a complemented class inside a set has no direct regex form; none is used here
                if p[i + 1].isupper():
                    raise ValueError(f"unsupported complemented class %{p[i + 1]} inside a set")
                out += cls[1:-1]
            else:
                out += re.escape(p[i + 1])
            i += 2
        elif i + 2 < len(p) and p[i + 1] == "-" and p[i + 2] != "]":
            out += f"{re.escape(c)}-{re.escape(p[i + 2])}"
            i += 3
        else:
            out += re.escape(c)
            i += 1
    if i >= len(p):
        raise ValueError("malformed pattern (missing ']')")
    return out + "]", i + 1


def to_regex(pattern: str) -> str:
    out = []
    i = 0
    if pattern.startswith("^"):
        out.append("\\A")
        i = 1
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "$" and i == n - 1:
            out.append("\\Z")
            i += 1
            continue
        if c == "%":
            if i + 1 >= n:
                raise ValueError("malformed pattern (ends with '%')")
            nxt = pattern[i + 1]
            if nxt in "bf" or nxt.isdigit():
                raise ValueError(f"unsupported pattern item %{nxt}")
            atom = _class(nxt) or re.escape(nxt)
            i += 2
        elif c == "[":
            atom, i = _set(pattern, i)
        elif c in "()":
            raise ValueError("captures are not supported")
        elif c == ".":
            atom = "[\\s\\S]"
            i += 1
        else:
            atom = re.escape(c)
            i += 1
        if i < n and pattern[i] in "*+-?":
            atom += {"*": "*", "+": "+", "-": "*?", "?": "?"}[pattern[i]]
            i += 1
        out.append(atom)
    return "".join(out)


def lua_match(value: str, pattern: str) -> bool:
    """`value:match(pattern) ~= nil`."""
    return re.search(to_regex(pattern), value) is not None
