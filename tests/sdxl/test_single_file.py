"""An SDXL single-file checkpoint (original SGM layout) loads offline through `load_base_model`
with a local config directory, as SDXL, with exactly the weights and spec of the diffusers directory."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from safetensors.torch import load_file

from shared.basemodel import load_base_model
from tests.sdxl.single_file import save_sdxl_single_file
from tests.support.tiny_sdxl import build_tiny_sdxl_pipeline

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the pipeline, its diffusers dir, a configs-only dir, its single file)."""
    pipeline = build_tiny_sdxl_pipeline(seed=1, text_encoder_2_layers=10)
    root = tmp_path_factory.mktemp("sdxl-single-file")
    full, configs = root / "diffusers", root / "configs"
    pipeline.save_pretrained(full)
    shutil.copytree(full, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return pipeline, full, configs, save_sdxl_single_file(pipeline, root / "tiny-sdxl.safetensors")


def test_diffusers_reads_the_file_as_sdxl(saved):
    assert infer_diffusers_model_type(load_file(str(saved[3]))) == "xl_base"


def test_sdxl_single_file_loads_offline_with_a_local_config(saved):
    pipeline, full, configs, single = saved
    assert not list(configs.rglob("*.safetensors"))  # the weights can only come from the single file
    from_file = load_base_model(single, single_file_config=configs)
    assert isinstance(from_file.pipeline, StableDiffusionXLPipeline)
    for name in COMPONENTS:
        got, want = getattr(from_file.pipeline, name).state_dict(), getattr(pipeline, name).state_dict()
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            assert torch.equal(got[key], value), f"{name}.{key}"
    assert from_file.spec == load_base_model(full).spec
    assert from_file.spec.family == "sdxl"
