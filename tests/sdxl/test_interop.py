"""An SDXL concept exported to diffusers' layouts (Custom Diffusion attention-processor weights and
a `clip_l`/`clip_g` token file) works in stock `StableDiffusionXLPipeline` exactly as in the engine,
and imports back."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from serving.engine import GenerationRequest, create_engine
from shared import artifact
from shared.errors import InvalidArtifact
from shared.interop import export_diffusers, import_diffusers, token_file_name
from tests.shared.test_diffusers_interop import _install_custom_diffusion
from tests.support.synthetic import random_concept

SIZE, STEPS, TOKEN = 16, 3, "<dog-xl>"


@pytest.fixture(scope="module")
def concept(sdxl_base):
    header, delta = random_concept(sdxl_base.spec, "dog-xl", seed=3, rank=3, modifier_token=TOKEN)
    return artifact.from_bytes(artifact.to_bytes(header, delta), base=sdxl_base.spec)


@pytest.fixture(scope="module")
def exported(concept, sdxl_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdxl-export")
    export_diffusers(concept, sdxl_base, folder)
    return folder


def _sample(pipe, prompt: str) -> np.ndarray:
    return pipe(
        prompt,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
        output_type="np",
        generator=torch.Generator().manual_seed(1),
    ).images


def test_token_file_holds_clip_l_and_clip_g(exported, sdxl_base, concept):
    state = load_file(str(exported / token_file_name(TOKEN)))
    assert {name: tuple(t.shape) for name, t in state.items()} == {"clip_l": (32,), "clip_g": (48,)}
    torch.testing.assert_close(torch.cat([state["clip_l"], state["clip_g"]]), concept.delta.token_embeddings[TOKEN])


def test_exported_sdxl_concept_runs_in_stock_diffusers_and_matches_the_engine(exported, sdxl_base, concept):
    pipe = copy.deepcopy(sdxl_base.pipeline)
    _install_custom_diffusion(pipe, exported)
    state = load_file(str(exported / token_file_name(TOKEN)))
    pipe.load_textual_inversion(state["clip_l"], token=TOKEN, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(
        state["clip_g"], token=TOKEN, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    prompt = f"a photo of a {TOKEN} dog"
    stock = _sample(pipe, prompt)
    plain = _sample(copy.deepcopy(sdxl_base.pipeline), "a photo of a dog")
    ours = (
        create_engine(sdxl_base)
        .generate(
            [
                GenerationRequest(
                    prompt, delta=concept.delta, steps=STEPS, guidance_scale=5.0, height=SIZE, width=SIZE, seed=1
                )
            ]
        )[0]
        .images
    )
    assert np.abs(stock - plain).max() > 1e-3
    np.testing.assert_allclose(ours, stock, atol=1e-4, rtol=0)


def test_sdxl_import_round_trip_recovers_delta_and_both_embeddings(exported, sdxl_base, concept):
    header, delta = import_diffusers(exported, sdxl_base, concept_id="dog-imported")
    loaded = artifact.from_bytes(artifact.to_bytes(header, delta), base=sdxl_base.spec)
    assert (loaded.header.base_family, loaded.header.token_dims) == ("sdxl", [32, 48])
    for name, layer in concept.delta.layers.items():
        for projection, weight in layer.items():
            torch.testing.assert_close(
                loaded.delta.layers[name][projection].to_dense(), weight.to_dense(), atol=1e-6, rtol=0
            )
    torch.testing.assert_close(loaded.delta.token_embeddings[TOKEN], concept.delta.token_embeddings[TOKEN])


def test_foreign_sdxl_folder_imports_with_its_family(exported, sdxl_base, tmp_path):
    for path in exported.iterdir():
        if path.suffix == ".safetensors":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    header, _ = import_diffusers(tmp_path, sdxl_base, concept_id="foreign", categories=["dog"])
    assert (header.base_family, header.token_dims, header.modifier_tokens) == ("sdxl", [32, 48], [TOKEN])


def test_single_encoder_token_file_is_refused_on_sdxl(exported, sdxl_base, tmp_path):
    for path in exported.iterdir():
        if path.name != token_file_name(TOKEN):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    save_file({TOKEN: torch.zeros(64)}, str(tmp_path / token_file_name(TOKEN)))
    with pytest.raises(InvalidArtifact, match="clip_l"):
        import_diffusers(tmp_path, sdxl_base, concept_id="x")
