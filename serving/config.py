"""Configuration of the serving application: one YAML file drives `cdserve up` and `deploy/*.yaml`.

Every model rejects unknown keys and carries its unit in the field name, so a typo or a wrong unit
fails at start-up instead of silently falling back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from shared.config import StrictModel

MiB = 2**20
GiB = 2**30
DTYPES = ("fp32", "fp16", "bf16")


class BaseModelConfig(StrictModel):
    """Which base model every replica loads once, and where."""

    path: Path | None = Field(
        None, description="diffusers directory (or single-file checkpoint); None: the embedded toy-world model"
    )
    single_file_config: Path | None = Field(None, description="diffusers configs dir for a single-file checkpoint")
    device: str = Field("auto", description="'auto' (cuda when the replica has a GPU, else cpu), 'cpu', 'cuda:0'…")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="'auto': fp16 on cuda, fp32 on cpu")
    compile: bool = Field(
        False,
        description="torch.compile the UNet, batches padded to power-of-two buckets; the first batch of each "
        "bucket compiles. Off by default: whether it wins on a GPU is measured by bench/device (bench/README.md)",
    )


class RequestLimits(StrictModel):
    """What one request may ask for; anything outside is INVALID_ARGUMENT naming the field."""

    max_prompt_chars: int = Field(1000, gt=0, description="Longest prompt or negative prompt, in characters")
    max_concepts: int = Field(4, gt=0, description="Most concepts named in one request")
    min_steps: int = Field(1, gt=0)
    max_steps: int = Field(100, gt=0)
    default_steps: int = Field(25, gt=0, description="Used when a request sends steps = 0")
    min_guidance_scale: float = Field(1.0, ge=0.0)
    max_guidance_scale: float = Field(30.0, gt=0.0)
    default_guidance_scale: float = Field(7.5, gt=0.0, description="Used when a request sends guidance_scale = 0")
    max_width_px: int = Field(1024, gt=0)
    max_height_px: int = Field(1024, gt=0)
    max_num_images: int = Field(4, gt=0)
    default_scheduler: str = Field("default", description="Used when a request sends scheduler = ''")

    @model_validator(mode="after")
    def _check(self) -> RequestLimits:
        if not self.min_steps <= self.default_steps <= self.max_steps:
            raise ValueError("default_steps must lie within [min_steps, max_steps]")
        if not self.min_guidance_scale <= self.default_guidance_scale <= self.max_guidance_scale:
            raise ValueError("default_guidance_scale must lie within [min_guidance_scale, max_guidance_scale]")
        return self


class BatchingConfig(StrictModel):
    """`@serve.batch` settings: requests arriving within the wait share one UNet batch."""

    max_batch_size: int = Field(8, gt=0, description="Most requests per batch (each may carry several images)")
    batch_wait_timeout_s: float = Field(0.02, ge=0.0, description="How long a batch waits to fill up")


class CacheConfig(StrictModel):
    """Byte budgets of the per-replica concept cache tiers (LRU each; pinned entries are never evicted)."""

    device_max_bytes: int = Field(2 * GiB, ge=0, description="Deltas resident on the accelerator, ready to use")
    host_max_bytes: int = Field(8 * GiB, ge=0, description="Deltas demoted from the device, in host RAM")
    disk_max_bytes: int = Field(64 * GiB, ge=0, description="Artifact files fetched from the registry")
    disk_dir: Path | None = Field(None, description="Where artifact files are kept; None: a temporary folder")
    merged_max_bytes: int = Field(GiB, ge=0, description="Merged multi-concept deltas (device), keyed by concept set")
    reg_cache_dir: Path | None = Field(None, description="Where C_regᵀC_reg of the merge is kept across restarts")


class RegistryLink(StrictModel):
    """How replicas reach the concept registry."""

    address: str = Field("127.0.0.1:50051", description="host:port of the registry gRPC service")
    token: str | None = Field(None, description="Bearer token of a service tenant that may read every concept")
    token_file: Path | None = Field(
        None, description="File holding that token (a mounted Secret); keeps it out of Serve configs"
    )
    tls_ca_file: Path | None = Field(None, description="PEM bundle to trust; enables TLS to a registry that serves it")
    timeout_s: float = Field(10.0, gt=0.0, description="Deadline of one registry call")
    watch_heartbeat_s: int = Field(5, ge=0, description="Watch heartbeat the replica asks for (0: registry default)")

    @model_validator(mode="after")
    def _one_token_source(self) -> RegistryLink:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give registry.token or registry.token_file, not both")
        return self

    def bearer_token(self) -> str | None:
        """The token, read from `token_file` when one is given (read at replica start)."""
        return self.token_file.read_text().strip() if self.token_file is not None else self.token


class AuthConfig(StrictModel):
    """Who may call Generate. A bearer token maps to a tenant, which may use its own concepts and
    public ones; the operator tenant ('*') may use every concept.

    Anonymous callers are allowed by default, as on the registry's read calls: they may use public
    concepts only, so no private concept is ever exposed; set `allow_anonymous: false` where running
    the model for strangers is itself the thing to protect."""

    tokens_file: Path | None = Field(
        None, description="YAML 'tokens: {<token>: <tenant>}' (shared.auth.load_tokens); read at replica start"
    )
    allow_anonymous: bool = Field(True, description="Calls without a token may use public concepts")


class QueueConfig(StrictModel):
    """Backpressure: beyond these, requests get RESOURCE_EXHAUSTED instead of waiting forever."""

    max_ongoing_requests: int = Field(16, gt=0, description="Requests one replica works on at once (batching pool)")
    max_queued_requests: int = Field(64, ge=-1, description="Requests waiting for a replica; -1: unbounded")


class ActorOptions(StrictModel):
    """Resources of one replica; `num_gpus = 'auto'` asks for one GPU when the cluster has any."""

    num_cpus: float = Field(1.0, ge=0.0)
    num_gpus: float | Literal["auto"] = Field("auto")
    memory_bytes: int | None = Field(None, gt=0, description="Memory Ray reserves for the replica")


class AutoscalingConfig(StrictModel):
    """Serve's request-based autoscaling (None in ServingConfig: a fixed number of replicas). The
    fields are Serve's `autoscaling_config` keys and reach Serve as they are."""

    target_ongoing_requests: float = Field(4.0, gt=0.0, description="Ongoing requests per replica to aim for")
    upscale_delay_s: float = Field(10.0, ge=0.0, description="Load must stay high this long to add a replica")
    downscale_delay_s: float = Field(60.0, ge=0.0, description="Load must stay low this long to remove one")
    metrics_interval_s: float = Field(2.0, gt=0.0, description="How often replicas report their load")
    look_back_period_s: float = Field(10.0, gt=0.0, description="Window the load is averaged over")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, gt=0)

    @model_validator(mode="after")
    def _check(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ServingConfig(StrictModel):
    """Everything one Serve application of the Generator service needs."""

    app_name: str = Field("cdserve", description="Serve application name (clients send it as 'application' metadata)")
    route_prefix: str = Field("/cdserve", description="Serve route prefix; must be set for gRPC to reach the app")
    grpc_port: int = Field(9000, ge=0, le=65535, description="Port of Serve's gRPC proxy")
    http_port: int = Field(8000, ge=0, le=65535, description="Port of Serve's HTTP proxy (health, not generation)")
    metrics_export_port: int = Field(8080, ge=0, le=65535, description="Ray's per-node Prometheus endpoint")
    base_model: BaseModelConfig = Field(default_factory=BaseModelConfig)
    limits: RequestLimits = Field(default_factory=RequestLimits)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    registry: RegistryLink = Field(default_factory=RegistryLink)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    ray_actor_options: ActorOptions = Field(default_factory=ActorOptions)
    num_replicas: int = Field(1, gt=0, description="Replicas when autoscaling is None")
    autoscaling: AutoscalingConfig | None = Field(None, description="Request-based autoscaling; None: fixed replicas")


def load_serving_config(path: str | Path) -> ServingConfig:
    """A YAML of ServingConfig fields, or a Serve config file (the first application's `args`)."""
    import yaml

    from shared.config import validated

    raw = yaml.safe_load(Path(path).read_text()) or {}
    if "applications" in raw:
        raw = raw["applications"][0].get("args") or {}
    return validated(ServingConfig, raw, source=str(path))
