"""SDXL-shaped pipelines built from configs, for tests and benchmarks (nothing downloaded).

The tiny one has SDXL's wiring at toy width: two CLIP text encoders (the second with a
projection, whose pooled output joins the time ids in the UNet's `text_time` embedding),
concatenated features, linear projections in the transformer blocks, several transformer layers
per block and Euler sampling. `SDXL_UNET_CONFIG` is the real SDXL base UNet.
"""

from __future__ import annotations

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModelWithProjection

from shared.tiny import (
    TINY_MAX_LENGTH,
    TINY_TOKENIZER_DIR,
    clip_text_config,
    clip_text_encoder,
    seeded,
    tiny_tokenizer,
    tiny_vae,
)
from shared.tokenizer import load_clip_tokenizer

TIME_IDS = 6
"""original size (2), crop corner (2), target size (2)."""

SDXL_UNET_CONFIG = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
"""The SDXL base UNet (≈ 2.6 B parameters, 70 cross-attention layers over 2048-d text features)."""


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """Euler with SDXL's training schedule, as the SDXL base ships it."""
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def build_tiny_sdxl_pipeline(
    seed: int = 0,
    *,
    text_dims: tuple[int, int] = (32, 48),
    projection_dim: int = 32,
    text_encoder_2_layers: int = 3,
) -> StableDiffusionXLPipeline:
    """A tiny SDXL pipeline: 16×16 images, 8×8 latents, 8 cross-attention layers over the two
    encoders' features concatenated (`text_dims`: unequal like SDXL's 768 and 1280, so that a mixed-up
    split shows, and so that diffusers tells the encoders apart in a single file).

    diffusers recognises an SDXL single-file checkpoint by its second encoder's tenth layer: a
    pipeline meant to be written as one needs `text_encoder_2_layers` ≥ 10."""
    tokenizer = tiny_tokenizer()
    tokenizer_2 = load_clip_tokenizer(TINY_TOKENIZER_DIR, model_max_length=TINY_MAX_LENGTH)
    time_embed_dim = 8
    with seeded(seed):
        components = {  # drawn in this order
            "text_encoder": clip_text_encoder(tokenizer, hidden=text_dims[0], layers=2, heads=4, mlp_ratio=2),
            "text_encoder_2": CLIPTextModelWithProjection(
                clip_text_config(
                    tokenizer_2,
                    hidden=text_dims[1],
                    layers=text_encoder_2_layers,
                    heads=4,
                    mlp_ratio=2,
                    projection_dim=projection_dim,
                    hidden_act="gelu",
                )
            ),
            "unet": UNet2DConditionModel(
                sample_size=8,
                in_channels=4,
                out_channels=4,
                block_out_channels=(32, 64),
                layers_per_block=1,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2),
                attention_head_dim=(2, 4),
                cross_attention_dim=sum(text_dims),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=time_embed_dim,
                projection_class_embeddings_input_dim=TIME_IDS * time_embed_dim + projection_dim,
                norm_num_groups=16,
            ),
            "vae": tiny_vae(16, scaling_factor=0.13025),  # SDXL VAE's scaling factor
        }
    return StableDiffusionXLPipeline(
        **components,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=sdxl_scheduler(),
        add_watermarker=False,
    )


def build_sdxl_unet_on_meta() -> UNet2DConditionModel:
    """The SDXL base UNet without memory (parameters on the meta device): its layer map, shapes and
    parameter counts are exact, its forward cannot run."""
    with torch.device("meta"):
        return UNet2DConditionModel(**SDXL_UNET_CONFIG)


@torch.no_grad()
def build_sdxl_unet_random(seed: int = 0, *, device: str | torch.device = "cpu") -> UNet2DConditionModel:
    """The SDXL base UNet with seeded random fp32 weights on `device`, for equivalence tests at small
    latents and benchmarks (the numbers drawn depend on the device's generator).

    Built on the meta device and then filled in place: diffusers' own initialisation of 2.6 B
    parameters costs far more than the forward these tests run. Matrices and kernels are drawn
    with standard deviation 1/sqrt(fan-in), norm scales are one and biases small, so activations
    keep their size through the 70 transformer blocks and a wrong K or V shows in the output.
    """
    unet = build_sdxl_unet_on_meta().to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, parameter in unet.named_parameters():
        if parameter.ndim > 1:
            parameter.normal_(0.0, parameter[0].numel() ** -0.5, generator=generator)
        elif name.endswith("weight"):
            parameter.fill_(1.0)
        else:
            parameter.normal_(0.0, 0.02, generator=generator)
    return unet.eval().requires_grad_(False)
