"""Helpers shared by the Prometheus tests: the production scrape config with Kubernetes service
discovery swapped for file-based discovery (same jobs, same relabelling), so that promtool and a
real server can run it without a Kubernetes API, fed with targets that carry the labels Kubernetes
would attach to the pods the manifests describe."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import PROMETHEUS_DIR

METRIC_NAME = re.compile(r"\b(?:ray|cdserve)_[a-z0-9_]+\b|\bup\b")


def production_config() -> dict[str, Any]:
    return yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())


def with_file_discovery(config: dict[str, Any], targets_file: Path, **global_overrides: Any) -> dict[str, Any]:
    """`config` with every kubernetes_sd_configs replaced by file_sd_configs reading `targets_file`
    and rule files made absolute; relabel_configs are kept as they are."""
    config = json.loads(json.dumps(config))
    config["global"] = {**config.get("global", {}), **global_overrides}
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config.get("rule_files", [])]
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs", None) is not None, job["job_name"]
        job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    return config


def label_name(key: str) -> str:
    """Kubernetes label key → the suffix Prometheus uses in __meta_kubernetes_pod_label_<suffix>."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def pod_target(address: str, pod: str, labels: dict[str, str], port_name: str) -> dict[str, Any]:
    meta = {f"__meta_kubernetes_pod_label_{label_name(k)}": v for k, v in labels.items()}
    meta |= {
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_namespace": "cdserve",
    }
    return {"targets": [address], "labels": meta}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label names and label values excluded)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings)
    return set(METRIC_NAME.findall(without_groupings))
