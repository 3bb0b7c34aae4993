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
