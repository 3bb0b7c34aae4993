"""Plugin-server worker modes and the memory bound of the token cache.

    .venv/bin/python bench/scaling.py [--json] [--quick]

modes    requests per second through the emulated Kong (2 simulated nginx workers) with our
         plugin server in kong-pdk's default threading mode and in `-m` multiprocessing mode
         (which pickles our Plugin per event via Plugin.__reduce__); wrk -c8 on one repeated
         token, median of rounds; non-2xx counts show whether -m actually works.
memory   core level: N distinct valid HS256 tokens (cheap to mint, same cache path as any alg)
         through one Verifier with token_cache_size 10000; RSS (VmRSS) at checkpoints and the
         cache length. Target: RSS flat once the cache is full.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bench_main, dump, echo_upstream, header_script, kong, kong_config, oidc_plugin, wrk  # noqa: E402

from tests.support.fake_idp import FakeIdP  # noqa: E402
from tests.support.keys import claims, rsa_key  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def modes(quick: bool) -> dict:
    rounds, duration = (1, 1) if quick else (3, 4)
    key = rsa_key("bench-rsa")
    out: dict = {}
    work = tempfile.mkdtemp(prefix="bench-scaling-")
    with FakeIdP() as idp, echo_upstream() as echo_port:
        idp.set_keys(key)
        token = key.sign(claims(idp.issuer, lifetime=3600))
        script = header_script(os.path.join(work, "bearer.lua"), {"Authorization": f"Bearer {token}"})
        cfg = kong_config(echo_port, {"/api": oidc_plugin(idp.issuer, audience_required=["api"])})
        for mode, args in (("threading", ""), ("multiprocessing", "-m")):
            runs = []
            try:
                with kong(cfg, oidc_args=args) as (port, _):
                    url = f"http://127.0.0.1:{port}/api/x"
                    wrk(url, connections=2, duration=1, script=script)
                    for _ in range(rounds):
                        runs.append(wrk(url, connections=8, duration=duration, script=script))
                out[mode] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "requests", "non_2xx")}
                out[mode]["works"] = out[mode]["non_2xx"] == 0 and out[mode]["requests"] > 0
            except Exception as exc:  # noqa: BLE001 - report, do not hide
                out[mode] = {"works": False, "error": f"{type(exc).__name__}: {exc}"}
    if out.get("threading", {}).get("rps") and out.get("multiprocessing", {}).get("rps"):
        out["multiprocessing_over_threading"] = out["multiprocessing"]["rps"] / out["threading"]["rps"]
    out["method"] = f"wrk -t1 -c8, {duration}s, median of {rounds} rounds"
    return out


def memory(n: int) -> dict:
    from kong_oidc_py.idp.provider import Provider
    from kong_oidc_py.verification.verify import Verifier, VerifyOptions
    from tests.support.keys import ISSUER, jwks

    secret = b"bench-hmac-secret-0123456789abcdef"
    provider = Provider.from_jwks(ISSUER, jwks(rsa_key("bench-rsa")))
    v = Verifier(provider, VerifyOptions(issuer=ISSUER, audiences=("api",), hmac_secret=secret,
                                         algorithms=frozenset({"HS256"}), token_cache_size=10000))
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"at+jwt"}').rstrip(b"=")
    now = int(time.time())
    body = claims(ISSUER, lifetime=3600, now=now)
    gc.collect()
    points = {0: rss_mb()}
    marks = {10_000, 100_000, n // 2, n}
    t0 = time.monotonic()
    for i in range(1, n + 1):
        body["jti"] = str(i)  # RFC 7519 4.1.7: a string (the verifier refuses other types)
        payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).rstrip(b"=")
        msg = header + b"." + payload
        sig = base64.urlsafe_b64encode(hmac.digest(secret, msg, hashlib.sha256)).rstrip(b"=")
        v.verify((msg + b"." + sig).decode())
        if i in marks:
            points[i] = rss_mb()
    elapsed = time.monotonic() - t0
    after_full = points[min(k for k in points if k >= 10_000)]
    return {"tokens": n, "token_cache_size": 10000, "cache_len": len(v.cache), "rss_mb": points,
            "growth_after_cache_full_mb": points[n] - after_full, "seconds": round(elapsed, 1),
            "meets": len(v.cache) <= 10000 and points[n] - after_full < 10}


def run(quick: bool) -> dict:
    return {"modes": modes(quick), "memory": memory(20_000 if quick else 1_000_000)}


def show(report: dict) -> None:
    for k, v in report["modes"].items():
        print(f"{k:18} {v}")
    print(f"memory             {report['memory']}")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(argv, __doc__, run, show)


if __name__ == "__main__":
    main()
