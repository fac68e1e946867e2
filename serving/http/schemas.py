"""JSON bodies of the HTTP API and their conversion to and from the gRPC messages.

Each request model names exactly the fields of its proto message (a contract test holds them
together) and checks only what JSON cannot express in proto types (signs, widths); every limit is
checked where gRPC requests are checked, so both faces accept and refuse the same requests.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field

from proto import common_pb2, generator_pb2, training_pb2
from shared.errors import InvalidArgument

UINT32 = 2**32 - 1
UINT64 = 2**64 - 1
MODES = {"merge": generator_pb2.MERGE, "naive_sum": generator_pb2.NAIVE_SUM}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateBody(Body):
    """A GenerateRequest; zeros and empty strings mean the server's defaults, as in the proto."""

    prompt: str = Field(description="What to draw; a concept's modifier token stands where the concept goes")
    negative_prompt: str = ""
    concepts: list[str] = Field(default_factory=list, description='"id" (latest version) or "id@version"')
    multi_concept: Literal["merge", "naive_sum"] = Field("merge", description="How several concepts combine")
    steps: int = Field(0, ge=0, le=UINT32)
    guidance_scale: float = 0.0
    seed: int | None = Field(None, ge=0, le=UINT64, description="None: random, reported back")
    width: int = Field(0, ge=0, le=UINT32)
    height: int = Field(0, ge=0, le=UINT32)
    num_images: int = Field(0, ge=0, le=UINT32)
    scheduler: str = ""
    request_id: str = ""
    original_width: int = Field(0, ge=0, le=UINT32, description="SDXL only: the source size it seems to have; 0: width")
    original_height: int = Field(0, ge=0, le=UINT32, description="SDXL only; 0: height")
    crop_top: int = Field(0, ge=0, le=UINT32, description="SDXL only: the crop corner the image seems to have")
    crop_left: int = Field(0, ge=0, le=UINT32, description="SDXL only")
    target_width: int = Field(0, ge=0, le=UINT32, description="SDXL only: the size aimed at; 0: width")
    target_height: int = Field(0, ge=0, le=UINT32, description="SDXL only; 0: height")

    def to_proto(self) -> generator_pb2.GenerateRequest:
        fields = self.model_dump()
        fields["multi_concept"] = MODES[self.multi_concept]
        return generator_pb2.GenerateRequest(**fields)


class ImageOut(BaseModel):
    png_base64: str
    width: int
    height: int


class TimingsOut(BaseModel):
    queue_ms: float
    concept_load_ms: float
    merge_ms: float
    encode_ms: float
    denoise_ms: float
    decode_ms: float
    total_ms: float


class GenerateResult(BaseModel):
    request_id: str
    images: list[ImageOut]
    seed: int
    concepts: list[str] = Field(description='resolved "id@version"')
    timings: TimingsOut
    batch_requests: int
    replica: str

    @classmethod
    def of(cls, response: generator_pb2.GenerateResponse) -> GenerateResult:
        return cls(
            request_id=response.request_id,
            images=[
                ImageOut(png_base64=base64.b64encode(i.png).decode(), width=i.width, height=i.height)
                for i in response.images
            ],
            seed=response.seed,
            concepts=list(response.concepts),
            timings=TimingsOut(**_fields(response.timings)),
            batch_requests=response.batch_requests,
            replica=response.replica,
        )


class StepOut(BaseModel):
    step: int
    total_steps: int
    elapsed_ms: float


class ConceptOut(BaseModel):
    """A ConceptInfo; `header` (the artifact's JSON header) only where one concept is shown."""

    ref: str = Field(description='"id@version", what a request may name')
    concept_id: str
    version: int
    tenant: str
    public: bool
    sha256: str
    size_bytes: int
    base_fingerprint: str
    modifier_tokens: list[str]
    category_words: list[str]
    delta_kind: str
    max_rank: int
    num_layers: int
    created_ms: int
    deleted: bool
    labels: dict[str, str]
    preview_url: str
    header: dict[str, Any] | None = None

    @classmethod
    def of(cls, info: common_pb2.ConceptInfo, *, with_header: bool = False) -> ConceptOut:
        fields = _fields(info)
        header_json = fields.pop("header_json")
        ref = f"{info.concept_id}@{info.version}"
        return cls(
            **fields,
            ref=ref,
            preview_url=f"v1/concepts/{ref}/preview",
            header=json.loads(header_json) if with_header and header_json else None,
        )


class ConceptList(BaseModel):
    concepts: list[ConceptOut]


class TrainingSampleOut(BaseModel):
    """A TrainingSample, its PNG in base64."""

    step: int
    prompt: str
    png_base64: str


class TrainingJobOut(BaseModel):
    """A TrainingJob; `spec` in the proto's JSON form (as submitted)."""

    job_id: str
    tenant: str
    state: str
    step: int
    total_steps: int
    loss: float
    eta_s: float
    created_ms: int
    started_ms: int
    finished_ms: int
    published: list[str]
    error: dict[str, str] | None
    ray_job_id: str
    spec: dict[str, Any]
    message: str
    attempt: int = Field(description="1 at first, +1 each time the workers restart from a checkpoint")
    resumed_from_step: int
    sample: TrainingSampleOut | None = Field(description="The latest image rendered mid-run (Get and Watch)")

    @classmethod
    def of(cls, job: training_pb2.TrainingJob) -> TrainingJobOut:
        fields = _fields(job)
        fields["state"] = training_pb2.JobState.Name(job.state)
        fields["error"] = _fields(job.error) if job.HasField("error") else None
        fields["sample"] = (
            TrainingSampleOut(
                step=job.sample.step, prompt=job.sample.prompt, png_base64=base64.b64encode(job.sample.png).decode()
            )
            if job.HasField("sample")
            else None
        )
        fields["spec"] = json_format.MessageToDict(job.spec, preserving_proto_field_name=True)
        return cls(**fields)


def training_spec(text: str) -> training_pb2.TrainingSpec:
    """The `spec` form field: a TrainingSpec in the proto's JSON form."""
    try:
        return json_format.Parse(text, training_pb2.TrainingSpec())
    except json_format.ParseError as e:
        raise InvalidArgument(f"spec is not a TrainingSpec in JSON: {e}", field="spec") from e


def _fields(message: Any) -> dict[str, Any]:
    """Every field of a flat message by name, repeated and map fields as lists and dicts."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out
