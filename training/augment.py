"""Custom Diffusion's target-image augmentation (paper §3, "augmentation").

A target image is rescaled by a random factor in [0.4, 1.4]. Below 1× it is pasted at a random
place on a blank (mid-grey) canvas and the loss may only look at the pasted region; above 1× a
random crop is taken. The caption says what happened: "very small"/"far away" below 0.6×,
"zoomed in"/"close up" above 1×, so the model does not learn that the concept is always small.

Paste sizes and positions are multiples of the VAE's downsampling factor, so every latent cell is
either wholly image or wholly padding and the latent mask is exact.

Each sample also records what SDXL's micro-conditioning is told in training: the source image's
size and the corner of the crop taken from the rescaled image (none when pasted), as diffusers'
SDXL training scripts do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

MIN_SCALE = 0.4
MAX_SCALE = 1.4
SMALL_BELOW = 0.6
SMALL_WORDS = ("very small", "far away")
LARGE_WORDS = ("zoomed in", "close up")


@dataclass(frozen=True)
class Sample:
    """One training input: pixels (3, R, R) fp32 in [-1, 1], mask (1, R/f, R/f) fp32 of 0/1, caption;
    the source's (height, width) and the (top, left) crop corner, in pixels."""

    pixels: torch.Tensor
    mask: torch.Tensor
    caption: str
    scale: float = 1.0
    original_size: tuple[int, int] = (0, 0)
    crop_top_left: tuple[int, int] = (0, 0)


def square(image: Image.Image) -> Image.Image:
    """Centre crop to a square, in RGB."""
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → (3, H, W) fp32 in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def plain(image: Image.Image, caption: str, *, resolution: int, latent_factor: int) -> Sample:
    """No augmentation (regularisation images, or augment=False): resize, full mask."""
    pixels = to_tensor(square(image).resize((resolution, resolution), Image.Resampling.BICUBIC))
    side = resolution // latent_factor
    return Sample(pixels, torch.ones(1, side, side), caption, original_size=(image.height, image.width))


def describe_scale(caption: str, scale: float, generator: torch.Generator) -> str:
    """Prefix the caption with a size word when the scale calls for one."""
    if scale < SMALL_BELOW:
        words = SMALL_WORDS
    elif scale > 1.0:
        words = LARGE_WORDS
    else:
        return caption
    choice = int(torch.randint(len(words), (1,), generator=generator))
    return f"{words[choice]} {caption}"


def rescaled(
    image: Image.Image,
    caption: str,
    *,
    resolution: int,
    latent_factor: int,
    generator: torch.Generator,
) -> Sample:
    """The augmentation: random rescale in [0.4, 1.4], paste or crop, caption words, latent mask."""
    original_size = (image.height, image.width)
    image = square(image)
    drawn = MIN_SCALE + (MAX_SCALE - MIN_SCALE) * float(torch.rand((), generator=generator))
    cells = resolution // latent_factor
    if drawn <= 1.0:
        side_cells = min(cells, max(math.ceil(MIN_SCALE * cells), round(drawn * cells)))
        side = side_cells * latent_factor
        top_cell, left_cell = (int(torch.randint(cells - side_cells + 1, (1,), generator=generator)) for _ in range(2))
        canvas = torch.zeros(3, resolution, resolution)
        top, left = top_cell * latent_factor, left_cell * latent_factor
        canvas[:, top : top + side, left : left + side] = to_tensor(
            image.resize((side, side), Image.Resampling.BICUBIC)
        )
        mask = torch.zeros(1, cells, cells)
        mask[:, top_cell : top_cell + side_cells, left_cell : left_cell + side_cells] = 1.0
        scale = side / resolution
        top = left = 0  # pasted whole: nothing is cropped
    else:
        side = min(round(drawn * resolution), math.floor(MAX_SCALE * resolution))
        top, left = (int(torch.randint(side - resolution + 1, (1,), generator=generator)) for _ in range(2))
        large = image.resize((side, side), Image.Resampling.BICUBIC)
        canvas = to_tensor(large.crop((left, top, left + resolution, top + resolution)))
        mask = torch.ones(1, cells, cells)
        scale = side / resolution
    return Sample(canvas, mask, describe_scale(caption, scale, generator), scale, original_size, (top, left))
