"""Configuration of the training service."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field, model_validator

from shared.config import StrictModel

MiB = 2**20


class SubmitLimits(StrictModel):
    """What one Submit may carry; anything beyond is INVALID_ARGUMENT naming the field."""

    max_concepts: int = Field(8, ge=1, le=16, description="Concepts per job (joint training)")
    max_images_per_concept: int = Field(64, ge=1, description="Target images per concept")
    max_image_bytes: int = Field(16 * MiB, gt=0, description="Largest single encoded image")
    max_total_bytes: int = Field(256 * MiB, gt=0, description="All uploaded images of one job together")
    max_image_side: int = Field(4096, ge=8, description="Largest width or height of a decoded image")
    max_steps: int = Field(5000, ge=1, description="Largest recipe.steps a job may ask for")
    max_workers: int = Field(8, ge=1, description="Largest recipe.num_workers a job may ask for")


class TrainingServiceConfig(StrictModel):
    """`cdserve training serve` builds one from flags or a YAML file."""

    data_dir: Path = Field(description="Holds jobs.sqlite3 and one directory per job (inputs, progress, output)")
    base_model: str = Field(description="Diffusers directory of the base model, readable by the Ray cluster")
    host: str = Field("127.0.0.1", description="Interface for gRPC and metrics")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    metrics_port: int | None = Field(0, ge=0, le=65535, description="Prometheus port; 0 picks one, None: none")
    ray_address: str | None = Field(
        None, description="Ray dashboard address for job submission (http://host:8265); None: RAY_ADDRESS or local"
    )
    submit_timeout_s: float = Field(
        120.0, gt=0, description="How long to retry a Ray job submission (a fresh cluster's job agent starts late)"
    )
    job_python: str = Field(sys.executable, description="Python on the cluster that runs `-m training.job`")
    registry: str | None = Field(None, description="Registry 'host:port' the jobs publish to; None: no publishing")
    registry_tls_ca_file: str | None = Field(
        None, description="PEM bundle the jobs trust for a TLS registry (a path readable on the Ray cluster)"
    )
    job_token_key_file: Path | None = Field(
        None, description="Key shared with the registry (its job_token_key_file): signs each job's publish-only token"
    )
    job_token_ttl_s: float = Field(
        24 * 3600.0, gt=0, description="Lifetime of a job's publish token; must outlast the longest training run"
    )
    tokens_file: Path | None = Field(None, description="YAML/JSON 'tokens: {token: tenant}', as the registry's")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain; with tls_key_file enables TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    allowed_image_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders whose files Submit may name (image_uris, regularization_uri); "
        "none: images come by upload only",
    )
    limits: SubmitLimits = Field(default_factory=SubmitLimits)
    max_failures: int = Field(3, ge=0, le=100, description="Worker-group restarts per job (Ray Train)")
    poll_interval_s: float = Field(1.0, gt=0, description="How often job states are refreshed")
    max_message_bytes: int = Field(20 * MiB, gt=0, description="Largest gRPC message (one image upload)")
    shutdown_grace_s: float = Field(5.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainingServiceConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if self.limits.max_image_bytes + MiB > self.max_message_bytes:
            raise ValueError("max_message_bytes must exceed limits.max_image_bytes by at least 1 MiB")
        if self.registry is not None and self.job_token_key_file is None:
            raise ValueError("jobs publish to the registry with a token signed by job_token_key_file: give both")
        return self
