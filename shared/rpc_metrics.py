"""The call metrics every cdserve gRPC service exports: calls by method and final status code, and
their durations by method. `ObservabilityInterceptor` records into them; each service adds its own
series to the same CollectorRegistry.

Labels are bounded (the RPC method, the status code); an id of a concept or a job is never a label.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram


class RpcMetrics:
    """`{prefix}_requests_total{method, code}` and `{prefix}_request_duration_seconds{method}` in
    `registry` (a new one by default, so that two servers in one process do not collide)."""

    def __init__(
        self,
        prefix: str,
        service: str,
        *,
        latency_buckets_s: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            f"{prefix}_requests",
            f"{service} RPCs by method and final gRPC status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            f"{service} RPC duration by method (a streaming call lasts as long as its stream)",
            ["method"],
            buckets=latency_buckets_s,
            registry=self.registry,
        )

    def observe_call(self, method: str, code: str, duration_s: float) -> None:
        """Called by the RPC interceptor once per call, when it ends."""
        self.requests.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(duration_s)
