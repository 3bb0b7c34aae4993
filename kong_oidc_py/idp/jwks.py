"""The IdP's signing keys: parsing (PyJWT + cryptography), lookup, refresh policy.

Parsing refuses anything a verifier must not trust (RFC 8725 3.1, RFC 7517): encryption keys,
keys whose key_ops exclude "verify", symmetric keys, keys carrying private parts, RSA keys
under 2048 bits, curves that do not match their algorithm. Each algorithm is bound to one key
type, so a token can never pick how its own signature is checked.

Refresh policy:
* warm start: one fetch in a background thread when the provider is created;
* after cache_ttl the held keys keep serving while one background refresh runs;
* an unknown kid triggers at most one refresh per rediscovery_lifetime, shared by every caller
  that missed at the same time (single-flight), so random kids cannot hammer the IdP;
* when the IdP fails, held keys keep serving until jwks_max_stale after the last success.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.idp.fetch import Fetcher
from kong_oidc_py.idp.singleflight import SingleFlight

log = logging.getLogger("kong_oidc_py")

MIN_RSA_BITS = 2048
# With no usable key at all, a failed fetch makes later callers fail fast for this long
# (or rediscovery_lifetime, when that is shorter).
FAILURE_RETRY_SECONDS = 5.0

# alg -> (kty, allowed curves or None). HS* is absent on purpose: HMAC keys never come from a JWKS.
ALG_KEY_TYPE: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

_EC_CURVES = {"P-256": ("ES256", "secp256r1"), "P-384": ("ES384", "secp384r1"), "P-521": ("ES512", "secp521r1")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class JwkEntry:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key

    def fits_type(self, alg: str) -> bool:
        kty, curves = ALG_KEY_TYPE[alg]
        return self.kty == kty and (curves is None or self.crv in curves)

    def fits(self, alg: str) -> bool:
        return self.fits_type(alg) and (self.alg is None or self.alg == alg)


def _skip(jwk: dict, why: str) -> None:
    kid = jwk.get("kid")
    shown = kid[:80] if isinstance(kid, str) else None
    log.warning("oidc: ignoring JWKS key kid=%r: %s", shown, why)


def parse_jwk(jwk: Any) -> JwkEntry | None:
    """One usable verification key, or None (logged) when the key must not be used."""
    if not isinstance(jwk, dict):
        log.warning("oidc: ignoring JWKS entry that is not an object")
        return None
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    crv = jwk.get("crv")
    if kid is not None and not isinstance(kid, str):
        return _skip(jwk, "kid is not a string")
    if "use" in jwk and jwk["use"] != "sig":
        return _skip(jwk, "use is not sig")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            return _skip(jwk, "key_ops does not allow verify")
    private = _PRIVATE_MEMBERS.intersection(jwk)
    if private:
        # A published key set with private parts is an IdP misconfiguration; using the public
        # half would hide it, so the key is refused.
        return _skip(jwk, "the key carries private members " + ",".join(sorted(private)))
    if kty == "RSA":
        parse_alg = "RS256"
    elif kty == "EC" and crv in _EC_CURVES:
        parse_alg = _EC_CURVES[crv][0]
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        parse_alg = "EdDSA"
    else:
        return _skip(jwk, f"unsupported key type {str(kty)[:20]!r}/{str(crv)[:20]!r}")
    if alg is not None:
        if not isinstance(alg, str) or alg not in ALG_KEY_TYPE:
            return _skip(jwk, f"unsupported alg {str(alg)[:20]!r}")
    try:
        key = jwt.PyJWK(jwk, algorithm=parse_alg).key
    except Exception as exc:  # noqa: BLE001 - PyJWT and cryptography raise several types
        return _skip(jwk, f"unparseable key ({type(exc).__name__})")
    if kty == "RSA":
        if not isinstance(key, rsa.RSAPublicKey):
            return _skip(jwk, "not an RSA public key")
        if key.key_size < MIN_RSA_BITS:
            return _skip(jwk, f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}")
    elif kty == "EC":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _EC_CURVES[crv][1]:
            return _skip(jwk, "EC key does not match its crv")
    elif crv == "Ed25519" and not isinstance(key, ed25519.Ed25519PublicKey):
        return _skip(jwk, "not an Ed25519 public key")
    elif crv == "Ed448" and not isinstance(key, ed448.Ed448PublicKey):
        return _skip(jwk, "not an Ed448 public key")
    entry = JwkEntry(kid=kid, kty=kty, crv=crv if kty != "RSA" else None, alg=alg, key=key)
    if alg is not None and not entry.fits_type(alg):
        return _skip(jwk, f"alg {alg} does not match the key type")
    return entry


class KeySet:
    """An immutable, indexed set of usable keys: lookups are one dict access."""

    def __init__(self, entries: list[JwkEntry]) -> None:
        self.entries = tuple(entries)
        index: dict[tuple[str | None, str], Any] = {}
        for alg in ALG_KEY_TYPE:
            for entry in self.entries:
                if entry.kid is not None and entry.fits(alg):
                    index.setdefault((entry.kid, alg), entry.key)
            # Without a kid the choice must be unambiguous: exactly one key of this type.
            same_type = [e for e in self.entries if e.fits_type(alg)]
            if len(same_type) == 1 and same_type[0].fits(alg):
                index[(None, alg)] = same_type[0].key
        self._index = index

    @classmethod
    def parse(cls, doc: Any) -> "KeySet":
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ProviderError("jwks_failed", "the JWKS has no keys array")
        entries: list[JwkEntry] = []
        seen: set[tuple[str | None, str, str | None]] = set()
        for jwk in doc["keys"]:
            entry = parse_jwk(jwk)
            if entry is None:
                continue
            ident = (entry.kid, entry.kty, entry.crv)
            if ident in seen:
                _skip(jwk, "duplicate kid for this key type")
                continue
            seen.add(ident)
            entries.append(entry)
        if not entries:
            raise ProviderError("jwks_failed", "the JWKS holds no usable signing key")
        return cls(entries)

    def find(self, kid: str | None, alg: str) -> Any | None:
        return self._index.get((kid, alg))

    def __len__(self) -> int:
        return len(self.entries)


class JwksCache:
    def __init__(
        self,
        jwks_uri: Callable[[], str],
        fetcher: Fetcher | None,
        *,
        cache_ttl: float,
        max_stale: float,
        rediscovery_lifetime: float,
        clock: Callable[[], float] = time.monotonic,
        preloaded: KeySet | None = None,
    ) -> None:
        self._jwks_uri = jwks_uri
        self._fetcher = fetcher
        self._ttl = cache_ttl
        self._max_stale = max(max_stale, cache_ttl)
        self._rate = rediscovery_lifetime
        self._clock = clock
        self._flight: SingleFlight[None] = SingleFlight()
        self._lock = threading.Lock()
        self._static = preloaded is not None
        self._keys: KeySet | None = preloaded
        self._fetched_at = clock()
        self._generation = 0
        self._miss_refresh_at: float | None = None
        self._load_failed_at: float | None = None
        self._load_retry = min(rediscovery_lifetime, FAILURE_RETRY_SECONDS)
        self._background_failed_at: float | None = None
        self._background = 0  # running background threads
        self._warm_started = False
        self.fetches = 0
        self.failures = 0
        self.rate_limited = 0

    # -- lookup ---------------------------------------------------------------------------

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The key for (kid, alg); InvalidToken unknown_kid / keys_unavailable otherwise."""
        if alg not in ALG_KEY_TYPE:
            raise InvalidToken("alg_not_allowed", "The token's signing algorithm is not allowed", f"alg={alg}")
        keys = self._keys
        if keys is not None:
            if self._static:
                key = keys.find(kid, alg)
                if key is None:
                    raise self._unknown(kid, alg)
                return key
            age = self._clock() - self._fetched_at
            if age <= self._max_stale:
                if age >= self._ttl:
                    self._refresh_in_background()
                key = keys.find(kid, alg)
                if key is not None:
                    return key
        return self._after_miss(kid, alg)

    def _after_miss(self, kid: str | None, alg: str) -> Any:
        seen = self._generation
        try:
            self._flight.do("fetch", lambda: self._refresh_for_miss(seen))
        except Exception:  # noqa: BLE001 - refresh failures are logged; we answer from what we hold
            pass
        keys = self._keys
        if keys is not None and self._clock() - self._fetched_at <= self._max_stale:
            key = keys.find(kid, alg)
            if key is not None:
                return key
            raise self._unknown(kid, alg)
        raise InvalidToken(
            "keys_unavailable",
            "The signing keys are not available",
            f"no usable JWKS held (kid={_shown(kid)} alg={alg})",
        )

    @staticmethod
    def _unknown(kid: str | None, alg: str) -> InvalidToken:
        return InvalidToken("unknown_kid", "The token was signed with an unknown key", f"kid={_shown(kid)} alg={alg}")

    # -- refresh --------------------------------------------------------------------------

    def _refresh_for_miss(self, seen_generation: int) -> None:
        with self._lock:
            if self._generation != seen_generation:
                return  # refreshed since the caller looked; it will look again
            now = self._clock()
            holding = self._keys is not None and now - self._fetched_at <= self._max_stale
            if holding:
                # An unknown kid with keys in hand: the rediscovery_lifetime window applies.
                if self._miss_refresh_at is not None and now - self._miss_refresh_at < self._rate:
                    self.rate_limited += 1
                    return
                self._miss_refresh_at = now
            elif self._load_failed_at is not None and now - self._load_failed_at < self._load_retry:
                # Nothing usable held and the IdP just failed: fail fast instead of queueing.
                self.rate_limited += 1
                return
        if not self._fetch() and not holding:
            with self._lock:
                self._load_failed_at = self._clock()

    def _fetch(self) -> bool:
        """One discovery lookup + JWKS fetch; True when new keys were installed."""
        try:
            uri = self._jwks_uri()
            with self._lock:
                self.fetches += 1
            assert self._fetcher is not None
            keys = KeySet.parse(self._fetcher.get_json(uri, reason="jwks_failed"))
        except ProviderError as err:
            with self._lock:
                self.failures += 1
            log.warning("oidc: JWKS refresh failed (%s): %s", err.reason, err.description)
            return False
        with self._lock:
            self._keys = keys
            self._fetched_at = self._clock()
            self._generation += 1
            self._load_failed_at = None
        log.info("oidc: JWKS loaded: %d usable keys", len(keys))
        return True

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:  # noqa: BLE001 - a background refresh never takes the process down
                log.exception("oidc: background JWKS task failed")
            finally:
                with self._lock:
                    self._background -= 1

        with self._lock:
            self._background += 1
        try:
            threading.Thread(target=run, name=name, daemon=True).start()
        except RuntimeError:
            with self._lock:
                self._background -= 1

    def _refresh_in_background(self) -> None:
        with self._lock:
            now = self._clock()
            failed = self._background_failed_at
            if self._background or (failed is not None and now - failed < max(self._rate, 1.0)):
                return
            self._background_failed_at = now  # cleared on success below

        def refresh() -> None:
            def run() -> None:
                if self._clock() - self._fetched_at < self._ttl:
                    return  # someone else refreshed
                if self._fetch():
                    with self._lock:
                        self._background_failed_at = None

            self._flight.do("fetch", run)

        self._spawn("oidc-jwks-refresh", refresh)

    def warm_start(self) -> None:
        """Fetch in the background once; never raises, never blocks."""
        with self._lock:
            if self._warm_started or self._static:
                return
            self._warm_started = True

        def warm() -> None:
            def run() -> None:
                if self._keys is None:
                    self._fetch()

            self._flight.do("fetch", run)

        self._spawn("oidc-jwks-warm", warm)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Tests and bench: wait until no background fetch is running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._background:
                    return True
            time.sleep(0.005)
        return False

    @property
    def usable_keys(self) -> int:
        keys = self._keys
        return len(keys) if keys is not None else 0


def _shown(kid: str | None) -> str:
    # kids are public identifiers, but a hostile token can make them long or unprintable.
    if kid is None:
        return "None"
    return repr(kid[:64])
