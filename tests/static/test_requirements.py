"""What the README and Makefile promise about the machine matches what the pinned parts ask for."""

import os
import re
import subprocess
import sys

import pytest

from tests.support.stack import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
# Node.js LTS codenames (nodejs.org release schedule) by major version.
LTS_MAJOR = {"Hydrogen": 18, "Iron": 20, "Jod": 22, "Krypton": 24}


def test_readme_node_requirement_is_what_the_pinned_oidc_provider_asks_for():
    index = REPO_ROOT / "node_modules" / "oidc-provider" / "lib" / "index.js"
    if not index.exists():
        pytest.skip("node_modules not installed (make install)")
    # oidc-provider warns unless the runtime's LTS codename is at least this one.
    codename = re.search(r"const minimal = '(\w+)'", index.read_text()).group(1)
    wanted = LTS_MAJOR[codename]
    stated = re.search(r"Node\.js >= (\d+)", README)
    assert stated and int(stated.group(1)) == wanted, f"README should say Node.js >= {wanted}"


def test_package_json_engines_match_the_readme():
    import json

    engines = json.loads((REPO_ROOT / "package.json").read_text())["engines"]["node"]
    stated = re.search(r"Node\.js >= (\d+)", README).group(1)
    assert engines == f">={stated}"


def test_make_up_without_the_compose_plugin_says_so(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n")  # `docker compose version` fails, as without the plugin
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(["make", "-s", "up"], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode != 0
    assert "docker compose plugin is missing" in result.stderr


def test_the_demo_needs_none_of_the_test_or_bench_extras():
    # `make demo` installs only `.[demo]`; the demo must import without the heavy extras.
    blocked = ["pytest", "playwright", "jsonschema", "joserfc", "jwcrypto", "authlib", "envoy", "redis"]
    code = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tests.demo, tests.kong_host.__main__\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
