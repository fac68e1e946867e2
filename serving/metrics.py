"""Prometheus metrics of a Generator replica, through Ray's metrics export: every process on a
node reports to the node's agent, which serves them all from one endpoint (`metrics_export_port`),
next to Serve's built-in metrics. Ray prefixes every name with `ray_`.

Tags are bounded: tier, RPC method, status code. Never a concept id.
"""

from __future__ import annotations

from ray.util import metrics

from proto import generator_pb2
from serving.concepts.observer import Tier

LATENCY_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120]
LOAD_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]
BATCH_BUCKETS: list[float] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64]


class ServingMetrics:
    """Request metrics (recorded by the deployment) and concept-cache metrics (a `CacheObserver`)."""

    def __init__(self) -> None:
        self.request_latency = metrics.Histogram(
            "cdserve_request_latency_seconds",
            "Generate/GenerateStream latency inside the replica",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("method", "code"),
        )
        self.queue_time = metrics.Histogram(
            "cdserve_queue_time_seconds",
            "Ready to run (concepts loaded or merged) until its batch starts",
            boundaries=LATENCY_BUCKETS_S,
        )
        self.images = metrics.Counter("cdserve_images", "Images generated (rate() gives images/s)")
        self.batch_size = metrics.Histogram(
            "cdserve_batch_requests", "Requests sharing one UNet batch", boundaries=BATCH_BUCKETS
        )
        self.cache_hits = metrics.Counter(
            "cdserve_concept_cache_hits", "Concept lookups answered by a tier", tag_keys=("tier",)
        )
        self.cache_misses = metrics.Counter(
            "cdserve_concept_cache_misses", "Lookups a tier could not answer", tag_keys=("tier",)
        )
        self.cache_evictions = metrics.Counter(
            "cdserve_concept_cache_evictions", "Entries evicted by a tier", tag_keys=("tier",)
        )
        self.resident_bytes = metrics.Gauge(
            "cdserve_concept_cache_resident_bytes", "Bytes held by a tier", tag_keys=("tier",)
        )
        self.load_latency = metrics.Histogram(
            "cdserve_concept_load_seconds",
            "Bringing a concept from a tier to the device",
            boundaries=LOAD_BUCKETS_S,
            tag_keys=("tier",),
        )
        self.merge_latency = metrics.Histogram(
            "cdserve_concept_merge_seconds", "Computing a merged multi-concept delta", boundaries=LATENCY_BUCKETS_S
        )
        self.merges = metrics.Counter("cdserve_concept_merges", "Merged sets computed (merged-set cache misses)")
        self._watch_lag = metrics.Gauge(
            "cdserve_registry_watch_lag_seconds", "Registry event commit until applied here"
        )

    # -- requests ------------------------------------------------------------------------------

    def request_done(self, method: str, code: str, seconds: float) -> None:
        self.request_latency.observe(seconds, tags={"method": method, "code": code})

    def response(self, response: generator_pb2.GenerateResponse) -> None:
        self.queue_time.observe(response.timings.queue_ms / 1000.0)
        self.images.inc(len(response.images))

    def batch(self, requests: int) -> None:
        self.batch_size.observe(requests)

    # -- CacheObserver -------------------------------------------------------------------------

    def hit(self, tier: Tier) -> None:
        self.cache_hits.inc(tags={"tier": tier})

    def miss(self, tier: Tier) -> None:
        self.cache_misses.inc(tags={"tier": tier})

    def evicted(self, tier: Tier, count: int = 1) -> None:
        if count:
            self.cache_evictions.inc(count, tags={"tier": tier})

    def resident(self, tier: Tier, nbytes: int) -> None:
        self.resident_bytes.set(nbytes, tags={"tier": tier})

    def loaded(self, tier: Tier, seconds: float) -> None:
        self.load_latency.observe(seconds, tags={"tier": tier})

    def merged(self, seconds: float) -> None:
        self.merges.inc()
        self.merge_latency.observe(seconds)

    def watch_lag(self, seconds: float) -> None:
        self._watch_lag.set(seconds)
