"""Cost of the issue-11 token paths against their baselines, measured in the same run.

    .venv/bin/python bench/tokens.py [--json] [--rounds N] [--quick]

Microseconds per call, median of rounds. Introspection: the candidate and its baseline run in
alternating chunks whose order swaps every chunk. DPoP: each proof check is followed by the bare
signature check of the same proof, so load from elsewhere falls on both alike.
  introspection   a cached introspection answer (Introspector.introspect on a token seen before)
                  against a cached JWT verification (Verifier.verify on a token seen before):
                  ratio introspection_cached / jwt_cached, target "same order" (<= 2)
  dpop            one DPoP proof check (ProofChecker.check on distinct proofs: key cache warm,
                  jti replay store in memory, htu/method given, and the access token's SHA-256
                  handed in as the gateway hands it: the token check computed it for its cache
                  key) against one raw `cryptography` signature verification of the same
                  algorithm over the same signing input, the signature already decoded:
                  ratio dpop / signature, target <= 1.3
No network: the introspection endpoint is a stand-in that is never called on a cache hit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kong_oidc_py.idp.provider import Provider  # noqa: E402
from kong_oidc_py.verification.dpop import (  # noqa: E402
    _VERIFY, DpopOptions, MemoryReplayStore, ProofChecker, _b64decode, _public_key,
)
from kong_oidc_py.verification.introspection import IntrospectionOptions, Introspector  # noqa: E402
from kong_oidc_py.verification.verify import Verifier, VerifyOptions  # noqa: E402
from tests.support.dpop import proof  # noqa: E402
from tests.support.keys import ISSUER, claims, ec_key, ed25519_key, jwks, rsa_key  # noqa: E402

URL = "https://api.example.com/orders/42"
TOKEN = "eyJ-opaque-looking-access-token-value-0123456789"


class _NoCall:
    def post_form(self, *a, **kw):  # pragma: no cover - a cache hit never calls
        raise AssertionError("introspection endpoint called on a cache hit")

    def close(self):
        pass


def _per_call(fn, items, reps: int) -> float:
    n = len(items)
    started = time.perf_counter()
    for i in range(reps):
        fn(items[i % n])
    return (time.perf_counter() - started) / reps * 1e6


def _paired(candidate, baseline, rounds: int, chunk: int) -> tuple[float, float]:
    """Median µs per call of two callables (each taking no argument), alternating chunks."""
    cands, bases = [], []
    for r in range(rounds):
        pair = [(candidate, cands), (baseline, bases)]
        if r % 2:
            pair.reverse()
        for fn, out in pair:
            out.append(fn(chunk))
    return statistics.median(cands), statistics.median(bases)


def bench_introspection(rounds: int, chunk: int) -> dict:
    key = rsa_key("bench-rs")
    provider = Provider.from_jwks(ISSUER, jwks(key))
    verifier = Verifier(provider, VerifyOptions(issuer=ISSUER, audiences=("api",)))
    jwt_token = key.sign(claims(aud="api", lifetime=3600))
    verifier.verify(jwt_token)
    intro = Introspector(provider, verifier, IntrospectionOptions(client_id="rs", client_secret="s",
                                                                  endpoint="https://idp.example.com/i"),
                         fetcher=_NoCall())
    answer = claims(aud="api", lifetime=3600, scope="read")
    intro.cache.put(__import__("hashlib").sha256(TOKEN.encode()).digest(),
                    __import__("kong_oidc_py.verification.verify", fromlist=["Claims"]).Claims(
                        data=answer, token_hash="x", kid=None, alg="introspection",
                        expires_at=answer["exp"]), time.time(), answer["exp"])
    intro.introspect(TOKEN)

    def run_intro(n):
        return _per_call(intro.introspect, [TOKEN], n)

    def run_jwt(n):
        return _per_call(verifier.verify, [jwt_token], n)

    cand, base = _paired(run_intro, run_jwt, rounds, chunk)
    return {"introspection_cached_us": round(cand, 3), "jwt_cached_us": round(base, 3),
            "ratio": round(cand / base, 3)}


def bench_dpop(alg: str, key, rounds: int, chunk: int) -> dict:
    checker = ProofChecker(DpopOptions(mode="optional", proof_lifetime=3600),
                           MemoryReplayStore(10_000_000))
    proofs = [proof(key, "GET", URL, TOKEN) for _ in range(chunk * (rounds + 1))]
    checker.check(proofs[-1], method="GET", htu=lambda: URL, access_token=TOKEN)  # warm the key cache
    header = json.loads(_b64decode(proofs[0].split(".")[0].encode()))
    pub = _public_key(header["jwk"], alg)
    verify = _VERIFY[alg]
    parts = [(p.encode(), p.split(".")) for p in proofs]
    signed = [(raw[: len(h) + 1 + len(pl)], _b64decode(s.encode())) for raw, (h, pl, s) in parts]
    htu = lambda: URL  # noqa: E731 - what the gateway hands in, already read
    digest = hashlib.sha256(TOKEN.encode()).digest()  # Claims.token_digest, as gateway.py passes it
    clock = time.perf_counter
    # Interleaved per call (check, then the bare signature of the same proof), so a load burst
    # on the shared machine falls on both sides; the ratio is taken per round, then the median.
    ratios, checks, sigs = [], [], []
    for r in range(rounds):
        t_check = t_sig = 0.0
        for i in range(r * chunk, (r + 1) * chunk):
            p = proofs[i]
            msg, sig = signed[i]
            t0 = clock()
            checker.check(p, method="GET", htu=htu, access_token=TOKEN, token_digest=digest)
            t1 = clock()
            verify(pub, sig, msg)
            t2 = clock()
            t_check += t1 - t0
            t_sig += t2 - t1
        ratios.append(t_check / t_sig)
        checks.append(t_check / chunk * 1e6)
        sigs.append(t_sig / chunk * 1e6)
    return {"dpop_check_us": round(statistics.median(checks), 2), "signature_us": round(statistics.median(sigs), 2),
            "ratio": round(statistics.median(ratios), 3), "ratio_best_round": round(min(ratios), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    out: dict = {"introspection": bench_introspection(rounds, 200 if args.quick else 20000)}
    keys = {"ES256": ec_key(kid=None), "EdDSA": ed25519_key(kid=None), "RS256": rsa_key("bench-c", fresh=True),
            "PS256": rsa_key("bench-p", alg="PS256", fresh=True)}
    out["dpop"] = {alg: bench_dpop(alg, key, rounds, 20 if args.quick else 400) for alg, key in keys.items()}
    if args.json:
        print(json.dumps(out))
    else:
        i = out["introspection"]
        print(f"cached introspection {i['introspection_cached_us']} us vs cached JWT {i['jwt_cached_us']} us: "
              f"ratio {i['ratio']}")
        for alg, d in out["dpop"].items():
            print(f"DPoP {alg}: proof check {d['dpop_check_us']} us vs signature {d['signature_us']} us: ratio {d['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
