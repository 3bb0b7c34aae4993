"""JWT access-token verification (RFC 7519, RFC 8725, RFC 9068) on `cryptography` keys.

Order matters: size, shape and header first (cheap, and nothing in them is trusted beyond
choosing the key), then the signature with a key chosen by the provider (never from the token:
`jwk`, `jku`, `x5u` and `x5c` are ignored), and only then the claims.

The hot path avoids PyJWT: it splits and decodes the token itself and calls the cryptography
key directly, so a first-sight verification costs little more than the signature check; a
repeat token is a sha256 and a dict lookup (token_cache.py).

Every failure is InvalidToken with a stable reason and a log-safe detail; anything unexpected
inside (bad base64, bad JSON, duplicate members, a registered member of the wrong JSON type,
huge numbers, deep nesting) becomes reason "malformed" (the strict rules live in jose.py).

`Verifier.explain(token)` runs the same checks and returns each one as a Step, for the `explain`
command; it never reads or writes the token cache.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.verification.signatures import VERIFY as _VERIFY
from kong_oidc_py.verification.jose import JoseError, b64url_decode, check_claim_types, check_header_types, json_object
from kong_oidc_py.verification.options import (  # noqa: F401 - re-exported: callers import them from here
    ASYMMETRIC_ALGS,
    DEFAULT_ALGS,
    DEFAULT_TOKEN_TYPES,
    HMAC_ALGS,
    ID_TOKEN_CLAIMS,
    VerifyOptions,
    normalize_type,
)
from kong_oidc_py.verification.token_cache import TokenCache

log = logging.getLogger("kong_oidc_py")

_sha256 = hashlib.sha256

_DESCRIPTIONS = {
    "malformed": "The token is malformed",
    "token_too_large": "The token is too large",
    "alg_not_allowed": "The token's signing algorithm is not allowed",
    "bad_signature": "The token signature is invalid",
    "expired": "The token has expired",
    "not_yet_valid": "The token is not valid yet",
    "iat_in_future": "The token was issued in the future",
    "missing_claim": "The token lacks a required claim",
    "bad_issuer": "The token was issued by an untrusted issuer",
    "bad_audience": "The token is not intended for this audience",
    "bad_type": "The token type is not accepted",
    "crit_unsupported": "The token requires unsupported header extensions",
}


def _fail(reason: str, detail: str | None = None) -> InvalidToken:
    return InvalidToken(reason, _DESCRIPTIONS[reason], detail)


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token. `data` is shared with the token cache: treat it as read-only."""

    data: Mapping[str, Any]
    token_hash: str
    kid: str | None
    alg: str
    expires_at: float | None = None
    key_thumbprint: str | None = None  # RFC 7638 thumbprint of the JWKS key used; None for HMAC
    # SHA-256 of the token's ASCII bytes (the cache key); DPoP's ath check reuses it.
    token_digest: bytes | None = None


@dataclass(frozen=True)
class Step:
    """One check of a verification, for `explain`: a stable name, whether it passed, and a
    detail that never holds the token, its signature or its payload beyond the checked value."""

    check: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyTrace:
    claims: Claims | None
    error: InvalidToken | None  # .reason is the stable code, .detail the safe detail
    steps: tuple[Step, ...]


# Claims on the hot path: the frozen dataclass __init__ goes through object.__setattr__ per
# field; the slot descriptors set the same fields at about half the cost.
_new_claims = object.__new__
_set_data = Claims.data.__set__  # type: ignore[attr-defined]
_set_hash = Claims.token_hash.__set__  # type: ignore[attr-defined]
_set_kid = Claims.kid.__set__  # type: ignore[attr-defined]
_set_alg = Claims.alg.__set__  # type: ignore[attr-defined]
_set_expires = Claims.expires_at.__set__  # type: ignore[attr-defined]
_set_thumbprint = Claims.key_thumbprint.__set__  # type: ignore[attr-defined]
_set_digest = Claims.token_digest.__set__  # type: ignore[attr-defined]

# Distinct verified header segments remembered per Verifier (one per signing key in practice).
_MAX_HEADERS = 64


_b64decode = b64url_decode


def _claim_at(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class Verifier:
    def __init__(self, provider: Any, options: VerifyOptions, clock: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self.options = options
        self.clock = clock
        allowed = set(options.algorithms) & (ASYMMETRIC_ALGS | HMAC_ALGS)
        if not options.hmac_secret:
            allowed -= HMAC_ALGS
        self._algorithms = frozenset(allowed)  # "none" can never be in here
        self._types = frozenset(normalize_type(t) for t in options.token_types)
        # Spellings seen in practice, accepted by one set lookup before normalizing.
        self._types_fast = frozenset(
            spelling
            for t in self._types
            for spelling in (t, t.upper(), "application/" + t, "application/" + t.upper())
        )
        self._audiences = frozenset(options.audiences)
        # Copied out of options: the hot path reads each once per token.
        self._issuer = options.issuer
        self._leeway = options.leeway
        self._require_exp = options.require_exp
        self._reject_id_tokens = options.reject_id_tokens
        self._aud_only = options.audience_claims == (("aud",),)
        self._max_size = options.max_token_size
        self._headers: dict[bytes, tuple[str, str | None]] = {}
        # Providers built by the project offer entry_for (key + thumbprint); test doubles may
        # offer only key_for, and their results are then never evicted on key changes.
        self._entry_for: Callable[[str | None, str], Any] | None = getattr(provider, "entry_for", None)
        self._is_current: Callable[[str | None, str, str], bool] | None = getattr(provider, "key_is_current", None)
        self.cache: TokenCache[Claims] | None = (
            TokenCache(options.token_cache_size, options.cache_ttl)
            if options.cache_ttl > 0 and options.token_cache_size > 0
            else None
        )
        subscribe = getattr(provider, "subscribe_key_changes", None)
        if self.cache is not None and subscribe is not None:
            subscribe(self._on_keys_changed)

    def verify(self, token: str) -> Claims:
        """Claims of a valid token; InvalidToken (and nothing else) otherwise."""
        try:
            return self._verify(token)
        except InvalidToken:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile input must never escape as another type
            raise _fail("malformed", _why(exc)) from None

    def explain(self, token: str) -> VerifyTrace:
        """Every check this verifier makes, in order, as Steps; the cache is neither read nor
        written (a cached answer was produced by these same checks). Never raises."""
        steps: list[Step] = []
        claims: Claims | None = None
        error: InvalidToken | None = None
        try:
            if type(token) is not str:
                raise _fail("malformed", "not a string")
            if len(token) > self._max_size:
                raise _fail("token_too_large", f"{len(token)} > {self._max_size} characters")
            steps.append(Step("size", True, f"{len(token)} <= {self._max_size} characters"))
            raw = token.encode("ascii")
            digest = _sha256(raw).digest()
            claims = self._verify_fresh(raw, digest, self.clock(), steps)
        except InvalidToken as err:
            error = err
        except Exception as exc:  # noqa: BLE001 - same rule as verify()
            error = _fail("malformed", _why(exc))
        if error is not None:
            steps.append(Step(error.reason, False, error.detail or error.description))
        return VerifyTrace(claims, error, tuple(steps))

    def _verify(self, token: str) -> Claims:
        if type(token) is not str:
            raise _fail("malformed", "not a string")
        if len(token) > self._max_size:
            raise _fail("token_too_large", f"{len(token)} > {self._max_size} characters")
        raw = token.encode("ascii")  # non-ASCII -> UnicodeEncodeError -> malformed
        digest = _sha256(raw).digest()
        now = self.clock()
        cache = self.cache
        if cache is not None:
            hit = cache.get(digest, now)
            if hit is not None:
                return hit
        return self._verify_fresh(raw, digest, now, None)

    def _verify_fresh(self, raw: bytes, digest: bytes, now: float, trace: list[Step] | None) -> Claims:
        parts = raw.split(b".")
        if len(parts) != 3 or not (parts[0] and parts[1] and parts[2]):
            raise _fail("malformed", "not three base64url segments")
        header_b64, payload_b64, signature_b64 = parts
        # An issuer signs every token of one key with the same header bytes: its checked
        # (alg, kid) is remembered per Verifier, but only for headers that have already carried
        # a valid signature, so hostile headers cannot fill or churn the table.
        known = self._headers.get(header_b64) if trace is None else None
        if known is None:
            alg, kid = self._check_header(header_b64, trace)
        else:
            alg, kid = known

        thumbprint: str | None = None
        if alg in HMAC_ALGS:
            key: Any = self.options.hmac_secret
            if trace is not None:
                trace.append(Step("key", True, f"alg {alg}: the configured hmac_secret (never a JWKS key)"))
        else:
            try:
                if self._entry_for is not None:
                    entry = self._entry_for(kid, alg)
                    key, thumbprint = entry.key, entry.thumbprint
                else:
                    key = self.provider.key_for(kid, alg)
            except ProviderError as err:
                raise InvalidToken("keys_unavailable", "The signing keys are not available", err.description) from None
            if trace is not None:
                how = "by kid and alg" if kid is not None else "no kid: the only key of this type"
                shown = entry.describe() if self._entry_for is not None else "a key"
                trace.append(Step("key", True, f"kid={_shown(kid)} alg={alg} -> {shown} from the issuer's JWKS ({how})"))
        payload = _b64decode(payload_b64)  # decoded now so bad base64 is "malformed", parsed later
        signature = _b64decode(signature_b64)
        signing_input = raw[: len(header_b64) + 1 + len(payload_b64)]
        try:
            _VERIFY[alg](key, signature, signing_input)
        except InvalidSignature:
            raise _fail("bad_signature", f"kid={_shown(kid)} alg={alg}") from None
        if trace is not None:
            trace.append(Step("signature", True, f"{alg} signature verified"))

        # Only now is anything in the payload trusted.
        data = json_object(payload, "payload")
        check_claim_types(data)
        if trace is not None:
            trace.append(Step("claim_types", True, "registered claims have their JSON types"))
        expires_at = self._check_claims(data, now, trace)
        claims = _new_claims(Claims)
        _set_data(claims, data)
        _set_hash(claims, digest[:6].hex())
        _set_kid(claims, kid)
        _set_alg(claims, alg)
        _set_expires(claims, expires_at)
        _set_thumbprint(claims, thumbprint)
        _set_digest(claims, digest)
        if trace is not None:
            return claims
        if known is None:
            headers = self._headers
            if len(headers) >= _MAX_HEADERS:
                headers.clear()
            headers[header_b64] = (alg, kid)
        cache = self.cache
        if cache is not None:
            cache.put(digest, claims, now, None if expires_at is None else expires_at + self._leeway)
            # A refresh that removed the key while we verified may have swept the cache before
            # our put: checked after the put, either the sweep sees the entry or we see the new
            # key set (the refresh installs keys before it sweeps).
            if thumbprint is not None and self._is_current is not None and not self._is_current(kid, alg, thumbprint):
                cache.discard(digest)
        return claims

    def _check_header(self, header_b64: bytes, trace: list[Step] | None = None) -> tuple[str, str | None]:
        """(alg, kid) of a header that passes every header rule; InvalidToken otherwise."""
        header = json_object(_b64decode(header_b64), "header")
        check_header_types(header)  # alg/kid/typ/crit/... of the wrong JSON type (null too): malformed

        alg = header.get("alg")
        if alg is None:
            raise _fail("malformed", "header has no alg")
        if alg not in self._algorithms:
            raise _fail("alg_not_allowed", f"alg={alg[:20]!r}")
        if "crit" in header:
            # RFC 7515 4.1.11: we understand no extension, so any crit list is a refusal.
            raise _fail("crit_unsupported", "crit present")
        typ = header.get("typ")
        if typ is None:
            if self.options.token_type_required:
                raise _fail("bad_type", "typ absent")
        elif typ not in self._types_fast and normalize_type(typ) not in self._types:
            raise _fail("bad_type", f"typ={typ[:40]!r}")
        kid = header.get("kid")
        if trace is not None:
            trace.append(Step("header", True, f"alg={alg} (allowed) typ={_shown(typ)} kid={_shown(kid)}, no crit"))
        return alg, kid

    def check_claims(self, data: dict, now: float, *, require_exp: bool | None = None) -> float | None:
        """The registered-claim rules (JSON types, then iss, aud, exp, nbf, iat, ID-token look) on
        claims that came from elsewhere (an introspection answer); InvalidToken naming the failed check."""
        try:
            check_claim_types(data)
            return self._check_claims(data, now, None, self._require_exp if require_exp is None else require_exp)
        except InvalidToken:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile input must never escape as another type
            raise _fail("malformed", str(exc)[:120] if isinstance(exc, ValueError) else type(exc).__name__) from None

    def _check_claims(self, data: dict, now: float, trace: list[Step] | None = None,
                      require_exp: bool | None = None) -> float | None:
        """The registered claims (their JSON types already checked); returns exp (or None when
        absent and allowed)."""
        leeway = self._leeway
        if self._reject_id_tokens:
            for name in ID_TOKEN_CLAIMS:
                if name in data:
                    raise _fail("bad_type", f"looks like an ID token ({name})")
            if trace is not None:
                trace.append(Step("id_token", True, "no nonce, at_hash or c_hash"))

        iss = data.get("iss")
        if iss != self._issuer:
            if iss is None:
                raise _fail("missing_claim", "iss")
            raise _fail("bad_issuer", f"expected {self._issuer!r}, got {iss[:200]!r}")
        if trace is not None:
            trace.append(Step("iss", True, f"{iss!r} is the configured issuer"))

        if self._audiences:
            aud = data.get("aud") if self._aud_only else None
            # Fast path for the common shape (one string aud); everything else takes the full rule.
            if type(aud) is not str or aud not in self._audiences:
                self._check_audience(data)
            if trace is not None:
                trace.append(Step("aud", True, f"one of {sorted(self._audiences)!r} found"))
        elif trace is not None:
            trace.append(Step("aud", True, "not checked: audience_required is empty"))

        exp = data.get("exp")
        if exp is None:
            if self._require_exp if require_exp is None else require_exp:
                raise _fail("missing_claim", "exp")
        elif exp <= now - leeway:
            raise _fail("expired", f"exp {exp} <= now {now:.0f} - leeway {leeway}")
        nbf = data.get("nbf")
        if nbf is not None and nbf > now + leeway:
            raise _fail("not_yet_valid", f"nbf {nbf} > now {now:.0f} + leeway {leeway}")
        iat = data.get("iat")
        if iat is not None and iat > now + leeway:
            raise _fail("iat_in_future", f"iat {iat} > now {now:.0f} + leeway {leeway}")
        if trace is not None:
            trace.append(Step("exp", True, f"exp {exp} > now {now:.0f} - leeway {leeway}" if exp is not None
                              else "absent (require_exp is off)"))
            trace.append(Step("nbf", True, f"nbf {nbf} <= now + leeway" if nbf is not None else "absent"))
            trace.append(Step("iat", True, f"iat {iat} <= now + leeway" if iat is not None else "absent"))
        return exp

    def _check_audience(self, data: dict) -> None:
        found = False
        for path in self.options.audience_claims:
            value = _claim_at(data, path)
            if value is None:
                continue
            found = True
            values = [value] if type(value) is str else value if type(value) is list else ()
            for item in values:
                if type(item) is str and item in self._audiences:
                    return
        if not found:
            raise _fail("missing_claim", "aud")
        raise _fail("bad_audience", f"expected one of {sorted(self._audiences)!r}")

    def _on_keys_changed(self, old: Any, new: Any) -> None:
        """A fetched key set resolves some (kid, alg) differently: drop every cached result whose
        (kid, alg) no longer leads to the key that verified it."""
        cache = self.cache
        if cache is None:
            return

        def gone(claims: Claims) -> bool:
            if claims.key_thumbprint is None:
                return False
            entry = new.find_entry(claims.kid, claims.alg)
            return entry is None or entry.thumbprint != claims.key_thumbprint

        dropped = cache.evict_where(gone)
        if dropped:
            log.info("oidc: dropped %d cached token verifications made with keys the IdP no longer lists", dropped)


def _shown(value: str | None) -> str:
    # kid/typ are public, but a hostile token can make them long or unprintable.
    return "None" if value is None else repr(value[:64])


def _why(exc: Exception) -> str:
    """A log-safe detail for an unexpected failure: our own messages, or the exception type
    (other messages can quote the token, e.g. UnicodeEncodeError)."""
    if isinstance(exc, JoseError):
        return str(exc)
    if isinstance(exc, binascii.Error):
        return "not strict base64url"
    if isinstance(exc, UnicodeError):
        return "not ASCII/UTF-8"
    return type(exc).__name__
