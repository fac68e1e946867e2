"""Configuration of a registry server."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from serving.registry.labels import labels_bytes_bound
from shared.config import StrictModel

MiB = 2**20
MESSAGE_OVERHEAD_BYTES = 64 * 1024
"""Room reserved in a message for everything except the artifact header, the labels or data."""


class RegistryConfig(StrictModel):
    """Everything a registry server needs; `cdserve registry` builds one from its flags or a YAML file."""

    data_dir: Path = Field(description="Holds registry.sqlite3, the blobs (sha256/) and uploads in progress (staging/)")
    host: str = Field("127.0.0.1", description="Interface for gRPC and metrics; '0.0.0.0' to serve other hosts")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one (see RegistryHandle.port)")
    metrics_port: int | None = Field(
        0, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 picks a free one, None serves none"
    )
    base_spec_files: list[Path] = Field(
        default_factory=list,
        description="cdserve_base_spec.json files of the base models whose concepts are accepted",
    )
    tokens_file: Path | None = Field(
        None, description="YAML/JSON mapping bearer token → tenant; without tokens every write is refused"
    )
    job_token_key_file: Path | None = Field(
        None, description="Key shared with the training service: accepts the job tokens it signs (publish only)"
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain; with tls_key_file enables TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    max_upload_bytes: int = Field(256 * MiB, gt=0, description="Largest artifact Publish accepts")
    max_header_bytes: int = Field(MiB, gt=0, description="Largest artifact JSON header (it travels in ConceptInfo)")
    max_labels: int = Field(32, ge=0, description="Most labels one concept version may carry")
    max_label_value_chars: int = Field(
        256, ge=0, description="Longest label value (keys: 63 characters); labels travel in every ConceptInfo"
    )
    max_concurrent_uploads: int = Field(
        8, gt=0, description="Publish calls receiving at once; one more is refused with RESOURCE_EXHAUSTED"
    )
    namespaced_ids: bool = Field(
        False,
        description="A tenant publishes only ids that start with '<tenant>-' (the operator any id); then a "
        "refused id reveals nothing about what exists (see Registry.publish)",
    )
    max_message_bytes: int = Field(4 * MiB, gt=0, description="Largest single gRPC message, either direction")
    fetch_chunk_bytes: int = Field(MiB, gt=0, description="Default and largest data size of one Fetch chunk")
    list_page_size: int = Field(100, gt=0, description="List page size when the request asks for 0")
    max_list_page_size: int = Field(1000, gt=0, description="Largest List page size a request may ask for")
    watch_heartbeat_s: float = Field(15.0, gt=0, description="Watch heartbeat interval when the request asks for 0")
    max_watch_heartbeat_s: float = Field(3600.0, gt=0, description="Longest Watch heartbeat a request may ask for")
    shutdown_grace_s: float = Field(5.0, ge=0, description="How long stop() lets in-flight calls finish")

    @model_validator(mode="after")
    def _check(self) -> RegistryConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        labels = labels_bytes_bound(self.max_labels, self.max_label_value_chars)
        if self.max_header_bytes + labels + MESSAGE_OVERHEAD_BYTES > self.max_message_bytes:
            raise ValueError(
                f"max_header_bytes ({self.max_header_bytes}) and the labels (up to {labels} bytes) must leave "
                f"room for the rest of a ConceptInfo "
                f"within max_message_bytes ({self.max_message_bytes})"
            )
        return self
