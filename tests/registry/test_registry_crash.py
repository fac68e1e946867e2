"""A registry process killed with SIGKILL in the middle of an upload, then restarted on the same
data folder: no partial concept, earlier concepts intact, the staged upload removed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from proto import registry_pb2, registry_pb2_grpc
from shared.registry_client import RegistryClient
from tests.registry.conftest import FAST_RETRY, header, iter_then_block, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


class RegistryProcess:
    """`cdserve registry` as a child process; the port is read from its 'registry.started' log line."""

    def __init__(self, data_dir: Path, spec_file: Path, *, port: int = 0, tokens: dict[str, str] | None = None) -> None:
        tokens = tokens or {"tok-acme": "acme"}
        env = {**os.environ, "CDSERVE_REGISTRY_TOKENS": json.dumps({"tokens": tokens})}
        command = [
            sys.executable,
            "-m",
            "cli.main",
            "registry",
            "--data",
            str(data_dir),
            "--port",
            str(port),
            "--base-spec",
            str(spec_file),
            "--no-metrics",
        ]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.port = self._wait_started()

    def _wait_started(self) -> int:
        for line in self.process.stderr:  # type: ignore[union-attr]
            if line.startswith("{") and json.loads(line).get("event") == "registry.started":
                threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained
                return int(json.loads(line)["port"])
        raise RuntimeError(f"the registry exited with {self.process.wait()} before it started")

    def client(self) -> RegistryClient:
        return RegistryClient(f"127.0.0.1:{self.port}", token="tok-acme", retry=FAST_RETRY)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def terminate(self) -> None:
        self.process.terminate()
        assert self.process.wait(timeout=15) == 0, "SIGTERM should stop the registry gracefully"


@pytest.fixture
def spec_file(tmp_path: Path, spec) -> Path:
    path = tmp_path / "cdserve_base_spec.json"
    path.write_text(spec.to_json())
    return path


def test_sigkill_in_the_middle_of_an_upload_leaves_no_trace(tmp_path, spec_file, make_artifact):
    data_dir = tmp_path / "data"
    earlier, interrupted = make_artifact("earlier"), make_artifact("interrupted", seed=1)
    registry = RegistryProcess(data_dir, spec_file)
    with registry.client() as client:
        client.publish(earlier)

    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
        messages = [registry_pb2.PublishRequest(header=header(interrupted), data=interrupted[: len(interrupted) // 2])]
        upload = registry_pb2_grpc.RegistryStub(channel).Publish.future(
            iter_then_block(messages, release), metadata=(("authorization", "Bearer tok-acme"),)
        )
        wait_until(lambda: any(p.stat().st_size > 0 for p in (data_dir / "staging").iterdir()))
        registry.kill()
        release.set()
        assert upload.exception(timeout=10).code() == grpc.StatusCode.UNAVAILABLE
    assert len(list((data_dir / "staging").iterdir())) == 1  # the crash left the staged half upload

    registry = RegistryProcess(data_dir, spec_file)
    try:
        with registry.client() as client:
            assert [(c.concept_id, c.version) for c in client.list(all_versions=True, include_deleted=True)] == [
                ("earlier", 1)
            ]
            assert client.fetch("earlier") == earlier
            assert client.publish(interrupted).concept.version == 1  # the id was never taken
        assert list((data_dir / "staging").iterdir()) == []
        with sqlite3.connect(data_dir / "registry.sqlite3") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        registry.terminate()


def test_a_restart_removes_blobs_that_no_concept_references(server, acme, make_artifact):
    acme.publish(make_artifact("dog"))
    stray = server.config.data_dir / "sha256" / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"a blob renamed into place just before a crash, never committed")

    server.restart()

    assert not stray.exists()
    assert [c.concept_id for c in acme.list()] == ["dog"]
