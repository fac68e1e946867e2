"""Synthetic concepts with random deltas, for tests and benchmarks (no training needed)."""

from __future__ import annotations

import torch

from shared.artifact import ArtifactHeader, ConceptPart
from shared.delta import KV_PROJECTIONS, ConceptDelta, DeltaWeight
from shared.spec import BaseSpec


def random_concept(
    spec: BaseSpec,
    concept_id: str,
    *,
    seed: int = 0,
    rank: int | None = None,
    scale: float = 0.3,
    category: str = "dog",
    modifier_token: str | None = None,
    dtype: torch.dtype = torch.float32,
    projections: tuple[str, ...] = KV_PROJECTIONS,
) -> tuple[ArtifactHeader, ConceptDelta]:
    """A concept for `spec` whose deltas are random (dense, or low-rank when `rank` is given);
    `projections` may add "to_q"/"to_out" (a concept trained in mode `crossattn`)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    delta = ConceptDelta()
    for layer in spec.layers:
        delta.layers[layer.name] = {}
        for projection in projections:
            out_f, in_f = layer.delta_shape(projection)
            delta.layers[layer.name][projection] = (
                DeltaWeight(dense=randn(out_f, in_f) / in_f**0.5)
                if rank is None
                else DeltaWeight.low_rank(randn(out_f, rank), randn(rank, in_f) / in_f**0.5)
            )
    token = modifier_token or f"<{concept_id}>"
    delta.token_embeddings[token] = randn(spec.token_dim) * 3
    header = ArtifactHeader(
        concept_id=concept_id,
        concepts=[ConceptPart(modifier_token=token, category=category, captions=[f"photo of a {token} {category}"])],
        base_fingerprint=spec.fingerprint,
        base_family=spec.family,
        token_dims=list(spec.token_dims) or None,
        delta_kind="full" if rank is None else "lowrank",
        recipe={"synthetic": True, "seed": seed},
    )
    return header, delta
