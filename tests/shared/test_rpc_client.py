"""The clients' shared channel: gRPC itself retries the idempotent calls on UNAVAILABLE (seen as
attempts arriving at a real server), never the writes, and TLS works for every client.

The server here is a real gRPC server on 127.0.0.1 that answers any method of a service with an
empty response after failing its first calls: what is under test is the client's channel, so the
service behind it only needs to count attempts and fail on cue."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from cli.main import main as cdserve
from proto import training_pb2
from serving.client import GeneratorClient
from shared.errors import Unavailable
from shared.registry_client import RegistryClient
from shared.rpc_client import RetryPolicy, RpcClient
from training.client import TrainingClient

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


class FlakyServer:
    """Every method of `service` fails with UNAVAILABLE `failures` times, then answers an empty message."""

    def __init__(self, service: ServiceDescriptor, *, tls: tuple[Path, Path] | None = None, port: int = 0) -> None:
        self.failures = 0
        self.break_streams = False
        """Streams send one message, then fail with UNAVAILABLE."""
        self.attempts: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {method.name: self._handler(method) for method in service.methods}
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service.full_name, handlers)])
        if tls is None:
            self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        else:
            cert, key = tls
            credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            self.port = self._server.add_secure_port(f"127.0.0.1:{port}", credentials)
        self._server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(0)

    def _attempt(self, method: MethodDescriptor, request: Any, context: grpc.ServicerContext) -> Any:
        if method.client_streaming:
            for _ in request:  # read the whole upload, as a real server would before answering
                pass
        self.attempts[method.name] += 1
        self.metadata.append(dict(context.invocation_metadata()))
        if self.attempts[method.name] <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is restarting")
        return GetMessageClass(method.output_type)()

    def _handler(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        request_class, response_class = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
        options = {
            "request_deserializer": request_class.FromString,
            "response_serializer": response_class.SerializeToString,
        }
        if method.server_streaming:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                yield self._attempt(method, request, context)
                if self.break_streams:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the replica died")

            handler = (
                grpc.stream_stream_rpc_method_handler
                if method.client_streaming
                else grpc.unary_stream_rpc_method_handler
            )
            return handler(stream, **options)

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            return self._attempt(method, request, context)

        handler = (
            grpc.stream_unary_rpc_method_handler if method.client_streaming else grpc.unary_unary_rpc_method_handler
        )
        return handler(unary, **options)


CLIENTS: dict[str, Callable[..., RpcClient]] = {
    "registry": RegistryClient,
    "training": TrainingClient,
    "generator": GeneratorClient,
}
# (client, method, call) for every call a client makes with one request and one answer (or stream)
RETRIED = [
    ("registry", "Get", lambda c: c.get("dog")),
    ("registry", "List", lambda c: list(c.list())),
    ("registry", "Delete", lambda c: c.delete("dog@1")),
    ("training", "Get", lambda c: c.get("job-1")),
    ("training", "List", lambda c: c.list()),
    ("training", "Cancel", lambda c: c.cancel("job-1")),
    ("training", "Watch", lambda c: list(c.watch("job-1"))),
    ("generator", "Generate", lambda c: c.generate(GeneratorClient.request("a dog"))),
    ("generator", "GenerateStream", lambda c: list(c.stream(GeneratorClient.request("a dog")))),
]
NOT_RETRIED = [
    ("registry", "Publish", lambda c: c.publish(b"artifact bytes")),
    ("training", "Submit", lambda c: c.submit(training_pb2.TrainingSpec())),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FlakyServer]]:
    started = {name: FlakyServer(client.SERVICE) for name, client in CLIENTS.items()}  # type: ignore[attr-defined]
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def flaky(servers: dict[str, FlakyServer]) -> Callable[[str, int], FlakyServer]:
    def arm(name: str, failures: int) -> FlakyServer:
        server = servers[name]
        server.failures, server.attempts, server.metadata, server.break_streams = failures, Counter(), [], False
        return server

    return arm


@pytest.mark.parametrize(("name", "method", "call"), RETRIED, ids=[f"{n}.{m}" for n, m, _ in RETRIED])
def test_idempotent_calls_are_retried_by_grpc_until_they_succeed(flaky, name, method, call) -> None:
    server = flaky(name, 3)
    with CLIENTS[name](server.target, token="tok", retry=FAST) as client:
        call(client)
    assert server.attempts[method] == 4
    assert all(m["authorization"] == "Bearer tok" for m in server.metadata)


@pytest.mark.parametrize(("name", "method", "call"), RETRIED[:1] + RETRIED[-2:-1])
def test_retries_stop_at_max_attempts_with_a_typed_error(flaky, name, method, call) -> None:
    server = flaky(name, 10)
    with CLIENTS[name](server.target, retry=FAST) as client, pytest.raises(Unavailable, match="restarting"):
        call(client)
    assert server.attempts[method] == FAST.max_attempts


@pytest.mark.parametrize(("name", "method", "call"), NOT_RETRIED, ids=[f"{n}.{m}" for n, m, _ in NOT_RETRIED])
def test_writes_are_not_retried(flaky, name, method, call) -> None:
    server = flaky(name, 1)
    with CLIENTS[name](server.target, retry=FAST) as client, pytest.raises(Unavailable):
        call(client)
    assert server.attempts[method] == 1


@pytest.mark.parametrize(("name", "method", "call"), [r for r in RETRIED if r[1] in ("Watch", "GenerateStream")])
def test_a_stream_that_breaks_after_its_first_message_is_not_repeated(flaky, name, method, call) -> None:
    """gRPC commits a call once the server has answered: a repeat would replay what was seen."""
    server = flaky(name, 0)
    server.break_streams = True
    with CLIENTS[name](server.target, retry=FAST) as client, pytest.raises(Unavailable, match="died"):
        call(client)
    assert server.attempts[method] == 1


def test_a_write_waits_for_a_server_that_is_still_starting_then_runs_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started: list[FlakyServer] = []
    later = threading.Timer(0.5, lambda: started.append(FlakyServer(RegistryClient.SERVICE, port=port)))
    later.start()
    try:
        with RegistryClient(f"127.0.0.1:{port}", retry=FAST, timeout_s=30) as client:
            client.publish(b"artifact bytes")  # the first connection attempts are refused
        assert started[0].attempts["Publish"] == 1
    finally:
        later.join()
        for server in started:
            server.stop()


def test_the_generator_client_sends_its_application_with_the_token(flaky) -> None:
    server = flaky("generator", 0)
    with GeneratorClient(server.target, application="demo", token="tok") as client:
        client.generate(GeneratorClient.request("a dog"))
    assert server.metadata[0]["application"] == "demo" and server.metadata[0]["authorization"] == "Bearer tok"


def test_a_retry_policy_grpc_would_lower_silently_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=8)


@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_speaks_tls_to_a_server_with_a_certificate_it_trusts(name, tls_certificate) -> None:
    cert, _ = tls_certificate
    server = FlakyServer(CLIENTS[name].SERVICE, tls=tls_certificate)  # type: ignore[attr-defined]
    call = next(call for n, _, call in RETRIED if n == name)
    try:
        with CLIENTS[name](server.target, tls_ca_file=cert, retry=FAST) as client:
            call(client)
        with CLIENTS[name](server.target, retry=FAST, timeout_s=2) as plaintext, pytest.raises(Unavailable):
            call(plaintext)
    finally:
        server.stop()


def test_the_command_lines_reach_tls_servers_with_tls_ca(tls_certificate, tmp_path, capsys) -> None:
    cert, _ = tls_certificate
    generator = FlakyServer(GeneratorClient.SERVICE, tls=tls_certificate)
    registry = FlakyServer(RegistryClient.SERVICE, tls=tls_certificate)
    try:
        generate = ["generate", "--prompt", "a dog", "--out", str(tmp_path), "--target", generator.target]
        assert cdserve([*generate, "--token", "tok", "--tls-ca", str(cert)]) == 0
        assert generator.attempts["GenerateStream"] == 1 and generator.metadata[0]["authorization"] == "Bearer tok"
        assert cdserve(["concepts", "list", "--registry", registry.target, "--tls-ca", str(cert)]) == 0
        assert registry.attempts["List"] == 1
    finally:
        generator.stop()
        registry.stop()
