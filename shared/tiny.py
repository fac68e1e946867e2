"""Tiny Stable Diffusion pipelines built from configs, for tests and benchmarks.

Same classes and wiring as SD 1.x (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIP BPE
tokenizer), random seeded weights, nothing downloaded. The tokenizer was trained once by
`shared.tokenizer.train_clip_tokenizer` on the generic captions and is kept in
`shared/assets/tiny_tokenizer` (token ids differ between training runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from shared.tokenizer import load_clip_tokenizer, train_clip_tokenizer

ASSETS = Path(__file__).resolve().parent / "assets"
TINY_TOKENIZER_DIR = ASSETS / "tiny_tokenizer"
GENERIC_CAPTIONS = ASSETS / "generic_captions.txt"
TINY_MAX_LENGTH = 32


def sd_scheduler() -> DDIMScheduler:
    """DDIM with Stable Diffusion's training schedule."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def clip_text_config(
    tokenizer: CLIPTokenizer, *, hidden: int, layers: int, heads: int, mlp_ratio: int = 4, **options: Any
) -> CLIPTextConfig:
    """A CLIP text config whose vocabulary, positions and special ids follow `tokenizer` (the pipeline
    pads to `model_max_length`, so the encoder must have that many positions); `options` are further
    `CLIPTextConfig` fields."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=mlp_ratio * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=int(tokenizer.model_max_length),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **options,
    )


def clip_text_encoder(
    tokenizer: CLIPTokenizer, *, hidden: int, layers: int, heads: int, mlp_ratio: int = 4
) -> CLIPTextModel:
    """A CLIPTextModel over `tokenizer` (see `clip_text_config`)."""
    return CLIPTextModel(clip_text_config(tokenizer, hidden=hidden, layers=layers, heads=heads, mlp_ratio=mlp_ratio))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Weights built inside come from torch's CPU generator seeded with `seed`; the caller's random
    state is restored afterwards, so building a model does not shift the caller's draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_tokenizer() -> CLIPTokenizer:
    if not (TINY_TOKENIZER_DIR / "vocab.json").exists():
        corpus = GENERIC_CAPTIONS.read_text().splitlines()
        return train_clip_tokenizer(corpus, TINY_TOKENIZER_DIR, vocab_size=600, model_max_length=TINY_MAX_LENGTH)
    return load_clip_tokenizer(TINY_TOKENIZER_DIR, model_max_length=TINY_MAX_LENGTH)


def tiny_vae(sample_size: int, *, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """A two-level AutoencoderKL (downsampling ×2) for `sample_size`-pixel images, from the current RNG."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def build_tiny_pipeline(
    seed: int = 0,
    *,
    text_dim: int = 32,
    block_out_channels: tuple[int, ...] = (32, 64),
    sample_size: int = 8,
) -> StableDiffusionPipeline:
    """A ~1 M-parameter SD pipeline: 16×16 images, 8×8 latents, 5 cross-attention layers."""
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        components = {  # drawn in this order
            "text_encoder": clip_text_encoder(tokenizer, hidden=text_dim, layers=2, heads=4, mlp_ratio=2),
            "unet": UNet2DConditionModel(
                sample_size=sample_size,
                in_channels=4,
                out_channels=4,
                block_out_channels=block_out_channels,
                layers_per_block=1,
                down_block_types=("CrossAttnDownBlock2D",) * len(block_out_channels),
                up_block_types=("CrossAttnUpBlock2D",) * len(block_out_channels),
                cross_attention_dim=text_dim,
                attention_head_dim=8,
                norm_num_groups=16,
            ),
            "vae": tiny_vae(sample_size * 2),
        }
    return StableDiffusionPipeline(
        **components,
        tokenizer=tokenizer,
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


SD15_UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
)
"""The Stable Diffusion 1.x UNet (859.5 M parameters, 16 cross-attention layers)."""


def build_sd15_unet(seed: int = 0) -> UNet2DConditionModel:
    """SD 1.5's UNet architecture with random weights (≈ 20 s and 3.4 GB on a CPU)."""
    with seeded(seed):
        return UNet2DConditionModel(**SD15_UNET_CONFIG)


def build_clip_l_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    """CLIP ViT-L/14's text transformer shape (768-d, 12 layers) over the given tokenizer's vocabulary."""
    with seeded(seed):
        return clip_text_encoder(tokenizer, hidden=768, layers=12, heads=12)


def build_sd_vae(*, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """Stable Diffusion's VAE architecture with random weights from the current RNG: SD 1.x, 2.x and
    SDXL share it (SDXL scales its latents by 0.13025)."""
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        scaling_factor=scaling_factor,
    )
