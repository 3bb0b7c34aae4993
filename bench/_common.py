"""Shared helpers for the bench scripts: processes on loopback, wrk runs, JSON output.

Everything started here is a child process of the bench and is stopped by it (context managers);
every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PLUGIN_SCRIPT = Path(PY).parent / "kong-oidc-py"
PROBE = ROOT / "tests" / "fixtures" / "probe_plugin.py"
WRK = "/usr/bin/wrk"
ENVOY = Path(PY).parent / "envoy"
GUARD_GROUP = "oidc:verified"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def child(cmd: list[str], port: int, *, cwd: Path = ROOT, timeout: float = 60.0, env: dict | None = None,
          log: str | None = None) -> Iterator[subprocess.Popen]:
    """Start a child process (own process group) and wait until it listens on `port`."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        wait_port(port, timeout, proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if log:
            out.close()


@contextlib.contextmanager
def echo_upstream() -> Iterator[int]:
    port = free_port()
    with child([PY, str(ROOT / "bench" / "echo_nodelay.py"), "--port", str(port)], port):
        yield port


def oidc_plugin(issuer: str, **config: Any) -> list[dict]:
    """The oidc plugin and Kong's acl guard, as deployed (docs/DESIGN.md)."""
    return [{"name": "oidc", "config": {"issuer": issuer, **config}},
            {"name": "acl", "config": {"allow": [GUARD_GROUP], "always_use_authenticated_groups": True}}]


def kong_config(echo_port: int, routes: dict[str, list[dict] | None]) -> dict:
    """routes: path prefix -> plugins (None = no plugin)."""
    out = []
    for i, (path, plugins) in enumerate(routes.items()):
        r: dict[str, Any] = {"name": f"r{i}", "paths": [path], "strip_path": False}
        if plugins:
            r["plugins"] = plugins
        out.append(r)
    return {"_format_version": "3.0",
            "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo_port}", "routes": out}]}


@contextlib.contextmanager
def kong(cfg: dict, *, servers: tuple[str, ...] = ("oidc",), oidc_args: str = "", workers: int = 2,
         prefix: str | None = None) -> Iterator[tuple[int, str]]:
    """The emulated Kong (tests/kong_host CLI) in its own process, with our real plugin server
    and/or the probe plugin server. Yields (port, prefix); file log at <prefix>/logs/file-log.json."""
    own = prefix is None
    prefix = prefix or tempfile.mkdtemp(prefix="bench-kong-")
    path = os.path.join(prefix, "kong.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    specs = []
    if "oidc" in servers:
        start = f"{PLUGIN_SCRIPT} --kong-prefix {prefix} --socket-name oidc.socket {oidc_args}".strip()
        specs += ["--plugin-server", f"oidc={start};{PLUGIN_SCRIPT} --dump;{prefix}/oidc.socket"]
    if "probe" in servers:
        start = f"{PY} {PROBE} --kong-prefix {prefix} --socket-name probe.socket --no-lua-style"
        specs += ["--plugin-server", f"probe={start};{PY} {PROBE} --dump;{prefix}/probe.socket"]
    port = free_port()
    cmd = [PY, "-m", "tests.kong_host", "--config", path, "--port", str(port), "--prefix", prefix,
           "--workers", str(workers), "--log-level", "warn", *specs]
    try:
        with child(cmd, port, log=os.path.join(prefix, "emulator.out")) as proc:
            yield port, prefix
    finally:
        if own:
            import shutil

            shutil.rmtree(prefix, ignore_errors=True)


def log_lines(prefix: str) -> list[dict]:
    """The file-log lines the emulator has finished writing. It writes from another process, so
    the last line may be half there: only newline-terminated lines count."""
    path = os.path.join(prefix, "logs", "file-log.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]


def wait_log_lines(prefix: str, more_than: int, timeout: float = 10.0) -> list[dict]:
    """The log lines once there are more than `more_than` of them (or whatever is there at timeout)."""
    deadline = time.monotonic() + timeout
    lines = log_lines(prefix)
    while len(lines) <= more_than and time.monotonic() < deadline:
        time.sleep(0.02)
        lines = log_lines(prefix)
    return lines


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, *, connections: int, duration: float, script: str | None = None, threads: int = 1,
        timeout: str = "10s") -> dict:
    """One wrk run: rps, p50/p90/p99 (ms), requests, non-2xx/3xx and socket errors."""
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", timeout]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    res: dict[str, Any] = {"non_2xx": 0, "errors": 0}
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Requests/sec:"):
            res["rps"] = float(s.split()[1])
        m = re.match(r"(50|75|90|99)%\s+(\S+)", s)
        if m:
            res[f"p{m.group(1)}_ms"] = _ms(m.group(2))
        m = re.match(r"(\d+) requests in", s)
        if m:
            res["requests"] = int(m.group(1))
        m = re.match(r"Non-2xx or 3xx responses: (\d+)", s)
        if m:
            res["non_2xx"] = int(m.group(1))
        if s.startswith("Socket errors:"):
            res["errors"] = sum(int(n) for n in re.findall(r"\d+", s))
    if "rps" not in res:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    return res


def header_script(path: str, headers: dict[str, str]) -> str:
    """A wrk Lua script sending fixed headers."""
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def rotating_script(path: str, tokens_file: str) -> str:
    """A wrk Lua script sending `Authorization: Bearer <t>` rotating through the tokens file."""
    with open(path, "w") as f:
        f.write(f"""
local tokens = {{}}
for line in io.lines("{tokens_file}") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format(nil, nil, {{["Authorization"] = "Bearer " .. tokens[i]}})
end
""")
    return path


def median_of(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


def dump(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, default=str))


def bench_main(argv: list[str] | None, doc: str, run: Any, show: Any) -> dict:
    """The shared command line of every bench script: `--quick` sizes, `--json` output."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    args = ap.parse_args(argv)
    report = run(args.quick)
    if args.json:
        dump(report, True)
    else:
        show(report)
    return report
