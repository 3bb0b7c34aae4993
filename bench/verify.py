"""Verification cost per token, ours vs PyJWT vs the cryptographic floor.

    .venv/bin/python bench/verify.py [--json] [--rounds N]

For RS256, ES256 and EdDSA it measures (microseconds per token, median of rounds):
  first_sight  our Verifier on distinct fresh tokens (token cache cold for each)
  repeat       our Verifier on one token seen before (token cache hit)
  pyjwt        jwt.decode with a preloaded key, checking signature, aud, iss, exp
  floor        raw cryptography verify + base64url decode + json.loads of header and payload
and the ratios pyjwt/repeat (target >= 20) and first_sight/floor (target <= 1.2).
Keys are preloaded with Provider.from_jwks: no network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from base64 import urlsafe_b64decode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from kong_oidc_py.provider import Provider  # noqa: E402
from kong_oidc_py.verify import Verifier, VerifyOptions  # noqa: E402
from tests.support.keys import ISSUER, claims, ec_key, ed25519_key, jwks, rsa_key  # noqa: E402

TOKENS_PER_ROUND = 400
REPEATS_PER_ROUND = 20000
CHUNK = 25


def _b64(seg: str) -> bytes:
    return urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def floor_verifier(alg: str, key: object):
    """The least any verifier must do: decode, parse, check the signature."""
    if alg == "RS256":
        pad, h = padding.PKCS1v15(), hashes.SHA256()

        def check(sig: bytes, msg: bytes) -> None:
            key.verify(sig, msg, pad, h)  # type: ignore[attr-defined]
    elif alg == "ES256":
        algo = ECDSA(hashes.SHA256())

        def check(sig: bytes, msg: bytes) -> None:
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, msg, algo)  # type: ignore[attr-defined]
    else:

        def check(sig: bytes, msg: bytes) -> None:
            key.verify(sig, msg)  # type: ignore[attr-defined]

    def floor(token: str) -> None:
        h, p, s = token.split(".")
        json.loads(_b64(h))
        json.loads(_b64(p))
        check(_b64(s), f"{h}.{p}".encode())

    return floor


def per_call_us(fn, items: list) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1e6


def bench_alg(alg: str, test_key, rounds: int) -> dict:
    provider = Provider.from_jwks(ISSUER, jwks(test_key))
    options = VerifyOptions(issuer=ISSUER, audiences=("api",))
    public_key = provider.key_for(test_key.kid, alg)
    floor = floor_verifier(alg, public_key)

    def fresh_tokens() -> list[str]:
        return [test_key.sign(claims(jti=f"{alg}-{i}-{time.perf_counter_ns()}")) for i in range(TOKENS_PER_ROUND)]

    results: dict[str, list[float]] = {"first_sight": [], "repeat": [], "pyjwt": [], "floor": []}
    for round_no in range(rounds):
        tokens = fresh_tokens()
        # A verifier per round with a cache larger than the round: every token is a miss.
        verifier = Verifier(provider, options)
        # Floor and ours alternate over small chunks (and swap who goes first) so that load from
        # elsewhere on the machine falls on both alike.
        spent = {"floor": 0.0, "first_sight": 0.0}
        for i in range(0, len(tokens), CHUNK):
            chunk = tokens[i : i + CHUNK]
            order = [("floor", floor), ("first_sight", verifier.verify)]
            if (i // CHUNK + round_no) % 2:
                order.reverse()
            for name, fn in order:
                spent[name] += per_call_us(fn, chunk) * len(chunk)
        for name, total in spent.items():
            results[name].append(total / len(tokens))
        results["pyjwt"].append(
            per_call_us(
                lambda t: jwt.decode(t, public_key, algorithms=[alg], audience="api", issuer=ISSUER,
                                     options={"require": ["exp", "iss"]}),
                tokens,
            )
        )
        repeat = [tokens[0]] * REPEATS_PER_ROUND
        verifier.verify(tokens[0])
        results["repeat"].append(per_call_us(verifier.verify, repeat))
    med = {name: statistics.median(values) for name, values in results.items()}
    med["repeat_speedup_vs_pyjwt"] = med["pyjwt"] / med["repeat"]
    med["first_sight_over_floor"] = med["first_sight"] / med["floor"]
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    keys = {"RS256": rsa_key("bench-rsa"), "ES256": ec_key("P-256", "bench-ec"), "EdDSA": ed25519_key("bench-ed")}
    report = {alg: bench_alg(alg, key, args.rounds) for alg, key in keys.items()}
    if args.json:
        print(json.dumps({alg: {k: round(v, 3) for k, v in r.items()} for alg, r in report.items()}))
        return
    print(f"{'alg':6} {'first':>9} {'repeat':>9} {'pyjwt':>9} {'floor':>9}   {'pyjwt/repeat':>12} {'first/floor':>11}")
    for alg, r in report.items():
        print(
            f"{alg:6} {r['first_sight']:8.2f}u {r['repeat']:8.2f}u {r['pyjwt']:8.2f}u {r['floor']:8.2f}u"
            f"   {r['repeat_speedup_vs_pyjwt']:11.1f}x {r['first_sight_over_floor']:11.3f}"
        )
    print("targets: pyjwt/repeat >= 20x, first/floor <= 1.2 (microseconds per token, median of rounds)")


if __name__ == "__main__":
    main()
