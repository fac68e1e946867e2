"""Configuration of the HTTP application (the playground and the JSON API beside gRPC)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.config import StrictModel

MiB = 2**20


class PreviewConfig(StrictModel):
    """How a concept's preview image is drawn: once per artifact content, with fixed settings, so
    every replica and every restart draws the same picture."""

    steps: int = Field(20, gt=0, description="Denoising steps of a preview")
    guidance_scale: float = Field(4.0, gt=0.0, description="Classifier-free guidance of a preview")
    seed: int = Field(0, ge=0, description="Seed of a preview")
    cache_dir: Path | None = Field(
        None, description="Where previews are kept (by artifact sha256); None: a temporary folder"
    )


class HttpConfig(StrictModel):
    """One HTTP application: Serve routes `route_prefix` on the HTTP proxy (`ServingConfig.http_port`) to it."""

    app_name: str = Field("cdserve-http", description="Serve application name of the HTTP ingress")
    route_prefix: str = Field("/", description="Where the playground and /v1 live on Serve's HTTP proxy")
    training_address: str | None = Field(
        None, description="host:port of the training service; None: no training routes"
    )
    max_body_bytes: int = Field(MiB, gt=0, description="Largest body of a JSON request")
    max_upload_bytes: int = Field(64 * MiB, gt=0, description="Largest body of a training submission (all images)")
    request_timeout_s: float = Field(
        300.0, gt=0.0, description="Deadline of one call to the registry or training service"
    )
    training_recipe: dict[str, float | int | bool] = Field(
        default_factory=dict, description="Recipe fields the playground fills in (e.g. the embedded model's recipe)"
    )
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    num_replicas: int = Field(1, gt=0, description="Replicas of the HTTP ingress (it only converts and forwards)")
