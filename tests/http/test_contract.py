"""The HTTP face's contracts, without a server: one status for every gRPC code, derived from the
one error table and documented in docs/api.md, and JSON bodies that carry exactly the proto
messages' fields."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import grpc
import pytest

from proto import common_pb2, generator_pb2, training_pb2
from serving.http.errors import HTTP_STATUS, error_body, http_status
from serving.http.mirror import Mirror, mirrors
from serving.http.schemas import (
    ConceptOut,
    GenerateBody,
    GenerateResult,
    ImageOut,
    StepOut,
    TimingsOut,
    TrainingJobOut,
    TrainingSampleOut,
)
from shared import errors
from shared.grpc_status import STATUS_BY_ERROR, status_for


def test_every_grpc_status_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidArgument, 400),
        (errors.InvalidArtifact, 400),
        (errors.IncompatibleBase, 400),
        (errors.Conflict, 400),
        (errors.Unauthenticated, 401),
        (errors.PermissionDenied, 403),
        (errors.NotFound, 404),
        (errors.TooLarge, 413),
        (errors.CapacityExceeded, 429),
        (errors.Cancelled, 499),
        (errors.Unavailable, 503),
        (errors.DeadlineExceeded, 504),
    ],
)
def test_each_error_gets_the_http_status_of_its_grpc_status(error: type[errors.CdserveError], status: int) -> None:
    assert http_status(error("m")) == status
    if error is not errors.TooLarge:  # the one refinement: HTTP tells a too-large body from an overload
        assert status == HTTP_STATUS[STATUS_BY_ERROR[error]]


def test_every_error_class_is_in_the_table() -> None:
    assert {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.CdserveError)} - {
        errors.CdserveError
    } <= set(STATUS_BY_ERROR)


def test_an_unexpected_exception_is_internal_and_says_no_more_than_its_type() -> None:
    assert http_status(KeyError("secret")) == 500
    assert error_body(KeyError("secret")) == {"reason": "INTERNAL", "field": "", "message": "internal error: KeyError"}


API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_documented_status_table_is_the_codes() -> None:
    """Each row of docs/api.md's status table (gRPC status, HTTP status, reason) is what an error
    with that reason gets, and every error class has its row."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \| `([A-Z_]+)` \|", API_DOC.read_text(), re.MULTILINE)
    documented = {reason: (grpc_code, int(status)) for grpc_code, status, reason in rows}
    by_reason = {cls.reason: cls for cls in STATUS_BY_ERROR}
    assert set(documented) == set(by_reason) | {"INTERNAL"}
    for reason, (grpc_code, status) in documented.items():
        error = by_reason[reason]("m") if reason in by_reason else ValueError("a bug")
        assert (status_for(error).name, http_status(error)) == (grpc_code, status), reason


def names(message: type) -> set[str]:
    return {field.name for field in message.DESCRIPTOR.fields}


def test_json_bodies_carry_exactly_the_proto_fields() -> None:
    assert set(GenerateBody.model_fields) == names(generator_pb2.GenerateRequest)
    assert set(GenerateResult.model_fields) == names(generator_pb2.GenerateResponse)
    assert set(TimingsOut.model_fields) == names(generator_pb2.Timings)
    assert set(ConceptOut.model_fields) - {"ref", "preview_url", "header"} == names(common_pb2.ConceptInfo) - {
        "header_json"
    }
    assert set(TrainingJobOut.model_fields) == names(training_pb2.TrainingJob)
    assert set(TrainingSampleOut.model_fields) - {"png_base64"} == names(training_pb2.TrainingSample) - {"png"}
    assert set(ImageOut.model_fields) - {"png_base64"} == names(generator_pb2.Image) - {"png"}
    assert set(StepOut.model_fields) == names(generator_pb2.StepProgress)


def test_response_fields_take_their_json_type_from_the_proto_in_the_proto_order() -> None:
    job = TrainingJobOut.model_json_schema()
    properties = job["properties"]
    assert list(properties) == [field.name for field in training_pb2.TrainingJob.DESCRIPTOR.fields]
    assert properties["state"]["enum"] == list(training_pb2.JobState.keys())
    assert (properties["step"]["type"], properties["loss"]["type"], properties["created_ms"]["type"]) == (
        "integer",
        "number",
        "integer",
    )
    assert properties["published"] == {"items": {"type": "string"}, "title": "Published", "type": "array"}
    assert "restart" in properties["attempt"]["description"]  # a description given beside the proto's field
    concept = ConceptOut.model_json_schema()["properties"]
    assert concept["labels"]["additionalProperties"] == {"type": "string"} and concept["public"]["type"] == "boolean"
    assert ImageOut.model_json_schema()["properties"]["png_base64"]["type"] == "string"


def test_a_message_field_without_a_declared_json_form_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match=r"TrainingJob\.error is a message"):

        @mirrors(training_pb2.TrainingJob)
        class Undeclared(Mirror):
            pass


def test_a_field_the_message_lacks_cannot_be_omitted_or_described() -> None:
    with pytest.raises(TypeError, match=r"Timings has no fields \['queue_s'\]"):
        mirrors(generator_pb2.Timings, descriptions={"queue_s": "a typo"})(Mirror)
    with pytest.raises(TypeError, match=r"Timings has no fields \['png'\]"):
        mirrors(generator_pb2.Timings, omit={"png"})(Mirror)


def test_a_generate_response_converts_with_its_images_in_base64_and_its_timings() -> None:
    response = generator_pb2.GenerateResponse(
        request_id="r",
        images=[generator_pb2.Image(png=b"\x89PNG", width=16, height=8)],
        seed=2**63,
        concepts=["a@1"],
        timings=generator_pb2.Timings(queue_ms=1.5, total_ms=4.0),
        batch_requests=3,
    )
    out = GenerateResult.of(response).model_dump()
    assert out["images"] == [{"png_base64": base64.b64encode(b"\x89PNG").decode(), "width": 16, "height": 8}]
    assert out["timings"] == {name: 0.0 for name in names(generator_pb2.Timings)} | {"queue_ms": 1.5, "total_ms": 4.0}
    assert (out["request_id"], out["seed"], out["concepts"], out["batch_requests"], out["replica"]) == (
        "r",
        2**63,
        ["a@1"],
        3,
        "",
    )


def test_a_generate_body_becomes_the_same_request_as_over_grpc() -> None:
    body = GenerateBody(prompt="a <x> dog", concepts=["x@2", "y"], multi_concept="naive_sum", steps=7, seed=3, width=64)
    assert body.to_proto() == generator_pb2.GenerateRequest(
        prompt="a <x> dog", concepts=["x@2", "y"], multi_concept=generator_pb2.NAIVE_SUM, steps=7, seed=3, width=64
    )
    assert not GenerateBody(prompt="p").to_proto().HasField("seed")


def test_a_training_job_converts_with_its_state_error_and_spec() -> None:
    job = training_pb2.TrainingJob(
        job_id="j",
        state=training_pb2.FAILED,
        published=["a@1"],
        error=common_pb2.ErrorDetail(reason="R", message="m"),
        spec=training_pb2.TrainingSpec(concepts=[training_pb2.ConceptSpec(concept_id="a", category="dog")]),
    )
    out = TrainingJobOut.of(job)
    assert (
        out.state == "FAILED" and out.published == ["a@1"] and out.error == {"reason": "R", "field": "", "message": "m"}
    )
    assert out.spec == {"concepts": [{"concept_id": "a", "category": "dog"}]}
    assert TrainingJobOut.of(training_pb2.TrainingJob(job_id="k")).error is None
    assert TrainingJobOut.of(training_pb2.TrainingJob(job_id="k")).sample is None


def test_a_training_sample_travels_as_base64_png() -> None:
    sample = training_pb2.TrainingSample(step=50, prompt="photo of a <cd-x> dog", png=b"\x89PNG\r\n")
    out = TrainingJobOut.of(training_pb2.TrainingJob(job_id="j", sample=sample)).sample
    assert out is not None and (out.step, out.prompt) == (50, "photo of a <cd-x> dog")
    assert base64.b64decode(out.png_base64) == sample.png
