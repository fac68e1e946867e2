"""Which parameters each training mode fine-tunes (everything else stays frozen).

| mode              | UNet parameters                                        | modifier tokens |
|-------------------|--------------------------------------------------------|-----------------|
| `kv` (the paper)  | `to_k`, `to_v` weights of every cross-attention layer  | trained         |
| `crossattn`       | `to_q`, `to_k`, `to_v`, `to_out[0]` weights of attn2   | trained         |
| `kv_frozen_token` | as `kv`                                                | frozen at init  |
| `token`           | none (textual inversion)                               | trained         |
| `full`            | every UNet parameter (baseline)                        | trained         |

Only weights, never biases, in the attention modes: a concept artifact stores weight deltas.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from shared.basemodel import cross_attention_layers
from shared.delta import KV_PROJECTIONS, PROJECTIONS

PROJECTIONS_BY_MODE: dict[str, tuple[str, ...]] = {
    "kv": KV_PROJECTIONS,
    "crossattn": PROJECTIONS,
    "kv_frozen_token": KV_PROJECTIONS,
    "token": (),
}
"""Projections trained per attention mode; `full` is absent: it trains the whole UNet."""


def projection_module_name(projection: str) -> str:
    """Module path of a projection inside an `Attention` (`to_out` is the Linear `to_out.0`)."""
    return "to_out.0" if projection == "to_out" else projection


def projection_weight(attn: Attention, projection: str) -> torch.nn.Parameter:
    return attn.get_submodule(projection_module_name(projection)).weight


def trainable_unet_parameters(unet: UNet2DConditionModel, mode: str) -> dict[str, torch.nn.Parameter]:
    """UNet parameter name → parameter, for the parameters `mode` trains."""
    if mode == "full":
        return dict(unet.named_parameters())
    return {
        f"{layer}.{projection_module_name(projection)}.weight": projection_weight(attn, projection)
        for layer, attn in sorted(cross_attention_layers(unet).items())
        for projection in PROJECTIONS_BY_MODE[mode]
    }


def detach_start_of_text(unet: UNet2DConditionModel) -> None:
    """Stop gradients through the start-of-text token's keys and values in every cross-attention layer.

    Its text feature is the same in every prompt (the text encoder is causal), so fine-tuned K/V that
    learned from it would shift the output of every prompt, not only the concept's: the paper detaches it.
    Installed on the trainer's private UNet copy only.
    """
    for attn in cross_attention_layers(unet).values():
        for linear in (attn.to_k, attn.to_v):
            linear.register_forward_hook(_detach_first_token)


def _detach_first_token(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """output (batch, tokens, inner): token 0 keeps its value but passes no gradient."""
    return torch.cat([output[:, :1].detach(), output[:, 1:]], dim=1)


def freeze_all_but(unet: UNet2DConditionModel, mode: str) -> dict[str, torch.nn.Parameter]:
    """Set requires_grad on exactly the mode's parameters; returns them."""
    unet.requires_grad_(False)
    trainable = trainable_unet_parameters(unet, mode)
    for parameter in trainable.values():
        parameter.requires_grad_(True)
    return trainable
