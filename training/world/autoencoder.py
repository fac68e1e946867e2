"""Stage 1 of the base model: the VAE, trained as a generic image codec of the world.

Unlike the text encoder and UNet, the VAE sees every appearance, concept families included: it
plays the part of SD's VAE, which was trained on all kinds of images, so a concept's texture is
representable in latent space and only the UNet has to learn to produce it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from training.world.checkpoint import StageResult, run_stage
from training.world.models import build_vae
from training.world.scenes import BACKGROUNDS, CONCEPT_PATTERNS, PLAIN, random_scene, render, to_array

# Half of the objects plain, half spread over the concept families.
CODEC_PATTERNS: tuple[str, ...] = (PLAIN,) * len(CONCEPT_PATTERNS) + CONCEPT_PATTERNS
_KL_WEIGHT = 1e-6
_OBJECT_WEIGHT = 5.0
# Pairs draw the smallest objects, whose patterns are the hardest to keep: half the codec's scenes.
_TWO_OBJECT_PROB = 0.5


def codec_batch(seed: int, step: int, batch: int) -> torch.Tensor:
    """(batch, 3, 64, 64) fp32 renders in [-1, 1] for VAE step `step`."""
    return codec_batch_with_weights(seed, step, batch)[0]


def codec_batch_with_weights(seed: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders and per-pixel loss weights (batch, 1, 64, 64): `_OBJECT_WEIGHT` where a pixel differs from
    the background. Objects are a small share of the pixels; unweighted, the codec learns backgrounds
    first and paints every object in a colour guessed from its background."""
    rng = np.random.default_rng([seed, 1, step])
    scenes = [random_scene(rng, patterns=CODEC_PATTERNS, two_object_prob=_TWO_OBJECT_PROB) for _ in range(batch)]
    x = torch.from_numpy(to_array([render(s) for s in scenes]))
    bg = torch.tensor([BACKGROUNDS[s.background] for s in scenes], dtype=torch.float32)[:, :, None, None] / 127.5 - 1
    on_object = (x - bg).abs().amax(1, keepdim=True) > 0.02
    return x, 1.0 + (_OBJECT_WEIGHT - 1.0) * on_object.float()


def lr_at(base_lr: float, step: int, progress: float, warmup: int = 50) -> float:
    """Linear warm-up, flat, then a cosine decay to 10 % over the last 30 % of the stage's time."""
    ramp = min(1.0, (step + 1) / warmup)
    tail = max(0.0, (progress - 0.7) / 0.3)
    return base_lr * ramp * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail)))


def _start_nearly_deterministic(vae: AutoencoderKL, logvar: float = -20.0) -> None:
    """Start the posterior's log-variance at `logvar` instead of 0: unit noise on fresh latents drowns the
    signal and costs hundreds of steps before the encoder learns to shrink it."""
    with torch.no_grad():
        c = vae.config.latent_channels
        vae.quant_conv.weight[c:].zero_()
        vae.quant_conv.bias[c:].fill_(logvar)


def train_vae(
    work_dir: Path, seed: int, budget_s: float, max_steps: int, *, batch: int = 16, lr: float = 1e-3
) -> tuple[AutoencoderKL, StageResult]:
    torch.manual_seed(seed)
    vae = build_vae()
    _start_nearly_deterministic(vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)

    def step_fn(step: int, progress: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(lr, step, progress)
        x, weight = codec_batch_with_weights(seed, step, batch)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=torch.Generator().manual_seed(seed * 100003 + step))).sample
        error = recon - x
        loss = (weight * (error.abs() + error.square())).mean() + _KL_WEIGHT * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    result = run_stage(
        "vae", work_dir / "vae.ckpt.safetensors", {"vae": vae}, opt, step_fn, budget_s=budget_s, max_steps=max_steps
    )
    vae.eval().requires_grad_(False)
    return vae, result


@torch.no_grad()
def set_scaling_factor(vae: AutoencoderKL, seed: int, n: int = 1024) -> float:
    """Set `scaling_factor` to 1/std of sampled latents, so the UNet sees unit-variance latents (as in SD)."""
    x = torch.cat([codec_batch(seed + 7919, i, 128) for i in range(n // 128)])
    z = vae.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(seed))
    factor = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


@torch.no_grad()
def round_trip(vae: AutoencoderKL, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Encode and decode (n, 3, 64, 64) images in [-1, 1]: the softening a generated sample shows."""
    out = [
        vae.decode(vae.encode(images[i : i + batch]).latent_dist.mode()).sample for i in range(0, len(images), batch)
    ]
    return torch.cat(out).clamp(-1, 1)
