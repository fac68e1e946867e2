"""What every cdserve gRPC client shares: one channel (plaintext, or TLS trusting a CA bundle) with
message limits, the bearer token on every call, typed errors, and retries done by gRPC itself.

Retries come from the channel's service config (`retryPolicy`), not from loops around calls: gRPC
retries an attempt that failed with UNAVAILABLE before the server answered, with exponential
backoff and jitter, only for the methods a client declares idempotent (`RETRIED_METHODS`). Writes
that would repeat themselves (Publish adds a version, Submit starts a job) are never retried; they
wait for the channel to connect before sending anything (`_call_once`), which is always safe.

How this meets streaming: gRPC retries a call only until the server's response headers arrive
(the call is then "committed"), and a client-streamed call only while its sent messages fit in
the retry buffer. So a listed server-streaming method (Watch of a training job, GenerateStream) is
retried when it fails before it started answering, and a break after that surfaces to the caller
(a restart would repeat events or steps the caller has already seen). A stream that must resume
where it broke needs a new request (the registry's Fetch at an offset, Watch after a sequence):
such streams stay out of the service config and resume in their own client code, with the same
`RetryPolicy` schedule (`delay_s`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypedDict, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from shared.errors import Unavailable
from shared.grpc_status import error_from_rpc

T = TypeVar("T")
MiB = 2**20
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
"""The standard health service's method; an empty request asks about the whole server."""
MAX_GRPC_ATTEMPTS = 5
"""gRPC caps `maxAttempts` at 5 (larger values are silently lowered)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for UNAVAILABLE: the channel's `retryPolicy` and its reconnect backoff,
    and the delays of the streams that resume in client code."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_GRPC_ATTEMPTS:
            raise ValueError(f"max_attempts={self.max_attempts} must be 1..{MAX_GRPC_ATTEMPTS} (gRPC's limit)")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s or self.multiplier < 1:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s and multiplier >= 1")

    def delay_s(self, failures: int) -> float:
        """Backoff after `failures` consecutive failures (≥ 1), with jitter so clients spread out."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (failures - 1))
        return base * random.uniform(0.5, 1.0)

    def service_config(self, service: str, methods: Sequence[str]) -> str:
        """The `grpc.service_config` JSON that retries `methods` of `service` on UNAVAILABLE."""
        if self.max_attempts == 1 or not methods:
            return json.dumps({})
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_s:.3f}s",
            "maxBackoff": f"{self.max_backoff_s:.3f}s",
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        names = [{"service": service, "method": method} for method in methods]
        return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


DEFAULT_RETRY = RetryPolicy()


class ChannelOptions(TypedDict, total=False):
    """The keyword arguments every client passes on to `RpcClient`."""

    token: str | None
    tls_ca_file: str | Path | None
    timeout_s: float | None
    max_message_bytes: int | None
    retry: RetryPolicy


class RpcClient:
    """One channel to `target` ("host:port") for one cdserve service.

    `token` (a bearer token) goes with every call; `tls_ca_file` switches to TLS, trusting that PEM
    bundle (the server's certificate must name the host of `target`); `metadata` is sent with
    every call too (e.g. Serve's `application`). Subclasses name their service and the methods
    gRPC may retry, and call `_call` / `_stream`, which raise typed `shared.errors`.
    """

    SERVICE: ClassVar[ServiceDescriptor]
    STUB: ClassVar[type[Any]]
    RETRIED_METHODS: ClassVar[tuple[str, ...]] = ()
    TIMEOUT_S: ClassVar[float] = 30.0
    """Default deadline of a call (a client's `timeout_s`)."""
    CONNECT_WAIT_S: ClassVar[float] = 15.0
    """How long a write waits for its channel to connect: long enough for a supervised restart,
    short enough that a caller whose service is down hears so, not after the whole deadline."""
    MAX_MESSAGE_BYTES: ClassVar[int] = 4 * MiB
    """Default largest message either way (a client's `max_message_bytes`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.RETRIED_METHODS) - set(cls.SERVICE.methods_by_name)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.RETRIED_METHODS: {sorted(unknown)} are not methods of {cls.SERVICE.full_name}"
            )

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca_file: str | Path | None = None,
        timeout_s: float | None = None,
        max_message_bytes: int | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        max_message_bytes = max_message_bytes or self.MAX_MESSAGE_BYTES
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.service_config", retry.service_config(self.SERVICE.full_name, self.RETRIED_METHODS)),
            # reconnect on the retry schedule, not gRPC's default that grows to 120 s between tries
            ("grpc.initial_reconnect_backoff_ms", round(retry.initial_backoff_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", round(retry.max_backoff_s * 1000)),
        ]
        if tls_ca_file is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca_file).read_bytes())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = self.STUB(self._channel)
        self.target = target
        self.timeout_s = timeout_s or self.TIMEOUT_S
        self._retry = retry
        self._token = token
        self._static_metadata = tuple(metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the channel connects (e.g. to a server that is still starting), at most
        `timeout_s` (default: the call deadline); `Unavailable` if it does not.

        A wait-for-ready health check does the waiting: gRPC holds it until the channel is ready
        and then sends it. Any answer, even UNIMPLEMENTED from a server without the health
        service, means the server was reached. (`grpc.channel_ready_future` would leave a polling
        thread behind that fails when the channel closes.)"""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            self._channel.unary_unary(HEALTH_CHECK)(b"", timeout=timeout_s, wait_for_ready=True)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"{self.target} could not be reached within {timeout_s:g} s") from e

    def _metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        token = token or self._token
        bearer = (("authorization", f"Bearer {token}"),) if token else ()
        return (*self._static_metadata, *bearer)

    def _call(
        self, method: Callable[..., T], request: Any, *, timeout_s: float | None = None, token: str | None = None
    ) -> T:
        """A unary or client-streaming call (`request` is then an iterator of messages)."""
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata(token))
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def _call_once(
        self, method: Callable[..., T], request: Any, *, timeout_s: float | None = None, token: str | None = None
    ) -> T:
        """A write that must not run twice: it first waits up to CONNECT_WAIT_S for the channel to
        connect (sending nothing, so a server that is restarting is waited for rather than failed
        on), then runs once, unretried."""
        self.wait_ready(min(self.CONNECT_WAIT_S, timeout_s or self.timeout_s))
        return self._call(method, request, timeout_s=timeout_s, token=token)

    def _stream(self, method: Callable[..., Iterator[T]], request: Any, *, timeout_s: float | None) -> Iterator[T]:
        """A server-streaming call's messages; `timeout_s=None` lets the stream run without deadline."""
        try:
            yield from method(request, timeout=timeout_s, metadata=self._metadata())
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e
