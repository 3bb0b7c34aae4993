"""Dockerfile: pinned base, plugin-server settings that agree with each other and with the package."""

from __future__ import annotations

import re
import shlex
import tomllib

from .repo_files import DOCKERIGNORE, REPO, compose, dockerfile_env, dockerfile_from, dockerfile_instructions


def test_from_is_a_pinned_kong_3_9_image():
    froms = dockerfile_from()
    assert len(froms) == 1
    image = froms[0]
    # Kong 3.9's plugin-server keys and defaults are confirmed (../shared/kong-plugin-server.md 1.1).
    assert re.fullmatch(r"kong:3\.9\.\d+(-ubuntu)?(@sha256:[0-9a-f]{64})?", image), image


def test_runs_as_kong_after_root_steps():
    users = [args for instr, args in dockerfile_instructions() if instr == "USER"]
    assert users and users[-1] == "kong"


def test_plugin_server_settings_agree():
    env = dockerfile_env()
    plugins = [p.strip() for p in env["KONG_PLUGINS"].split(",")]
    assert "bundled" in plugins and "oidc" in plugins
    servers = [s.strip().lower() for s in env["KONG_PLUGINSERVER_NAMES"].split(",")]
    assert servers == ["oidc"]
    prefix_key = "KONG_PLUGINSERVER_" + servers[0].upper().replace("-", "_")

    start = shlex.split(env[prefix_key + "_START_CMD"])
    query = shlex.split(env[prefix_key + "_QUERY_CMD"])
    socket = env[prefix_key + "_SOCKET"]

    def opt(argv, name):
        assert name in argv, f"{name} missing from {argv}"
        return argv[argv.index(name) + 1]

    kong_prefix = opt(start, "--kong-prefix")
    socket_name = opt(start, "--socket-name")
    # kong-pdk listens on <kong-prefix>/<socket-name>; Kong connects to the _SOCKET path.
    assert socket == kong_prefix.rstrip("/") + "/" + socket_name
    assert socket_name.endswith(".socket")
    assert kong_prefix.rstrip("/") == "/usr/local/kong"  # the image's prefix (docker-kong entrypoint)
    assert query[0] == start[0] and query[1:] == ["--dump"]


def test_start_command_is_the_installed_console_script():
    env = dockerfile_env()
    start = shlex.split(env["KONG_PLUGINSERVER_OIDC_START_CMD"])
    with open(REPO / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert start[0].rsplit("/", 1)[1] in scripts
    venv = start[0].rsplit("/bin/", 1)[0]
    runs = " ".join(args for instr, args in dockerfile_instructions() if instr == "RUN")
    assert f"python3 -m venv {venv}" in runs
    assert f"{venv}/bin/pip install" in runs


def test_plugin_name_matches_the_package():
    from kong_oidc_py import PLUGIN_NAME

    assert PLUGIN_NAME in [p.strip() for p in dockerfile_env()["KONG_PLUGINS"].split(",")]


def test_db_less_and_logs_to_the_console():
    env = dockerfile_env()
    assert env["KONG_DATABASE"] == "off"
    assert env["KONG_DECLARATIVE_CONFIG"].startswith("/")
    assert env["KONG_PROXY_ACCESS_LOG"] == "/dev/stdout"
    assert env["KONG_PROXY_ERROR_LOG"] == "/dev/stderr"
    assert env["KONG_LOG_LEVEL"] == "notice"
    assert env["KONG_ADMIN_LISTEN"].startswith("127.0.0.1:")


def test_proxy_listens_on_the_published_port():
    listen = dockerfile_env()["KONG_PROXY_LISTEN"]
    ports = {p.rsplit(":", 1)[1].split()[0] for p in listen.split(",")}
    targets = {str(p).rsplit(":", 1)[1] for p in compose()["services"]["kong"]["ports"]}
    assert targets <= ports


def test_healthcheck_uses_kong_health():
    checks = [args for instr, args in dockerfile_instructions() if instr == "HEALTHCHECK"]
    assert len(checks) == 1 and '"kong", "health"' in checks[0]


def test_copy_sources_exist_and_are_not_docker_ignored():
    ignore = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    for instr, args in dockerfile_instructions():
        if instr != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for src in sources:
            assert (REPO / src).exists(), src
            # allow-list style .dockerignore: "*" then "!<source>"
            if "*" in ignore:
                assert "!" + src in ignore or "!" + src.rstrip("/") + "/" in ignore, f"{src} is docker-ignored"
