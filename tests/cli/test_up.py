"""`cdserve up` as a user runs it, in its own process: endpoints on 127.0.0.1 only (Serve's gRPC
and HTTP proxies included), a generation through the Generator, a child service killed with SIGKILL and
restarted, and SIGTERM ending everything it started, Ray's processes included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cli.processes import processes_mentioning
from cli.stack import free_port, grpc_serving
from serving.client import GeneratorClient
from shared.artifact import to_bytes
from shared.registry_client import RegistryClient
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept

from .test_supervisor import LOOPBACK_HEX, listening

START_S = 300  # Ray, Serve, a replica with the toy-world model and two services on a busy 2-core machine
pytestmark = pytest.mark.slow


def read_until(process: subprocess.Popen, pattern: str, *, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"cdserve up exited ({process.wait()}):\n" + "".join(lines[-40:]))
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no {pattern!r} within {timeout_s} s:\n" + "".join(lines[-40:]))


def child_pid(data: Path, service: str) -> int:
    pids = processes_mentioning(str(data / "run" / f"{service}.yaml"))
    assert len(pids) == 1, pids
    return pids[0]


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    data = tmp_path_factory.mktemp("up")
    tenants = data / "tenants.yaml"
    tenants.write_text("tokens: {tok-acme: acme}\n")
    grpc_port, registry_port, metrics_port, http_port = free_port(), free_port(), free_port(), free_port()
    config = data / "serving.yaml"
    config.write_text(
        f"registry: {{address: '127.0.0.1:{registry_port}'}}\nmetrics_export_port: {metrics_port}\n"
        f"http_port: {http_port}\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "up",
            "--data",
            str(data),
            "--config",
            str(config),
            "--grpc-port",
            str(grpc_port),
            "--num-cpus",
            "2",
            "--tokens",
            str(tenants),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    try:
        lines = read_until(process, r"^Ctrl-C", timeout_s=START_S)
        yield {
            "process": process,
            "data": data,
            "grpc_port": grpc_port,
            "registry_port": registry_port,
            "http_port": http_port,
            "output": "".join(lines),
        }
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_prints_the_endpoints_and_binds_loopback_only(up):
    output = up["output"]
    assert f"generator (gRPC, Serve proxy): 127.0.0.1:{up['grpc_port']}" in output
    assert str(up["data"] / "tenants.yaml") in output and "tok-acme" not in output  # tokens are never printed
    playground = f"http://127.0.0.1:{up['http_port']}/"
    assert f"playground (browser, HTTP):    {playground}" in output
    assert requests.get(playground, timeout=30).status_code == 200
    bound = listening()
    for port in (up["grpc_port"], up["registry_port"], up["http_port"]):
        assert bound.get(port) and bound[port] <= LOOPBACK_HEX, (port, bound.get(port))
    with GeneratorClient(f"127.0.0.1:{up['grpc_port']}", application="cdserve") as client:
        reply = client.generate(GeneratorClient.request("a star on a white background", seed=1, steps=2))
    assert len(reply.images) == 1


def test_a_killed_child_service_comes_back_with_the_same_tokens(up):
    first = child_pid(up["data"], "registry")
    os.kill(first, signal.SIGKILL)
    target = f"127.0.0.1:{up['registry_port']}"
    deadline = time.monotonic() + 120
    while not (grpc_serving(target) and processes_mentioning(str(up["data"] / "run" / "registry.yaml")) != [first]):
        assert time.monotonic() < deadline, "the registry did not come back within 120 s"
        time.sleep(0.5)
    spec = BaseSpec.from_json((up["data"] / "run" / "base_spec.json").read_text())
    with RegistryClient(target, token="tok-acme") as client:  # a tenant's token from --tokens works after it
        assert client.publish(to_bytes(*random_concept(spec, "acme-dog"))).concept.tenant == "acme"


def test_sigterm_stops_every_process_it_started(up):
    process, data = up["process"], up["data"]
    children = [child_pid(data, "registry"), child_pid(data, "training")]
    ray_dirs = [str(d) for d in Path("/tmp").glob("cdserve-ray-*") if _started_by(d, process.pid)]
    assert ray_dirs, "the Ray temp dir of this stack was not found"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)  # ended and reaped
    for ray_dir in ray_dirs:
        assert processes_mentioning(ray_dir) == [] and not Path(ray_dir).exists()


def _started_by(ray_dir: Path, pid: int) -> bool:
    """Whether the Ray session in `ray_dir` belongs to the driver `pid` (its GCS is pid's child)."""
    for child in processes_mentioning(str(ray_dir)):
        try:
            parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent == pid:
            return True
    return False
