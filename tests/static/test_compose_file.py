"""docker-compose.yml: the published Compose schema, then the cross-checks the schema cannot do."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import jsonschema
import pytest

from .repo_files import COMPOSE_FILE, REPO, SCHEMAS, STACK_KONG_YML, compose, dockerfile_env, load_json
from tests.compose.stack import issuer

SERVICES = ("kong", "keycloak", "upstream")


def services() -> dict:
    return compose()["services"]


def test_compose_file_validates_against_the_compose_spec():
    # ../shared/schemas/README.md: draft-07, validator chosen explicitly (no validator_for()).
    schema = load_json(SCHEMAS / "compose-spec.json")
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_expected_services_exist():
    assert set(SERVICES) <= set(services())


def test_depends_on_targets_exist_and_healthy_targets_have_health_checks():
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for target, spec in deps.items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            assert target != name
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in svcs[target] and not svcs[target]["healthcheck"].get("disable"), (
                    f"{name} waits for {target} to be healthy but {target} has no health check")


def test_kong_waits_for_keycloak_and_upstream():
    deps = services()["kong"]["depends_on"]
    assert deps["keycloak"]["condition"] == "service_healthy"
    assert deps["upstream"]["condition"] in ("service_started", "service_healthy")


def test_every_service_has_a_health_check():
    # `make up` is `docker compose up --wait`: it returns only when every health check passes.
    for name, svc in services().items():
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no health check"
        for key in ("interval", "timeout", "retries"):
            assert key in hc, f"{name}.healthcheck.{key} missing"


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest); a registry port (host:5000/x) is not a tag."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else None
    repo = name[: len(name) - len(tag) - 1] if tag else name
    return repo, tag, digest or None


def test_split_image():
    assert split_image("mendhak/http-https-echo:41") == ("mendhak/http-https-echo", "41", None)
    assert split_image("reg:5000/a/b") == ("reg:5000/a/b", None, None)
    assert split_image("quay.io/keycloak/keycloak:26.6.4@sha256:" + "0" * 64)[1] == "26.6.4"


def test_images_are_pinned():
    for name, svc in services().items():
        if "build" in svc and "image" not in svc:
            continue  # built here from the Dockerfile (its FROM is checked in test_dockerfile.py)
        image = svc.get("image")
        assert image, f"{name} has neither image nor build"
        repo, tag, digest = split_image(image)
        assert re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*", repo), f"{name}: odd repository in {image!r}"
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag not in ("latest", "stable", "main", "master", "nightly", "dev"), f"{name}: {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag of {image!r} names no version"
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image


def test_kong_is_built_from_the_dockerfile():
    build = services()["kong"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (REPO / context / dockerfile).resolve() == (REPO / "Dockerfile").resolve()


def _ports(svc: dict) -> list[dict]:
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.append({"host_ip": p.get("host_ip"), "published": str(p.get("published")), "target": str(p["target"])})
            continue
        parts = str(p).split(":")
        assert len(parts) == 3, f"port {p!r}: give host_ip:published:target"
        out.append({"host_ip": parts[0], "published": parts[1], "target": parts[2].split("/")[0]})
    return out


def test_published_ports_are_loopback_only():
    for name, svc in services().items():
        for port in _ports(svc):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert {(p["published"], p["target"]) for p in _ports(services()["kong"])} == {("8000", "8000")}
    assert ("8080", "8080") in {(p["published"], p["target"]) for p in _ports(services()["keycloak"])}
    assert _ports(services()["upstream"]) == [], "the upstream is reachable through Kong only"


def _bind_mounts(svc: dict) -> list[tuple[str, str]]:
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
        else:
            parts = v.split(":")
            if parts[0].startswith((".", "/")):
                out.append((parts[0], parts[1]))
    return out


def test_bind_mount_sources_exist():
    for name, svc in services().items():
        for source, _ in _bind_mounts(svc):
            assert (COMPOSE_FILE.parent / source).exists(), f"{name}: bind source {source} does not exist"


def test_kong_mounts_the_stack_kong_yml_where_the_image_reads_it():
    mounts = dict(_bind_mounts(services()["kong"]))
    target = dockerfile_env()["KONG_DECLARATIVE_CONFIG"]
    sources = [s for s, t in mounts.items() if t == target]
    assert sources, f"nothing mounted at {target}"
    assert (COMPOSE_FILE.parent / sources[0]).resolve() == STACK_KONG_YML.resolve()


def test_keycloak_imports_the_realm_with_health_enabled():
    kc = services()["keycloak"]
    command = kc["command"] if isinstance(kc["command"], list) else kc["command"].split()
    assert command[0] == "start-dev" and "--import-realm" in command
    env = kc["environment"]
    assert str(env["KC_HEALTH_ENABLED"]).lower() == "true"
    targets = [t for _, t in _bind_mounts(kc)]
    assert "/opt/keycloak/data/import" in targets
    hc = " ".join(kc["healthcheck"]["test"])
    # the keycloak image has no curl: bash /dev/tcp against the management port
    assert "/dev/tcp/127.0.0.1/9000" in hc and "/health/ready" in hc
    assert "curl" not in hc and "wget" not in hc


def test_keycloak_hostname_is_the_issuer_kong_uses():
    """One name for Keycloak everywhere: `iss` in tokens == the issuer in kong.yml, and Kong can
    reach that host and port on the compose network."""
    kc_hostname = services()["keycloak"]["environment"]["KC_HOSTNAME"]
    parts = urlsplit(kc_hostname)
    assert parts.scheme in ("http", "https") and parts.hostname, "KC_HOSTNAME must be a full URL"
    assert issuer().startswith(kc_hostname.rstrip("/") + "/realms/")
    # The host is the keycloak service (or one of its network aliases) and the port its HTTP port.
    assert parts.hostname in ("keycloak",), f"{parts.hostname} is not resolvable from the kong container"
    http_port = str(services()["keycloak"]["environment"].get("KC_HTTP_PORT", "8080"))
    assert str(parts.port or 80) == http_port
    assert str(services()["keycloak"]["environment"].get("KC_HOSTNAME_BACKCHANNEL_DYNAMIC", "false")).lower() == "false"


def test_upstream_port_matches_the_kong_services():
    from .repo_files import load_yaml

    env = services()["upstream"].get("environment") or {}
    http_port = str(env.get("HTTP_PORT", "8080"))
    for service in load_yaml(STACK_KONG_YML)["services"]:
        url = urlsplit(service["url"])
        assert url.hostname in services(), f"{service['name']}: {url.hostname} is not a compose service"
        if url.hostname == "upstream":
            assert str(url.port) == http_port


INTERPOLATION = re.compile(r"\$(?!\$)(?!\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\})")


def _strings(node, path=()):
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, path + (i,))


def test_no_accidental_variable_interpolation():
    """Compose replaces `$name` with an (empty) environment variable: shell `$` must be `$$`."""
    for path, value in _strings(compose()):
        stripped = value.replace("$$", "")
        assert not INTERPOLATION.search(stripped), f"{list(path)}: unescaped $ in {value!r}"
        assert "${" not in stripped, f"{list(path)}: the stack takes no variables ({value!r})"


@pytest.mark.parametrize("name", SERVICES)
def test_service_keys_are_plain(name):
    # container_name would stop two checkouts from running side by side.
    assert "container_name" not in services()[name]
