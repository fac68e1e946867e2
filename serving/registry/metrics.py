"""Prometheus metrics of one registry server, in their own CollectorRegistry.

Labels are bounded (RPC method, status code, transfer direction); a concept id is never a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "cdserve_registry_requests",
            "Registry RPCs by method and final gRPC status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cdserve_registry_request_duration_seconds",
            "Registry RPC duration by method (a Watch lasts as long as its stream)",
            ["method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.transfer_bytes = Counter(
            "cdserve_registry_transfer_bytes",
            "Artifact bytes received by Publish (upload) and sent by Fetch (download)",
            ["direction"],
            registry=self.registry,
        )
        self.stored_bytes = Gauge(
            "cdserve_registry_stored_bytes", "Bytes of distinct live artifact blobs", registry=self.registry
        )
        self.concepts_live = Gauge(
            "cdserve_registry_concepts_live", "Concept ids with at least one live version", registry=self.registry
        )
        self.watchers = Gauge("cdserve_registry_watchers_active", "Open Watch streams", registry=self.registry)

    def observe_call(self, method: str, code: str, duration_s: float) -> None:
        self.requests.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(duration_s)

    def set_totals(self, concepts_live: int, stored_bytes: int) -> None:
        self.concepts_live.set(concepts_live)
        self.stored_bytes.set(stored_bytes)
