"""The supervisor of `cdserve up` with its real children: the registry and the training service as
their own processes (`cdserve registry`, `cdserve training serve`, from the config files the stack
writes), killed with SIGKILL and restarted, then stopped with nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.credentials import StackCredentials
from cli.processes import alive
from cli.stack import LocalStack, Ports, free_port, grpc_serving
from cli.supervisor import Backoff, ServiceSpec, Supervisor
from serving.config import ServingConfig
from shared.artifact import to_bytes
from shared.registry_client import RegistryClient
from tests.support.synthetic import random_concept
from training.client import TrainingClient

READY_S = 120  # a child's Python start and imports, on a busy 2-core machine


def wait_until(condition, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from shared.tiny import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def services(tmp_path_factory, tiny_model_dir, tiny_base):
    """The stack's registry and training service under a supervisor (no Ray: the training service
    reaches Ray only when a job is submitted)."""
    data = tmp_path_factory.mktemp("stack")
    stack = LocalStack(ServingConfig(), data)
    credentials = StackCredentials.load(data / "secrets", None)
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    services = stack.services(tiny_model_dir, tiny_base.spec, ports, credentials, "http://127.0.0.1:1")
    supervisor = Supervisor(services, log_dir=data / "logs", backoff=Backoff(initial_s=0.2))
    supervisor.start(ready_timeout_s=READY_S)
    yield supervisor, ports, credentials
    supervisor.stop(grace_s=10)


def test_a_killed_registry_is_restarted_and_serves_its_data_again(services, tiny_base):
    supervisor, ports, credentials = services
    target = f"127.0.0.1:{ports.registry}"
    with RegistryClient(target, token=credentials.operator_token) as client:
        client.publish(to_bytes(*random_concept(tiny_base.spec, "kept-dog")))
    first = supervisor.pid("registry")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: supervisor.restarts("registry") == 1, timeout_s=10, what="the restart")
    supervisor.wait_ready("registry", timeout_s=READY_S)
    assert supervisor.pid("registry") != first and not alive(first)
    with RegistryClient(target, token=credentials.operator_token) as client:
        assert client.get("kept-dog").version == 1
    log = (Path(credentials.tokens_file).parent.parent / "logs" / "registry.log").read_text()
    assert credentials.operator_token not in log  # secrets are never logged


def test_a_killed_training_service_is_restarted_and_answers_again(services):
    supervisor, ports, credentials = services
    first = supervisor.pid("training")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: supervisor.restarts("training") == 1, timeout_s=10, what="the restart")
    supervisor.wait_ready("training", timeout_s=READY_S)
    with TrainingClient(f"127.0.0.1:{ports.training}", token=credentials.operator_token) as client:
        assert list(client.list().jobs) == []


LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, as IPv4 and IPv4-mapped IPv6


def listening() -> dict[int, set[str]]:
    """Port → the addresses (hex, as the kernel lists them) a socket listens on."""
    found: dict[int, set[str]] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                address, port = local.split(":")
                found.setdefault(int(port, 16), set()).add(address)
    return found


def test_the_services_bind_loopback_only(services):
    _, ports, _ = services
    bound = listening()
    for port in (ports.registry, ports.registry_metrics, ports.training, ports.training_metrics):
        assert bound.get(port) and bound[port] <= LOOPBACK_HEX, (port, bound.get(port))


def test_stop_ends_every_child(tmp_path):
    script = "import time; time.sleep(600)"
    supervisor = Supervisor(
        [ServiceSpec(name, [sys.executable, "-c", script], ready=lambda: True) for name in ("one", "two")],
        log_dir=tmp_path,
    )
    supervisor.start()
    pids = [supervisor.pid("one"), supervisor.pid("two")]
    supervisor.stop(grace_s=5)
    assert not any(alive(pid) for pid in pids)


def test_a_child_that_keeps_failing_is_restarted_with_growing_delays(tmp_path, caplog):
    caplog.set_level("WARNING", logger="cdserve.supervisor")
    failing = ServiceSpec("flaky", [sys.executable, "-c", "raise SystemExit(3)"], ready=lambda: True)
    supervisor = Supervisor([failing], log_dir=tmp_path, backoff=Backoff(initial_s=0.1, max_s=0.4), poll_s=0.02)
    supervisor.start()
    wait_until(lambda: supervisor.restarts("flaky") >= 4, timeout_s=30, what="four restarts")
    supervisor.stop(grace_s=1)
    delays = [record.args[4] for record in caplog.records if "exited with" in record.getMessage()]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4][: len(delays[:5])] and len(delays) >= 4
    assert all("code 3" in record.getMessage() for record in caplog.records if "exited with" in record.getMessage())


def test_backoff_resets_after_a_stable_run():
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 8, 20)] == [0.5, 1.0, 2.0, 30.0, 30.0]


def test_credentials_are_made_once_private_and_merge_the_tenants_tokens(tmp_path):
    first = StackCredentials.load(tmp_path / "secrets", None)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tokens: {tok-acme: acme, tok-ops: '*'}\n")
    again = StackCredentials.load(tmp_path / "secrets", tenants)
    assert again.operator_token == first.operator_token  # valid across restarts
    assert again.job_token_key_file.read_text() == first.job_token_key_file.read_text()
    from shared.auth import load_tokens

    assert load_tokens(again.tokens_file) == {"tok-acme": "acme", "tok-ops": "*", first.operator_token: "*"}
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    for path in (again.operator_token_file, again.job_token_key_file, again.tokens_file):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_grpc_serving_is_false_where_nothing_listens():
    assert grpc_serving(f"127.0.0.1:{free_port()}", timeout_s=0.5) is False


def test_a_child_ends_when_its_supervisor_is_killed(tmp_path):
    """`cli.child` asks the kernel for SIGTERM when its parent dies: a SIGKILLed `cdserve up`
    leaves no service behind holding its port."""
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-m', 'cli.child', str(os.getpid()), 'registry', '--data', "
            f"{str(tmp_path / 'data')!r}, '--no-metrics'])\n"
            "print(child.pid, flush=True)\ntime.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(supervisor.stdout.readline())  # type: ignore[union-attr]
    wait_until(lambda: (tmp_path / "data" / "registry.sqlite3").exists(), timeout_s=READY_S, what="the registry")
    supervisor.kill()
    supervisor.wait()
    wait_until(lambda: not alive(child), timeout_s=60, what="the orphaned child to end")
