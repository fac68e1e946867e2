"""The committed base model is a stock Stable Diffusion pipeline that follows world prompts."""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel

from training.world.prompting import prompt_following


def test_loads_as_stock_pipeline_of_sd_parts(pipe, toyworld_dir) -> None:
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.scheduler, DDIMScheduler)
    attn2 = [n for n, _ in pipe.unet.named_modules() if n.endswith("attn2")]
    assert len(attn2) >= 4
    size = sum(f.stat().st_size for f in toyworld_dir.rglob("*") if f.is_file())
    assert size < 24 * 2**20


def test_follows_prompts_shape_and_colour_at_least_090(pipe, evaluator) -> None:
    accuracy = prompt_following(pipe, evaluator, n=32, seed=1000)
    assert accuracy["shape"] >= 0.9, accuracy
    assert accuracy["colour"] >= 0.9, accuracy
