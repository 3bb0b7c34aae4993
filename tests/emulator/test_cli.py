"""`python -m tests.kong_host` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from .conftest import PROBE, ROOT


def run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tests.kong_host", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_invalid_config_refuses_to_start_and_prints_kong_errors(prefix):
    path = os.path.join(prefix, "kong.yml")
    with open(path, "w") as f:
        f.write('_format_version: "3.0"\nplugins:\n- name: probe\n  config: {level: 11}\n')
    proc = run_cli(["--config", path, "--port", "0", "--prefix", prefix,
                    "--plugin-server", f"probe=;{sys.executable} {PROBE} --dump"])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "in 'level': value should be between 1 and 10" in err


def test_serves_requests_and_stops_its_plugin_server_on_sigterm(prefix, echo):
    path = os.path.join(prefix, "kong.yml")
    with open(path, "w") as f:
        f.write(f'_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:{echo.port}\n'
                '  routes: [{name: r, paths: ["/"]}]\nplugins:\n- name: probe\n')
    start = f"{sys.executable} {PROBE} --kong-prefix {{prefix}} --socket-name probe.socket --no-lua-style"
    proc = run_cli(["--config", path, "--port", "0", "--prefix", prefix,
                    "--plugin-server", f"probe={start};{sys.executable} {PROBE} --dump"])
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        url = line.split("listening on ")[1].split()[0]
        assert httpx.get(url + "/", timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert subprocess.run(["pgrep", "-f", f"{PROBE} --kong-prefix {prefix}"], capture_output=True).stdout == b""


def _check(path: str, prefix: str) -> subprocess.CompletedProcess:
    # Default plugin server: this project's `oidc`, its schema taken from `kong-oidc-py --dump`.
    return subprocess.run([sys.executable, "-m", "tests.kong_host", "--config", path, "--check", "--prefix", prefix],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_check_accepts_the_repository_kong_yml_without_serving(prefix):
    result = _check(os.path.join(ROOT, "kong.yml"), prefix)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "parse successful"
    assert not os.path.exists(os.path.join(prefix, "oidc.socket"))  # no plugin server was started


def test_check_refuses_a_kong_yml_breaking_a_cross_field_rule_and_names_the_field(prefix):
    path = os.path.join(prefix, "kong.yml")
    with open(path, "w") as f:
        f.write('_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n'
                '  routes: [{name: r, paths: ["/"]}]\n  plugins:\n  - name: oidc\n'
                '    config: {issuer: "https://idp.example.com", auth_methods: [bearer, authorization_code],'
                ' audience_required: [api], client_id: web, redirect_uri: "https://app.example.com/cb",'
                ' session_secret: "0123456789abcdef0123456789abcdef"}\n')
    result = _check(path, prefix)
    assert result.returncode == 1
    assert "in 'client_secret': required field missing" in result.stderr
    assert "config.client_secret: required when auth_methods contains authorization_code" in result.stderr
