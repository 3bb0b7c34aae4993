"""Opaque access tokens: RFC 7662 introspection, with an optional RFC 9701 signed answer.

The IdP is asked once per token: answers are cached under sha256(token) (never the token),
positive ones until the earlier of the answer's `exp` and `cache_ttl`, `active: false` ones
for a few seconds so a client hammering with a dead token does not hammer the IdP. Concurrent
misses for one token share one call (single-flight); other tokens never wait for it.

An active answer is judged by the same rules as a JWT's claims (verify.Verifier.check_claims:
issuer, audience, exp/nbf/iat) and then feeds the same policy and header logic. An IdP failure
(down, slow, too big, not JSON, bad signature on a JWT answer) is never cached and never
allows: the request fails closed with reason `introspection_failed` and the cause in the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import quote_plus

from kong_oidc_py.errors import InvalidToken, ProviderError
from kong_oidc_py.idp.fetch import _DECODER, Fetcher, parse_json_object
from kong_oidc_py.idp.singleflight import SingleFlight
from kong_oidc_py.verification.token_cache import TokenCache
from kong_oidc_py.verification.verify import _VERIFY, ASYMMETRIC_ALGS, Claims, Verifier, _b64decode

log = logging.getLogger("kong_oidc_py")

JSON = "application/json"
JWT_ANSWER = "application/token-introspection+jwt"  # RFC 9701 4
MAX_ANSWER_BYTES = 64 * 1024
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 2.2
# token_type values naming an access token (RFC 7662 2.2 refers to RFC 6749 7.1 types; some
# IdPs use the RFC 8693 URI or the word). Anything else (a refresh token) is refused.
ACCESS_TOKEN_TYPES = frozenset({"bearer", "dpop", "access_token", "urn:ietf:params:oauth:token-type:access_token"})
# Keycloak's `typ` for tokens that are not access tokens.
NOT_ACCESS_TYPS = frozenset({"refresh", "offline", "id", "logout"})
_WARN_INTERVAL = 60.0


@dataclass(frozen=True)
class IntrospectionOptions:
    client_id: str
    auth_method: str = "client_secret_basic"  # client_secret_basic | client_secret_post | private_key_jwt
    client_secret: str | None = None
    client_jwk: Mapping[str, Any] | None = None
    endpoint: str | None = None  # None: the discovery document's introspection_endpoint
    hint: str | None = "access_token"
    accept: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    cache_ttl: int = 600  # 0: no positive cache
    negative_ttl: int = 5  # 0: no negative cache
    cache_size: int = 10000
    max_token_size: int = 8192
    timeout_ms: int = 10000
    ssl_verify: bool = True
    allow_insecure: bool = False

    @classmethod
    def from_config(cls, config: Any) -> "IntrospectionOptions":
        jwk = json.loads(config.client_jwk) if getattr(config, "client_jwk", None) else None
        return cls(
            client_id=config.client_id,
            auth_method=config.introspection_endpoint_auth_method,
            client_secret=config.client_secret,
            client_jwk=jwk,
            endpoint=config.introspection_endpoint,
            hint=config.introspection_hint,
            accept=config.introspection_accept,
            headers=tuple(zip(config.introspection_headers_names, config.introspection_headers_values)),
            cache_ttl=int(config.cache_ttl) if config.cache_introspection else 0,
            negative_ttl=int(config.introspection_negative_cache_ttl) if config.cache_introspection else 0,
            cache_size=int(config.token_cache_size),
            max_token_size=int(config.max_token_size),
            timeout_ms=int(config.timeout),
            ssl_verify=bool(config.ssl_verify),
            allow_insecure=bool(config.allow_insecure_issuer),
        )


def _signing_alg(jwk: Mapping[str, Any]) -> str:
    """The JWS algorithm for a client key: its `alg`, else the usual one for its type."""
    alg = jwk.get("alg")
    if isinstance(alg, str):
        return alg
    if jwk.get("kty") == "RSA":
        return "RS256"
    if jwk.get("kty") == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(jwk.get("crv"), "ES256")
    return "EdDSA"


def private_key_from_jwk(jwk: Mapping[str, Any]) -> tuple[Any, str]:
    """(private key, alg) for private_key_jwt; ValueError when the JWK is not an asymmetric private key."""
    import jwt as pyjwt

    if "d" not in jwk:
        raise ValueError("the JWK has no private part (d)")
    alg = _signing_alg(jwk)
    if alg not in ASYMMETRIC_ALGS:
        raise ValueError(f"alg {alg} is not an asymmetric JWS algorithm")
    try:
        key = pyjwt.PyJWK(dict(jwk), algorithm=alg).key
    except Exception as exc:  # noqa: BLE001 - PyJWT raises several types for bad keys
        raise ValueError(f"not a usable {jwk.get('kty')} key: {type(exc).__name__}") from None
    return key, alg


class Introspector:
    """`introspect(token) -> Claims`, raising InvalidToken (and nothing else)."""

    def __init__(
        self,
        provider: Any,
        verifier: Verifier,
        options: IntrospectionOptions,
        *,
        clock: Callable[[], float] = time.time,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.provider = provider
        self.verifier = verifier
        self.options = options
        self.clock = clock
        self._fetcher = fetcher or Fetcher(
            timeout_ms=options.timeout_ms, ssl_verify=options.ssl_verify,
            allow_insecure=options.allow_insecure, max_bytes=MAX_ANSWER_BYTES,
        )
        self._flight: SingleFlight[Claims | str] = SingleFlight()
        self.cache: TokenCache[Claims] | None = (
            TokenCache(options.cache_size, options.cache_ttl) if options.cache_ttl > 0 else None
        )
        self.negative: TokenCache[str] | None = (
            TokenCache(min(options.cache_size, 10000), options.negative_ttl) if options.negative_ttl > 0 else None
        )
        self._signer = private_key_from_jwk(options.client_jwk) if options.auth_method == "private_key_jwt" else None
        self.calls = 0  # introspection requests sent (tests, stats)
        self._last_warning = 0.0
        self._warn_lock = threading.Lock()

    # -- the hot path -----------------------------------------------------------------------

    def introspect(self, token: str) -> Claims:
        if type(token) is not str or not token:
            raise InvalidToken("malformed", "The token is malformed", "not a string")
        if len(token) > self.options.max_token_size:
            raise InvalidToken("token_too_large", "The token is too large")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed", "The token is malformed", "non-ASCII") from None
        digest = hashlib.sha256(raw).digest()
        now = self.clock()
        if self.cache is not None:
            hit = self.cache.get(digest, now)
            if hit is not None:
                return hit
        if self.negative is not None and self.negative.get(digest, now) is not None:
            raise InvalidToken("inactive", "The token is not active", "cached active=false")
        result = self._flight.do(digest, lambda: self._ask(token, digest))
        if isinstance(result, str):
            raise InvalidToken("inactive", "The token is not active", result)
        # The leader judged claims at its clock; a follower re-checks nothing: same instant.
        return result

    def _ask(self, token: str, digest: bytes) -> Claims | str:
        """Claims of an active token, or the reason it is inactive (a str); raises InvalidToken
        for answers that fail the claim rules and for IdP failures (never cached)."""
        try:
            answer = self._call(token)
        except ProviderError as err:
            self._warn(err)
            raise InvalidToken("introspection_failed", "The token could not be checked",
                               f"{err.reason}: {err.detail or err.description}") from None
        now = self.clock()
        if answer.get("active") is not True:
            if self.negative is not None:
                self.negative.put(digest, "active=false", now, None)
            return "active=false"
        data = {k: v for k, v in answer.items() if k != "active"}
        self._check_type(data)
        data.setdefault("iss", self.verifier.options.issuer)
        # The IdP vouches for the token being active now; exp is optional in RFC 7662 2.2.
        expires_at = self.verifier.check_claims(data, now, require_exp=False)
        claims = Claims(data=data, token_hash=digest[:6].hex(), kid=None, alg="introspection",
                        expires_at=expires_at, token_digest=digest)
        if self.cache is not None:
            leeway = self.verifier.options.leeway
            self.cache.put(digest, claims, now, None if expires_at is None else expires_at + leeway)
        return claims

    @staticmethod
    def _check_type(data: Mapping[str, Any]) -> None:
        token_type = data.get("token_type")
        if token_type is not None and (type(token_type) is not str or token_type.lower() not in ACCESS_TOKEN_TYPES):
            shown = token_type[:40] if type(token_type) is str else type(token_type).__name__
            raise InvalidToken("bad_type", "The token type is not accepted", f"token_type={shown!r}")
        typ = data.get("typ")
        if type(typ) is str and typ.lower() in NOT_ACCESS_TYPS:
            raise InvalidToken("bad_type", "The token type is not accepted", f"typ={typ[:40]!r}")

    # -- the call ---------------------------------------------------------------------------

    def endpoint(self) -> str:
        if self.options.endpoint:
            return self.options.endpoint
        url = self.provider.metadata().get("introspection_endpoint")
        if not isinstance(url, str) or not url:
            raise ProviderError("introspection_failed", "the discovery document has no introspection_endpoint "
                                "(set introspection_endpoint)")
        return url

    def _call(self, token: str) -> dict:
        opts = self.options
        url = self.endpoint()
        form = {"token": token}
        if opts.hint:
            form["token_type_hint"] = opts.hint
        headers = {"Accept": opts.accept}
        for name, value in opts.headers:
            headers[name] = value
        if opts.auth_method == "client_secret_post":
            form["client_id"] = opts.client_id
            form["client_secret"] = opts.client_secret or ""
        elif opts.auth_method == "private_key_jwt":
            form["client_id"] = opts.client_id
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self._assertion()
        else:
            # RFC 6749 2.3.1: each part form-urlencoded before base64.
            pair = f"{quote_plus(opts.client_id, safe='')}:{quote_plus(opts.client_secret or '', safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self.calls += 1
        content_type, body = self._fetcher.post_form(url, form, headers=headers, reason="introspection_failed")
        if opts.accept == JWT_ANSWER:
            if content_type != JWT_ANSWER:
                raise ProviderError("introspection_failed", f"{url} answered {content_type or 'no content type'}, "
                                    f"not {JWT_ANSWER}", cause="bad_json")
            return self._verify_jwt_answer(body)
        try:
            return parse_json_object(body)
        except ValueError as exc:
            raise ProviderError("introspection_failed", f"{url} did not answer a JSON object: {exc}",
                                cause="bad_json") from None

    def _assertion(self) -> str:
        """RFC 7523 client assertion: iss = sub = client_id, aud = the issuer, short-lived, unique jti."""
        import jwt as pyjwt

        assert self._signer is not None
        key, alg = self._signer
        now = int(time.time())
        claims = {"iss": self.options.client_id, "sub": self.options.client_id, "aud": self.verifier.options.issuer,
                  "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(16)}
        headers = {"kid": self.options.client_jwk["kid"]} if isinstance(self.options.client_jwk.get("kid"), str) else None
        return pyjwt.encode(claims, key, algorithm=alg, headers=headers)

    def _verify_jwt_answer(self, body: bytes) -> dict:
        """RFC 9701 5: typ token-introspection+jwt, signed by the issuer's keys, iss = issuer,
        aud = our client_id; the answer is its token_introspection member."""
        def bad(why: str) -> ProviderError:
            return ProviderError("introspection_failed", f"JWT introspection answer refused: {why}")

        try:
            raw = body.strip()
            parts = raw.split(b".")
            if len(parts) != 3:
                raise bad("not a JWS")
            header = _DECODER.decode(_b64decode(parts[0]).decode("utf-8"))
            if type(header) is not dict:
                raise bad("header is not an object")
            typ = header.get("typ")
            if type(typ) is not str or typ.lower() not in ("token-introspection+jwt", "application/token-introspection+jwt"):
                raise bad("typ is not token-introspection+jwt")
            alg = header.get("alg")
            if alg not in self.verifier._algorithms or alg not in ASYMMETRIC_ALGS:
                raise bad("alg not allowed")
            kid = header.get("kid")
            try:
                key = self.provider.key_for(kid if type(kid) is str else None, alg)
            except (InvalidToken, ProviderError):
                raise bad("no key for kid") from None
            try:
                _VERIFY[alg](key, _b64decode(parts[2]), raw[: len(parts[0]) + 1 + len(parts[1])])
            except Exception:  # noqa: BLE001 - InvalidSignature, or a malformed signature
                raise bad("bad signature") from None
            payload = _DECODER.decode(_b64decode(parts[1]).decode("utf-8"))
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile input
            raise bad(f"malformed ({type(exc).__name__})") from None
        if type(payload) is not dict:
            raise bad("payload is not an object")
        if payload.get("iss") != self.verifier.options.issuer:
            raise bad("iss is not the issuer")
        aud = payload.get("aud")
        if not (aud == self.options.client_id or (type(aud) is list and self.options.client_id in aud)):
            raise bad("aud is not our client_id")
        answer = payload.get("token_introspection")
        if type(answer) is not dict:
            raise bad("no token_introspection object")
        return answer

    def _warn(self, err: ProviderError) -> None:
        """Logged at warn, at most once a minute: every request would otherwise repeat it."""
        now = time.monotonic()
        with self._warn_lock:
            if now - self._last_warning < _WARN_INTERVAL and self._last_warning:
                return
            self._last_warning = now
        log.warning("oidc: token introspection failed (requests fail closed with 401): %s: %s",
                    err.reason, err.detail or err.description)

    def close(self) -> None:
        self._fetcher.close()
