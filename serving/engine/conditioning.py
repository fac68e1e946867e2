"""Once per request: text features → every cross-attention layer's keys and values.

UNet batch order (as in the diffusers pipeline): all unconditional rows first, then all
conditional rows; inside each half, request after request, `num_images` rows each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.attention_processor import Attention

from serving.engine.processor import BatchConditioning, RowDelta
from shared.delta import ConceptDelta, DeltaWeight


class RowLayout:
    """Where each request's rows sit in the UNet batch."""

    def __init__(self, num_images: Sequence[int]) -> None:
        self.num_images = list(num_images)
        self.per_half = sum(self.num_images)
        starts = [sum(self.num_images[:i]) for i in range(len(self.num_images))]
        self.slices = [
            [slice(half * self.per_half + s, half * self.per_half + s + n) for half in (0, 1)]
            for s, n in zip(starts, self.num_images, strict=True)
        ]
        requests = len(self.num_images)
        self.feature_rows = torch.tensor(
            [half * requests + r for half in (0, 1) for r, n in enumerate(self.num_images) for _ in range(n)]
        )
        """For each UNet row, its row in the (2 · requests) feature batch [uncond…, cond…]."""

    @property
    def rows(self) -> int:
        """UNet batch rows: both halves."""
        return 2 * self.per_half

    def rows_of(self, request: int) -> list[int]:
        """The UNet rows of one request, in both halves."""
        return [row for rows in self.slices[request] for row in range(rows.start, rows.stop)]


def build_conditioning(
    layers: dict[str, Attention],
    features: torch.Tensor,
    deltas: Sequence[ConceptDelta | None],
    layout: RowLayout,
) -> BatchConditioning:
    """features: (2 · requests, tokens, dim) as [uncond r1…rR, cond r1…rR], in the UNet dtype.

    Semantics: K[r] = c_r W0_kᵀ + ΔW_k[r](c_r), the same for V; the uncond features of a request go
    through the request's own weights too, exactly as they would with the weights patched in.
    """
    requests = len(deltas)
    conditioning = BatchConditioning()
    rows = layout.feature_rows.to(features.device)
    for name, attn in layers.items():
        context = attn.norm_encoder_hidden_states(features) if attn.norm_cross else features
        key, value = attn.to_k(context), attn.to_v(context)
        per_row: dict[str, list[tuple[list[int], DeltaWeight]]] = {}
        for r, delta in enumerate(deltas):
            layer_delta = delta.layers.get(name) if delta else None
            if not layer_delta:
                continue
            own = context[[r, requests + r]]
            if "to_k" in layer_delta:
                key[[r, requests + r]] += layer_delta["to_k"].apply(own)
            if "to_v" in layer_delta:
                value[[r, requests + r]] += layer_delta["to_v"].apply(own)
            for projection in ("to_q", "to_out"):
                if projection in layer_delta:
                    per_row.setdefault(projection, []).append((layout.rows_of(r), layer_delta[projection]))
        if per_row:
            conditioning.row_deltas[name] = {
                projection: RowDelta.gather(layout.rows, parts, key) for projection, parts in per_row.items()
            }
        conditioning.kv[name] = (key[rows], value[rows])
    return conditioning
