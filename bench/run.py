"""Run every bench script (`make bench`): verify, handler, tokens, pdk, e2e, idp_protection, scaling.

    .venv/bin/python bench/run.py [--quick] [--json] [--only verify,e2e,...] [--out FILE]

Each script runs in its own process with --json; this prints each part's figures and writes the
combined JSON (with the machine: nproc, CPU model, Python) to bench/results.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("verify", "handler", "tokens", "pdk", "e2e", "idp_protection", "scaling")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default=",".join(SCRIPTS))
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    report: dict = {"machine": machine()}
    failed = False
    for name in args.only.split(","):
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--json"] + (["--quick"] if args.quick else [])
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        seconds = round(time.monotonic() - t0, 1)
        try:
            report[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            report[name]["_seconds"] = seconds
        except (IndexError, json.JSONDecodeError):
            failed = True
            report[name] = {"error": proc.stderr[-2000:], "returncode": proc.returncode}
        if not args.json:
            print(f"== {name} ({seconds}s)")
            print(json.dumps(report[name], indent=1, default=str)[:6000])
            sys.stdout.flush()
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    if args.json:
        print(json.dumps(report, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
