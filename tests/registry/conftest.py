"""Registry fixtures: a real server (grpc.aio in a background thread) on 127.0.0.1 over a
temporary data folder, real SQLite and real blob files, driven by the synchronous client."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proto import registry_pb2
from serving.registry.config import RegistryConfig
from serving.registry.server import RegistryHandle, start_registry
from shared.artifact import to_bytes
from shared.registry_client import RegistryClient
from shared.rpc_client import RetryPolicy
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept

T = TypeVar("T")

TOKENS = {"tok-acme": "acme", "tok-beta": "beta", "tok-ops": "*"}
FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.05, max_backoff_s=0.5)


class ServerThread:
    """A registry served by its own event loop in a daemon thread; `restart()` reopens the same data."""

    def __init__(self, config: RegistryConfig, specs: list[BaseSpec], tokens: dict[str, str]) -> None:
        self.config, self.specs, self.tokens = config, specs, tokens
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.handle: RegistryHandle | None = self.run(start_registry(config, base_specs=specs, tokens=tokens))
        self.port = self.handle.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def client(self, token: str | None = None, **options: Any) -> RegistryClient:
        return RegistryClient(self.target, token=token, retry=FAST_RETRY, **options)

    def stop(self, grace_s: float = 0.0) -> None:
        if self.handle is not None:
            self.run(self.handle.stop(grace_s))
            self.handle = None

    def restart(self, **config_updates: Any) -> None:
        """Stop if running, then serve the same data folder on the same port (clients reconnect)."""
        self.stop()
        self.config = self.config.model_copy(update={"port": self.port, **config_updates})
        self.handle = self.run(start_registry(self.config, base_specs=self.specs, tokens=self.tokens))

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def spec(tiny_base: Any) -> BaseSpec:
    return tiny_base.spec


@pytest.fixture
def make_artifact(spec: BaseSpec) -> Callable[..., bytes]:
    """make_artifact("dog", seed=1, rank=None, base=spec, category="dog") → artifact bytes."""

    def make(concept_id: str, *, seed: int = 0, base: BaseSpec | None = None, **options: Any) -> bytes:
        return to_bytes(*random_concept(base or spec, concept_id, seed=seed, **options))

    return make


@pytest.fixture
def server_factory(tmp_path: Path, spec: BaseSpec) -> Iterator[Callable[..., ServerThread]]:
    servers: list[ServerThread] = []

    def start(**config: Any) -> ServerThread:
        settings = {
            "data_dir": tmp_path / f"data{len(servers)}",
            "shutdown_grace_s": 0.0,
            "metrics_port": None,
            **config,
        }
        servers.append(ServerThread(RegistryConfig(**settings), [spec], dict(TOKENS)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def server(server_factory: Callable[..., ServerThread]) -> ServerThread:
    return server_factory()


@pytest.fixture
def acme(server: ServerThread) -> Iterator[RegistryClient]:
    with server.client("tok-acme") as client:
        yield client


@pytest.fixture
def anonymous(server: ServerThread) -> Iterator[RegistryClient]:
    with server.client() as client:
        yield client


def other_base(spec: BaseSpec) -> BaseSpec:
    """The same shapes under another fingerprint: a base model this registry does not accept."""
    return replace(spec, fingerprint="f" * 32)


def store_snapshot(server: ServerThread) -> tuple[list[tuple[str, int, bool]], list[str], list[str], int]:
    """Everything a publish could leave behind: rows, blobs, staged files, event sequence."""
    data_dir = server.config.data_dir
    with server.client("tok-ops") as operator:
        rows = sorted(
            (c.concept_id, c.version, c.deleted) for c in operator.list(all_versions=True, include_deleted=True)
        )
    blobs = sorted(p.name for p in (data_dir / "sha256").glob("*/*"))
    staged = sorted(p.name for p in (data_dir / "staging").iterdir())
    return rows, blobs, staged, server.handle.registry.latest_sequence


def header(data: bytes, **fields) -> registry_pb2.PublishHeader:
    return registry_pb2.PublishHeader(
        **{"total_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **fields}
    )


def iter_then_block(messages, release: threading.Event, then=()):
    """Send `messages`, then hold the stream open (an upload in progress) until `release`, then
    send `then`."""
    yield from messages
    release.wait(30)
    yield from then


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
