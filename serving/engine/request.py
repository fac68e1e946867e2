"""Requests and results of the engine: small dataclasses, per-request state lives here only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.delta import ConceptDelta


@dataclass(frozen=True)
class SamplingKey:
    """What requests must share to run in one UNet batch."""

    steps: int
    height: int
    width: int
    scheduler: str


@dataclass
class GenerationRequest:
    """One prompt with its own concept delta (a single concept, a joint bundle or a merged set)."""

    prompt: str
    negative_prompt: str = ""
    delta: ConceptDelta | None = None
    steps: int = 25
    guidance_scale: float = 7.5
    seed: int = 0
    height: int = 512
    width: int = 512
    num_images: int = 1
    scheduler: str = "default"
    original_size: tuple[int, int] | None = None
    """SDXL micro-conditioning (SD 1.x/2.x ignore it): (height, width) the image seems to come from;
    None means (height, width), as in stock diffusers."""
    crop_top_left: tuple[int, int] = (0, 0)
    """SDXL: the (top, left) crop corner the image seems to have; (0, 0) centres the subject."""
    target_size: tuple[int, int] | None = None
    """SDXL: the (height, width) aimed at; None means (height, width)."""

    @property
    def sampling_key(self) -> SamplingKey:
        return SamplingKey(self.steps, self.height, self.width, self.scheduler)


@dataclass
class GenerationResult:
    """`images`: (num_images, height, width, 3) float32 in [0, 1], like diffusers' `output_type="np"`."""

    images: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    batch_requests: int = 1
