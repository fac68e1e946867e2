"""Stage 3 of the base model: text encoder and UNet, trained jointly through the diffusion loss.

SD's recipe in miniature: DDPM noise schedule, epsilon prediction, 10 % empty captions so
classifier-free guidance works, latents encoded once up front (the VAE is frozen by then), and an
EMA of the weights as the result. Plain objects first; then a second stage that also shows
patterned objects (`patterned_scenes`), never with a concept's own appearance.
"""

from __future__ import annotations

import copy
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from training.world.autoencoder import lr_at
from training.world.captions import training_caption
from training.world.checkpoint import StageResult, run_stage
from training.world.concepts import CONCEPTS
from training.world.models import MAX_TOKENS, build_text_encoder, build_unet, train_scheduler
from training.world.scenes import CONCEPT_PATTERNS, PLAIN, Scene, random_scene, render, to_array

EMPTY_CAPTION_PROB = 0.1
TWO_OBJECT_PROB = 0.5


def training_scenes(seed: int, n: int) -> list[Scene]:
    rng = np.random.default_rng([seed, 6])
    return [random_scene(rng, two_object_prob=TWO_OBJECT_PROB) for _ in range(n)]


def patterned_scenes(seed: int, n: int) -> list[Scene]:
    """Scenes where objects wear any pattern (half of them plain) — except the appearances of the
    concept catalogue, which stay unseen: a concept is a particular appearance the base model can
    render (as SD can render dogs) but was never shown."""
    held_out = {concept.appearance for concept in CONCEPTS.values()}
    rng = np.random.default_rng([seed, 16])
    patterns = (*([PLAIN] * len(CONCEPT_PATTERNS)), *CONCEPT_PATTERNS)
    scenes: list[Scene] = []
    while len(scenes) < n:
        scene = random_scene(rng, patterns=patterns, two_object_prob=TWO_OBJECT_PROB)
        if not any(obj.appearance in held_out for obj in scene.objects):
            scenes.append(scene)
    return scenes


@torch.no_grad()
def encode_scenes(
    vae: AutoencoderKL, scenes: list[Scene], cache: Path, batch: int = 256, *, device: str = "cpu", workers: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std, each (n, 4, 8, 8) fp32 on the CPU, of every scene's render; cached in
    `cache`. Rendering is pure Python and dominates (about 3 ms a scene), so `workers` processes share it."""
    if cache.exists():
        t = load_file(str(cache))
        return t["mean"], t["std"]
    means, stds = [], []
    vae.to(device)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for i in range(0, len(scenes), batch):
            images = list(pool.map(render, scenes[i : i + batch], chunksize=max(1, batch // workers)))
            dist = vae.encode(torch.from_numpy(to_array(images)).to(device)).latent_dist
            means.append(dist.mean.cpu())
            stds.append(dist.std.cpu())
            print(f"[latents] {min(i + batch, len(scenes))}/{len(scenes)}", flush=True)
    vae.to("cpu")
    mean, std = torch.cat(means), torch.cat(stds)
    save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(cache))
    return mean, std


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def train_diffusion(
    work_dir: Path,
    vae: AutoencoderKL,
    tokenizer: CLIPTokenizer,
    seed: int,
    budget_s: float,
    max_steps: int,
    *,
    n_scenes: int = 16000,
    batch: int = 64,
    lr: float = 5e-4,
    ema_decay: float = 0.998,
    stage: str = "diffusion",
    scenes_fn=training_scenes,
    start: tuple[CLIPTextModel, UNet2DConditionModel] | None = None,
    device: str = "cpu",
) -> tuple[CLIPTextModel, UNet2DConditionModel, StageResult]:
    """Returns the EMA text encoder and UNet (on the CPU); from scratch, or continuing from `start` (a
    later stage). Data and noise are drawn on the CPU whatever the `device`, so a GPU run sees the
    same stream as a CPU one."""
    scenes = scenes_fn(seed, n_scenes)
    latents_cache = work_dir / f"{stage}-latents.safetensors"
    mean, std = encode_scenes(vae, scenes, latents_cache, device=device, workers=torch.get_num_threads())
    scale = float(vae.config.scaling_factor)
    torch.manual_seed(seed)
    if start is None:
        text_encoder, unet = build_text_encoder(tokenizer), build_unet()
    else:
        text_encoder, unet = (copy.deepcopy(m).train().requires_grad_(True) for m in start)
    text_encoder, unet = text_encoder.to(device), unet.to(device)
    ema_te, ema_unet = copy.deepcopy(text_encoder).requires_grad_(False), copy.deepcopy(unet).requires_grad_(False)
    params = [*text_encoder.parameters(), *unet.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    noise_schedule = train_scheduler()

    def step_fn(step: int, progress: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(lr, step, progress, warmup=100)
        rng = np.random.default_rng([seed, 7, step])
        idx = torch.from_numpy(rng.choice(n_scenes, batch, replace=False))
        captions = ["" if rng.random() < EMPTY_CAPTION_PROB else training_caption(scenes[i], rng) for i in idx.tolist()]
        ids = tokenizer(
            captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scale
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,), generator=g)
        latents, noise, t, ids = (x.to(device) for x in (latents, noise, t, ids))
        pred = unet(noise_schedule.add_noise(latents, noise, t), t, text_encoder(ids)[0]).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_te, text_encoder, decay)
        _ema_update(ema_unet, unet, decay)
        return loss.item()

    modules = {"text_encoder": text_encoder, "unet": unet, "ema_text_encoder": ema_te, "ema_unet": ema_unet}
    result = run_stage(
        stage, work_dir / f"{stage}.ckpt.safetensors", modules, opt, step_fn, budget_s=budget_s, max_steps=max_steps
    )
    return ema_te.cpu().eval(), ema_unet.cpu().eval(), result
