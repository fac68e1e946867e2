"""A concept exported to diffusers' Custom Diffusion layout works in plain diffusers, and a folder in
that layout imports into an artifact that the engine applies identically."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import CustomDiffusionAttnProcessor
from safetensors.torch import load_file

from serving.engine import DeltaEngine, GenerationRequest
from shared import artifact
from shared.errors import InvalidArgument
from shared.interop import WEIGHTS_FILE, export_diffusers, import_diffusers, token_file_name
from tests.support.synthetic import random_concept

SIZE, STEPS = 16, 4


@pytest.fixture(scope="module")
def concept(tiny_base):
    header, delta = random_concept(tiny_base.spec, "dog-x", seed=3, rank=3, modifier_token="<dog-x>")
    return artifact.from_bytes(artifact.to_bytes(header, delta), base=tiny_base.spec)


@pytest.fixture(scope="module")
def engine(tiny_base):
    return DeltaEngine(copy.deepcopy(tiny_base))


def _install_custom_diffusion(pipe, folder):
    """Install the exported weights with diffusers' own `CustomDiffusionAttnProcessor`.

    `unet.load_attn_procs` cannot be used for a safetensors file: without `_pipeline` it silently
    installs nothing, with it it fails because safetensors cannot hold the empty self-attention
    entries it expects (upstream defect). This is what diffusers' training script does instead.
    """
    state = load_file(str(folder / WEIGHTS_FILE))
    processors = {}
    for name, existing in pipe.unet.attn_processors.items():
        k = state.get(f"{name}.to_k_custom_diffusion.weight")
        if k is None:
            processors[name] = existing
            continue
        processor = CustomDiffusionAttnProcessor(
            train_kv=True, train_q_out=False, hidden_size=k.shape[0], cross_attention_dim=k.shape[1]
        )
        processor.load_state_dict(
            {key.removeprefix(f"{name}."): v for key, v in state.items() if key.startswith(f"{name}.")}
        )
        processors[name] = processor
    pipe.unet.set_attn_processor(processors)


def _stock_with_exported(tiny_base, folder):
    pipe = copy.deepcopy(tiny_base.pipeline)
    _install_custom_diffusion(pipe, folder)
    pipe.load_textual_inversion(str(folder / token_file_name("<dog-x>")))
    return pipe


def stock_images(pipe, prompt: str, *, seed: int) -> np.ndarray:
    """Stock diffusers' images for `prompt` with the settings every comparison here uses."""
    return pipe(
        prompt,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
    ).images


def engine_images(engine, prompt: str, delta, *, seed: int) -> np.ndarray:
    """The engine's images for the same settings, with `delta` applied per request."""
    request = GenerationRequest(
        prompt, delta=delta, steps=STEPS, guidance_scale=5.0, height=SIZE, width=SIZE, seed=seed
    )
    return engine.generate([request])[0].images


def test_exported_concept_runs_in_stock_diffusers_and_matches_the_engine(tiny_base, concept, engine, tmp_path):
    export_diffusers(concept, tiny_base, tmp_path)
    pipe = _stock_with_exported(tiny_base, tmp_path)
    prompt = "a photo of a <dog-x> dog"
    stock = stock_images(pipe, prompt, seed=1)
    plain = stock_images(copy.deepcopy(tiny_base.pipeline), "a photo of a dog", seed=1)
    ours = engine_images(engine, prompt, concept.delta, seed=1)
    assert np.abs(stock - plain).max() > 1e-2
    assert sum(isinstance(p, CustomDiffusionAttnProcessor) for p in pipe.unet.attn_processors.values()) == 7
    np.testing.assert_allclose(ours, stock, atol=1e-4, rtol=0)


def test_import_round_trip_recovers_the_delta(tiny_base, concept, tmp_path):
    export_diffusers(concept, tiny_base, tmp_path)
    header, delta = import_diffusers(tmp_path, tiny_base, concept_id="dog-imported")
    loaded = artifact.from_bytes(artifact.to_bytes(header, delta), base=tiny_base.spec)
    assert loaded.header.concepts == concept.header.concepts
    for name, layer in concept.delta.layers.items():
        for projection, weight in layer.items():
            torch.testing.assert_close(
                loaded.delta.layers[name][projection].to_dense(), weight.to_dense(), atol=1e-6, rtol=0
            )
    torch.testing.assert_close(loaded.delta.token_embeddings["<dog-x>"], concept.delta.token_embeddings["<dog-x>"])


def test_import_of_a_foreign_folder_needs_categories(tiny_base, concept, tmp_path):
    export_diffusers(concept, tiny_base, tmp_path)
    (tmp_path / "cdserve_header.json").unlink()
    with pytest.raises(InvalidArgument, match="category"):
        import_diffusers(tmp_path, tiny_base, concept_id="x")
    header, _ = import_diffusers(tmp_path, tiny_base, concept_id="x", categories=["dog"])
    assert header.concepts[0].captions == ["photo of a <dog-x> dog"]


def test_pickled_weights_are_refused(tiny_base, tmp_path):
    (tmp_path / "pytorch_custom_diffusion_weights.bin").write_bytes(b"not loaded")
    with pytest.raises(InvalidArgument, match="never loaded"):
        import_diffusers(tmp_path, tiny_base, concept_id="x", categories=["dog"])


def test_folder_saved_by_stock_diffusers_imports_and_matches(tiny_base, engine, tmp_path):
    """A concept as diffusers' training script leaves it (save_attn_procs + a learned embedding)."""
    pipe = copy.deepcopy(tiny_base.pipeline)
    generator = torch.Generator().manual_seed(9)
    processors = {}
    for name in pipe.unet.attn_processors:
        if "attn2" not in name:  # as diffusers' training script sets self-attention up
            processors[name] = CustomDiffusionAttnProcessor(train_kv=False, train_q_out=False)
            continue
        attn = dict(pipe.unet.named_modules())[name.removesuffix(".processor")]
        processor = CustomDiffusionAttnProcessor(
            train_kv=True,
            train_q_out=False,
            hidden_size=attn.to_k.out_features,
            cross_attention_dim=attn.to_k.in_features,
        )
        with torch.no_grad():
            for own, base in (
                (processor.to_k_custom_diffusion, attn.to_k),
                (processor.to_v_custom_diffusion, attn.to_v),
            ):
                own.weight.copy_(base.weight + 0.1 * torch.randn(base.weight.shape, generator=generator))
        processors[name] = processor
    pipe.unet.set_attn_processor(processors)
    pipe.unet.save_attn_procs(str(tmp_path), weight_name=WEIGHTS_FILE, safe_serialization=True)
    embedding = torch.randn(tiny_base.spec.token_dim, generator=generator)
    from safetensors.torch import save_file

    save_file({"<new1>": embedding}, str(tmp_path / "new1.safetensors"))
    pipe.load_textual_inversion(str(tmp_path / "new1.safetensors"))

    header, delta = import_diffusers(tmp_path, tiny_base, concept_id="from-diffusers", categories=["dog"])
    concept = artifact.from_bytes(artifact.to_bytes(header, delta), base=tiny_base.spec)
    prompt = "a photo of a <new1> dog"
    stock = stock_images(pipe, prompt, seed=2)
    ours = engine_images(engine, prompt, concept.delta, seed=2)
    np.testing.assert_allclose(ours, stock, atol=1e-4, rtol=0)
