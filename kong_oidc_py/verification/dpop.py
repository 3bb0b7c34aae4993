"""DPoP (RFC 9449): proof checking and the token binding rules.

A proof is checked in the order of RFC 9449 4.3, cheapest and least trusting first: one
`DPoP` header, size, JWS shape, header (`typ` dpop+jwt, an asymmetric `alg` on the allow-list,
a public `jwk` with no private member whose key type fits the alg), the signature with that
jwk, then the claims: `htm` and `htu` against the request as Kong sees it (forwarded scheme,
host and port when Kong trusts the proxy; path without query or fragment), `iat` inside the
window, `ath` = the access token's hash, the server nonce when required, and last the `jti`
replay check (last, so an invalid proof never burns a jti). The key's RFC 7638 thumbprint must
equal the token's `cnf.jkt`. Header and payload are read as strictly as a token (jose.py:
canonical base64url, no duplicate JSON members, registered members of their JSON types); the
payload's claims come typed from dpop_claims.py, the replay stores from replay.py.

Binding rules (`Binding.enforce`): a token bound to a key (`cnf.jkt`) needs the DPoP scheme and a
proof with that key; presented as Bearer it is refused in every mode, `off` included, because
a plugin that ignored the binding would turn a stolen bound token back into a bearer token.
In `strict`/`required` mode every token needs a proof; in `optional` only bound ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, rsa

from kong_oidc_py.errors import InvalidDpopProof, InvalidRequest, InvalidToken, UseDpopNonce
from kong_oidc_py.verification.dpop_claims import proof_claims
from kong_oidc_py.verification.jose import JoseError, check_header_types, json_object
# The stores are re-exported: callers (tests, the bench) import them from here.
from kong_oidc_py.verification.replay import MemoryReplayStore, RedisReplayStore, ReplayStore  # noqa: F401
from kong_oidc_py.verification.verify import _VERIFY, ASYMMETRIC_ALGS, _b64decode

DPOP_TYPE = "dpop+jwt"
DEFAULT_DPOP_ALGS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA")
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_PROOF_SIZE = 8192
_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVE_FOR_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_EC_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_THUMB_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
_DPOP_SCHEME = re.compile(r"[Dd][Pp][Oo][Pp] ([A-Za-z0-9\-._~+/]+=*)")
_UNRESERVED = re.compile(r"%(2[DdEe]|5[Ff]|7[Ee]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa])")
_MAX_KEYS = 1024


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """RFC 9449 4.2 `ath`: base64url(SHA-256(ASCII(token)))."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, lexicographic order, no whitespace."""
    members = _THUMB_MEMBERS[jwk["kty"]]
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# -- nonces -----------------------------------------------------------------------------------


class NonceSource:
    """Stateless nonces: HMAC(secret, time window). The current and the previous window are
    accepted, so a nonce lives between one and two `lifetime`s; every node with the same secret
    issues and accepts the same nonces."""

    def __init__(self, secret: bytes, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"kong-oidc-py dpop nonce\x00" + secret).digest()
        self.lifetime = max(lifetime, 1)
        self.clock = clock

    def _for(self, window: int) -> str:
        return b64url(hmac.digest(self._key, str(window).encode(), "sha256")[:18])

    def current(self) -> str:
        return self._for(int(self.clock() // self.lifetime))

    def valid(self, nonce: Any) -> bool:
        if type(nonce) is not str:
            return False
        window = int(self.clock() // self.lifetime)
        return any(hmac.compare_digest(nonce, self._for(w)) for w in (window, window - 1))


# -- the proof --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DpopOptions:
    mode: str = "off"  # off | optional | required
    algs: frozenset[str] = frozenset(DEFAULT_DPOP_ALGS)
    proof_lifetime: int = 300
    leeway: int = 0
    use_nonce: bool = False
    nonce_secret: bytes | None = None


def _proof_error(reason: str, detail: str) -> InvalidDpopProof:
    return InvalidDpopProof(reason, "The DPoP proof is invalid", detail)


def _public_key(jwk: Mapping[str, Any], alg: str) -> Any:
    kty = jwk.get("kty")
    if kty != _KTY_FOR_ALG.get(alg[:2]):
        raise _proof_error("dpop_bad_key", f"jwk kty {str(kty)[:10]!r} does not fit alg {alg}")
    if kty == "RSA":
        n, e = jwk.get("n"), jwk.get("e")
        if type(n) is not str or type(e) is not str:
            raise _proof_error("dpop_bad_key", "RSA jwk needs n and e")
        modulus = int.from_bytes(_b64decode(n.encode("ascii")), "big")
        if modulus.bit_length() < 2048:
            raise _proof_error("dpop_bad_key", "RSA key shorter than 2048 bits")
        return rsa.RSAPublicNumbers(int.from_bytes(_b64decode(e.encode("ascii")), "big"), modulus).public_key()
    if kty == "EC":
        crv, x, y = jwk.get("crv"), jwk.get("x"), jwk.get("y")
        if crv != _CURVE_FOR_ALG[alg] or type(x) is not str or type(y) is not str:
            raise _proof_error("dpop_bad_key", f"EC jwk must be on {_CURVE_FOR_ALG[alg]} with x and y")
        size = (_EC_CURVES[crv].key_size + 7) // 8
        xb, yb = _b64decode(x.encode("ascii")), _b64decode(y.encode("ascii"))
        if len(xb) != size or len(yb) != size:
            raise _proof_error("dpop_bad_key", "EC coordinates have the wrong length")
        # from_encoded_point checks the point is on the curve.
        return ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[crv], b"\x04" + xb + yb)
    crv, x = jwk.get("crv"), jwk.get("x")
    if type(x) is not str or crv not in ("Ed25519", "Ed448"):
        raise _proof_error("dpop_bad_key", "OKP jwk must be Ed25519 or Ed448 with x")
    cls = ed25519.Ed25519PublicKey if crv == "Ed25519" else ed448.Ed448PublicKey
    return cls.from_public_bytes(_b64decode(x.encode("ascii")))


def normalize_htu(url: str) -> str | None:
    """RFC 9449 4.3 step 9: scheme and host lower-cased, default port dropped, dot segments
    resolved, unreserved percent-escapes decoded; query and fragment ignored. None if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username is not None:
        return None
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        netloc = f"[{host}]" if ":" in host else host
    else:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}{_normalize_path(parts.path or '/')}"


def _normalize_path(path: str) -> str:
    path = _UNRESERVED.sub(lambda m: unquote(m.group(0)), path)
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    tail = "/" if path.endswith(("/", "/.", "/..")) and out and out[-1] != "" else ""
    return "/" + "/".join(out) + tail


def request_htu(scheme: str, host: str, port: int, path: str) -> str:
    return normalize_htu(f"{scheme}://{host}:{port}{path}") or ""


_DOT = ord(".")


class ProofChecker:
    """Checks proofs against one set of options. Thread-safe: the two tables below are plain
    dicts (a read, a write or a clear is atomic under the GIL; a lost race costs one re-parse).

    The success path is what a client does on every request, so it is kept short (measured,
    bench/tokens.py): the header (typ, alg, jwk, thumbprint, public key) is parsed once per
    header bytes; per proof there is one find/rfind instead of a split, two base64url decodes,
    one strict JSON parse, a handful of exact type checks, and the replay store."""

    def __init__(self, options: DpopOptions, replay: ReplayStore, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.replay = replay
        self.clock = clock
        self.algs = frozenset(options.algs) & ASYMMETRIC_ALGS
        self.algs_text = " ".join(a for a in DEFAULT_DPOP_ALGS if a in self.algs)
        self.nonces = (NonceSource(options.nonce_secret or secrets.token_bytes(32), options.proof_lifetime, clock)
                       if options.use_nonce else None)
        # Read once per proof: copied out of the options.
        self._max_age = options.proof_lifetime + options.leeway
        # A few seconds of client clock skew are normal (RFC 9449 11.1).
        self._max_ahead = options.leeway + 5
        self._replay_ttl = options.proof_lifetime + 2 * options.leeway + 10
        # header segment -> (verify, alg, thumbprint, key): parsing a key costs as much as half
        # a verification. Bounded; filled only after a signature by that key has verified.
        self._headers: dict[bytes, tuple[Callable[[Any, bytes, bytes], None], str, str, Any]] = {}
        # sha256(token) -> its ath, base64url of that digest: a client sends many proofs per
        # token. Keyed by the digest, never the token. Bounded.
        self._aths: dict[bytes, str] = {}

    def _check_header(self, header_b64: bytes) -> tuple[Callable[[Any, bytes, bytes], None], str, str, Any]:
        """(verify, alg, jwk thumbprint, public key) of a header that passes every header rule."""
        header = json_object(_b64decode(header_b64), "header")  # duplicate members refused
        check_header_types(header)
        typ = header.get("typ")
        if typ is None or typ.lower() != DPOP_TYPE:
            raise _proof_error("dpop_bad_type", "typ is not dpop+jwt")
        alg = header.get("alg")
        if alg not in self.algs:
            raise _proof_error("dpop_alg_not_allowed", f"alg {str(alg)[:20]!r} not allowed")
        if "crit" in header:
            raise _proof_error("dpop_malformed", "crit present")
        jwk = header.get("jwk")
        if jwk is None:
            raise _proof_error("dpop_bad_key", "no jwk")
        if not PRIVATE_MEMBERS.isdisjoint(jwk):
            raise _proof_error("dpop_bad_key", "jwk carries private key material")
        kty = jwk.get("kty")
        if kty not in _THUMB_MEMBERS or not all(type(jwk.get(m)) is str for m in _THUMB_MEMBERS[kty]):
            raise _proof_error("dpop_bad_key", "jwk lacks its required members")
        return _VERIFY[alg], alg, jwk_thumbprint(jwk), _public_key(jwk, alg)

    def check(self, proof: str, *, method: str, htu: Callable[[], str], access_token: str,
              token_digest: bytes | None = None) -> str:
        """The proof key's RFC 7638 thumbprint; InvalidDpopProof / UseDpopNonce otherwise.
        `htu` is called only once the proof's signature holds (it costs PDK calls).
        `token_digest` is SHA-256(access_token) when the caller has it already (the token
        verifier and its cache do): ath is then found without hashing the token string."""
        try:
            if len(proof) > MAX_PROOF_SIZE:
                raise _proof_error("dpop_malformed", "proof too large")
            raw = proof.encode("ascii")
            # Three non-empty segments: find/rfind and slices (bytes.split costs 0.4 us on an
            # RSA proof, whose header carries the 2048-bit modulus).
            dot, last = raw.find(b"."), raw.rfind(b".")
            payload_b64 = raw[dot + 1:last]
            if dot < 1 or last - dot < 2 or last == len(raw) - 1 or _DOT in payload_b64:
                raise _proof_error("dpop_malformed", "not a JWS")
            # A client signs every proof with the same header bytes (typ, alg, jwk): its parse is
            # remembered, but only once a signature by its key has verified (bounded table).
            header_b64 = raw[:dot]
            known = self._headers.get(header_b64)
            verify, alg, thumbprint, key = known if known is not None else self._check_header(header_b64)
            try:
                verify(key, _b64decode(raw[last + 1:]), raw[:last])
            except Exception:  # noqa: BLE001 - InvalidSignature or a malformed signature
                raise _proof_error("dpop_bad_signature", f"alg={alg}") from None
            if known is None:
                if len(self._headers) >= _MAX_KEYS:
                    self._headers.clear()
                self._headers[header_b64] = (verify, alg, thumbprint, key)

            # As strict as every JOSE part, and each claim with its exact type (dpop_claims.py).
            jti, htm, htu_claim, iat, ath, nonce = proof_claims(_b64decode(payload_b64))
            if htm != method:
                raise _proof_error("dpop_bad_htm", f"htm {htm[:10]!r} is not {method}")
            expected = htu()
            # Clients usually send the URL exactly as the server spells it: compare before normalizing.
            if htu_claim != expected and normalize_htu(htu_claim) != expected:
                raise _proof_error("dpop_bad_htu", f"htu does not match {expected}")
            now = self.clock()
            if iat > now + self._max_ahead:
                raise _proof_error("dpop_iat_in_future", f"iat {iat} > now {now:.0f}")
            if iat < now - self._max_age:
                raise _proof_error("dpop_expired", f"iat {iat} older than {self.options.proof_lifetime}s")
            aths = self._aths
            digest = token_digest if token_digest is not None else hashlib.sha256(access_token.encode("ascii")).digest()
            expected_ath = aths.get(digest)
            if expected_ath is None:
                expected_ath = b64url(digest)  # RFC 9449 4.2 ath, as access_token_hash computes it
                if len(aths) >= _MAX_KEYS:
                    aths.clear()
                aths[digest] = expected_ath
            if not hmac.compare_digest(ath, expected_ath):
                raise _proof_error("dpop_bad_ath", "ath does not match the access token")
            if self.nonces is not None and not self.nonces.valid(nonce):
                raise UseDpopNonce(self.nonces.current())
            # Last: an invalid proof never uses up its jti.
            if not self.replay.first_use(f"{thumbprint}:{jti}", self._replay_ttl):
                raise _proof_error("dpop_replayed", "jti already used")
            return thumbprint
        except (InvalidDpopProof, UseDpopNonce):
            raise
        except JoseError as exc:  # its message is token-free by contract
            raise _proof_error("dpop_malformed", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - hostile input must never escape as another type
            raise _proof_error("dpop_malformed", type(exc).__name__) from None


# -- binding rules ----------------------------------------------------------------------------


def dpop_token(headers: Mapping[str, Any]) -> str | None:
    """The token of `Authorization: DPoP <token>` (same strictness as Bearer), or None."""
    values = headers.get("authorization")
    if not values:
        return None
    value = values[0] if isinstance(values, list) else values
    if not isinstance(value, str) or not value[:5].lower() == "dpop ":
        return None
    m = _DPOP_SCHEME.fullmatch(value.strip(" \t"))
    if m is None:
        raise InvalidRequest("invalid_request", "Malformed Authorization header: expected 'DPoP <token>'")
    return m.group(1)


def bound_thumbprint(claims: Mapping[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    if type(cnf) is not dict:
        return None
    jkt = cnf.get("jkt")
    return jkt if type(jkt) is str else None


def refuse_unsupported_binding(claims: Mapping[str, Any]) -> None:
    """A token bound to something we cannot check (mTLS, RFC 8705) is not a bearer token."""
    cnf = claims.get("cnf")
    if type(cnf) is dict and "x5t#S256" in cnf:
        raise InvalidToken("mtls_bound_token", "The token is bound to a client certificate",
                           "cnf.x5t#S256: certificate-bound tokens cannot be checked here (docs/limitations.md)")


class Binding:
    """Applies the mode and the binding rules to one request."""

    def __init__(self, checker: ProofChecker | None, default_mode: str) -> None:
        self.checker = checker
        self.default_mode = default_mode

    def enforce(self, *, mode: str, scheme: str, token: str, claims: Mapping[str, Any],
                headers: Mapping[str, Any], method: Callable[[], str], htu: Callable[[], str],
                token_digest: bytes | None = None) -> None:
        if scheme != "dpop" and mode != "required" and "cnf" not in claims:
            return  # the common Bearer case: no binding to refuse or match, no proof required
        refuse_unsupported_binding(claims)
        jkt = bound_thumbprint(claims)
        if scheme != "dpop":
            if jkt is not None:
                raise InvalidToken("dpop_bound_as_bearer", "The token is DPoP-bound and needs a DPoP proof",
                                   "cnf.jkt token presented with the Bearer scheme")
            if mode == "required":
                raise InvalidDpopProof("dpop_required", "A DPoP-bound token and proof are required",
                                       "Bearer scheme on a DPoP-required route", error="invalid_token")
            return
        if mode == "off" or self.checker is None:
            # We cannot check proofs here: the scheme is as unknown as any other.
            raise InvalidRequest("invalid_request", "The DPoP scheme is not enabled here")
        proofs = headers.get("dpop") or []
        proofs = [proofs] if isinstance(proofs, str) else list(proofs)
        if len(proofs) != 1 or not isinstance(proofs[0], str):
            raise _proof_error("dpop_missing_proof" if not proofs else "dpop_several_proofs",
                               f"{len(proofs)} DPoP headers")
        thumbprint = self.checker.check(proofs[0], method=method(), htu=htu, access_token=token,
                                        token_digest=token_digest)
        if jkt is None:
            # RFC 9449 7.1: the DPoP scheme with a token that is not bound is an error.
            raise InvalidToken("dpop_unbound_token", "The token is not DPoP-bound", "no cnf.jkt")
        if not hmac.compare_digest(jkt, thumbprint):
            raise InvalidToken("dpop_key_mismatch", "The DPoP proof key does not match the token",
                               "cnf.jkt differs from the proof key thumbprint")


def build_binding(config: Any) -> Binding:
    """The Binding for a PluginConfig: a proof checker when any mode (plugin or policy) is on."""
    modes = {config.proof_of_possession_dpop} | {p.dpop for p in config.policies if p.dpop}
    checker = None
    if modes - {"off"}:
        if config.dpop_replay_storage == "redis":
            # The session_redis_* options, TLS, ACL, Sentinel and Cluster included.
            from kong_oidc_py.shared_state.redis_client import RedisSettings, make_redis_client

            redis_settings = RedisSettings.from_config(config)
            replay: ReplayStore = RedisReplayStore(make_redis_client(redis_settings), redis_settings.prefix)
        else:
            replay = MemoryReplayStore(config.dpop_replay_cache_size)
        secret = config.dpop_nonce_secret
        checker = ProofChecker(DpopOptions(
            mode=config.proof_of_possession_dpop,
            algs=frozenset(config.dpop_signing_algs),
            proof_lifetime=config.dpop_proof_lifetime,
            leeway=config.leeway,
            use_nonce=config.dpop_use_nonce,
            nonce_secret=secret.encode() if secret else None,
        ), replay)
    return Binding(checker, config.proof_of_possession_dpop)
