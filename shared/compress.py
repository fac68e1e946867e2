"""SVD compression of concept deltas (Custom Diffusion §4, "compression").

The delta `W − W0` of each layer has steeply falling singular values, so the top ones carry
nearly all of it. Semantics: ΔW ≈ U_r diag(S_r) V_rᵀ = up @ down with up = U_r·S_r, down = V_rᵀ,
where r is fixed or the smallest rank whose singular values hold `energy` of their sum, optionally
capped at `max_rank` (an artifact's size grows with its rank, while the energy rule alone does not
bound it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shared.delta import ConceptDelta, DeltaWeight
from shared.errors import InvalidArgument


@dataclass(frozen=True)
class CompressionReport:
    """Size before/after and the relative Frobenius error ‖ΔW − up·down‖ / ‖ΔW‖ (worst layer and overall)."""

    bytes_before: int
    bytes_after: int
    max_rank: int
    max_relative_error: float
    overall_relative_error: float

    @property
    def ratio(self) -> float:
        return self.bytes_before / max(self.bytes_after, 1)


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r with sum(S[:r]) ≥ energy · sum(S) (at least 1)."""
    cumulative = torch.cumsum(singular_values, 0) / singular_values.sum().clamp_min(1e-30)
    return int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=cumulative.dtype)).item()) + 1


def compress_weight(
    weight: DeltaWeight, *, energy: float | None = None, rank: int | None = None, max_rank: int | None = None
) -> DeltaWeight:
    """Low-rank factors of one delta, in the delta's dtype (the SVD itself runs in fp32)."""
    dense = weight.to_dense().float()
    u, s, vh = torch.linalg.svd(dense, full_matrices=False)
    r = min(rank if rank is not None else rank_for_energy(s, energy), s.numel(), max_rank or s.numel())  # type: ignore[arg-type]
    dtype = weight.tensors()[0].dtype
    return DeltaWeight.low_rank((u[:, :r] * s[:r]).to(dtype).contiguous(), vh[:r].to(dtype).contiguous())


def compress(
    delta: ConceptDelta, *, energy: float | None = None, rank: int | None = None, max_rank: int | None = None
) -> tuple[ConceptDelta, CompressionReport]:
    """Compress every layer's delta by energy fraction (0 < energy ≤ 1, at most `max_rank` when
    given) or fixed rank; embeddings are kept."""
    if (energy is None) == (rank is None):
        raise InvalidArgument("give exactly one of `energy` or `rank`", field="energy")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise InvalidArgument(f"energy {energy} must be in (0, 1]", field="energy")
    if rank is not None and rank < 1:
        raise InvalidArgument(f"rank {rank} must be ≥ 1", field="rank")
    if max_rank is not None and max_rank < 1:
        raise InvalidArgument(f"max_rank {max_rank} must be ≥ 1", field="max_rank")
    compressed = ConceptDelta(token_embeddings=dict(delta.token_embeddings))
    errors: list[float] = []
    error_sq = total_sq = 0.0
    for name, layer in delta.layers.items():
        compressed.layers[name] = {}
        for projection, weight in layer.items():
            small = compress_weight(weight, energy=energy, rank=rank, max_rank=max_rank)
            compressed.layers[name][projection] = small
            reference = weight.to_dense().float()
            err = torch.linalg.matrix_norm(reference - small.to_dense().float()).item()
            norm = torch.linalg.matrix_norm(reference).item()
            errors.append(err / max(norm, 1e-30))
            error_sq += err**2
            total_sq += norm**2
    report = CompressionReport(
        bytes_before=delta.nbytes,
        bytes_after=compressed.nbytes,
        max_rank=compressed.max_rank,
        max_relative_error=max(errors, default=0.0),
        overall_relative_error=(error_sq / max(total_sq, 1e-30)) ** 0.5,
    )
    return compressed, report
