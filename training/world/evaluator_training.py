"""Training and held-out scoring of the evaluator (a stage of `train-base`, after the VAE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from training.world.autoencoder import CODEC_PATTERNS, lr_at, round_trip
from training.world.checkpoint import StageResult, run_stage
from training.world.evaluator import CHANNELS, HEADS, IGNORE, Evaluator, EvaluatorNet, label_tensor, soften
from training.world.scenes import Scene, random_scene, render, to_array

TWO_OBJECT_PROB = 0.4
ROUND_TRIP_FRACTION = 0.4  # share of the training renders replaced by their VAE round trip: it judges decoded images
BATCH = 64
LR = 2e-3


def world_sample(seed: int, n: int) -> tuple[list[Scene], torch.Tensor]:
    """`n` scenes over every appearance and their (n, 3, 64, 64) [-1, 1] renders."""
    rng = np.random.default_rng([seed, 2])
    scenes = [random_scene(rng, patterns=CODEC_PATTERNS, two_object_prob=TWO_OBJECT_PROB) for _ in range(n)]
    return scenes, torch.from_numpy(to_array([render(s) for s in scenes]))


def train_evaluator(
    work_dir: Path, vae: AutoencoderKL, seed: int, budget_s: float, max_steps: int, *, n_train: int
) -> tuple[Evaluator, StageResult]:
    """Fit on `n_train` renders, `ROUND_TRIP_FRACTION` of them replaced by their VAE round trip, all
    softened per batch."""
    torch.manual_seed(seed)
    scenes, x = world_sample(seed, n_train)
    n_rt = int(n_train * ROUND_TRIP_FRACTION)
    x[:n_rt] = round_trip(vae, x[:n_rt])
    labels = label_tensor(scenes)
    net = EvaluatorNet(CHANNELS)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)

    def step_fn(step: int, progress: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(LR, step, progress)
        rng = np.random.default_rng([seed, 3, step])
        idx = torch.from_numpy(rng.choice(n_train, BATCH, replace=False))
        logits = net(soften(x[idx], rng))
        loss = sum(loss_fn(logits[name], labels[name][idx]) for name in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    net.train()
    result = run_stage(
        "evaluator",
        work_dir / "evaluator.ckpt.safetensors",
        {"net": net},
        opt,
        step_fn,
        budget_s=budget_s,
        max_steps=max_steps,
    )
    config = {"heads": {k: list(v) for k, v in HEADS.items()}, "channels": list(CHANNELS)}
    return Evaluator(net.eval(), config), result


def heldout_accuracy(
    evaluator: Evaluator, vae: AutoencoderKL | None, seed: int, n: int = 1000
) -> dict[str, dict[str, float]]:
    """Per-head accuracy on fresh renders: clean, softened, and (with a VAE) after a round trip."""
    scenes, x = world_sample(seed, n)
    out = {
        "clean": evaluator.accuracy(x, scenes),
        "softened": evaluator.accuracy(soften(x, np.random.default_rng([seed, 4])), scenes),
    }
    if vae is not None:
        out["vae_round_trip"] = evaluator.accuracy(round_trip(vae, x), scenes)
    return out
