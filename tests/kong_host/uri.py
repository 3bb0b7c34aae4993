"""kong/tools/uri.lua `normalize` and `escape`, reimplemented.

normalize: %XX of non-reserved bytes decoded, %XX of reserved chars upper-cased, dot segments
removed, `//` merged when merge_slashes. escape: percent-encode bytes outside the safe set.
"""

from __future__ import annotations

import re

RESERVED = set(b"!*'();:@&=+$,/?%#[]")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
_ESCAPE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def _decode(m: re.Match) -> bytes:
    n = int(m.group(1), 16)
    if n in RESERVED:
        return m.group(0).upper()
    return bytes([n])


def normalize(uri: str, merge_slashes: bool = False) -> str:
    if uri in ("", "/"):
        return uri
    b = uri.encode("utf-8", "surrogateescape")
    if b"%" in b:
        b = _PCT.sub(_decode, b)
    if b"." not in b and (not merge_slashes or b"//" not in b):
        return b.decode("utf-8", "surrogateescape")
    out: list[bytes] = []
    while b:
        if b == b"/.":
            b = b"/"
        elif b == b"/..":
            b = b"/"
            if out:
                out.pop()
        elif b in (b".", b".."):
            b = b""
        elif b.startswith(b"../"):
            b = b[3:]
        elif b.startswith(b"./"):
            b = b[2:]
        elif b.startswith(b"/./"):
            b = b[2:]
        elif b.startswith(b"/../"):
            b = b[3:]
            if out:
                out.pop()
        elif merge_slashes and b.startswith(b"//"):
            b = b[1:]
        else:
            i = b.find(b"/", 1)
            if i >= 0:
                out.append(b[:i])
                b = b[i:]
            else:
                out.append(b)
                b = b""
    return b"".join(out).decode("utf-8", "surrogateescape")


def escape(uri: str) -> str:
    b = uri.encode("utf-8", "surrogateescape")
    if _ESCAPE.search(b):
        b = _ESCAPE.sub(lambda m: b"%%%02X" % m.group(0)[0], b)
    return b.decode("ascii")
