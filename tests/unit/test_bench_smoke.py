"""Each bench script still runs (tiny --quick sizes) and prints one valid JSON object.

No timing is asserted here: performance claims live in bench/ (bench/RESULTS.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(name: str) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_verify_bench_runs():
    out = _run("verify")
    for alg in ("RS256", "PS256", "ES256", "EdDSA"):
        assert {"first_sight", "repeat", "floor", "pyjwt", "joserfc", "jwcrypto", "authlib"} <= out[alg].keys()


def test_handler_bench_runs_the_bearer_allow_path():
    out = _run("handler")
    assert out["pdk_calls"] == ["kong.request.get_headers", "kong.request.get_path", "kong.service.request.set_headers",
                                "kong.ctx.shared.set", "kong.log.set_serialize_value"]
    assert out["access_us"] > 0 and out["calls_only_us"] > 0


def test_idp_protection_bench_runs():
    out = _run("idp_protection")
    assert out["cold_start"]["discovery_fetches"] >= 1
    assert "p99_ratio" in out["hang"]


@pytest.mark.skipif(not shutil.which("wrk") and not Path("/usr/bin/wrk").exists(), reason="wrk not installed")
def test_pdk_bench_runs():
    out = _run("pdk")
    assert out["rtt"]["pdk_call_rtt_us"] is not None
    assert out["paths"]["bearer_accepted"]["pdk_calls"] >= 1
    assert {"empty_event_over_floor", "bearer_event_over_floor", "throughput_8conns_ours_over_kong_pdk"} <= out["ratios"].keys()
    assert out["listener"]["latency_us"]["floor_round_trip"] > 0


@pytest.mark.skipif(not Path("/usr/bin/wrk").exists(), reason="wrk not installed")
def test_e2e_and_scaling_bench_run():
    pytest.importorskip("envoy")
    out = _run("e2e")
    assert {"kong_none", "kong_repeat", "kong_first", "envoy_none", "envoy_jwt"} <= out["results"].keys()
    out = _run("scaling")
    assert out["memory"]["cache_len"] <= 10000


def test_tokens_bench_runs():
    out = _run("tokens")
    assert {"introspection_cached_us", "jwt_cached_us", "ratio"} <= out["introspection"].keys()
    for alg in ("ES256", "EdDSA", "RS256", "PS256"):
        assert {"dpop_check_us", "signature_us", "ratio"} <= out["dpop"][alg].keys()
