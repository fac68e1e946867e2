"""How the denoising loop calls the UNet: eagerly, or compiled with `torch.compile`.

The compiled UNet takes every per-request input as a graph input — the batch's keys and values and
gathered row deltas are bound around the call (`serving.engine.processor.bound`), never module
state or constants — so dynamo guards on their shapes and dtypes only, and a batch with other
concepts reuses the compiled graph. The batch
size is a shape: a batch is zero-padded to the next power of two (its bucket), so that a partly
filled batch reuses its bucket's graph instead of compiling one of its own. Padded rows see zero
latents and zero keys and values; their outputs are dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from serving.engine.processor import BatchConditioning, RowDelta, bound

UNetStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(model input (rows, channels, h, w), timestep) → predicted noise (rows, channels, h, w)."""
RECOMPILE_LIMIT = 64
"""Graphs dynamo may keep per code object: one per bucket and per set of delta projections in use
(dynamo's default of 8 would fall back to eager once a few buckets and kinds have been seen)."""


def bucket(rows: int) -> int:
    """The padded batch size of `rows` UNet rows: the next power of two."""
    return 1 << max(0, rows - 1).bit_length()


class UNetRunner:
    """Binds one batch's conditioning to the UNet and returns the per-step call.

    `compile`: run `torch.compile(unet, backend=backend, dynamic=False)` with batch buckets.
    """

    def __init__(self, unet: UNet2DConditionModel, *, compile: bool = False, backend: Any = "inductor") -> None:
        self.unet = unet
        self.compiled = compile
        self._forward: Callable[..., Any] = unet
        if compile:
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            self._forward = torch.compile(unet, backend=backend, dynamic=False)

    def bind(
        self,
        encoder_hidden_states: torch.Tensor,
        conditioning: BatchConditioning,
        added_cond: dict[str, torch.Tensor] | None = None,
    ) -> UNetStep:
        """All arguments in UNet batch order, (rows, …) each; padded here once for all steps."""
        rows = encoder_hidden_states.shape[0]
        size = bucket(rows) if self.compiled else rows
        padded = _pad_conditioning(conditioning, size)
        kwargs = {
            "encoder_hidden_states": _pad(encoder_hidden_states, size),
            "added_cond_kwargs": {k: _pad(v, size) for k, v in added_cond.items()} if added_cond else None,
            "return_dict": False,
        }

        def step(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            with bound(padded):
                return self._forward(_pad(sample, size), timestep, **kwargs)[0][:rows]

        return step


def _pad(tensor: torch.Tensor, size: int) -> torch.Tensor:
    missing = size - tensor.shape[0]
    return tensor if missing == 0 else torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))])


def _pad_conditioning(conditioning: BatchConditioning, size: int) -> BatchConditioning:
    def pad_delta(delta: RowDelta) -> RowDelta:
        return RowDelta(**{f.name: _maybe_pad(getattr(delta, f.name), size) for f in dataclasses.fields(delta)})

    return BatchConditioning(
        kv={name: (_pad(k, size), _pad(v, size)) for name, (k, v) in conditioning.kv.items()},
        row_deltas={
            name: {p: pad_delta(d) for p, d in deltas.items()} for name, deltas in conditioning.row_deltas.items()
        },
    )


def _maybe_pad(tensor: torch.Tensor | None, size: int) -> torch.Tensor | None:
    return None if tensor is None else _pad(tensor, size)
