"""The attention processor that uses per-request keys and values.

Semantics (cross-attention layer l, UNet batch row b, request r(b)):
  K_b = c_b · (W0_k + ΔW_k[r(b)])ᵀ,  V_b = c_b · (W0_v + ΔW_v[r(b)])ᵀ   — computed once per request
  out_b = to_out(softmax(Q_b K_bᵀ / √d) V_b)                          — every denoising step
The text features c are fixed for all steps, so K and V are too: the processor only looks them
up. `to_q`/`to_out` deltas (concepts trained in mode `crossattn`) act on image features, so they
are applied at every step — gathered per row once per batch (`RowDelta`), so that a step adds them
with one batched product per projection, whatever the mix of concepts in the batch.

Deltas exist for cross-attention layers only, so the processor goes there only
(`install_delta_processors`); self-attention keeps the processor the UNet came with. The batch's
conditioning reaches the processors through `bound(conditioning)`, a per-thread context around the
UNet call, not through `cross_attention_kwargs`: diffusers hands those to every attention layer and
warns on each stock processor that does not name them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from shared.delta import DeltaWeight


@dataclass(frozen=True)
class RowDelta:
    """One projection's deltas for every UNet row, gathered once per batch; rows without a delta
    hold zeros. Low-rank deltas are zero-padded to the largest rank of the batch; when any delta
    of the projection is dense, all are held dense (`weight`).

    Semantics: apply(x)[b] = x[b] @ ΔW[b]ᵀ, with ΔW[b] = up[b] @ down[b] or weight[b].
    up (batch, out, rank), down (batch, rank, in), weight (batch, out, in); in the UNet dtype.
    """

    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    @staticmethod
    def gather(rows: int, parts: list[tuple[list[int], DeltaWeight]], like: torch.Tensor) -> RowDelta:
        """`parts`: (UNet rows, delta) for the rows that have one; `like`: dtype and device."""
        out_features, in_features = parts[0][1].shape
        options: dict[str, Any] = {"dtype": like.dtype, "device": like.device}
        if any(not delta.is_low_rank for _, delta in parts):
            weight = torch.zeros(rows, out_features, in_features, **options)
            for indices, delta in parts:
                weight[indices] = delta.to_dense().to(**options)
            return RowDelta(weight=weight)
        rank = max(delta.rank for _, delta in parts)
        up = torch.zeros(rows, out_features, rank, **options)
        down = torch.zeros(rows, rank, in_features, **options)
        for indices, delta in parts:
            up[indices, :, : delta.rank] = delta.up.to(**options)  # type: ignore[union-attr]
            down[indices, : delta.rank] = delta.down.to(**options)  # type: ignore[union-attr]
        return RowDelta(up=up, down=down)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, tokens, in) → (batch, tokens, out)."""
        if self.weight is not None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.bmm(torch.bmm(x, self.down.transpose(1, 2)), self.up.transpose(1, 2))  # type: ignore[union-attr]


@dataclass
class BatchConditioning:
    """Per-call state of one UNet batch, seen by the processors inside `bound(conditioning)`.

    `kv[layer]`: (key, value), each (batch, tokens, inner) in the UNet dtype, batch in UNet order.
    `row_deltas[layer][projection]`: `to_q`/`to_out` deltas of the layer, gathered per row.
    """

    kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    row_deltas: dict[str, dict[str, RowDelta]] = field(default_factory=dict)


class _BoundConditioning(threading.local):
    """The conditioning of the UNet call running on this thread. Per thread, so that batches run on
    one UNet from several threads never see each other's; a `threading.local` rather than a
    `ContextVar` because dynamo traces reading it (a `ContextVar.get` breaks the graph), so a
    compiled UNet takes the tensors as graph inputs (`serving.engine.unet`)."""

    conditioning: BatchConditioning | None = None


_bound = _BoundConditioning()


@contextmanager
def bound(conditioning: BatchConditioning) -> Iterator[None]:
    """Let the delta processors of UNet calls made inside this block (on this thread) use `conditioning`."""
    previous, _bound.conditioning = _bound.conditioning, conditioning
    try:
        yield
    finally:
        _bound.conditioning = previous


def install_delta_processors(layers: dict[str, Attention]) -> None:
    """Put a `DeltaAttnProcessor` on each of `layers` (the cross-attention layers by module name),
    the only layers a delta can change; every other attention layer keeps its processor."""
    for name, attn in layers.items():
        attn.set_processor(DeltaAttnProcessor(name))


def _add_row_delta(output: torch.Tensor, inputs: torch.Tensor, delta: RowDelta | None) -> torch.Tensor:
    return output if delta is None else output + delta.apply(inputs)


class DeltaAttnProcessor:
    """`AttnProcessor2_0` for a cross-attention layer, with the batch's keys and values and row deltas.

    Stateless apart from its layer name: everything per request arrives in the bound conditioning.
    Outside `bound(…)` it computes what the stock processor does.
    """

    def __init__(self, layer_name: str) -> None:
        self.layer_name = layer_name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        conditioning = _bound.conditioning
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        precomputed = conditioning.kv.get(self.layer_name) if conditioning else None
        row_deltas = conditioning.row_deltas.get(self.layer_name, {}) if conditioning else {}
        query = _add_row_delta(attn.to_q(hidden_states), hidden_states, row_deltas.get("to_q"))
        if precomputed is not None:
            key, value = precomputed
        else:
            context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            if encoder_hidden_states is not None and attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
            key, value = attn.to_k(context), attn.to_v(context)

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)

        projected = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](_add_row_delta(projected, hidden_states, row_deltas.get("to_out")))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor
