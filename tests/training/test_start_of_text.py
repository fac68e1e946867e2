"""The fine-tuned keys/values learn nothing from the start-of-text token (paper: it is detached)."""

import copy

import torch

from shared.basemodel import cross_attention_layers
from training.trainable import detach_start_of_text, freeze_all_but


def test_start_of_text_passes_no_gradient_to_key_value_weights(tiny_base):
    unet = copy.deepcopy(tiny_base.pipeline.unet)
    freeze_all_but(unet, "kv")
    detach_start_of_text(unet)
    attn = next(iter(cross_attention_layers(unet).values()))
    context = torch.randn(2, 5, attn.to_k.in_features)

    first = attn.to_k(context)
    torch.testing.assert_close(first, context @ attn.to_k.weight.T)  # values unchanged
    first[:, 0].sum().backward()
    assert attn.to_k.weight.grad is None or not attn.to_k.weight.grad.any()

    attn.to_v(context)[:, 1:].sum().backward()
    assert attn.to_v.weight.grad is not None and attn.to_v.weight.grad.abs().sum() > 0
