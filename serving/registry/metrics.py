"""Prometheus metrics of one registry server, in their own CollectorRegistry.

Labels are bounded (RPC method, status code, transfer direction); a concept id is never a label.
The call metrics come from `shared.rpc_metrics`, like every service's.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.rpc_metrics import RpcMetrics

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RegistryMetrics(RpcMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("cdserve_registry", "Registry", latency_buckets_s=LATENCY_BUCKETS_S, registry=registry)
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

    def set_totals(self, concepts_live: int, stored_bytes: int) -> None:
        self.concepts_live.set(concepts_live)
        self.stored_bytes.set(stored_bytes)
