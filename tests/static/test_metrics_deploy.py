"""The metrics example in deploy/ scrapes what the plugin server serves and graphs what it exports."""

import json
import re
import shlex

import yaml
from prometheus_client import CollectorRegistry

from kong_oidc_py import metrics
from tests.support.stack import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def compose_start_cmd() -> list[str]:
    return shlex.split(COMPOSE["services"]["kong"]["environment"]["KONG_PLUGINSERVER_OIDC_START_CMD"])


def exported_metric_names() -> set[str]:
    metrics.disable()
    registry = CollectorRegistry()
    metrics.enable(registry)
    try:
        names = set()
        for family in registry.collect():
            names |= {s.name for s in family.samples} | {family.name, family.name + "_total",
                                                         family.name + "_bucket", family.name + "_count"}
        return names
    finally:
        metrics.disable()


def test_compose_start_command_is_the_dockerfiles_plus_the_metrics_flags():
    dockerfile_cmd = shlex.split(re.search(r'KONG_PLUGINSERVER_OIDC_START_CMD="([^"]+)"', DOCKERFILE).group(1))
    cmd = compose_start_cmd()
    assert cmd[: len(dockerfile_cmd)] == dockerfile_cmd
    assert cmd[len(dockerfile_cmd):] == ["--metrics-port", "9542", "--metrics-host", "0.0.0.0"]


def test_prometheus_scrapes_the_port_the_plugin_server_listens_on():
    config = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    port = compose_start_cmd()[compose_start_cmd().index("--metrics-port") + 1]
    assert job["static_configs"][0]["targets"] == [f"kong:{port}"]


def test_the_metrics_port_is_not_published_outside_the_compose_network():
    assert not any("9542" in str(p) for p in COMPOSE["services"]["kong"].get("ports", []))


def test_every_dashboard_query_uses_only_metrics_the_plugin_exports():
    dashboard = json.loads((REPO_ROOT / "deploy/grafana/dashboards/kong-oidc-py.json").read_text())
    exported = exported_metric_names()
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bkong_oidc_[a-z_]+", target["expr"]))
    assert used, "the dashboard queries nothing"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_grafana_reads_the_dashboard_folder_it_is_given():
    provider = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/dashboards/kong-oidc-py.yml").read_text())
    mounts = {m["target"] for m in COMPOSE["services"]["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounts
