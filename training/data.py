"""Training examples and the per-step batch.

Every random choice of a step (which images, augmentation, noise, timesteps) comes from a generator
seeded by (seed, step, rank, purpose). A resumed run therefore continues exactly as the
uninterrupted run would have, with nothing but the step number to restore, and data-parallel ranks
draw disjoint slices of the same global order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from shared.errors import InvalidArgument
from shared.sdxl import add_time_ids
from training.augment import Sample, plain, rescaled

REG = -1
"""`Example.concept` of a regularisation example."""


@dataclass(frozen=True)
class Example:
    """An image with the wordings of its caption (one drawn per use) and its stand-in wordings;
    `concept` is the concept's index, or REG."""

    image: Image.Image
    captions: tuple[str, ...]
    concept: int
    stand_ins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.captions:
            raise ValueError("an example needs at least one caption")

    def caption(self, generator: torch.Generator) -> str:
        """One wording, drawn from `generator` only when there is a choice (a single caption draws nothing)."""
        return _one_of(self.captions, generator)

    def stand_in(self, generator: torch.Generator, probability: float) -> str | None:
        """A stand-in wording with `probability`, else None; draws nothing for an image without them,
        so that a run without stand-ins draws exactly what it drew before they existed."""
        if not self.stand_ins or probability == 0.0:
            return None
        if float(torch.rand((), generator=generator)) >= probability:
            return None
        return _one_of(self.stand_ins, generator)


def _one_of(choices: tuple[str, ...], generator: torch.Generator) -> str:
    if len(choices) == 1:
        return choices[0]
    return choices[int(torch.randint(len(choices), (), generator=generator))]


@dataclass(frozen=True)
class Batch:
    """pixels (B, 3, R, R) fp32 in [-1, 1]; masks (B, 1, R/f, R/f) fp32; is_reg (B,) bool;
    time_ids (B, 6) fp32: SDXL's (original size, crop corner, target size) of each sample."""

    pixels: torch.Tensor
    masks: torch.Tensor
    captions: list[str]
    is_reg: torch.Tensor
    time_ids: torch.Tensor


def load_image(path: str | Path, *, field: str = "images") -> Image.Image:
    """Decode an image fully (so that truncated files fail here, naming the file)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError as e:
        raise InvalidArgument(f"image {str(path)!r} does not exist", field=field) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InvalidArgument(f"image {str(path)!r} is not a decodable PNG/JPEG ({e})", field=field) from e


def generator_for(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded by a stable hash of (seed, *parts) — the same in every process."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@lru_cache(maxsize=64)
def _epoch_order(size: int, seed: int, salt: str, epoch: int) -> tuple[int, ...]:
    return tuple(torch.randperm(size, generator=generator_for(seed, salt, epoch)).tolist())


def draw_indices(size: int, *, seed: int, salt: str, start: int, count: int) -> list[int]:
    """Positions start..start+count of an endless stream of shuffled epochs over range(size)."""
    return [_epoch_order(size, seed, salt, p // size)[p % size] for p in range(start, start + count)]


class ExampleSource:
    """Targets and regularisation examples, and the batch each (step, rank) trains on.

    With regularisation, every target sample is paired with one regularisation sample (targets are
    oversampled to keep the ratio 1:1, however many reg images there are); the loss weighs the pair.
    """

    def __init__(
        self,
        targets: list[Example],
        regs: list[Example],
        *,
        resolution: int,
        latent_factor: int,
        augment: bool,
        flip: bool,
        seed: int,
        stand_in_probability: float = 0.0,
    ) -> None:
        if not targets:
            raise InvalidArgument("no target images", field="images")
        self.targets = targets
        self.regs = regs
        self.resolution = resolution
        self.latent_factor = latent_factor
        self.augment = augment
        self.flip = flip
        self.seed = seed
        self.stand_in_probability = stand_in_probability

    def batch(self, step: int, *, per_rank: int, rank: int = 0, world_size: int = 1) -> Batch:
        """This rank's slice of step `step`'s global batch: `per_rank` targets (+ as many reg examples)."""
        start = (step * world_size + rank) * per_rank
        generator = generator_for(self.seed, "augment", step, rank)
        wording = generator_for(self.seed, "wording", step, rank)
        stand_in = generator_for(self.seed, "stand-in", step, rank)
        drawn = draw_indices(len(self.targets), seed=self.seed, salt="targets", start=start, count=per_rank)
        targets = [self.targets[i] for i in drawn]
        samples = [
            self._target(t, t.stand_in(stand_in, self.stand_in_probability) or t.caption(wording), generator)
            for t in targets
        ]
        if self.regs:
            samples += [
                plain(
                    self.regs[i].image,
                    self.regs[i].caption(wording),
                    resolution=self.resolution,
                    latent_factor=self.latent_factor,
                )
                for i in draw_indices(len(self.regs), seed=self.seed, salt="regs", start=start, count=per_rank)
            ]
        is_reg = torch.zeros(len(samples), dtype=torch.bool)
        is_reg[per_rank:] = True
        return Batch(
            pixels=torch.stack([s.pixels for s in samples]),
            masks=torch.stack([s.mask for s in samples]),
            captions=[s.caption for s in samples],
            is_reg=is_reg,
            time_ids=torch.tensor(
                [add_time_ids(s.original_size, s.crop_top_left, (self.resolution, self.resolution)) for s in samples],
                dtype=torch.float32,
            ),
        )

    def _target(self, example: Example, caption: str, generator: torch.Generator) -> Sample:
        image = example.image
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if not self.augment:
            return plain(image, caption, resolution=self.resolution, latent_factor=self.latent_factor)
        return rescaled(
            image, caption, resolution=self.resolution, latent_factor=self.latent_factor, generator=generator
        )
