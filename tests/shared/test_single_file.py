"""Single-file (original LDM layout) checkpoints load through `load_base_model` offline.

The tiny pipeline is written as an SD 1.x single file (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.transformer.*`) by the reverse of diffusers' converters, with a configs-only diffusers
folder as `single_file_config`. Loading it must give back exactly the original weights, the same
`BaseSpec` as the directory load and the same fixed-seed image. A pickled `.ckpt` goes through diffusers'
`torch.load(weights_only=True)`: a plain state dict loads, a pickle carrying code is refused unexecuted.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import load_file

from shared.basemodel import load_base_model
from shared.errors import InvalidArgument
from shared.tiny import build_tiny_pipeline
from tests.shared.single_file import pipeline_to_ldm_state_dict, save_ldm_single_file

SIZE, STEPS = 16, 3
COMPONENTS = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def original():
    return build_tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def saved(original, tmp_path_factory):
    """(full diffusers dir, configs-only dir, LDM single file)."""
    root = tmp_path_factory.mktemp("single_file")
    full = root / "diffusers"
    original.save_pretrained(full)
    configs = root / "configs"
    shutil.copytree(full, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    single = save_ldm_single_file(original, root / "tiny-sd.safetensors")
    return full, configs, single


def _generate(pipeline) -> np.ndarray:
    return pipeline(
        "a photo of a dog",
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
        output_type="np",
        generator=torch.Generator().manual_seed(7),
    ).images


def _assert_same_weights(loaded, reference) -> None:
    for name in COMPONENTS:
        got, want = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            assert torch.equal(got[key], value), f"{name}.{key}"


def test_helper_is_the_exact_inverse_of_diffusers_converters(original, saved):
    state = load_file(str(saved[2]))
    assert {k.split(".")[0] for k in state} == {"model", "first_stage_model", "cond_stage_model"}
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in state
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in state
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # LDM 1x1 conv
    for converted, model in (
        (convert_ldm_unet_checkpoint(state, original.unet.config), original.unet),
        (convert_ldm_vae_checkpoint(state, original.vae.config), original.vae),
    ):
        reference = model.state_dict()
        assert converted.keys() == reference.keys()
        assert all(torch.equal(converted[k], reference[k]) for k in reference)


def test_single_file_loads_offline_with_a_local_config(original, saved):
    full, configs, single = saved
    assert not list(configs.rglob("*.safetensors"))  # the weights can only come from the single file
    from_file = load_base_model(single, single_file_config=configs)
    from_dir = load_base_model(full)

    _assert_same_weights(from_file.pipeline, original)
    assert from_file.spec == from_dir.spec
    assert from_file.source == str(single)
    assert type(from_file.pipeline.scheduler) is type(original.scheduler)
    assert from_file.pipeline.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert from_file.pipeline.vae.config.scaling_factor == original.vae.config.scaling_factor
    np.testing.assert_allclose(_generate(from_file.pipeline), _generate(from_dir.pipeline), atol=1e-5, rtol=0)


def test_single_file_without_config_is_refused(saved):
    with pytest.raises(InvalidArgument) as caught:
        load_base_model(saved[2])
    assert caught.value.field == "single_file_config"
    assert "single_file_config" in caught.value.message


class _Payload:
    """A pickle that runs `os.makedirs(marker)` when unpickled without restrictions."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_ckpt_is_read_with_the_weights_only_unpickler(original, saved, tmp_path):
    _, configs, _ = saved
    state = pipeline_to_ldm_state_dict(original)

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, plain)
    _assert_same_weights(load_base_model(plain, single_file_config=configs).pipeline, original)

    marker = tmp_path / "payload-ran"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": state, "callback": _Payload(str(marker))}, hostile)
    with pytest.raises(OSError, match="Unable to load weights"):
        load_base_model(hostile, single_file_config=configs)
    assert not marker.exists()
