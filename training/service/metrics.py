"""Prometheus metrics of the training service, in their own CollectorRegistry (bounded labels:
job state, RPC method, status code — never a job or concept id)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

from proto import training_pb2
from shared.rpc_metrics import RpcMetrics

STEP_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)
STATES = [name for name in training_pb2.JobState.keys() if name != "JOB_STATE_UNSPECIFIED"]


class TrainingMetrics(RpcMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("cdserve_training", "Training", latency_buckets_s=LATENCY_BUCKETS_S, registry=registry)
        self.jobs = Gauge("cdserve_training_jobs", "Training jobs by state", ["state"], registry=self.registry)
        self.step_seconds = Histogram(
            "cdserve_training_step_seconds",
            "Seconds per training step (each job's running mean, observed once per step advanced)",
            buckets=STEP_BUCKETS_S,
            registry=self.registry,
        )

    def set_job_counts(self, counts: dict[str, int]) -> None:
        for state in STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))

    def observe_steps(self, steps: int, seconds_per_step: float) -> None:
        for _ in range(max(steps, 0)):
            self.step_seconds.observe(seconds_per_step)
