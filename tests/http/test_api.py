"""The HTTP/JSON API on a real Serve HTTP proxy: every route's happy path and its error statuses,
with the same validation, ErrorDetail bodies, auth and tenant visibility as the gRPC services."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from serving.client import GeneratorClient
from shared.artifact import to_bytes
from tests.http.conftest import MAX_UPLOAD_BYTES, HttpStack
from tests.support.synthetic import random_concept
from tests.training.conftest import write_images

STEPS = 3


def generate_body(prompt: str = "photo of a dog", concepts: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, "concepts": list(concepts), "steps": STEPS, "seed": 5, **fields}


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def sse(response: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of a text/event-stream response, as they arrive."""
    assert response.headers["content-type"].startswith("text/event-stream")
    event = ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: ") :])


def expect_error(response: requests.Response, status: int, reason: str, field: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"reason", "field", "message"} and body["reason"] == reason and body["message"]
    if field is not None:
        assert body["field"] == field
    return body


# -- the document and the page ------------------------------------------------------------------


def test_openapi_describes_every_route(http_stack: HttpStack) -> None:
    paths = http_stack.call("GET", "openapi.json").json()["paths"]
    assert set(paths) == {
        "/v1/generate",
        "/v1/generate/stream",
        "/v1/concepts",
        "/v1/concepts/{ref}",
        "/v1/concepts/{ref}/preview",
        "/v1/trainings",
        "/v1/trainings/{job_id}",
        "/v1/trainings/{job_id}/events",
        "/v1/trainings/{job_id}:cancel",
    }
    assert set(paths["/v1/trainings/{job_id}"]) == set(paths["/v1/concepts/{ref}"]) == {"get", "delete"}
    assert set(paths["/v1/concepts"]) == set(paths["/v1/trainings"]) == {"get", "post"}
    assert "multipart/form-data" in paths["/v1/trainings"]["post"]["requestBody"]["content"]
    assert "404" in paths["/v1/concepts/{ref}"]["get"]["responses"]


def test_the_playground_and_its_files_are_served(http_stack: HttpStack) -> None:
    page = http_stack.call("GET", "")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("static/app.js", "static/style.css"):
        assert asset in page.text and http_stack.call("GET", asset).status_code == 200
    settings = http_stack.call("GET", "playground/settings").json()
    assert settings == {"training": True, "training_recipe": {"steps": 2, "batch_size": 2}}


def test_an_unknown_path_is_not_found_with_an_error_detail(http_stack: HttpStack) -> None:
    expect_error(http_stack.call("GET", "v1/nothing"), 404, "NOT_FOUND")


# -- generate -----------------------------------------------------------------------------------


def test_generate_returns_base64_pngs_identical_to_grpc(http_stack: HttpStack) -> None:
    ref = f"{http_stack.concepts['acme-private'].concept_id}"
    body = generate_body("photo of a <acme-dog> dog", (ref,), num_images=2)
    reply = http_stack.call("POST", "v1/generate", token="tok-acme", json=body)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["seed"] == 5 and result["concepts"] == ["acme-dog@1"] and len(result["images"]) == 2
    pngs = [base64.b64decode(image["png_base64"]) for image in result["images"]]
    sizes = [(image["width"], image["height"]) for image in result["images"]]
    assert [png_size(png) for png in pngs] == sizes
    assert result["timings"]["total_ms"] > 0 and result["replica"]

    with GeneratorClient(http_stack.grpc_target, application="gen", token="tok-acme") as client:
        over_grpc = client.generate(
            GeneratorClient.request(body["prompt"], concepts=[ref], steps=STEPS, seed=5, num_images=2)
        )
    assert [image.png for image in over_grpc.images] == pngs


def test_generate_with_accept_png_returns_the_image_itself(http_stack: HttpStack) -> None:
    reply = http_stack.call("POST", "v1/generate", json=generate_body(), headers={"Accept": "image/png"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert png_size(reply.content)[0] > 0 and reply.headers["x-cdserve-seed"] == "5"
    several = http_stack.call("POST", "v1/generate", json=generate_body(num_images=2), headers={"Accept": "image/png"})
    expect_error(several, 400, "INVALID_ARGUMENT", "num_images")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": " "}, "prompt"),
        ({"steps": 1000}, "steps"),
        ({"steps": -1}, "steps"),
        ({"guidance_scale": 99.0}, "guidance_scale"),
        ({"width": 13}, "width"),
        ({"num_images": 99}, "num_images"),
        ({"scheduler": "warp"}, "scheduler"),
        ({"multi_concept": "average"}, "multi_concept"),
        ({"concepts": ["a", "b", "c", "d", "e"]}, "concepts"),
        ({"colour": "red"}, "colour"),
        ({"seed": "soon"}, "seed"),
    ],
    ids=lambda value: value if isinstance(value, str) else next(iter(value)),
)
def test_generate_refuses_bad_requests_naming_the_field(
    http_stack: HttpStack, body: dict[str, Any], field: str
) -> None:
    expect_error(
        http_stack.call("POST", "v1/generate", json={**generate_body(), **body}), 400, "INVALID_ARGUMENT", field
    )


def test_another_tenants_private_concept_is_not_found_exactly_like_an_unknown_one(http_stack: HttpStack) -> None:
    def message(concept: str, token: str | None) -> str:
        reply = http_stack.call("POST", "v1/generate", token=token, json=generate_body(concepts=(concept,)))
        return expect_error(reply, 404, "NOT_FOUND")["message"].replace(concept, "ID")

    unknown = message("no-such-dog", "tok-beta")
    assert message("acme-dog", "tok-beta") == unknown
    assert message("acme-dog", None) == unknown


def test_a_bad_token_is_unauthenticated_on_every_route(http_stack: HttpStack) -> None:
    for method, path in (("POST", "v1/generate"), ("GET", "v1/concepts"), ("GET", "v1/trainings/x")):
        reply = http_stack.call(method, path, token="tok-nobody", json=generate_body())
        expect_error(reply, 401, "UNAUTHENTICATED", "authorization")
        assert reply.headers["www-authenticate"] == "Bearer"


def test_a_body_over_the_limit_is_refused_with_413(http_stack: HttpStack) -> None:
    reply = http_stack.call("POST", "v1/generate", json=generate_body("x" * 70_000))
    expect_error(reply, 413, "TOO_LARGE", "body")


def test_generate_stream_sends_every_step_then_the_result(http_stack: HttpStack) -> None:
    body = generate_body("photo of a <beta-cat> dog", ("beta-cat",), steps=4)
    with http_stack.call("POST", "v1/generate/stream", json=body, stream=True) as reply:
        assert reply.status_code == 200
        events = list(sse(reply))
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == [1, 2, 3, 4] and all(data["total_steps"] == 4 for name, data in events[:-1])
    name, result = events[-1]
    assert name == "result" and result["concepts"] == ["beta-cat@1"] and len(result["images"]) == 1


def test_generate_stream_fails_before_streaming_with_the_status(http_stack: HttpStack) -> None:
    reply = http_stack.call("POST", "v1/generate/stream", json=generate_body(concepts=("no-such-dog",)))
    expect_error(reply, 404, "NOT_FOUND")
    expect_error(
        http_stack.call("POST", "v1/generate/stream", json=generate_body(steps=1000)), 400, "INVALID_ARGUMENT", "steps"
    )


# -- concepts -----------------------------------------------------------------------------------


def listed(http_stack: HttpStack, token: str | None, query: str = "") -> set[str]:
    reply = http_stack.call("GET", f"v1/concepts{query}", token=token)
    assert reply.status_code == 200, reply.text
    return {concept["ref"] for concept in reply.json()["concepts"]}


def test_concepts_are_listed_with_the_callers_visibility(http_stack: HttpStack) -> None:
    assert {"acme-dog@1", "beta-cat@1"} <= listed(http_stack, "tok-acme")
    assert "beta-fox@1" not in listed(http_stack, "tok-acme")
    assert {"beta-cat@1", "beta-fox@1"} <= listed(http_stack, "tok-beta") and "acme-dog@1" not in listed(
        http_stack, "tok-beta"
    )
    anonymous = listed(http_stack, None)
    assert "beta-cat@1" in anonymous and not anonymous & {"acme-dog@1", "beta-fox@1"}
    assert listed(http_stack, "tok-beta", "?id_prefix=beta-c") == {"beta-cat@1"}


def test_a_concept_is_shown_with_its_header(http_stack: HttpStack) -> None:
    reply = http_stack.call("GET", "v1/concepts/acme-dog", token="tok-acme")
    assert reply.status_code == 200
    concept = reply.json()
    assert (
        concept["ref"] == "acme-dog@1" and concept["modifier_tokens"] == ["<acme-dog>"] and concept["tenant"] == "acme"
    )
    assert concept["header"]["concepts"][0]["category"] == "dog" and not concept["public"]
    assert concept["preview_url"] == "v1/concepts/acme-dog@1/preview"


def test_showing_a_concept_hides_other_tenants_like_unknown_ones(http_stack: HttpStack) -> None:
    hidden = expect_error(http_stack.call("GET", "v1/concepts/acme-dog", token="tok-beta"), 404, "NOT_FOUND")
    unknown = expect_error(http_stack.call("GET", "v1/concepts/no-such-dog", token="tok-beta"), 404, "NOT_FOUND")
    assert hidden["message"].replace("acme-dog", "ID") == unknown["message"].replace("no-such-dog", "ID")
    expect_error(http_stack.call("GET", "v1/concepts/acme-dog@1/preview"), 404, "NOT_FOUND")
    expect_error(http_stack.call("GET", "v1/concepts/acme-dog@x", token="tok-acme"), 400, "INVALID_ARGUMENT")


def test_a_preview_is_drawn_once_and_kept(http_stack: HttpStack) -> None:
    started = time.perf_counter()
    first = http_stack.call("GET", "v1/concepts/beta-cat/preview")
    drawn_s = time.perf_counter() - started
    assert first.status_code == 200 and first.headers["content-type"] == "image/png" and png_size(first.content)[0] > 0
    started = time.perf_counter()
    again = http_stack.call("GET", "v1/concepts/beta-cat@1/preview", token="tok-acme")
    assert again.content == first.content and time.perf_counter() - started < drawn_s
    assert again.headers["cache-control"] == "private, max-age=86400" and first.headers["cache-control"] == "no-cache"


def test_a_concept_file_is_published_seen_by_its_tenant_only_and_deleted(http_stack: HttpStack) -> None:
    header, delta = random_concept(http_stack.training.spec, "acme-owl", seed=9, modifier_token="<acme-owl>")
    artifact = {"artifact": ("acme-owl.safetensors", to_bytes(header, delta), "application/octet-stream")}
    expect_error(http_stack.call("POST", "v1/concepts", files=artifact), 401, "UNAUTHENTICATED")
    reply = http_stack.call("POST", "v1/concepts", token="tok-acme", files=artifact, data={"public": "false"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["concept"]["ref"] == "acme-owl@1" and reply.json()["concept"]["tenant"] == "acme"
    assert "acme-owl@1" in listed(http_stack, "tok-acme") and "acme-owl@1" not in listed(http_stack, "tok-beta")
    expect_error(http_stack.call("DELETE", "v1/concepts/acme-owl", token="tok-beta"), 404, "NOT_FOUND")
    deleted = http_stack.call("DELETE", "v1/concepts/acme-owl", token="tok-acme").json()["deleted"]
    assert [concept["ref"] for concept in deleted] == ["acme-owl@1"]
    expect_error(http_stack.call("GET", "v1/concepts/acme-owl", token="tok-acme"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("files", "data", "reason", "field"),
    [
        (
            {"artifact": ("x.safetensors", b"not a safetensors file", "application/octet-stream")},
            {},
            "INVALID_ARTIFACT",
            None,
        ),
        ({"other": ("x.txt", b"x", "text/plain")}, {}, "INVALID_ARGUMENT", "artifact"),
        (
            {"artifact": ("x.safetensors", b"x", "application/octet-stream")},
            {"public": "yes"},
            "INVALID_ARGUMENT",
            "public",
        ),
    ],
    ids=["not an artifact", "no artifact", "public not a boolean"],
)
def test_bad_concept_files_are_refused(
    http_stack: HttpStack, files: dict[str, Any], data: dict[str, str], reason: str, field: str | None
) -> None:
    expect_error(http_stack.call("POST", "v1/concepts", token="tok-acme", files=files, data=data), 400, reason, field)


# -- trainings ----------------------------------------------------------------------------------


def training_form(
    tmp_path: Any, concept_id: str = "my-star", *, steps: int = 2, count: int = 3, **spec: Any
) -> dict[str, Any]:
    paths = write_images(tmp_path / concept_id, count)
    captions = "".join(f"{i:03d}.png\ta V* star number {i}\n" for i in range(count))
    files = [("images", (f"targets/{i:03d}.png", open(path, "rb").read(), "image/png")) for i, path in enumerate(paths)]
    files.append(("images", ("targets/captions.txt", captions.encode(), "text/plain")))
    fields = {
        "concepts": [{"concept_id": concept_id, "category": "star", "regularization": "NONE"}],
        "recipe": {"steps": steps, "batch_size": 2},
        **spec,
    }
    return {"data": {"spec": json.dumps(fields)}, "files": files}


def test_a_training_is_submitted_watched_and_its_concept_used(http_stack: HttpStack, tmp_path: Any) -> None:
    recipe = {"steps": 2, "batch_size": 2, "sample_every": 2}
    reply = http_stack.call("POST", "v1/trainings", token="tok-acme", **training_form(tmp_path, recipe=recipe))
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert (
        job["state"] == "PENDING" and job["tenant"] == "acme" and job["spec"]["concepts"][0]["concept_id"] == "my-star"
    )
    assert http_stack.call("GET", f"v1/trainings/{job['job_id']}", token="tok-acme").json()["job_id"] == job["job_id"]
    assert job["job_id"] in {j["job_id"] for j in http_stack.call("GET", "v1/trainings", token="tok-acme").json()}

    with http_stack.call("GET", f"v1/trainings/{job['job_id']}/events", token="tok-acme", stream=True) as events:
        seen = [data for name, data in sse(events) if name == "job"]
    final = seen[-1]
    assert final["state"] == "SUCCEEDED", json.dumps(final)
    assert any(data["step"] == 2 and data["loss"] > 0 for data in seen)
    assert (final["sample"]["step"], final["sample"]["prompt"]) == (2, "a <cd-my-star> star number 0")
    assert base64.b64decode(final["sample"]["png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    ref = final["published"][0]
    body = generate_body("a <cd-my-star> star", (ref,))
    result = http_stack.call("POST", "v1/generate", token="tok-acme", json=body).json()
    assert result["concepts"] == [ref]
    assert http_stack.call("GET", f"v1/concepts/{ref}/preview", token="tok-acme").status_code == 200
    expect_error(http_stack.call("POST", f"v1/trainings/{job['job_id']}:cancel", token="tok-acme"), 400, "CONFLICT")


def test_a_training_is_cancelled_and_hidden_from_other_tenants(http_stack: HttpStack, tmp_path: Any) -> None:
    job = http_stack.call(
        "POST", "v1/trainings", token="tok-beta", **training_form(tmp_path, "your-star", steps=50)
    ).json()
    path = f"v1/trainings/{job['job_id']}"
    for token in ("tok-acme", None):
        expect_error(
            http_stack.call("GET", path, token=token),
            404 if token else 401,
            "NOT_FOUND" if token else "UNAUTHENTICATED",
        )
    hidden = expect_error(http_stack.call("POST", f"{path}:cancel", token="tok-acme"), 404, "NOT_FOUND", "job_id")
    unknown = expect_error(http_stack.call("GET", "v1/trainings/0123456789abcdef", token="tok-acme"), 404, "NOT_FOUND")
    assert hidden["message"].replace(job["job_id"], "ID") == unknown["message"].replace("0123456789abcdef", "ID")
    assert http_stack.call("POST", f"{path}:cancel", token="tok-beta").json()["state"] == "CANCELLED"
    assert http_stack.call("DELETE", path, token="tok-beta").json()["state"] == "CANCELLED"  # a no-op once cancelled
    with http_stack.call("GET", f"{path}/events", token="tok-beta", stream=True) as events:
        assert [data["state"] for _, data in sse(events)][-1] == "CANCELLED"
    expect_error(http_stack.call("GET", "v1/trainings/0123456789abcdef/events", token="tok-beta"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("case", "status", "reason", "field"),
    [
        ("anonymous", 401, "UNAUTHENTICATED", "authorization"),
        ("spec not JSON", 400, "INVALID_ARGUMENT", "spec"),
        ("no spec", 400, "INVALID_ARGUMENT", "spec"),
        ("not an image", 400, "INVALID_ARGUMENT", "images[1]"),
        ("steps over the service's limit", 400, "INVALID_ARGUMENT", "spec.recipe.steps"),
        ("no images", 400, "INVALID_ARGUMENT", None),
        ("upload over the limit", 413, "TOO_LARGE", "body"),
    ],
)
def test_bad_submissions_are_refused(
    http_stack: HttpStack, tmp_path: Any, case: str, status: int, reason: str, field: str | None
) -> None:
    form, token = training_form(tmp_path), "tok-acme"
    if case == "anonymous":
        token = None
    elif case == "spec not JSON":
        form["data"]["spec"] = "{concepts"
    elif case == "no spec":
        del form["data"]["spec"]
    elif case == "not an image":
        form["files"][1] = ("images", ("notes.gif", b"GIF89a", "image/gif"))
    elif case == "steps over the service's limit":
        form = training_form(tmp_path, steps=51)
    elif case == "no images":
        form["files"] = [("other", ("x.txt", b"x", "text/plain"))]
    elif case == "upload over the limit":
        form["files"].append(("images", ("big.png", b"\0" * MAX_UPLOAD_BYTES, "image/png")))
    expect_error(http_stack.call("POST", "v1/trainings", token=token, **form), status, reason, field)
