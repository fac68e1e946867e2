"""The training objective: Eq. 2 of the paper (MSE on the predicted noise), masked to the valid
latent region of augmented targets, plus the weighted regularisation (prior-preservation) term."""

from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample Σ(mask · mse) / Σ mask → (B,).

    prediction, target (B, C, h, w); mask (B, 1, h, w) of 0/1 at latent resolution. The squared
    error is averaged over channels first, so a full mask gives exactly the plain MSE.
    """
    error = (prediction.float() - target.float()).pow(2).mean(dim=1, keepdim=True)
    mask = mask.to(error.dtype)
    return (error * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1.0)


def custom_diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    is_reg: torch.Tensor,
    *,
    prior_loss_weight: float,
) -> torch.Tensor:
    """mean over targets + prior_loss_weight · mean over regularisation samples (when any)."""
    per_sample = masked_mse(prediction, target, mask)
    loss = per_sample[~is_reg].mean()
    if bool(is_reg.any()):
        loss = loss + prior_loss_weight * per_sample[is_reg].mean()
    return loss
