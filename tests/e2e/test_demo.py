"""`make demo` must keep working: the root kong.yml, served by the demo stack, behaves as the banner says."""

import subprocess
import sys

import pytest

from tests.support.stack import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_scenarios_behave_as_printed():
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--check"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BAD" not in result.stdout


def test_emulator_runs_on_its_own_with_the_root_kong_yml(tmp_path):
    # `python -m tests.kong_host --config kong.yml --port N` registers this project's plugin server.
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kong_host", "--config", "kong.yml", "--port", str(port), "--prefix", str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert "listening on" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/orders", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer realm=")
    finally:
        proc.terminate()
        proc.wait(20)
