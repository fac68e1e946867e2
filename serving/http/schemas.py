"""JSON bodies of the HTTP API and their conversion to and from the gRPC messages.

Each request model names exactly the fields of its proto message (a contract test holds them
together) and checks only what JSON cannot express in proto types (signs, widths); every limit is
checked where gRPC requests are checked, so both faces accept and refuse the same requests. Each
response model mirrors its message (`serving.http.mirror`): its fields are derived from the proto.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Self

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field

from proto import common_pb2, generator_pb2, training_pb2
from serving.http.mirror import Mirror, json_values, mirrors
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


@mirrors(generator_pb2.Image)
class ImageOut(Mirror):
    """An Image, its PNG in base64."""


@mirrors(generator_pb2.Timings)
class TimingsOut(Mirror):
    """Where a request's time went, in milliseconds."""


@mirrors(generator_pb2.GenerateResponse, descriptions={"concepts": 'resolved "id@version"'})
class GenerateResult(Mirror):
    """A GenerateResponse."""

    images: list[ImageOut]
    timings: TimingsOut


@mirrors(generator_pb2.StepProgress)
class StepOut(Mirror):
    """A StepProgress: denoising step `step` of `total_steps` is done."""


@mirrors(common_pb2.ConceptInfo, omit={"header_json"})
class ConceptOut(Mirror):
    """A ConceptInfo; `header` (the artifact's JSON header) only where one concept is shown."""

    ref: str = Field(description='"id@version", what a request may name')
    preview_url: str
    header: dict[str, Any] | None = None

    @classmethod
    def of(cls, info: common_pb2.ConceptInfo, *, with_header: bool = False) -> Self:
        fields = json_values(info)
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


@mirrors(training_pb2.TrainingSample)
class TrainingSampleOut(Mirror):
    """A TrainingSample, its PNG in base64."""


@mirrors(
    training_pb2.TrainingJob,
    descriptions={"attempt": "1 at first, +1 each time the workers restart from a checkpoint"},
)
class TrainingJobOut(Mirror):
    """A TrainingJob; `spec` in the proto's JSON form (as submitted)."""

    error: dict[str, str] | None
    spec: dict[str, Any]
    sample: TrainingSampleOut | None = Field(description="The latest image rendered mid-run (Get and Watch)")

    @classmethod
    def of(cls, job: training_pb2.TrainingJob) -> Self:
        fields = json_values(job)
        fields["spec"] = json_format.MessageToDict(job.spec, preserving_proto_field_name=True)
        return cls(**fields)


def training_spec(text: str) -> training_pb2.TrainingSpec:
    """The `spec` form field: a TrainingSpec in the proto's JSON form."""
    try:
        return json_format.Parse(text, training_pb2.TrainingSpec())
    except json_format.ParseError as e:
        raise InvalidArgument(f"spec is not a TrainingSpec in JSON: {e}", field="spec") from e
