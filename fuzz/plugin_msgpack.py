"""Target: the MessagePack the plugin server receives from Kong (edge/pdk_fixes.py's lenient
unpacker, which kong_pdk.listener uses in place of `msgpack`).

Input: the bytes on the socket, read by a stand-in for kong_pdk's WrapSocket.

Contract: the stream decodes into objects or stops with msgpack's own errors (its
UnpackException family, ValueError for limits) — never UnicodeDecodeError, the defect the shim
exists for; every decoded value packs back with the shim (so whatever we hand Kong is
encodable) and unpacks to an equal value (strings survive byte for byte); bounded time.
"""

from __future__ import annotations

from typing import Any, Iterator

import msgpack

from fuzz import contract
from kong_oidc_py.edge.pdk_fixes import _lenient_msgpack

NAME = "plugin_msgpack"
SHIM = _lenient_msgpack()
# What msgpack itself raises on a malformed or over-limit stream (ValueError for limits, and
# its exceptions subclass ValueError too); TypeError for an unhashable map key, as in kong-pdk.
REFUSALS = (msgpack.exceptions.UnpackException, ValueError, TypeError)


class Socket:
    """kong_pdk.listener.WrapSocket: read(n) hands over up to n bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


def _decode(data: bytes) -> list[Any]:
    out = []
    try:
        for item in SHIM.Unpacker(Socket(data), strict_map_key=False):
            out.append(item)
    except UnicodeDecodeError:
        raise
    except REFUSALS:
        pass
    return out


def one_input(data: bytes) -> None:
    try:
        items = contract.bounded(lambda: _decode(data))
    except UnicodeDecodeError as err:
        raise contract.Violation(f"a string that is not UTF-8 broke the unpacker: {err.reason}") from None
    for item in items:
        packed = SHIM.packb(item)
        again = msgpack.Unpacker(strict_map_key=False, unicode_errors="surrogateescape")
        again.feed(packed)
        # Compared as bytes: NaN is a valid msgpack float and never equals itself.
        if [SHIM.packb(x) for x in again] != [packed]:
            raise contract.Violation("a decoded value does not survive packing back")


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
