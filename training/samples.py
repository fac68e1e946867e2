"""Sample images rendered during a run, so that whoever watches it sees what the concept has learnt
so far, not only the loss.

Every `Recipe.sample_every` steps the leader renders the first concept's first caption with the
trainer's current delta (`ConceptTrainer.delta`) through the serving engine, the code that will
later draw the published concept. The sampler settings are fixed (the base's default size, a few
steps, one seed), so successive samples differ only by what training changed.

The sample is one PNG beside the progress file, its step and prompt in the PNG's text chunks: one
file written by one rename, so a reader never pairs an image with another sample's step.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from serving.engine import GenerationRequest, create_engine
from shared.basemodel import BaseModel
from training.config import TrainConfig
from training.progress import ProgressFile
from training.trainer import ConceptTrainer

SAMPLE_FILE = "sample.png"
SAMPLE_STEPS = 10
SAMPLE_SEED = 0
SAMPLE_GUIDANCE = 6.0


@dataclass(frozen=True)
class Sample:
    step: int
    prompt: str
    png: bytes


def sample_prompt(config: TrainConfig) -> str:
    """The first concept's first caption (its modifier token in place)."""
    return config.concepts[0].image_captions()[0][0]


def due(config: TrainConfig, step: int) -> bool:
    every = config.recipe.sample_every
    return every > 0 and step % every == 0


def record_if_due(config: TrainConfig, base: BaseModel, trainer: ConceptTrainer, progress: ProgressFile) -> None:
    """After a step: when a sample is due, render it beside the progress file and note its step there
    (what tells a watcher that a new one arrived)."""
    if not due(config, trainer.step):
        return
    write_sample(progress.path.parent, trainer.step, sample_prompt(config), render(config, base, trainer))
    progress.update(sample_step=trainer.step)


def render(config: TrainConfig, base: BaseModel, trainer: ConceptTrainer) -> Image.Image:
    """The sample prompt drawn with the trainer's weights so far. The engine's attention processors
    go onto the base UNet for this call only: the caller's base leaves as it came."""
    unet = base.pipeline.unet
    processors = unet.attn_processors
    try:
        engine = create_engine(base)
        size = engine.default_size
        request = GenerationRequest(
            sample_prompt(config),
            delta=trainer.delta(),
            steps=SAMPLE_STEPS,
            guidance_scale=SAMPLE_GUIDANCE,
            seed=SAMPLE_SEED,
            height=size,
            width=size,
        )
        pixels = engine.generate([request])[0].images[0]
    finally:
        unet.set_attn_processor(processors)
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8))


def write_sample(directory: str | Path, step: int, prompt: str, image: Image.Image) -> Path:
    """Write the sample atomically (temporary file, then rename) as `directory/sample.png`."""
    path = Path(directory) / SAMPLE_FILE
    info = PngImagePlugin.PngInfo()
    info.add_itxt("step", str(step))
    info.add_itxt("prompt", prompt)
    partial = path.with_name(f".{SAMPLE_FILE}.{os.getpid()}.tmp")
    image.save(partial, format="PNG", pnginfo=info)
    partial.replace(path)
    return path


def read_sample(directory: str | Path, *, max_bytes: int) -> Sample | None:
    """The latest sample in `directory`; None when there is none, it is larger than `max_bytes` or it
    is not a sample this module wrote."""
    path = Path(directory) / SAMPLE_FILE
    try:
        if path.stat().st_size > max_bytes:
            return None
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            text = dict(getattr(image, "text", {}))
        return Sample(int(text["step"]), text["prompt"], data)
    except (OSError, KeyError, ValueError):
        return None
