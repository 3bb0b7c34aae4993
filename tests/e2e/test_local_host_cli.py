"""`make run` / `make demo`: one-line errors a person can act on, and nothing left behind."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.stack import REPO_ROOT


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def run(args, env=None, timeout=60):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_local_host_on_a_busy_port_is_one_line_naming_the_port(busy_port, tmp_path):
    result = run(["-m", "tests.kong_host", "--config", "kong.yml", "--port", str(busy_port)],
                 env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: port {busy_port} on 127.0.0.1 is already in use; stop what holds it or choose another port"]
    assert list(tmp_path.iterdir()) == []


def test_demo_on_a_busy_port_names_the_port_and_the_flag(busy_port, tmp_path):
    result = run(["-m", "tests.demo", "--check", "--kong-port", str(busy_port)], env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"port {busy_port}" in line and "--kong-port" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_local_host_leaves_no_files_after_it_stops(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kong_host", "--config", "kong.yml", "--port", str(port)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert "listening on" in proc.stdout.readline()
        assert any(tmp_path.iterdir()), "the prefix should exist while it runs"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    deadline = time.monotonic() + 5
    while any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert left == [], (left, proc.returncode, proc.stdout.read()[-2000:])
