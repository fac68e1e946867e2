"""SDXL's per-request size conditioning over the Generator API: the GenerateRequest fields are
checked, reach the engine through a replica core (no Ray) and give stock
`StableDiffusionXLPipeline`'s image for the same `original_size`, `crops_coords_top_left` and
`target_size`; a replica of another family refuses them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from proto import generator_pb2
from serving.basemodels import materialize_tiny
from serving.config import RequestLimits, ServingConfig
from serving.engine import GenerationRequest
from serving.replica import Replica, build_replica
from serving.validation import MAX_SIZE_CONDITIONING_PX, SIZE_CONDITIONING, validate_request
from shared.artifact import ArtifactHeader, to_bytes
from shared.auth import OPERATOR_TENANT, Caller
from shared.delta import ConceptDelta
from shared.errors import InvalidArgument
from shared.images import to_uint8
from tests.engine.reference import stock_generate
from tests.registry.conftest import TOKENS, ServerThread
from tests.sdxl.reference import patched_sdxl_pipeline
from tests.support.synthetic import random_concept

STEPS, GUIDANCE, SIZE, SEED = 3, 5.0, 16, 21
OPERATOR = Caller(tenant=OPERATOR_TENANT)
CONDITIONED = {
    "original_width": 4096,
    "original_height": 64,
    "crop_top": 512,
    "crop_left": 48,
    "target_width": 24,
    "target_height": 8,
}


def validate(size_conditioning: bool = True, **fields: int) -> GenerationRequest:
    message = generator_pb2.GenerateRequest(prompt="a dog", width=32, height=16, **fields)
    return validate_request(
        message, RequestLimits(), default_size=16, size_multiple=8, size_conditioning=size_conditioning
    ).generation


def test_zero_size_conditioning_is_stock_diffusers_default() -> None:
    params = validate()
    assert (params.original_size, params.crop_top_left, params.target_size) == ((16, 32), (0, 0), (16, 32))


def test_size_conditioning_is_taken_as_height_width_and_top_left() -> None:
    params = validate(**CONDITIONED)
    assert (params.original_size, params.crop_top_left, params.target_size) == ((64, 4096), (512, 48), (8, 24))
    assert validate(original_height=100).original_size == (100, 32)  # the other side keeps its default


@pytest.mark.parametrize("field", SIZE_CONDITIONING)
@pytest.mark.parametrize("value", [MAX_SIZE_CONDITIONING_PX + 1, 2**32 - 1])
def test_size_conditioning_beyond_the_bound_names_its_field(field: str, value: int) -> None:
    with pytest.raises(InvalidArgument, match=f"{field} {value} exceeds {MAX_SIZE_CONDITIONING_PX} pixels") as e:
        validate(**{field: value})
    assert e.value.field == field
    validate(**{field: MAX_SIZE_CONDITIONING_PX})


@pytest.fixture(scope="module")
def concept(sdxl_base) -> tuple[ArtifactHeader, ConceptDelta]:
    return random_concept(sdxl_base.spec, "size-dog", seed=4, rank=3, modifier_token="<size-dog>")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, sdxl_base, tiny_base, concept) -> Iterator[ServerThread]:
    from serving.registry.config import RegistryConfig

    config = RegistryConfig(data_dir=tmp_path_factory.mktemp("registry"), shutdown_grace_s=0.0, metrics_port=None)
    server = ServerThread(config, [sdxl_base.spec, tiny_base.spec], dict(TOKENS))
    with server.client("tok-ops") as operator:
        operator.publish(to_bytes(*concept))
    yield server
    server.close()


def replica_of(model_dir: Path, registry: ServerThread, folder: Path) -> Replica:
    config = ServingConfig(
        base_model={"path": model_dir},
        registry={"address": registry.target, "token": "tok-ops"},
        cache={"disk_dir": folder / "concepts", "reg_cache_dir": folder / "creg"},
    )
    return build_replica(config, replica=model_dir.name)


@pytest.fixture(scope="module")
def sdxl_replica(sdxl_base, registry: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    folder = tmp_path_factory.mktemp("sdxl-replica")
    sdxl_base.pipeline.save_pretrained(folder / "tiny-sdxl")
    replica = replica_of(folder / "tiny-sdxl", registry, folder)
    yield replica
    replica.close()


@pytest.fixture(scope="module")
def sd_replica(registry: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    folder = tmp_path_factory.mktemp("sd-replica")
    replica = replica_of(materialize_tiny(folder / "tiny"), registry, folder)
    yield replica
    replica.close()


def generate(replica: Replica, **fields: int) -> np.ndarray:
    message = generator_pb2.GenerateRequest(
        prompt="a photo of a <size-dog> dog",
        concepts=["size-dog"],
        steps=STEPS,
        guidance_scale=GUIDANCE,
        seed=SEED,
        width=SIZE,
        height=SIZE,
        **fields,
    )
    (response,) = replica.core.run_batch([replica.core.prepare(message, OPERATOR)])
    assert isinstance(response, generator_pb2.GenerateResponse), response
    return np.asarray(Image.open(io.BytesIO(response.images[0].png)).convert("RGB"))


def stock(sdxl_base, delta: ConceptDelta, **micro: tuple[int, int]) -> np.ndarray:
    return to_uint8(
        stock_generate(
            sdxl_base.pipeline,
            delta,
            "a photo of a <size-dog> dog",
            patch=patched_sdxl_pipeline,
            negative_prompt=None,
            seed=SEED,
            steps=STEPS,
            guidance_scale=GUIDANCE,
            size=SIZE,
            **micro,
        )[0]
    )


def test_an_sdxl_replica_generates_with_the_requests_size_conditioning_as_stock_diffusers(
    sdxl_base, sdxl_replica, concept
):
    delta = concept[1]
    image = generate(sdxl_replica, **CONDITIONED)
    expected = stock(sdxl_base, delta, original_size=(64, 4096), crops_coords_top_left=(512, 48), target_size=(8, 24))
    assert np.abs(image.astype(int) - expected).max() <= 1  # fp32 differences of ~1e-6 may round apart
    default = generate(sdxl_replica)
    assert np.abs(default.astype(int) - stock(sdxl_base, delta)).max() <= 1
    assert np.abs(default.astype(int) - image).max() > 8  # the fields reached the UNet


@pytest.mark.bad_input(
    service="Generator/Generate",
    code="INVALID_ARGUMENT",
    case=lambda p: f"{p['field']} on a base model that is not SDXL",
)
@pytest.mark.parametrize("field", SIZE_CONDITIONING)
def test_a_replica_of_another_family_refuses_size_conditioning(sd_replica: Replica, field: str) -> None:
    message = generator_pb2.GenerateRequest(prompt="a photo of a dog", steps=2, **{field: 64})
    with pytest.raises(InvalidArgument, match="only SDXL base models take") as e:
        sd_replica.core.prepare(message, OPERATOR)
    assert e.value.field == field
    plain = generator_pb2.GenerateRequest(prompt="a photo of a dog", steps=2)
    sd_replica.core.prepare(plain, OPERATOR).resolved.release()  # the same request without it passes
