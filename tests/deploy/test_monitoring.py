"""Monitoring config checked by Prometheus' own tool: the scrape config, the alert rules and their
unit tests, the relabelling of the pods the manifests describe, and the Grafana dashboard's queries;
every metric they name is one the code (or the installed Ray) exports."""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
import yaml

from serving.metrics import ServingMetrics
from serving.registry.metrics import RegistryMetrics
from tests.deploy.conftest import DEPLOY, PROMETHEUS_DIR, PrometheusTools, find
from tests.deploy.promconfig import metric_names, pod_target, production_config, with_file_discovery
from training.service.metrics import TrainingMetrics

DASHBOARD = DEPLOY / "grafana" / "cdserve.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
REQUIRED_ALERTS = {
    "CdserveGenerateErrorRateHigh",
    "CdserveProxyErrorRateHigh",
    "CdserveGenerateLatencyP95High",
    "CdserveQueueDepthHigh",
    "CdserveQueueTimeP95High",
    "CdserveConceptCacheMissRateHigh",
    "CdserveReplicaUnhealthy",
    "CdserveTrainingJobsFailing",
    "CdserveRegistryDown",
}


def exported_metric_names() -> dict[str, str]:
    """Every series name the processes can expose → where it comes from."""
    names: dict[str, str] = {}
    for owner, metrics in (("registry", RegistryMetrics()), ("training", TrainingMetrics())):
        for family in metrics.registry.collect():
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = owner
    for metric in vars(ServingMetrics()).values():  # exported through Ray: prefixed with ray_
        for suffix in SUFFIXES[type(metric).__name__.lower()]:
            names[f"ray_{metric._name}{suffix}"] = "serving"
    ray_dir = Path(ray.__file__).parent
    sources = [
        *(ray_dir / "serve" / "_private").glob("*.py"),
        ray_dir / "dashboard" / "modules" / "reporter" / "reporter_agent.py",
    ]
    for source in sources:
        text = source.read_text()
        literals = set(re.findall(r'"((?:serve|node)_[a-z_]+)"', text))
        for template in re.findall(r'f"(serve_[a-z_]*\{protocol_name\}[a-z_]*)"', text):
            literals |= {template.replace("{protocol_name}", protocol) for protocol in ("http", "grpc")}
        for literal in literals:
            for suffix in ("", "_total", "_bucket", "_sum", "_count"):
                names[f"ray_{literal}{suffix}"] = "ray"
    names["up"] = "prometheus"
    return names


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def concrete(expr: str) -> str:
    """A Grafana query with its variables replaced, as Prometheus would receive it."""
    return expr.replace("$__rate_interval", "1m").replace("$application", "cdserve")


# -- promtool ------------------------------------------------------------------------------------


def test_scrape_config_passes_promtool(prometheus_tools: PrometheusTools, tmp_path: Path) -> None:
    done = prometheus_tools.promtool_run("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    if done.returncode != 0 and "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian builds Prometheus without Kubernetes discovery; everything else is still checked
        # (relabel rules, rule files) with the discovery swapped for files.
        config = with_file_discovery(production_config(), tmp_path / "targets.json")
        (tmp_path / "targets.json").write_text("[]")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        done = prometheus_tools.promtool_run("check", "config", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "12 rules found" in done.stdout


def test_alert_rules_pass_promtool_and_their_unit_tests(prometheus_tools: PrometheusTools) -> None:
    checked = prometheus_tools.promtool_run("check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = prometheus_tools.promtool_run("test", "rules", "alerts.test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_alerts_cover_the_required_conditions_and_name_exported_metrics() -> None:
    rules = alert_rules()
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    exported = exported_metric_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "warn") and rule["annotations"]["summary"], rule["alert"]
        names = metric_names(rule["expr"])
        assert names and names <= set(exported), f"{rule['alert']}: unknown {names - set(exported)}"
    used = {exported[n] for rule in rules for n in metric_names(rule["expr"])}
    assert {"serving", "ray", "registry", "training"} <= used


def test_relabelling_keeps_exactly_the_metrics_ports_of_the_pods(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """Every container port of every pod the manifests create becomes a discovered target with the
    labels Kubernetes (and KubeRay) would give it; each job must keep exactly its metrics ports."""
    targets, expected = [], {job["job_name"]: set() for job in production_config()["scrape_configs"]}
    pods: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for name in ("cdserve-registry", "cdserve-training"):
        pods.append((name + "-0", find("Deployment", name)["spec"]["template"], {}))
    for kind, name, key, cluster in (
        ("RayService", "cdserve", "rayClusterConfig", "cdserve-raycluster-abcde"),
        ("RayJob", "cdserve-train-example", "rayClusterSpec", "cdserve-train-example-xyz"),
    ):
        spec = find(kind, name)["spec"][key]
        pods.append(
            (
                f"{cluster}-head",
                spec["headGroupSpec"]["template"],
                {"ray.io/node-type": "head", "ray.io/group": "headgroup", "ray.io/cluster": cluster},
            )
        )
        for group in spec["workerGroupSpecs"]:
            pods.append(
                (
                    f"{cluster}-{group['groupName']}-0",
                    group["template"],
                    {"ray.io/node-type": "worker", "ray.io/group": group["groupName"], "ray.io/cluster": cluster},
                )
            )
    for i, (pod, template, kuberay_labels) in enumerate(pods):
        labels = {**template["metadata"]["labels"], **kuberay_labels}
        for c in template["spec"]["containers"]:
            for p in c.get("ports", []):
                address = f"10.0.0.{i + 1}:{p['containerPort']}"
                targets.append(pod_target(address, pod, labels, p["name"]))
                job = {
                    ("registry", "metrics"): "cdserve-registry",
                    ("training", "metrics"): "cdserve-training",
                    ("ray", "metrics"): "ray",
                    ("ray-head", "as-metrics"): "ray-autoscaler",
                    ("ray-head", "dash-metrics"): "ray-dashboard",
                }.get(
                    (
                        "ray"
                        if kuberay_labels and p["name"] == "metrics"
                        else "ray-head"
                        if kuberay_labels.get("ray.io/node-type") == "head"
                        else labels["app.kubernetes.io/component"],
                        p["name"],
                    )
                )
                if job:
                    expected[job].add(address)
    (tmp_path / "targets.json").write_text(json.dumps(targets))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(with_file_discovery(production_config(), tmp_path / "targets.json"))
    )
    assert expected["cdserve-registry"] and expected["cdserve-training"] and len(expected["ray"]) == 4

    def discover(job: str) -> subprocess.CompletedProcess[str]:  # promtool waits out its timeout: run jobs at once
        return prometheus_tools.promtool_run(
            "check", "service-discovery", "--timeout=1s", "prometheus.yml", job, cwd=tmp_path
        )

    with ThreadPoolExecutor(len(expected)) as pool:
        results = dict(zip(expected, pool.map(discover, expected), strict=True))
    for job, addresses in expected.items():
        done = results[job]
        assert done.returncode == 0, done.stderr
        kept = [t["labels"] for t in json.loads(done.stdout) if t["labels"]]
        assert {t["__address__"] for t in kept} == addresses, job
        for labels in kept:
            assert labels["job"] == job and labels["instance"].startswith("cdserve")
            if job == "ray":
                assert labels["ray_node_type"] in ("head", "worker") and labels["ray_cluster"].startswith("cdserve")


# -- Grafana -------------------------------------------------------------------------------------


def test_dashboard_is_well_formed_and_covers_every_part() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "application"}
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"], panel["title"]
    rows = {p["title"] for p in panels if p["type"] == "row"}
    assert {"Generate (Serve application)", "Concept cache", "Registry", "Training"} <= rows
    exported = exported_metric_names()
    used = set()
    for where, expr in dashboard_queries():
        names = metric_names(expr)
        assert names and names <= set(exported), f"{where}: unknown {names - set(exported)}"
        used |= {exported[n] for n in names}
    assert used == {"serving", "ray", "registry", "training"}


def test_dashboard_queries_are_valid_promql(prometheus_tools: PrometheusTools, tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": concrete(expr)} for i, (_, expr) in enumerate(dashboard_queries())
    ]
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = prometheus_tools.promtool_run("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout
