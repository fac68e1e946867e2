"""Concept deltas: the per-layer change of the cross-attention key/value projections.

A delta is stored dense (`ΔW`, (out, in)) or as low-rank factors (`ΔW = up @ down`,
up (out, r), down (r, in)). Both apply to text features without ever forming `W0 + ΔW`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

KV_PROJECTIONS = ("to_k", "to_v")
"""Projections that only see the text features: their output is computed once per request."""
PROJECTIONS = (*KV_PROJECTIONS, "to_q", "to_out")
"""Every projection a delta may change; `to_q`/`to_out` (mode `crossattn`) act on image features per step."""


@dataclass(frozen=True)
class DeltaWeight:
    """ΔW of one projection. Exactly one of `dense` or (`up`, `down`) is set.

    Semantics: apply(x) = x @ ΔWᵀ, with ΔW = dense or up @ down.
    """

    dense: torch.Tensor | None = None
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.up is None or self.down is None):
            raise ValueError("DeltaWeight needs either `dense` or both `up` and `down`")

    @staticmethod
    def low_rank(up: torch.Tensor, down: torch.Tensor) -> DeltaWeight:
        return DeltaWeight(up=up, down=down)

    @property
    def is_low_rank(self) -> bool:
        return self.dense is None

    @property
    def shape(self) -> tuple[int, int]:
        if self.dense is not None:
            return tuple(self.dense.shape)  # type: ignore[return-value]
        return (self.up.shape[0], self.down.shape[1])  # type: ignore[union-attr]

    @property
    def rank(self) -> int:
        """Rank of the factorisation (for dense deltas: the full inner dimension)."""
        return min(self.shape) if self.dense is not None else self.up.shape[1]  # type: ignore[union-attr]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [self.dense] if self.dense is not None else [self.up, self.down]  # type: ignore[list-item]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) → x @ ΔWᵀ (..., out), in x's dtype."""
        if self.dense is not None:
            return x @ self.dense.to(x.dtype).T
        return (x @ self.down.to(x.dtype).T) @ self.up.to(x.dtype).T  # type: ignore[union-attr]

    def to_dense(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        return self.up.float() @ self.down.float()  # type: ignore[union-attr]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DeltaWeight:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return DeltaWeight(dense=move(self.dense), up=move(self.up), down=move(self.down))


LayerDelta = dict[str, DeltaWeight]
"""Projection name (one of PROJECTIONS) → its delta, for one cross-attention layer."""


@dataclass
class ConceptDelta:
    """Everything a concept changes in the base model.

    `layers`: cross-attention layer name (e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2")
    → its projection deltas. `token_embeddings`: modifier token string → embedding (dim,).
    """

    layers: dict[str, LayerDelta] = field(default_factory=dict)
    token_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        deltas = sum(d.nbytes for layer in self.layers.values() for d in layer.values())
        return deltas + sum(t.numel() * t.element_size() for t in self.token_embeddings.values())

    @property
    def max_rank(self) -> int:
        """Largest rank over low-rank deltas; 0 when every delta is dense."""
        ranks = [d.rank for layer in self.layers.values() for d in layer.values() if d.is_low_rank]
        return max(ranks, default=0)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ConceptDelta:
        return ConceptDelta(
            layers={name: {p: d.to(device, dtype) for p, d in layer.items()} for name, layer in self.layers.items()},
            token_embeddings={t: e.to(device=device, dtype=dtype) for t, e in self.token_embeddings.items()},
        )
