"""What a finished run writes: a concept artifact (full ΔW or SVD-compressed), or — for the `full`
baseline, which changes the whole UNet and so is not a delta — a plain safetensors of the trained
UNet weights and token embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from shared import artifact
from shared.artifact import ArtifactHeader, ConceptPart
from shared.basemodel import BaseSpec
from shared.compress import compress
from training.config import TrainConfig
from training.trainer import ConceptTrainer

FULL_METADATA_KEY = "cdserve_full_finetune"
SDXL_MAX_RANK = 22
"""The largest rank whose fp16 factors in all 70 K/V pairs of the SDXL UNet, with the header and
token embeddings, stay within 20 MB — the size an SDXL concept aims for."""
DEFAULT_COMPRESSION_BY_FAMILY: dict[str, dict[str, Any]] = {"sdxl": {"energy": 0.95, "max_rank": SDXL_MAX_RANK}}
"""Families whose concepts are SVD-compressed unless the recipe says otherwise: an SDXL K/V delta
is hundreds of millions of parameters in full, so a low-rank one is the normal case. The energy
rule picks the rank from the spectrum and so does not bound the file; the cap does (what either
costs in fidelity: docs/models.md). A recipe's `compress_energy` or `compress_rank` replaces both;
`compress_energy=1.0` keeps every singular value."""


def artifact_path(config: TrainConfig) -> Path:
    return Path(config.output_dir) / f"{config.artifact_id}.safetensors"


def recorded_recipe(config: TrainConfig, trainer: ConceptTrainer) -> dict[str, Any]:
    """The recipe as given, plus what it resolved to in this run."""
    return {
        **config.recipe.model_dump(mode="json"),
        "resolved": {
            "steps": config.total_steps,
            "effective_learning_rate": config.recipe.effective_learning_rate,
            "effective_token_learning_rate": config.recipe.effective_token_learning_rate,
            "resolution": trainer.source.resolution,
            "initializer_tokens": trainer.initializer_words,
            "regularization": [concept.reg_source for concept in config.concepts],
        },
    }


def write_result(config: TrainConfig, trainer: ConceptTrainer, spec: BaseSpec, metrics: dict[str, Any]) -> Path:
    """Write the run's output next to its checkpoints; returns the file."""
    path = artifact_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    recipe = recorded_recipe(config, trainer)
    if config.recipe.mode == "full":
        tensors = {name: t.detach().float().cpu().contiguous() for name, t in trainer.trainable_tensors().items()}
        meta = {"base_fingerprint": spec.fingerprint, "recipe": recipe, "metrics": metrics, "concepts": _parts(config)}
        save_file(tensors, str(path), metadata={FULL_METADATA_KEY: json.dumps(meta)})
        return path
    delta, delta_kind = trainer.delta(), "full"
    energy, rank = config.recipe.compress_energy, config.recipe.compress_rank
    settings: dict[str, Any] | None = DEFAULT_COMPRESSION_BY_FAMILY.get(spec.family)
    if energy is not None or rank is not None:
        settings = {"energy": energy, "rank": rank}
    if settings is not None:
        delta, report = compress(delta, **settings)
        delta_kind = "lowrank"
        metrics = {
            **metrics,
            "compression": {
                "ratio": report.ratio,
                "max_rank": report.max_rank,
                "relative_error": report.overall_relative_error,
            },
        }
    header = ArtifactHeader(
        concept_id=config.artifact_id,
        concepts=[ConceptPart(**part) for part in _parts(config)],
        base_fingerprint=spec.fingerprint,
        base_family=spec.family,
        token_dims=list(spec.token_dims) or None,
        delta_kind=delta_kind,
        recipe=recipe,
        metrics=metrics,
    )
    return artifact.save(header, delta, path)


def _parts(config: TrainConfig) -> list[dict[str, Any]]:
    return [{"modifier_token": c.token, "category": c.category, "captions": c.all_captions()} for c in config.concepts]
