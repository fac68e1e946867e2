"""Deploy fixtures: every manifest under deploy/ parsed once, and the Prometheus tools (Debian's
`prometheus` package, which `./dev test` installs with tools/install-test-prerequisites.sh)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS_DIR = DEPLOY / "prometheus"


@dataclass(frozen=True)
class Doc:
    """One YAML document of a file under deploy/."""

    path: Path
    index: int
    body: Any

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}#{self.index}"


def load_documents() -> list[Doc]:
    docs = []
    for path in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]):
        for index, body in enumerate(yaml.safe_load_all(path.read_text())):
            if body is not None:
                docs.append(Doc(path, index, body))
    return docs


def k8s_objects() -> list[Doc]:
    """Every Kubernetes object in deploy/k8s (kustomization.yaml is kustomize's own file, not an object)."""
    return [d for d in load_documents() if d.path.parent == K8S and d.body.get("kind") != "Kustomization"]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d.body for d in k8s_objects() if d.body["kind"] == kind and d.body["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind} {name!r} in deploy/k8s, found {len(matches)}"
    return matches[0]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@dataclass(frozen=True)
class PrometheusTools:
    promtool: str
    prometheus: str

    def promtool_run(
        self, *args: str, cwd: Path | None = None, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """promtool and prometheus on PATH. Installing them is the test command's job (`./dev test` runs
    tools/install-test-prerequisites.sh first), never a fixture's: without them the tests that need them skip."""
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if not (promtool and prometheus):
        pytest.skip("promtool/prometheus are not on PATH; run tools/install-test-prerequisites.sh (./dev test does)")
    return PrometheusTools(promtool, prometheus)
