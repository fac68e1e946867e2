"""Configurations of the toy-world base model: the Stable Diffusion architecture, scaled down.

Sizes are chosen so the whole model trains in about 90 minutes on 2 CPU cores: 64×64
images, an f=8 VAE with 4 latent channels (8×8×4 latents, like SD's 512→64), a 2-layer CLIP text
encoder of width 128, and a two-level UNet with cross-attention at 8×8 and in the 4×4 middle, so a
Custom Diffusion delta spans 4 `attn2` layers (SD 1.x has 16). The text width is set by the merge:
two concepts' captions give ~120 target tokens, which a 64-wide text space cannot hold apart
(shared/merge.py); SD's is 768 wide.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from shared.tiny import clip_text_encoder

MAX_TOKENS = 32  # text encoder positions == tokenizer.model_max_length
TEXT_DIM = 128
LATENT_CHANNELS = 4

# Stable Diffusion 1.x's noise schedule.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def build_vae() -> AutoencoderKL:
    """64×64×3 → 8×8×4: diffusers' last encoder block never downsamples, so ×8 needs four blocks."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return clip_text_encoder(tokenizer, hidden=TEXT_DIM, layers=2, heads=4)


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SD_SCHEDULE, prediction_type="epsilon")


def build_pipeline(
    vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, unet: UNet2DConditionModel
) -> StableDiffusionPipeline:
    """A stock pipeline (DDIM, SD's settings, no safety checker): what `save_pretrained` writes."""
    scheduler = DDIMScheduler(
        **SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon"
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
