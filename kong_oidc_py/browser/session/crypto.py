"""Key derivation and authenticated encryption for everything the session layer hands to a client.

Envelope (then base64url without padding):

    version (1 byte) | flags (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext + 16-byte tag

* Keys come from `session_secret` through HKDF-SHA256 with one `info` label per purpose, so a
  session cookie can never be opened as an authorization cookie (and the Redis id key is never
  an encryption key).
* The associated data is `version | flags | context`, where context is the cookie NAME (or the
  Redis key name): a value moved to another cookie, or a flipped flag, fails the tag check.
* Each seal draws a fresh 96-bit random nonce. With random nonces GCM stays safe well beyond
  2^32 messages per key; a session secret that lives that long should be rotated anyway.
* Rotation: the first secret seals, every secret opens (tried in order; a wrong key fails the tag,
  which costs one AES-GCM pass per old secret).
* Compression is opt-in per call (`compress=True`) and only for server-generated plaintext: mixing
  attacker-controlled text with secrets under compression leaks the secrets through the ciphertext
  length (CRIME/BREACH). Authorization state holds the requested URL, so it is never compressed.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
FLAG_ZLIB = 0x01
_KNOWN_FLAGS = FLAG_ZLIB
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = 2
MIN_SECRET_LENGTH = 32
# Fixed, public salt: the secret is required to be high-entropy; the salt only separates this
# application's derivations from any other use of the same secret.
_HKDF_SALT = b"kong-oidc-py session salt v1"
# Hard ceiling for what `open_json` accepts and inflates: far above the cookie cap, and it bounds
# a zlib bomb even though only our own (authenticated) data is ever inflated.
MAX_PLAINTEXT = 256 * 1024
MAX_TOKEN_CHARS = 64 * 1024


class Purpose(enum.Enum):
    """One HKDF `info` label per use of the secret."""

    SESSION_COOKIE = b"kong-oidc-py/v1/session-cookie"
    AUTHORIZATION_COOKIE = b"kong-oidc-py/v1/authorization-cookie"
    REDIS_ID = b"kong-oidc-py/v1/redis-id"


class DecryptError(Exception):
    """A value did not open. `.reason` is a stable code for logs; never contains the value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_secret(secret: str) -> None:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"session secret must be a string of at least {MIN_SECRET_LENGTH} characters")


def derive_key(secret: str, purpose: Purpose) -> bytes:
    """32 bytes for `purpose`; different purposes give unrelated keys."""
    check_secret(secret)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.value)
    return hkdf.derive(secret.encode("utf-8"))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, no padding, no whitespace. Raises DecryptError."""
    if not text or not _B64URL_CHARS.issuperset(text) or len(text) % 4 == 1:
        raise DecryptError("not_base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the alphabet check
        raise DecryptError("not_base64") from None
    # Canonical form only: the last character's unused low bits must be zero, so one value has
    # exactly one accepted spelling (no "different cookie, same session" malleability).
    if b64url_encode(raw) != text:
        raise DecryptError("not_base64")
    return raw


def fingerprint(value: str | bytes) -> str:
    """What logs may show of a session id or key: a 12-hex-char SHA-256 prefix."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:12]


def dumps_compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Box:
    """AES-256-GCM with one sealing key and any number of opening keys (rotation)."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys or any(len(k) != 32 for k in self.keys):
            raise ValueError("Box needs at least one 32-byte key")

    @classmethod
    def for_secrets(cls, secrets: Sequence[str], purpose: Purpose) -> "Box":
        """First secret seals; all open."""
        return cls(tuple(derive_key(s, purpose) for s in secrets))

    @classmethod
    def for_key(cls, key: bytes) -> "Box":
        return cls((key,))

    def seal(self, plaintext: bytes, context: str, *, compress: bool = False) -> bytes:
        flags = 0
        if compress:
            packed = zlib.compress(plaintext, 6)
            if len(packed) < len(plaintext):  # compress only when it actually saves space
                plaintext, flags = packed, FLAG_ZLIB
        header = bytes((VERSION, flags))
        nonce = os.urandom(NONCE_SIZE)
        ct = AESGCM(self.keys[0]).encrypt(nonce, plaintext, header + context.encode("utf-8"))
        return header + nonce + ct

    def open(self, blob: bytes, context: str) -> bytes:
        if len(blob) < HEADER_SIZE + NONCE_SIZE + TAG_SIZE:
            raise DecryptError("too_short")
        version, flags = blob[0], blob[1]
        if version != VERSION:
            raise DecryptError("unknown_version")
        if flags & ~_KNOWN_FLAGS:
            raise DecryptError("unknown_flags")
        nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        aad = blob[:HEADER_SIZE] + context.encode("utf-8")
        for key in self.keys:
            try:
                plaintext = AESGCM(key).decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE :], aad)
                break
            except InvalidTag:
                continue
        else:
            raise DecryptError("bad_tag")
        if flags & FLAG_ZLIB:
            inflater = zlib.decompressobj()
            try:
                plaintext = inflater.decompress(plaintext, MAX_PLAINTEXT)
            except zlib.error:
                raise DecryptError("bad_compression") from None
            if inflater.unconsumed_tail:
                raise DecryptError("too_large")
        return plaintext

    # -- text helpers: what cookies carry --------------------------------------------------

    def seal_json(self, data: Any, context: str, *, compress: bool = False) -> str:
        return b64url_encode(self.seal(dumps_compact(data), context, compress=compress))

    def open_json(self, token: str, context: str) -> Any:
        """The JSON value sealed under `context`. Raises DecryptError (never anything else)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise DecryptError("too_large")
        raw = self.open(b64url_decode(token), context)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise DecryptError("bad_payload") from None
