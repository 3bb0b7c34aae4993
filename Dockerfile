# Kong 3.9 OSS (DB-less) with the kong-oidc-py plugin server.
#
# kong:3.9.3 is the official image built from Kong/docker-kong tag 3.9.3 (ubuntu/Dockerfile:
# FROM ubuntu:noble, prefix /usr/local/kong, USER kong, entrypoint execs nginx and links the
# logs to stdout/stderr). Kong 3.9's plugin-server settings are documented in
# ../shared/kong-plugin-server.md 1.1 (kong/conf_loader/init.lua at tag 3.9.3).
FROM kong:3.9.3

# --- Python 3 and the plugin in its own venv (apt as root, then back to the kong user) ---
USER root
# Ubuntu noble ships Python 3.12 (pyproject: requires-python >= 3.11); python3-venv brings
# ensurepip, so the venv has its own pip and the system Python stays untouched (PEP 668).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip; \
    rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /tmp/kong-oidc-py/
COPY kong_oidc_py/ /tmp/kong-oidc-py/kong_oidc_py/
# The last three commands smoke-test Kong's query command at build time: one plugin, named oidc.
RUN set -eux; \
    python3 -m venv /opt/kong-oidc-py; \
    /opt/kong-oidc-py/bin/pip install --no-cache-dir --disable-pip-version-check /tmp/kong-oidc-py; \
    rm -rf /tmp/kong-oidc-py; \
    /opt/kong-oidc-py/bin/kong-oidc-py --dump > /tmp/oidc-dump.json; \
    /opt/kong-oidc-py/bin/python -c 'import json; d = json.load(open("/tmp/oidc-dump.json")); assert d[0]["Name"] == "oidc", d'; \
    rm -f /tmp/oidc-dump.json
USER kong

# --- Kong configuration ---
# KONG_PLUGINS lists the plugin NAME from the dump (`oidc`); KONG_PLUGINSERVER_NAMES the server.
# kong-pdk's dedicated server listens on <prefix>/<name>.sock by default while Kong 3.9 expects
# <prefix>/<server>.socket, so the start command passes --socket-name oidc.socket and the socket
# path is set explicitly to the same file (/usr/local/kong + oidc.socket).
# Worker 0 spawns the start command; its stdout/stderr lines go to Kong's error log at level
# INFO, prefixed "[oidc:<pid>]". With log_level notice (below) those lines are hidden: set
# KONG_LOG_LEVEL=info to see the plugin server's own log.
ENV KONG_DATABASE=off \
    KONG_DECLARATIVE_CONFIG=/kong/kong.yml \
    KONG_PLUGINS=bundled,oidc \
    KONG_PLUGINSERVER_NAMES=oidc \
    KONG_PLUGINSERVER_OIDC_SOCKET=/usr/local/kong/oidc.socket \
    KONG_PLUGINSERVER_OIDC_START_CMD="/opt/kong-oidc-py/bin/kong-oidc-py --kong-prefix /usr/local/kong --socket-name oidc.socket" \
    KONG_PLUGINSERVER_OIDC_QUERY_CMD="/opt/kong-oidc-py/bin/kong-oidc-py --dump" \
    KONG_PROXY_LISTEN="0.0.0.0:8000" \
    KONG_ADMIN_LISTEN="127.0.0.1:8001" \
    KONG_PROXY_ACCESS_LOG=/dev/stdout \
    KONG_ADMIN_ACCESS_LOG=/dev/stdout \
    KONG_PROXY_ERROR_LOG=/dev/stderr \
    KONG_ADMIN_ERROR_LOG=/dev/stderr \
    KONG_LOG_LEVEL=notice

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=10s --start-period=20s --retries=10 CMD ["kong", "health"]
