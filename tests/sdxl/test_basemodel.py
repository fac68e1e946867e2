"""SDXL bases are recognised from their files, and the full SDXL UNet's layer map (built on the
meta device: no memory, exact shapes) is what concepts are validated and sized against."""

from __future__ import annotations

import shutil

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from serving.engine import SDXLDeltaEngine, create_engine
from shared import artifact
from shared.basemodel import layer_map, load_base_model, pipeline_class
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept
from tests.support.tiny_sdxl import build_sdxl_unet_on_meta
from training.output import SDXL_MAX_RANK

SDXL_KV_PARAMETERS = 340_787_200
MAX_CONCEPT_BYTES = 20 * 10**6


def test_sdxl_directory_is_detected_and_loads_with_the_same_spec(sdxl_base, tmp_path):
    folder = tmp_path / "tiny-sdxl"
    sdxl_base.pipeline.save_pretrained(folder)
    configs = tmp_path / "configs"
    shutil.copytree(folder, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    assert pipeline_class(configs) is StableDiffusionXLPipeline  # what a single file's config dir selects
    loaded = load_base_model(folder)
    assert isinstance(loaded.pipeline, StableDiffusionXLPipeline)
    assert loaded.spec == sdxl_base.spec
    assert isinstance(create_engine(loaded), SDXLDeltaEngine)


def test_an_sd_directory_stays_sd(tiny_base, tmp_path):
    tiny_base.pipeline.save_pretrained(tmp_path)
    assert pipeline_class(tmp_path) is StableDiffusionPipeline
    assert load_base_model(tmp_path).spec == tiny_base.spec
    assert tiny_base.spec.family == "sd1" and tiny_base.spec.token_dims == ()


def test_full_sdxl_unet_has_70_cross_attention_layers_over_2048_d_features():
    layers = layer_map(build_sdxl_unet_on_meta())
    assert len(layers) == 70
    assert {layer.in_features for layer in layers} == {2048}
    assert sum(2 * layer.in_features * layer.out_features for layer in layers) == SDXL_KV_PARAMETERS


def test_the_default_rank_cap_is_the_largest_fp16_sdxl_concept_within_20_mb_and_validates():
    spec = BaseSpec(
        fingerprint="sdxl-architecture",
        layers=layer_map(build_sdxl_unet_on_meta()),
        token_dim=2048,
        family="sdxl",
        token_dims=(768, 1280),
    )
    sizes = {}
    for rank in (SDXL_MAX_RANK, SDXL_MAX_RANK + 1):
        header, delta = random_concept(spec, "dog-xl", rank=rank, dtype=torch.float16)
        sizes[rank] = artifact.to_bytes(header, delta)
    assert len(sizes[SDXL_MAX_RANK]) <= MAX_CONCEPT_BYTES < len(sizes[SDXL_MAX_RANK + 1])
    loaded = artifact.from_bytes(sizes[SDXL_MAX_RANK], base=spec)
    assert loaded.delta.max_rank == SDXL_MAX_RANK and loaded.header.token_dims == [768, 1280]
