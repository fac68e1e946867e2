"""Training configuration: the paper's recipe as defaults, every field overridable.

`Recipe` mirrors `proto/training.proto`'s `Recipe` field for field (plus a few knobs the proto does
not expose); `ConceptConfig` is one concept's data; `TrainConfig` is one run (one or more concepts
trained jointly, one modifier token each).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from shared.artifact import CONCEPT_ID_PATTERN, MODIFIER_TOKEN_PATTERN
from shared.config import StrictModel

Mode = Literal["kv", "crossattn", "kv_frozen_token", "token", "full"]
MixedPrecision = Literal["no", "fp16", "bf16"]
Regularization = Literal["auto", "real", "generated", "none"]

TOKEN_PLACEHOLDER = "V*"
"""Written in a caption where the concept's modifier token goes ("photo of a V* dog")."""
DEFAULT_CAPTION = "photo of a V* {category}"
STAND_IN = "<stand-in>"
"""Names another object in a stand-in wording of a caption ("a large <stand-in> square and a large V*
star"): each time it is trained on, the trainer gives it a fresh random vector, so the concept learns
to hold its appearance after an unknown token, as it is named after another concept's token in a
merged prompt (measured on the toy world: docs/quality.md)."""
MAX_WORDINGS = 32
"""Most wordings one image's caption may have (the caption itself included)."""
SINGLE_CONCEPT_STEPS = 250
JOINT_STEPS = 500
MAX_CONCEPTS = 16


class Recipe(StrictModel):
    """Custom Diffusion's recipe (§4 of the paper); `None` fields take a value from context."""

    steps: int | None = Field(None, ge=1, le=100_000, description="None: 250 for one concept, 500 when joint")
    batch_size: int = Field(8, ge=1, le=512, description="Target images per step over all workers")
    learning_rate: float = Field(1e-5, gt=0.0, le=1e-1, description="Base learning rate before scaling")
    scale_lr: bool = Field(True, description="Multiply the learning rate by batch_size (paper: 1e-5 × 8)")
    token_learning_rate: float | None = Field(
        None, gt=0.0, le=1e-1, description="Base learning rate of the modifier tokens; None: learning_rate (paper)"
    )
    stand_in_probability: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=f"How often an image with stand-in wordings ({STAND_IN}) trains on one; 0: never (paper)",
    )
    mode: Mode = Field("kv", description="Which parameters train; see training.trainable")
    augment: bool = Field(True, description="Random 0.4–1.4× rescale with caption words and loss mask")
    flip: bool = Field(False, description="Random horizontal flip of target images")
    prior_loss_weight: float = Field(1.0, ge=0.0, le=100.0, description="Weight of the regularisation loss")
    reg_similarity_threshold: float = Field(
        0.85, ge=-1.0, le=1.0, description="Keep real regularisation images whose caption similarity ≥ this"
    )
    num_reg_images: int = Field(200, ge=1, le=10_000, description="Regularisation images per concept (at most)")
    resolution: int | None = Field(None, ge=8, le=2048, description="Training image side; None: the base's")
    num_workers: int = Field(1, ge=1, le=64, description="Data-parallel workers (Ray Train)")
    use_gpu: bool | None = Field(None, description="None: use a GPU when the cluster has one")
    checkpoint_every: int = Field(50, ge=1, le=100_000, description="Steps between checkpoints (Ray Train)")
    sample_every: int = Field(
        0, ge=0, le=100_000, description="Steps between sample images rendered with the weights so far; 0: none"
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="All randomness derives from (seed, step, rank)")
    mixed_precision: MixedPrecision = Field("bf16", description="Autocast dtype on GPU; CPU always runs fp32")
    compress_energy: float | None = Field(
        None, gt=0.0, le=1.0, description="SVD-compress, keeping singular values with this share of their sum"
    )
    compress_rank: int | None = Field(None, ge=1, le=4096, description="SVD-compress to this fixed rank")
    weight_decay: float = Field(1e-2, ge=0.0, le=1.0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm")
    reg_generation_steps: int = Field(50, ge=1, le=1000, description="Sampler steps per generated reg image")
    reg_guidance_scale: float = Field(6.0, ge=1.0, le=30.0, description="CFG scale for generated reg images")

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.compress_energy is not None and self.compress_rank is not None:
            raise ValueError("give at most one of compress_energy and compress_rank")
        if self.mode == "full" and (self.compress_energy is not None or self.compress_rank is not None):
            raise ValueError("mode 'full' writes UNet weights, not a delta: compression does not apply")
        if self.mode == "full" and self.sample_every:
            raise ValueError("mode 'full' writes UNet weights, not a delta: samples are rendered from a delta")
        if self.batch_size % self.num_workers:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of num_workers {self.num_workers}")
        return self

    def total_steps(self, num_concepts: int) -> int:
        if self.steps is not None:
            return self.steps
        return SINGLE_CONCEPT_STEPS if num_concepts == 1 else JOINT_STEPS

    @property
    def effective_learning_rate(self) -> float:
        return self._scaled(self.learning_rate)

    @property
    def effective_token_learning_rate(self) -> float:
        return self._scaled(self.learning_rate if self.token_learning_rate is None else self.token_learning_rate)

    def _scaled(self, base: float) -> float:
        return base * self.batch_size if self.scale_lr else base

    @property
    def trains_token(self) -> bool:
        return self.mode != "kv_frozen_token"


class ConceptConfig(StrictModel):
    """One concept: its images (local paths), captions and regularisation source."""

    concept_id: str = Field(description="Registry id, e.g. 'my-dog'")
    category: str = Field(min_length=1, max_length=64, description="Category word(s), e.g. 'dog'")
    modifier_token: str | None = Field(None, description="None: '<cd-{concept_id}>'")
    images: list[str] = Field(min_length=1, description="Paths of the target images")
    captions: list[str | list[str]] | None = Field(
        None,
        description="One per image ('' or None: 'photo of a V* {category}'), or a list of wordings of that "
        "image's caption, one drawn at random each time the image is trained on; 'V*' marks the token; "
        f"wordings naming another object by {STAND_IN} are its stand-in wordings (Recipe.stand_in_probability)",
    )
    regularization: Regularization = Field("auto", description="auto: real when reg_dir is given, else generated")
    reg_dir: str | None = Field(None, description="Folder of images + captions.txt ('filename<TAB>caption')")
    initializer_token: str | None = Field(None, description="Existing word whose embedding starts V*; None: auto")

    @model_validator(mode="after")
    def _check(self) -> ConceptConfig:
        if not CONCEPT_ID_PATTERN.fullmatch(self.concept_id):
            raise ValueError(f"concept_id {self.concept_id!r} must match {CONCEPT_ID_PATTERN.pattern}")
        if not MODIFIER_TOKEN_PATTERN.fullmatch(self.token) or self.token == STAND_IN:
            raise ValueError(
                f"modifier_token {self.token!r} must look like '<name>' ({MODIFIER_TOKEN_PATTERN.pattern}) "
                f"and not be {STAND_IN}"
            )
        if not re.fullmatch(r"[A-Za-z][A-Za-z -]*", self.category):
            raise ValueError(f"category {self.category!r} must be plain words")
        if self.captions is not None and len(self.captions) != len(self.images):
            raise ValueError(f"{len(self.captions)} captions for {len(self.images)} images; give one per image")
        for number, wordings in enumerate(self._wordings()):
            if not 1 <= len(wordings) <= MAX_WORDINGS:
                raise ValueError(f"image {number}: {len(wordings)} wordings of its caption; give 1 to {MAX_WORDINGS}")
            if all(STAND_IN in caption for caption in wordings):
                raise ValueError(f"image {number}: every wording names a {STAND_IN}; give one that does not")
            missing = next((caption for caption in wordings if self.token not in caption), None)
            if missing is not None:
                raise ValueError(f"caption {missing!r} lacks the modifier token ({TOKEN_PLACEHOLDER} or {self.token})")
        if self.regularization == "real" and not self.reg_dir:
            raise ValueError("regularization 'real' needs reg_dir")
        return self

    @property
    def token(self) -> str:
        return self.modifier_token or f"<cd-{self.concept_id}>"

    @property
    def reg_source(self) -> Literal["real", "generated", "none"]:
        if self.regularization == "auto":
            return "real" if self.reg_dir else "generated"
        return self.regularization

    def image_captions(self) -> list[tuple[str, ...]]:
        """Per image, the wordings of its caption trained on, with the modifier token in place of 'V*'
        (its stand-in wordings aside).

        Several wordings teach the token in more contexts than one fixed sentence; what that buys on
        the toy world is in docs/quality.md."""
        return [tuple(c for c in wordings if STAND_IN not in c) for wordings in self._wordings()]

    def image_stand_ins(self) -> list[tuple[str, ...]]:
        """Per image, its stand-in wordings (those naming another object by STAND_IN), token in place."""
        return [tuple(c for c in wordings if STAND_IN in c) for wordings in self._wordings()]

    def _wordings(self) -> list[tuple[str, ...]]:
        given = self.captions or [""] * len(self.images)
        default = DEFAULT_CAPTION.format(category=self.category)
        return [
            tuple((caption or default).replace(TOKEN_PLACEHOLDER, self.token) for caption in as_wordings(wordings))
            for wordings in given
        ]

    def all_captions(self) -> list[str]:
        """Every distinct caption trained on, in order, stand-in wordings aside (the artifact records
        them for the merge, whose prompts never name a stand-in)."""
        return list(dict.fromkeys(caption for wordings in self.image_captions() for caption in wordings))


def as_wordings(caption: str | Sequence[str]) -> list[str]:
    """A caption, or the list of its wordings, as that list."""
    return [caption] if isinstance(caption, str) else list(caption)


class TrainConfig(StrictModel):
    """One training run: one concept, or several trained jointly into one bundle."""

    base_model: str = Field(description="Diffusers directory of the base model")
    concepts: list[ConceptConfig] = Field(min_length=1, max_length=MAX_CONCEPTS)
    recipe: Recipe = Field(default_factory=Recipe)
    output_dir: str = Field(description="Where the artifact, checkpoints and generated reg images go")
    bundle_id: str | None = Field(None, description="Id of the artifact; None: the first concept's id")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        tokens = [c.token for c in self.concepts]
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"modifier tokens {tokens} must be distinct")
        if self.bundle_id is not None and not CONCEPT_ID_PATTERN.fullmatch(self.bundle_id):
            raise ValueError(f"bundle_id {self.bundle_id!r} must match {CONCEPT_ID_PATTERN.pattern}")
        return self

    @property
    def artifact_id(self) -> str:
        return self.bundle_id or self.concepts[0].concept_id

    @property
    def total_steps(self) -> int:
        return self.recipe.total_steps(len(self.concepts))
