"""How hard the plugin leans on the IdP, and what an IdP outage costs requests whose keys are held.

    .venv/bin/python bench/idp_protection.py [--json] [--quick]

Measured at the core level (Provider + Verifier in this process against tests/support/fake_idp on
loopback, whose per-path hit counters are the ground truth): the emulated Kong serves a few
hundred requests per second (bench/e2e.py), so 10,000 requests and 200 simultaneous first
requests through it would measure the emulator's queue, not the plugin's fetch discipline.
  unknown_kids   N tokens (valid signature, random unknown kid) -> JWKS fetches (target <= 1 per
                 rediscovery_lifetime, after the initial fetch)
  cold_start     200 threads verify a token at once on a provider that has fetched nothing
                 -> discovery fetches and JWKS fetches (target 1 and 1)
  hang           first-sight tokens whose key is held: per-request latency p50/p99, normal vs
                 while the JWKS endpoint hangs and unknown-kid requests keep asking for a refresh
                 (target p99 within 1.2x), median of rounds
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bench_main, dump  # noqa: E402

from kong_oidc_py.errors import InvalidToken  # noqa: E402
from kong_oidc_py.idp.provider import Provider, ProviderSettings  # noqa: E402
from kong_oidc_py.verification.verify import Verifier, VerifyOptions  # noqa: E402
from tests.support.fake_idp import FakeIdP  # noqa: E402
from tests.support.keys import claims, ec_key, encode_part, sign_raw  # noqa: E402

LIFETIME = 30


def _provider(idp: FakeIdP, **kw) -> tuple[Provider, Verifier]:
    p = Provider(ProviderSettings(issuer=idp.issuer, allow_insecure=True, rediscovery_lifetime=LIFETIME, **kw))
    return p, Verifier(p, VerifyOptions(issuer=idp.issuer, audiences=("api",)))


def _unknown_kid_token(key, issuer: str) -> str:
    header = {"alg": key.alg, "typ": "at+jwt", "kid": secrets.token_hex(8)}
    return sign_raw(key.private, key.alg, encode_part(header), encode_part(claims(issuer, lifetime=3600)))


def unknown_kids(n: int) -> dict:
    key = ec_key("P-256", "held")
    with FakeIdP() as idp:
        idp.set_keys(key)
        provider, verifier = _provider(idp)
        verifier.verify(key.sign(claims(idp.issuer)))  # the initial discovery + JWKS fetch
        before = idp.jwks_hits
        tokens = [_unknown_kid_token(key, idp.issuer) for _ in range(n)]
        t0 = time.monotonic()
        reasons: dict[str, int] = {}
        for t in tokens:
            try:
                verifier.verify(t)
            except InvalidToken as err:
                reasons[err.reason] = reasons.get(err.reason, 0) + 1
        elapsed = time.monotonic() - t0
        fetches = idp.jwks_hits - before
        provider.close()
    windows = int(elapsed // LIFETIME) + 1
    return {"requests": n, "jwks_fetches": fetches, "seconds": round(elapsed, 2), "rediscovery_lifetime": LIFETIME,
            "allowed": windows, "reasons": reasons, "meets": fetches <= windows}


def cold_start(n: int) -> dict:
    key = ec_key("P-256", "cold")
    with FakeIdP() as idp:
        idp.set_keys(key)
        idp.hang[idp.discovery_path] = 0.2  # widen the window in which all n callers are waiting
        provider, verifier = _provider(idp)
        token = key.sign(claims(idp.issuer, lifetime=3600))
        barrier = threading.Barrier(n)
        ok = [0]
        lock = threading.Lock()

        def one() -> None:
            barrier.wait()
            try:
                verifier.verify(token)
                with lock:
                    ok[0] += 1
            except InvalidToken:
                pass

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        out = {"concurrent": n, "accepted": ok[0], "discovery_fetches": idp.discovery_hits, "jwks_fetches": idp.jwks_hits}
        provider.close()
    out["meets"] = out["discovery_fetches"] == 1 and out["jwks_fetches"] == 1 and out["accepted"] == n
    return out


def _latencies(verifier: Verifier, tokens: list[str]) -> list[float]:
    out = []
    for t in tokens:
        t0 = time.perf_counter()
        verifier.verify(t)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def hang(n: int, rounds: int) -> dict:
    key = ec_key("P-256", "held")
    normal99, hang99, normal50, hang50 = [], [], [], []
    stuck = {"unknown_kid_requests": 0}
    with FakeIdP() as idp:
        idp.set_keys(key)
        provider, verifier = _provider(idp, timeout_ms=2000)
        verifier.verify(key.sign(claims(idp.issuer)))
        for r in range(rounds):
            normal_tokens = [key.sign(claims(idp.issuer, lifetime=3600, jti=f"n{r}-{i}")) for i in range(n)]
            hang_tokens = [key.sign(claims(idp.issuer, lifetime=3600, jti=f"h{r}-{i}")) for i in range(n)]
            lat = _latencies(verifier, normal_tokens)
            normal50.append(_p(lat, 0.5))
            normal99.append(_p(lat, 0.99))
            idp.hang[idp.jwks_path] = 5.0
            stop = threading.Event()

            def attacker() -> None:  # unknown kids: each may start (or join) a refresh that hangs
                while not stop.is_set():
                    try:
                        verifier.verify(_unknown_kid_token(key, idp.issuer))
                    except InvalidToken:
                        pass
                    stuck["unknown_kid_requests"] += 1

            # worst case every round: clear the refresh rate limit (private state, bench only) so
            # the attacker's first unknown kid starts a refresh that hangs
            provider._jwks._miss_refresh_at = None
            th = threading.Thread(target=attacker, daemon=True)
            th.start()
            time.sleep(0.05)
            lat = _latencies(verifier, hang_tokens)
            hang50.append(_p(lat, 0.5))
            hang99.append(_p(lat, 0.99))
            stop.set()
            idp.hang.pop(idp.jwks_path, None)
            th.join(10)
        provider.close()
    n99, h99 = statistics.median(normal99), statistics.median(hang99)
    return {"requests_per_phase": n, "rounds": rounds, "normal_p50_us": statistics.median(normal50), "normal_p99_us": n99,
            "hang_p50_us": statistics.median(hang50), "hang_p99_us": h99, "p99_ratio": h99 / n99,
            "jwks_fetch_attempts": idp.jwks_hits, **stuck, "meets": h99 / n99 <= 1.2}


def run(quick: bool) -> dict:
    return {
        "unknown_kids": unknown_kids(500 if quick else 10_000),
        "cold_start": cold_start(20 if quick else 200),
        "hang": hang(100 if quick else 1000, 1 if quick else 5),
        "level": "core (Provider + Verifier against fake_idp on loopback); the emulator is the bottleneck at these rates",
    }


def show(report: dict) -> None:
    for k, v in report.items():
        print(f"{k:13} {v}")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(argv, __doc__, run, show)


if __name__ == "__main__":
    main()
