"""Multi-concept merging: the closed-form constrained optimisation of Custom Diffusion (Eq. 4–5),
and naive summation as an explicit baseline.

For every cross-attention layer and projection W ∈ {W_k, W_v} (out × d):
  Ŵ = argmin_W ‖(W − W0) C_regᵀ‖²  s.t.  W Cᵀ = V
where C (s × d) stacks the text features of the target captions' tokens of all concepts and
V = [W_n c_nᵀ]ₙ stacks each concept's own fine-tuned output for its own tokens.
Semantics: Ŵ = W0 + vᵀ d,  d = C M⁻¹,  vᵀ = (V − W0 Cᵀ)(d Cᵀ)⁺,  M = C_regᵀ C_reg + λI.
M, d and (d Cᵀ)⁺ do not depend on the layer; Ŵ − W0 has rank ≤ rank(C) ≤ min(s, d), so the
merged set is itself a low-rank delta. (d Cᵀ)⁺ is a pseudo-inverse: rows of C that coincide or are
collinear (s > d in small models) make the exact constraints infeasible; the pseudo-inverse then
satisfies them in the least-squares sense instead of blowing up.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.models.attention_processor import Attention
from safetensors.torch import load_file, save_file

from shared.artifact import ArtifactHeader
from shared.delta import KV_PROJECTIONS, ConceptDelta, DeltaWeight
from shared.errors import Conflict, InvalidArgument
from shared.sdxl import DualPromptEncoder
from shared.text import PromptEncoder

GENERIC_CAPTIONS = Path(__file__).resolve().parent / "assets" / "generic_captions.txt"
CONSTRAINT_WARNING = 1e-2
"""A merge whose constraints miss by more than this (relative) is logged: a least-squares compromise."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegularizationStats:
    """Gram matrix C_regᵀ C_reg (d × d, fp64) of the generic captions' token features."""

    gram: torch.Tensor
    num_tokens: int


@dataclass
class MergeReport:
    """Relative residuals per "layer.projection": constraints ‖ΔŴCᵀ − (V − W0Cᵀ)‖/‖V − W0Cᵀ‖ and
    regularisation ‖ΔŴ C_regᵀ‖/‖W0 C_regᵀ‖ (how much generic captions' outputs move)."""

    constraint_residual: dict[str, float] = field(default_factory=dict)
    regularization_residual: dict[str, float] = field(default_factory=dict)
    num_target_tokens: int = 0
    rank: int = 0

    @property
    def max_constraint_residual(self) -> float:
        return max(self.constraint_residual.values(), default=0.0)

    @property
    def max_regularization_residual(self) -> float:
        return max(self.regularization_residual.values(), default=0.0)


MergeInput = tuple[ArtifactHeader, ConceptDelta]
TextFeatures = PromptEncoder | DualPromptEncoder
"""What turns captions into the features the K/V projections see (SD 1.x/2.x: one encoder; SDXL: two)."""


def load_captions(path: str | Path = GENERIC_CAPTIONS) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


@torch.no_grad()
def regularization_stats(
    encoder: TextFeatures, captions: Sequence[str], *, batch_size: int = 64
) -> RegularizationStats:
    """C_regᵀ C_reg over every token position the UNet attends to (padding included: SD attends to it).
    On SDXL the features are both encoders' concatenated (2048-d), as the K/V projections see them."""
    dim = encoder.feature_dim
    gram = torch.zeros(dim, dim, dtype=torch.float64)
    count = 0
    for start in range(0, len(captions), batch_size):
        tokenized: list[Any] = [encoder.tokenize(c) for c in captions[start : start + batch_size]]
        features = encoder.encode(tokenized).double().cpu().reshape(-1, dim)
        gram += features.T @ features
        count += features.shape[0]
    return RegularizationStats(gram=gram, num_tokens=count)


class RegularizationCache:
    """C_regᵀ C_reg computed once per (base model, caption set), kept in memory and on disk."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self._memory: dict[str, RegularizationStats] = {}

    def get(self, fingerprint: str, encoder: TextFeatures, captions: Sequence[str]) -> RegularizationStats:
        key = f"{fingerprint}-{hashlib.sha256(chr(10).join(captions).encode()).hexdigest()[:16]}"
        if key in self._memory:
            return self._memory[key]
        path = self.directory / f"creg-{key}.safetensors" if self.directory else None
        if path is not None and path.exists():
            tensors = load_file(str(path))
            stats = RegularizationStats(tensors["gram"], int(tensors["num_tokens"].item()))
        else:
            stats = regularization_stats(encoder, captions)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_file({"gram": stats.gram, "num_tokens": torch.tensor(stats.num_tokens)}, str(path))
        self._memory[key] = stats
        return stats


def merged_token_embeddings(concepts: Sequence[MergeInput]) -> dict[str, torch.Tensor]:
    """The union of the concepts' modifier tokens; one token string used by two concepts is a conflict."""
    table: dict[str, torch.Tensor] = {}
    for _header, delta in concepts:
        for token, vector in delta.token_embeddings.items():
            if token in table:
                raise Conflict(
                    f"modifier token {token!r} is used by more than one of the concepts being combined; "
                    "retrain one of them with another token",
                    field="concepts",
                )
            table[token] = vector
    return table


def naive_sum(concepts: Sequence[MergeInput]) -> ConceptDelta:
    """Baseline: ΔW = Σₙ ΔWₙ for every layer (dense), tokens united. Interference is not prevented."""
    merged = ConceptDelta(token_embeddings=merged_token_embeddings(concepts))
    for _, delta in concepts:
        for name, layer in delta.layers.items():
            target = merged.layers.setdefault(name, {})
            for projection, weight in layer.items():
                dense = weight.to_dense().float()
                if projection in target:
                    dense = dense + target[projection].to_dense()
                target[projection] = DeltaWeight(dense=dense)
    return merged


@torch.no_grad()
def _target_features(
    concepts: Sequence[MergeInput], encoder: TextFeatures
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """C (s × d, fp64): features from each modifier token through end-of-text of every caption.

    Tokens before the modifier token are identical for all concepts (the encoder is causal), so
    they carry no concept-specific target; they are left to the regularisation term. Returns C and,
    per concept, its row range.
    """
    rows: list[torch.Tensor] = []
    ranges: list[tuple[int, int]] = []
    for header, delta in concepts:
        start = sum(r.shape[0] for r in rows)
        for part in header.concepts:
            captions = sorted(set(part.captions)) or [f"photo of a {part.modifier_token} {part.category}"]
            tokenized: list[Any] = [encoder.tokenize(c, list(delta.token_embeddings)) for c in captions]
            features = encoder.encode(tokenized, delta.token_embeddings).double().cpu()
            for caption, prompt, feature in zip(captions, tokenized, features, strict=True):
                positions = [pos for pos, token in prompt.token_positions if token == part.modifier_token]
                if not positions:
                    raise InvalidArgument(
                        f"concept {header.concept_id!r}: caption {caption!r} lacks its modifier token "
                        f"{part.modifier_token!r}",
                        field="captions",
                    )
                rows.append(feature[positions[0] : prompt.length])
        ranges.append((start, sum(r.shape[0] for r in rows)))
    return torch.cat(rows), ranges


def closed_form_merge(
    concepts: Sequence[MergeInput],
    encoder: TextFeatures,
    layers: dict[str, Attention],
    regularization: RegularizationStats,
    *,
    ridge: float = 1e-3,
    eigen_cutoff: float = 1e-3,
) -> tuple[ConceptDelta, MergeReport]:
    """Merge separately trained concepts into one low-rank delta (see the module docstring).

    `layers`: the base model's cross-attention modules (W0 is read, never written). `ridge` is λ
    relative to the mean eigenvalue of C_regᵀC_reg. `eigen_cutoff` drops directions of C M⁻¹ Cᵀ whose
    eigenvalue is below that fraction of the largest: near-collinear constraints, whose inverse would
    put huge changes on generic prompts. A cutoff far lower makes the constraints hold exactly on
    the target captions while held-out prompts, which lie outside their span, draw neither concept;
    far higher drops constraints the concepts need. The default drew the merged pair best on the toy
    world (docs/quality.md).
    """
    if len(concepts) < 2:
        raise InvalidArgument("a merge needs at least two concepts", field="concepts")
    for header, delta in concepts:
        extra = {p for layer in delta.layers.values() for p in layer} - set(KV_PROJECTIONS)
        if extra:
            raise InvalidArgument(
                f"concept {header.concept_id!r} changes {sorted(extra)}; the closed-form merge covers "
                "to_k/to_v only (concepts trained in mode 'kv')",
                field="concepts",
            )
    embeddings = merged_token_embeddings(concepts)
    targets, ranges = _target_features(concepts, encoder)
    dim = regularization.gram.shape[0]
    gram = regularization.gram
    m = gram + ridge * (torch.trace(gram) / dim) * torch.eye(dim, dtype=torch.float64)
    d = torch.linalg.solve(m, targets.T).T  # (s, d) = C M⁻¹
    eigenvalues, eigenvectors = torch.linalg.eigh(d @ targets.T)  # d Cᵀ = C M⁻¹ Cᵀ, symmetric PSD
    keep = eigenvalues > eigen_cutoff * eigenvalues.max().clamp_min(1e-300)
    q, inv_lambda = eigenvectors[:, keep], 1.0 / eigenvalues[keep]
    down = q.T @ d  # (k, d): the rows of d that survive the pseudo-inverse
    report = MergeReport(num_target_tokens=targets.shape[0], rank=int(keep.sum()))
    merged = ConceptDelta(token_embeddings=embeddings)
    dtype = _delta_dtype(concepts)
    layer_names = sorted({name for _, delta in concepts for name in delta.layers})
    for name in layer_names:
        attn = layers[name]
        merged.layers[name] = {}
        for projection in KV_PROJECTIONS:
            w0 = getattr(attn, projection).weight.detach().double().cpu()
            residual_targets = torch.cat(
                [
                    _own_outputs(delta, name, projection, targets[a:b], w0.shape[0])
                    for (a, b), (_, delta) in zip(ranges, concepts, strict=True)
                ],
                dim=1,
            )  # (out, s) = V − W0 Cᵀ
            up = (residual_targets @ q) * inv_lambda  # (out, k) = (V − W0Cᵀ) Q Λ⁻¹
            change = up @ down
            merged.layers[name][projection] = _balanced(up, down, dtype)
            key = f"{name}.{projection}"
            report.constraint_residual[key] = _relative(change @ targets.T - residual_targets, residual_targets)
            report.regularization_residual[key] = (
                torch.trace(change @ gram @ change.T).clamp_min(0).sqrt()
                / torch.trace(w0 @ gram @ w0.T).clamp_min(1e-300).sqrt()
            ).item()
    if report.max_constraint_residual > CONSTRAINT_WARNING:
        # More target features than independent directions (more tokens than the text space is wide,
        # or near-collinear ones cut by `eigen_cutoff`): the pseudo-inverse returns the least-squares
        # fit, and each concept is weakened.
        logger.warning(
            "merge of %s: the constraints on %d target tokens cannot all hold (%d independent directions "
            "kept in a %d-wide text space; relative residual up to %.3f); the merged concepts are a "
            "least-squares compromise",
            [header.concept_id for header, _ in concepts],
            report.num_target_tokens,
            report.rank,
            dim,
            report.max_constraint_residual,
        )
    return merged, report


def _balanced(up: torch.Tensor, down: torch.Tensor, dtype: torch.dtype) -> DeltaWeight:
    """Rescale each rank-1 term so that its two factors have equal norms (keeps fp16 storage precise)."""
    scale = (down.norm(dim=1) / up.norm(dim=0).clamp_min(1e-300)).clamp_min(1e-300).sqrt()
    return DeltaWeight.low_rank((up * scale).to(dtype), (down / scale[:, None]).to(dtype))


def _own_outputs(delta: ConceptDelta, layer: str, projection: str, features: torch.Tensor, out: int) -> torch.Tensor:
    """ΔW_n c_nᵀ (out × rows): the concept's own change of output for its own tokens (zero if untouched)."""
    weight = delta.layers.get(layer, {}).get(projection)
    if weight is None:
        return torch.zeros(out, features.shape[0], dtype=torch.float64)
    return weight.to_dense().double() @ features.T


def _delta_dtype(concepts: Sequence[MergeInput]) -> torch.dtype:
    for _, delta in concepts:
        for layer in delta.layers.values():
            for weight in layer.values():
                return weight.tensors()[0].dtype
    return torch.float32


def _relative(error: torch.Tensor, reference: torch.Tensor) -> float:
    return (torch.linalg.matrix_norm(error) / torch.linalg.matrix_norm(reference).clamp_min(1e-300)).item()
