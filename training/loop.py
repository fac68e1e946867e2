"""The training loop without Ray: build a run from its config, train, write the artifact.

    from training.config import TrainConfig, ConceptConfig, Recipe
    from training.loop import train
    result = train(TrainConfig(base_model="shared/assets/toyworld", output_dir="out/my-dog",
                               concepts=[ConceptConfig(concept_id="my-dog", category="dog", images=[...])]))
    result.path  # the concept artifact

The Ray Train job (`training.distributed`) builds the same trainer with `build_trainer` and only
adds data parallelism, checkpoints and reporting around `ConceptTrainer.train_step`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from shared.basemodel import BaseModel, load_base_model
from shared.errors import InvalidArgument
from training import regularization, samples
from training.config import TrainConfig
from training.data import Example, ExampleSource, load_image
from training.output import write_result
from training.progress import ProgressFile, StepClock
from training.tokens import caption_words, initializer_words
from training.trainer import ConceptTrainer

log = logging.getLogger(__name__)

LOG_EVERY = 10
FINAL_LOSS_WINDOW = 10


@dataclass(frozen=True)
class TrainResult:
    path: Path
    metrics: dict[str, Any]


def device_for(config: TrainConfig) -> torch.device:
    """A GPU when there is one and the recipe does not forbid it."""
    use_gpu = config.recipe.use_gpu if config.recipe.use_gpu is not None else torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def resolution_for(config: TrainConfig, base: BaseModel) -> int:
    """The recipe's resolution, or the base's native one; the UNet needs a multiple of its total stride."""
    pipeline = base.pipeline
    stride = pipeline.vae_scale_factor * 2 ** (len(pipeline.unet.config.block_out_channels) - 1)
    resolution = config.recipe.resolution or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
    if resolution % stride:
        raise InvalidArgument(
            f"resolution {resolution} must be a multiple of {stride} for this base model", field="recipe.resolution"
        )
    return resolution


def target_examples(config: TrainConfig) -> list[Example]:
    return [
        Example(load_image(path), wordings, index, stand_ins)
        for index, concept in enumerate(config.concepts)
        for path, wordings, stand_ins in zip(
            concept.images, concept.image_captions(), concept.image_stand_ins(), strict=True
        )
    ]


def regularization_examples(
    config: TrainConfig, base: BaseModel, *, is_leader: bool = True, barrier: Callable[[], None] | None = None
) -> list[Example]:
    """Every concept's regularisation examples. Generated images are sampled once by the leader
    (rank 0) into the run's cache; the others wait at `barrier` and read them."""
    cache = Path(config.output_dir) / "reg-cache"
    generated = [c for c in config.concepts if c.reg_source == "generated"]
    if is_leader:
        for concept in generated:
            regularization.generate_class_images(cache, base, concept.category, config.recipe)
    if barrier is not None and generated:
        barrier()
    examples: list[Example] = []
    for concept in config.concepts:
        if concept.reg_source == "real":
            examples += regularization.real_examples(concept, config.recipe, base)
        elif concept.reg_source == "generated":
            examples += regularization.generated_examples(cache, base, concept.category, config.recipe)
    return examples


def build_trainer(
    config: TrainConfig,
    base: BaseModel,
    *,
    rank: int = 0,
    world_size: int = 1,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    barrier: Callable[[], None] | None = None,
) -> ConceptTrainer:
    """Everything a run needs before its first step: data, regularisation, tokens, the trainable copy."""
    source = ExampleSource(
        target_examples(config),
        regularization_examples(config, base, is_leader=rank == 0, barrier=barrier),
        resolution=resolution_for(config, base),
        latent_factor=base.pipeline.vae_scale_factor,
        augment=config.recipe.augment,
        flip=config.recipe.flip,
        seed=config.recipe.seed,
        stand_in_probability=config.recipe.stand_in_probability,
    )
    avoid = caption_words(caption for concept in config.concepts for caption in concept.all_captions())
    words = initializer_words(
        base.pipeline.tokenizer, [concept.initializer_token for concept in config.concepts], avoid=avoid
    )
    return ConceptTrainer(config, base, source, words, rank=rank, world_size=world_size, wrap=wrap)


def run_metrics(trainer: ConceptTrainer, clock: StepClock, started: float) -> dict[str, Any]:
    window = trainer.losses[-FINAL_LOSS_WINDOW:]
    return {
        "final_loss": sum(window) / len(window) if window else None,
        "steps": trainer.step,
        "train_time_s": round(time.perf_counter() - started, 3),
        "seconds_per_step": round(clock.seconds_per_step(trainer.step), 4),
        "num_workers": trainer.world_size,
        "device": trainer.device.type,
    }


def train(
    config: TrainConfig, *, base: BaseModel | None = None, progress: ProgressFile | None = None, show_bar: bool = True
) -> TrainResult:
    """Train in this process (no Ray) and write the result; `base` defaults to `config.base_model` loaded here."""
    started = time.perf_counter()
    base = base or load_base_model(config.base_model, device=device_for(config))
    trainer = build_trainer(config, base)
    total = config.total_steps
    clock = StepClock(total)
    with tqdm(total=total, desc=config.artifact_id, disable=not show_bar) as bar:
        while trainer.step < total:
            loss = trainer.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if trainer.step % LOG_EVERY == 0 or trainer.step == total:
                log.info("step %d/%d loss %.5f", trainer.step, total, loss)
                if progress is not None:
                    progress.update(step=trainer.step, total_steps=total, loss=loss, eta_s=clock.eta_s(trainer.step))
            if progress is not None:
                samples.record_if_due(config, base, trainer, progress)
    metrics = run_metrics(trainer, clock, started)
    return TrainResult(write_result(config, trainer, base.spec, metrics), metrics)
