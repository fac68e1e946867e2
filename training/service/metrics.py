"""Prometheus metrics of the training service, in their own CollectorRegistry (bounded labels:
job state, RPC method, status code — never a job or concept id)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proto import training_pb2

STEP_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)
STATES = [name for name in training_pb2.JobState.keys() if name != "JOB_STATE_UNSPECIFIED"]


class TrainingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Gauge("cdserve_training_jobs", "Training jobs by state", ["state"], registry=self.registry)
        self.step_seconds = Histogram(
            "cdserve_training_step_seconds",
            "Seconds per training step (each job's running mean, observed once per step advanced)",
            buckets=STEP_BUCKETS_S,
            registry=self.registry,
        )
        self.requests = Counter(
            "cdserve_training_requests",
            "Training RPCs by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cdserve_training_request_duration_seconds",
            "Training RPC duration by method",
            ["method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def observe_call(self, method: str, code: str, duration_s: float) -> None:
        """Called by the RPC interceptor for every call."""
        self.requests.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(duration_s)

    def set_job_counts(self, counts: dict[str, int]) -> None:
        for state in STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))

    def observe_steps(self, steps: int, seconds_per_step: float) -> None:
        for _ in range(max(steps, 0)):
            self.step_seconds.observe(seconds_per_step)
