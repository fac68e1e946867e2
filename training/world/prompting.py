"""Does a pipeline follow world prompts? Sample fixed-seed prompts and read them with the evaluator."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from training.world.captions import describe
from training.world.concepts import Expected, ExpectedObject
from training.world.evaluator import Evaluator
from training.world.metrics import attribute_accuracy, prompt_fidelity
from training.world.scenes import random_scene

SAMPLE_STEPS = 20
GUIDANCE = 4.0


def base_prompts(n: int, seed: int = 0, *, two_object_prob: float = 0.0) -> list[tuple[str, Expected]]:
    """Fully specified prompts of plain scenes: "a small red circle on a white background"."""
    rng = np.random.default_rng([seed, 0xB5])
    out = []
    for _ in range(n):
        scene = random_scene(rng, two_object_prob=two_object_prob)
        objects = tuple(ExpectedObject(o.shape, o.appearance.colour, o.size) for o in scene.objects)
        out.append((describe(scene), Expected(objects, scene.background)))
    return out


@torch.no_grad()
def sample(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    seed: int = 0,
    *,
    steps: int = SAMPLE_STEPS,
    guidance: float = GUIDANCE,
    batch: int = 32,
) -> list[Image.Image]:
    """One image per prompt; prompt i always uses seed `seed + i`, whatever the batching."""
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        out = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=generators, height=64, width=64)
        images.extend(out.images)
    return images


def prompt_following(
    pipe: StableDiffusionPipeline, evaluator: Evaluator, n: int = 64, seed: int = 0, *, two_object_prob: float = 0.0
) -> dict[str, float]:
    """Evaluator accuracy per attribute on `n` fixed-seed samples of base prompts, plus prompt fidelity
    (every attribute right at once)."""
    prompts = base_prompts(n, seed, two_object_prob=two_object_prob)
    readings = evaluator.read(sample(pipe, [p for p, _ in prompts], seed))
    expected = [e for _, e in prompts]
    return {**attribute_accuracy(readings, expected), "prompt_fidelity": prompt_fidelity(readings, expected)}
